package gossip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/brokkr/brokkr/coord"
)

// Reads and writes act on this node's replica only: they never wait for the
// network, and a compare-and-set is checked against the local copy (see
// docs/coordination.md for what that means under a partition).

// Get implements coord.Store.
func (b *Backend) Get(ctx context.Context, key string) (coord.Record, error) {
	if err := checkKey(key); err != nil {
		return coord.Record{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return coord.Record{}, b.closedErr("get")
	}
	e := b.st.live(key)
	if e == nil {
		return coord.Record{}, fmt.Errorf("gossip get %s: %w", key, coord.ErrNotFound)
	}
	return e.record(), nil
}

// List implements coord.Store.
func (b *Backend) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, b.closedErr("list")
	}
	return b.st.list(prefix), nil
}

// Create implements coord.Store.
func (b *Backend) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return b.write(ctx, "create", key, value, coord.NoVersion, opCreate, nil)
}

// CompareAndSet implements coord.Store.
func (b *Backend) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return b.write(ctx, "compare-and-set", key, value, expect, opSet, nil)
}

// Delete implements coord.Store.
func (b *Backend) Delete(ctx context.Context, key string, expect coord.Version) error {
	_, err := b.write(ctx, "delete", key, nil, expect, opDel, nil)
	return err
}

type writeOp int

const (
	opCreate writeOp = iota
	opSet
	opDel
)

// write checks the precondition against the local replica, applies the
// write with a fresh stamp, tells local watchers and queues the broadcast,
// all under one lock. A fenced write (l != nil) also checks that l is still
// the best claim and no better term has been seen, and stamps l's term.
func (b *Backend) write(ctx context.Context, op, key string, value []byte, expect coord.Version, kind writeOp, l *leadership) (coord.Version, error) {
	if err := ctx.Err(); err != nil {
		return coord.NoVersion, err
	}
	if err := checkKey(key); err != nil {
		return coord.NoVersion, fmt.Errorf("gossip %s: %w", op, err)
	}
	if len(value) > maxValueLen {
		return coord.NoVersion, fmt.Errorf("gossip %s %s: value of %d bytes exceeds %d", op, key, len(value), maxValueLen)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return coord.NoVersion, b.closedErr(op)
	}
	var t *term
	if l != nil {
		if err := b.fenceLocked(l); err != nil {
			return coord.NoVersion, fmt.Errorf("gossip %s %s: %w", op, key, err)
		}
		t = &term{l.c.Epoch, l.c.BrokerID}
	}
	cur := b.st.live(key)
	switch kind {
	case opCreate:
		if cur != nil {
			return coord.NoVersion, fmt.Errorf("gossip create %s: exists at version %d: %w", key, cur.Stamp.version(), coord.ErrConflict)
		}
	case opSet, opDel:
		if cur == nil {
			return coord.NoVersion, fmt.Errorf("gossip %s %s: %w", op, key, coord.ErrNotFound)
		}
		if (kind == opSet || expect != coord.NoVersion) && cur.Stamp.version() != expect {
			return coord.NoVersion, fmt.Errorf("gossip %s %s: version is %d, expected %d: %w", op, key, cur.Stamp.version(), expect, coord.ErrConflict)
		}
	}
	e := &entry{Key: key, Stamp: b.st.newStamp(b.name, t)}
	if kind == opDel {
		e.Deleted = true
	} else {
		e.Value = append([]byte(nil), value...)
	}
	b.applyLocked(e)
	b.queueLocked("r:"+key, encodeMsg(msgEntry, e))
	b.notifyLocked()
	if kind == opDel {
		return coord.NoVersion, nil
	}
	return e.Stamp.version(), nil
}

// ---- watches ----

// maxPending bounds the events queued for one slow watcher; beyond it the
// queue is dropped and the watcher gets an EventResync instead.
const maxPending = 10000

type watcher struct {
	prefix  string
	out     chan coord.Event
	sig     chan struct{}
	mu      sync.Mutex
	pending []coord.Event
	resync  bool
}

// push queues ev if it is under the watcher's prefix. Called with b.mu held.
func (w *watcher) push(ev coord.Event) {
	if !strings.HasPrefix(ev.Key, w.prefix) {
		return
	}
	w.mu.Lock()
	if len(w.pending) >= maxPending {
		w.pending = nil
		w.resync = true
	} else if !w.resync {
		w.pending = append(w.pending, ev)
	}
	w.mu.Unlock()
	select {
	case w.sig <- struct{}{}:
	default:
	}
}

// Watch implements coord.Store: an EventResync with the local snapshot, then
// every change this node applies under prefix (its own writes and those
// gossiped in), in the order it applies them.
//
// Before the snapshot it syncs with every live member (Sync), so the
// snapshot holds every write any reachable member had applied before the
// call; an unreachable member does not fail the Watch (its writes arrive
// later as events).
func (b *Backend) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	if err := b.Sync(ctx); err != nil {
		if errors.Is(err, coord.ErrClosed) || ctx.Err() != nil {
			return nil, err
		}
		b.log.Info("watch starts from a partial sync", "err", err)
	}
	w := &watcher{prefix: prefix, out: make(chan coord.Event, 64), sig: make(chan struct{}, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.closedErr("watch")
	}
	w.pending = []coord.Event{{Kind: coord.EventResync, Snapshot: b.st.list(prefix)}}
	w.sig <- struct{}{}
	b.watchers[w] = struct{}{}
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(w.out)
		defer func() {
			b.mu.Lock()
			delete(b.watchers, w)
			b.mu.Unlock()
		}()
		for {
			select {
			case <-w.sig:
			case <-ctx.Done():
				return
			case <-b.done:
				return
			}
			b.mu.Lock()
			w.mu.Lock()
			batch := w.pending
			w.pending = nil
			if w.resync {
				batch = []coord.Event{{Kind: coord.EventResync, Snapshot: b.st.list(prefix)}}
				w.resync = false
			}
			w.mu.Unlock()
			b.mu.Unlock()
			for _, ev := range batch {
				select {
				case w.out <- ev:
				case <-ctx.Done():
					return
				case <-b.done:
					return
				}
			}
		}
	}()
	return w.out, nil
}
