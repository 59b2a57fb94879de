package etcd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// The Jepsen case: a controller whose lease is gone while it still believes
// it leads (here: its lease revoked behind its back, and its own Lost
// channel not yet closed) must not land a write once a newer controller
// exists. The refusal has to come from etcd's transaction, not from the
// client's own bookkeeping, so the stale leadership is copied with an open
// Lost channel.
func TestStaleControllerFencedByEtcd(t *testing.T) {
	c := startCluster(t, 1, testHeart, testElection, false)
	a := client(t, c.endpoints(), testSession)
	b := client(t, c.endpoints(), testSession)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	la, err := a.Campaign(ctx, 1)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	key := "/fence/partition-0"
	v, err := la.Store().Create(ctx, key, []byte("by epoch 1"))
	if err != nil {
		t.Fatalf("Create through the controller: %v", err)
	}
	orig := la.(*leadership)
	// copyOf is a stale twin of orig whose Lost is still open.
	copyOf := func() *leadership {
		return &leadership{b: a, brokerID: orig.brokerID, epoch: orig.epoch, leaderKey: orig.leaderKey,
			leaderRev: orig.leaderRev, epochRev: orig.epochRev, lost: make(chan struct{})}
	}
	stale := copyOf()
	staleStore := fencedStore{b: a, f: &fence{l: stale}}

	// The lease goes behind a's back (as when etcd expires it while a is
	// paused or cut off); b is elected with a higher epoch.
	a.mu.Lock()
	lease := a.sess.s.Lease()
	a.mu.Unlock()
	if _, err := b.Client().Revoke(ctx, lease); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	lb, err := b.Campaign(ctx, 2)
	if err != nil {
		t.Fatalf("Campaign of the second broker: %v", err)
	}
	if lb.Epoch() <= la.Epoch() {
		t.Fatalf("new epoch %d not above %d", lb.Epoch(), la.Epoch())
	}

	if _, err := staleStore.CompareAndSet(ctx, key, []byte("stale"), v); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("stale CompareAndSet: %v, want ErrFenced", err)
	}
	if !isClosedChan(stale.lost) {
		t.Fatalf("a fenced write did not end the stale leadership")
	}
	staleStore = fencedStore{b: a, f: &fence{l: copyOf()}}
	if _, err := staleStore.Create(ctx, "/fence/new", nil); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("stale Create: %v, want ErrFenced", err)
	}
	staleStore = fencedStore{b: a, f: &fence{l: copyOf()}}
	if err := staleStore.Delete(ctx, key, coord.NoVersion); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("stale Delete: %v, want ErrFenced", err)
	}
	r, err := b.Get(ctx, key)
	if err != nil || r.Version != v || string(r.Value) != "by epoch 1" {
		t.Fatalf("record after stale writes = %+v, %v; want unchanged", r, err)
	}
	if _, err := b.Get(ctx, "/fence/new"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("a stale Create landed: %v", err)
	}
	// The real leadership object notices too (its election key was deleted).
	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Fatalf("Lost not closed 10 s after the lease was revoked")
	}
	// The new controller writes.
	if _, err := lb.Store().CompareAndSet(ctx, key, []byte("by epoch 2"), v); err != nil {
		t.Fatalf("CompareAndSet by the new controller: %v", err)
	}
	if id, ep, err := a.Controller(ctx); err != nil || id != 2 || ep != lb.Epoch() {
		t.Fatalf("Controller() = %d, %d, %v; want 2, %d", id, ep, err, lb.Epoch())
	}
}

// A broker ID held by a live session cannot be registered by another.
func TestRegisterTakenID(t *testing.T) {
	c := startCluster(t, 1, testHeart, testElection, false)
	a := client(t, c.endpoints(), testSession)
	b := client(t, c.endpoints(), testSession)
	ctx := context.Background()
	ra, err := a.Register(ctx, coord.BrokerInfo{ID: 7, Endpoints: []string{"PLAINTEXT://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: 7}); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("second Register of id 7: %v, want ErrConflict", err)
	}
	if err := ra.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: 7}); err != nil {
		t.Fatalf("Register after the first closed: %v", err)
	}
	if _, err := a.Register(ctx, coord.BrokerInfo{ID: -1}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("negative id: %v, want ErrInvalidKey", err)
	}
}
