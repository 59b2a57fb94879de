package coordtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// Run runs the conformance suite against the cluster h reaches. Subtests run
// one after another (they share the cluster's controller and broker set);
// keys live under /coordtest/<run id>/ and broker IDs are chosen per run.
// What a backend does not claim in Capabilities is checked in a weaker form,
// with a log line naming the promise that is not made.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("coordtest: Harness.New is nil")
	}
	if h.SessionTimeout <= 0 {
		t.Fatal("coordtest: Harness.SessionTimeout must be > 0")
	}
	if h.Name == "" {
		h.Name = "backend"
	}
	s := &suite{h: h, run: newRunID(), base: int32(1000 + rand.IntN(50)*100)}
	b := h.New(t)
	s.caps = b.Capabilities()
	_ = b.Close()
	t.Logf("%s: capabilities %+v, session time-out %v, run %s, broker IDs from %d", h.Name, s.caps, h.SessionTimeout, s.run, s.base)

	t.Run("GetCreateDelete", s.testGetCreateDelete)
	t.Run("CompareAndSet", s.testCompareAndSet)
	t.Run("List", s.testList)
	t.Run("ConcurrentCompareAndSet", s.testConcurrentCAS)
	t.Run("WatchSnapshotFirst", s.testWatchSnapshot)
	t.Run("WatchOrderConcurrentWriters", s.testWatchOrder)
	t.Run("WatchEndsWithContextAndClose", s.testWatchEnds)
	t.Run("Registration", s.testRegistration)
	t.Run("KilledRegistrantDisappears", s.testKilledRegistrant)
	t.Run("OneController", s.testOneController)
	t.Run("KilledControllerReplaced", s.testKilledController)
	t.Run("Linearizable", s.testLinearizable)
	t.Run("WatchSurvivesRestart", s.testWatchRestart)
}

type suite struct {
	h    Harness
	caps coord.Capabilities
	run  string
	base int32
}

// prefix is a fresh key space for one subtest.
func (s *suite) prefix(t *testing.T) string {
	return fmt.Sprintf("/coordtest/%s/%s/", s.run, sanitize(t.Name()))
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// client opens a new client and closes it at the end of the test.
func (s *suite) client(t *testing.T) coord.Backend {
	t.Helper()
	b := s.h.New(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// margin is the slack on top of the session time-out that a dead session may
// take to disappear on a noisy shared machine.
func (s *suite) margin() time.Duration {
	return s.h.SessionTimeout/2 + 5*time.Second
}

// campaignLimit bounds how long a campaign may wait for an earlier
// controller's session to end.
func (s *suite) campaignLimit() time.Duration {
	return 2*s.h.SessionTimeout + 30*time.Second
}

func (s *suite) testGetCreateDelete(t *testing.T) {
	b := s.client(t)
	ctx := testCtx(t)
	key := s.prefix(t) + "rec"

	if _, err := b.Get(ctx, key); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a missing key: err %v, want ErrNotFound", err)
	}
	if _, err := b.CompareAndSet(ctx, key, []byte("x"), 1); !errors.Is(err, coord.ErrNotFound) {
		t.Errorf("CompareAndSet of a missing key: err %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, key, coord.NoVersion); !errors.Is(err, coord.ErrNotFound) {
		t.Errorf("Delete of a missing key: err %v, want ErrNotFound", err)
	}
	v1, err := b.Create(ctx, key, []byte("one"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if v1 == coord.NoVersion {
		t.Fatalf("Create returned NoVersion")
	}
	r, err := b.Get(ctx, key)
	if err != nil || string(r.Value) != "one" || r.Version != v1 || r.Key != key {
		t.Fatalf("Get after Create = %+v, %v; want %q@%d", r, err, "one", v1)
	}
	if _, err := b.Create(ctx, key, []byte("two")); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("second Create: err %v, want ErrConflict", err)
	}
	if r, _ := b.Get(ctx, key); string(r.Value) != "one" {
		t.Fatalf("a failed Create changed the value to %q", r.Value)
	}
	// A different client sees the same record (same cluster).
	other := s.client(t)
	if r, err := other.Get(ctx, key); err != nil || r.Version != v1 || string(r.Value) != "one" {
		t.Fatalf("Get from a second client = %+v, %v; want %q@%d", r, err, "one", v1)
	}
	// Empty values are values.
	empty := s.prefix(t) + "empty"
	ve, err := b.Create(ctx, empty, nil)
	if err != nil {
		t.Fatalf("Create of an empty value: %v", err)
	}
	if r, err := b.Get(ctx, empty); err != nil || len(r.Value) != 0 || r.Version != ve {
		t.Fatalf("Get of an empty value = %+v, %v", r, err)
	}

	if err := b.Delete(ctx, key, v1+12345); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("Delete with a wrong version: err %v, want ErrConflict", err)
	}
	if _, err := b.Get(ctx, key); err != nil {
		t.Fatalf("the record is gone after a Delete with a wrong version: %v", err)
	}
	if err := b.Delete(ctx, key, v1); err != nil {
		t.Fatalf("Delete with the right version: %v", err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get after Delete: err %v, want ErrNotFound", err)
	}
	v2, err := b.Create(ctx, key, []byte("again"))
	if err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if v2 == v1 {
		t.Fatalf("a re-created record got its old version %d again", v1)
	}
	if _, err := b.CompareAndSet(ctx, key, []byte("stale"), v1); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("CompareAndSet with the previous incarnation's version: err %v, want ErrConflict", err)
	}
	if err := b.Delete(ctx, key, coord.NoVersion); err != nil {
		t.Fatalf("Delete with NoVersion: %v", err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get after Delete(NoVersion): err %v, want ErrNotFound", err)
	}
}

func (s *suite) testCompareAndSet(t *testing.T) {
	b := s.client(t)
	ctx := testCtx(t)
	key := s.prefix(t) + "rec"
	v, err := b.Create(ctx, key, []byte("v0"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	seen := map[coord.Version]bool{v: true}
	for i := 1; i <= 10; i++ {
		nv, err := b.CompareAndSet(ctx, key, []byte(fmt.Sprintf("v%d", i)), v)
		if err != nil {
			t.Fatalf("CompareAndSet #%d at the current version: %v", i, err)
		}
		if seen[nv] {
			t.Fatalf("CompareAndSet #%d returned version %d seen before", i, nv)
		}
		seen[nv] = true
		if _, err := b.CompareAndSet(ctx, key, []byte("stale"), v); !errors.Is(err, coord.ErrConflict) {
			t.Fatalf("CompareAndSet at the previous version: err %v, want ErrConflict", err)
		}
		v = nv
	}
	r, err := b.Get(ctx, key)
	if err != nil || string(r.Value) != "v10" || r.Version != v {
		t.Fatalf("Get = %+v, %v; want v10@%d", r, err, v)
	}
}

func (s *suite) testList(t *testing.T) {
	b := s.client(t)
	ctx := testCtx(t)
	p := s.prefix(t)
	keys := []string{p + "dir/b", p + "dir/a", p + "dir/ab", p + "dir/c/d", p + "dirx/a", p + "other"}
	vers := map[string]coord.Version{}
	for _, k := range keys {
		v, err := b.Create(ctx, k, []byte("val:"+k))
		if err != nil {
			t.Fatalf("Create %s: %v", k, err)
		}
		vers[k] = v
	}
	recs, err := b.List(ctx, p+"dir/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := []string{p + "dir/a", p + "dir/ab", p + "dir/b", p + "dir/c/d"}
	var got []string
	for _, r := range recs {
		got = append(got, r.Key)
		if string(r.Value) != "val:"+r.Key || r.Version != vers[r.Key] {
			t.Errorf("List record %s = %q@%d, want %q@%d", r.Key, r.Value, r.Version, "val:"+r.Key, vers[r.Key])
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List(%q) keys = %v, want %v (sorted, only under the prefix)", p+"dir/", got, want)
	}
	if recs, err := b.List(ctx, p+"nothing/"); err != nil || len(recs) != 0 {
		t.Fatalf("List of an empty prefix = %v, %v; want none", recs, err)
	}
}

func (s *suite) testConcurrentCAS(t *testing.T) {
	const clients, rounds = 4, 25
	cs := make([]coord.Backend, clients)
	for i := range cs {
		cs[i] = s.client(t)
	}
	key := s.prefix(t) + "contended"
	ctx := testCtx(t)
	v, err := cs[0].Create(ctx, key, []byte("start"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !s.caps.Linearizable {
		promise(t, s.h.Name, s.caps, "Linearizable", "each round has at least one winner and all clients converge on a winner's value")
	}
	multi := 0
	deadline := time.Now().Add(90 * time.Second)
	for r := 0; r < rounds && time.Now().Before(deadline); r++ {
		if !s.caps.Linearizable {
			// Let every client see the round's starting version first.
			eventually(t, 30*time.Second, "all clients see the round's version", func() error {
				for i, c := range cs {
					rec, err := c.Get(ctx, key)
					if err != nil || rec.Version != v {
						return fmt.Errorf("client %d: %+v, %v; want version %d", i, rec, err, v)
					}
				}
				return nil
			})
		}
		type res struct {
			v   coord.Version
			err error
		}
		out := make([]res, clients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, c := range cs {
			wg.Go(func() {
				<-start
				nv, err := c.CompareAndSet(ctx, key, []byte(fmt.Sprintf("r%d-c%d", r, i)), v)
				out[i] = res{nv, err}
			})
		}
		close(start)
		wg.Wait()
		winners := []int{}
		for i, o := range out {
			switch {
			case o.err == nil:
				winners = append(winners, i)
			case errors.Is(o.err, coord.ErrConflict):
			default:
				t.Fatalf("round %d client %d: CompareAndSet: %v (want success or ErrConflict)", r, i, o.err)
			}
		}
		if len(winners) == 0 {
			t.Fatalf("round %d: no CompareAndSet at the current version won", r)
		}
		if len(winners) > 1 {
			if s.caps.Linearizable {
				t.Fatalf("round %d: %d clients won a CompareAndSet on the same version: %v", r, len(winners), winners)
			}
			multi++
		}
		if s.caps.Linearizable {
			w := winners[0]
			for i, c := range cs {
				rec, err := c.Get(ctx, key)
				if err != nil || rec.Version != out[w].v || string(rec.Value) != fmt.Sprintf("r%d-c%d", r, w) {
					t.Fatalf("round %d: client %d reads %+v, %v; want the winner's r%d-c%d@%d", r, i, rec, err, r, w, out[w].v)
				}
			}
			v = out[w].v
			continue
		}
		// Weaker: every client converges on one of the winners' writes.
		eventually(t, 30*time.Second, "clients converge on a winner", func() error {
			var first coord.Record
			for i, c := range cs {
				rec, err := c.Get(ctx, key)
				if err != nil {
					return err
				}
				if i == 0 {
					first = rec
				} else if rec.Version != first.Version || !bytes.Equal(rec.Value, first.Value) {
					return fmt.Errorf("client %d reads %q@%d, client 0 %q@%d", i, rec.Value, rec.Version, first.Value, first.Version)
				}
			}
			for _, w := range winners {
				if out[w].v == first.Version && string(first.Value) == fmt.Sprintf("r%d-c%d", r, w) {
					v = first.Version
					return nil
				}
			}
			return fmt.Errorf("converged on %q@%d, which no winner wrote", first.Value, first.Version)
		})
	}
	if !s.caps.Linearizable {
		t.Logf("%s: %d of %d rounds had more than one winner (allowed: not linearizable)", s.h.Name, multi, rounds)
	}
}

func (s *suite) testWatchSnapshot(t *testing.T) {
	b := s.client(t)
	w := s.client(t)
	ctx := testCtx(t)
	p := s.prefix(t)
	pre := map[string]coord.Version{}
	for _, k := range []string{"a", "b", "c/d"} {
		v, err := b.Create(ctx, p+k, []byte(k))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		pre[p+k] = v
	}
	if _, err := b.Create(ctx, s.prefix(t)[:len(p)-1]+"-sibling", []byte("outside")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := w.Watch(wctx, p)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	next := func(what string) coord.Event {
		t.Helper()
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while waiting for %s", what)
			}
			return ev
		case <-time.After(opTimeout):
			t.Fatalf("no %s within %v", what, opTimeout)
		}
		return coord.Event{}
	}
	ev := next("the first event")
	if ev.Kind != coord.EventResync {
		t.Fatalf("first event is %v, want a resync snapshot", ev.Kind)
	}
	if len(ev.Snapshot) != len(pre) {
		t.Fatalf("snapshot has %d records, want %d: %+v", len(ev.Snapshot), len(pre), ev.Snapshot)
	}
	for _, r := range ev.Snapshot {
		if pre[r.Key] != r.Version || string(r.Value) != r.Key[len(p):] {
			t.Fatalf("snapshot record %s = %q@%d, want %q@%d", r.Key, r.Value, r.Version, r.Key[len(p):], pre[r.Key])
		}
	}
	v, err := b.CompareAndSet(ctx, p+"a", []byte("a2"), pre[p+"a"])
	if err != nil {
		t.Fatalf("CompareAndSet: %v", err)
	}
	ev = next("the put event")
	if ev.Kind == coord.EventResync {
		t.Logf("a resync came before the put (allowed)")
		ev = next("the put event")
	}
	if ev.Kind != coord.EventPut || ev.Key != p+"a" || ev.Version != v || string(ev.Value) != "a2" {
		t.Fatalf("after a CompareAndSet got %v %s %q@%d, want put %s a2@%d", ev.Kind, ev.Key, ev.Value, ev.Version, p+"a", v)
	}
	if err := b.Delete(ctx, p+"b", pre[p+"b"]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	ev = next("the delete event")
	if ev.Kind != coord.EventDelete || ev.Key != p+"b" {
		t.Fatalf("after a Delete got %v %s, want delete %s", ev.Kind, ev.Key, p+"b")
	}
	nv, err := b.Create(ctx, p+"new", []byte("n"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	ev = next("the create event")
	if ev.Kind != coord.EventPut || ev.Key != p+"new" || ev.Version != nv {
		t.Fatalf("after a Create got %v %s@%d, want put %snew@%d", ev.Kind, ev.Key, ev.Version, p, nv)
	}
}

// writeOp is one successful write of the watch-order test.
type writeOp struct {
	key   string
	prev  coord.Version // NoVersion for a create
	ver   coord.Version // the new version; NoVersion for a delete
	value string
}

func (s *suite) testWatchOrder(t *testing.T) {
	const writers, opsPerWriter, keys = 4, 60, 5
	p := s.prefix(t)
	setup := s.client(t)
	ctx := testCtx(t)
	var mu sync.Mutex
	var ops []writeOp
	record := func(o writeOp) { mu.Lock(); ops = append(ops, o); mu.Unlock() }
	for k := 0; k < 2; k++ {
		key := fmt.Sprintf("%sk%d", p, k)
		v, err := setup.Create(ctx, key, []byte("pre"))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		record(writeOp{key: key, prev: coord.NoVersion, ver: v, value: "pre"})
	}
	w := s.client(t)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := w.Watch(wctx, p)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	log := collect(ch)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for wi := 0; wi < writers; wi++ {
		c := s.client(t)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wi), 7))
			deadline := time.Now().Add(90 * time.Second)
			for n := 0; n < opsPerWriter && time.Now().Before(deadline); n++ {
				key := fmt.Sprintf("%sk%d", p, rng.IntN(keys))
				val := fmt.Sprintf("w%d-%d", wi, n)
				r, err := c.Get(ctx, key)
				switch {
				case errors.Is(err, coord.ErrNotFound):
					v, err := c.Create(ctx, key, []byte(val))
					if err == nil {
						record(writeOp{key: key, prev: coord.NoVersion, ver: v, value: val})
					} else if !errors.Is(err, coord.ErrConflict) {
						errs <- fmt.Errorf("writer %d: Create: %w", wi, err)
						return
					}
				case err != nil:
					errs <- fmt.Errorf("writer %d: Get: %w", wi, err)
					return
				case rng.IntN(5) == 0:
					err := c.Delete(ctx, key, r.Version)
					if err == nil {
						record(writeOp{key: key, prev: r.Version, ver: coord.NoVersion})
					} else if !errors.Is(err, coord.ErrConflict) && !errors.Is(err, coord.ErrNotFound) {
						errs <- fmt.Errorf("writer %d: Delete: %w", wi, err)
						return
					}
				default:
					v, err := c.CompareAndSet(ctx, key, []byte(val), r.Version)
					if err == nil {
						record(writeOp{key: key, prev: r.Version, ver: v, value: val})
					} else if !errors.Is(err, coord.ErrConflict) && !errors.Is(err, coord.ErrNotFound) {
						errs <- fmt.Errorf("writer %d: CompareAndSet: %w", wi, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	converge(t, log, setup, p, 30*time.Second)
	events := log.snapshot()
	if len(events) == 0 || events[0].Kind != coord.EventResync {
		t.Fatalf("the first event is not a resync snapshot: %+v", events[:min(1, len(events))])
	}

	// Check the order: with a linearizable store every successful write names
	// the version it replaced, so the writes to a key form one chain and the
	// watcher must walk it link by link (or say EventResync).
	succ := map[string]map[coord.Version]writeOp{} // key -> version it replaced -> write
	byVal := map[string]writeOp{}
	for _, o := range ops {
		if succ[o.key] == nil {
			succ[o.key] = map[coord.Version]writeOp{}
		}
		if o2, dup := succ[o.key][o.prev]; dup && o.prev != coord.NoVersion && s.caps.Linearizable {
			t.Fatalf("two successful writes replaced %s@%d: %+v and %+v", o.key, o.prev, o2, o)
		}
		succ[o.key][o.prev] = o
		if o.value != "" {
			byVal[o.value] = o
		}
	}
	if !s.caps.Linearizable {
		promise(t, s.h.Name, s.caps, "Linearizable", "every put carries a value some successful write wrote, at that write's version, and the final view equals the store")
	}
	cur := map[string]coord.Version{}
	resyncs, puts, dels := 0, 0, 0
	for i, ev := range events {
		if ev.Kind != coord.EventResync && (len(ev.Key) < len(p) || ev.Key[:len(p)] != p) {
			t.Fatalf("event %d for key %q outside the watched prefix %q", i, ev.Key, p)
		}
		switch ev.Kind {
		case coord.EventResync:
			resyncs++
			clear(cur)
			for _, r := range ev.Snapshot {
				cur[r.Key] = r.Version
			}
			continue
		case coord.EventPut:
			puts++
			o, ok := byVal[string(ev.Value)]
			if !ok || o.key != ev.Key || o.ver != ev.Version {
				t.Fatalf("event %d: put %s %q@%d matches no successful write", i, ev.Key, ev.Value, ev.Version)
			}
			if s.caps.Linearizable {
				prev, had := cur[ev.Key]
				if !had {
					prev = coord.NoVersion
				}
				if o.prev != prev {
					t.Fatalf("event %d: put %s@%d follows %d in the watch, but that write replaced %d: a change was lost or reordered", i, ev.Key, ev.Version, prev, o.prev)
				}
			}
			cur[ev.Key] = ev.Version
		case coord.EventDelete:
			dels++
			prev, had := cur[ev.Key]
			if s.caps.Linearizable {
				if !had {
					t.Fatalf("event %d: delete of %s, which the watcher did not have", i, ev.Key)
				}
				if o, ok := succ[ev.Key][prev]; !ok || o.ver != coord.NoVersion {
					t.Fatalf("event %d: delete of %s@%d, but no Delete removed that version", i, ev.Key, prev)
				}
			}
			delete(cur, ev.Key)
		default:
			t.Fatalf("event %d has unknown kind %d", i, ev.Kind)
		}
	}
	t.Logf("%d successful writes from %d writers; watcher saw %d puts, %d deletes, %d resyncs (first included)", len(ops), writers, puts, dels, resyncs)
	if resyncs == 1 && s.caps.Linearizable && puts+dels != len(ops)-2 {
		t.Fatalf("without a resync the watcher must see every write: saw %d, made %d", puts+dels, len(ops)-2)
	}
}

func (s *suite) testWatchEnds(t *testing.T) {
	w := s.h.New(t)
	t.Cleanup(func() { _ = w.Close() })
	p := s.prefix(t)
	ctx1, cancel1 := context.WithCancel(context.Background())
	ch1, err := w.Watch(ctx1, p)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	ch2, err := w.Watch(context.Background(), p)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	bch, err := w.WatchBrokers(bctx)
	if err != nil {
		t.Fatalf("WatchBrokers: %v", err)
	}
	drained := func(ch <-chan coord.Event) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			for range ch {
			}
			close(done)
		}()
		return done
	}
	d1, d2 := drained(ch1), drained(ch2)
	bdone := make(chan struct{})
	go func() {
		for range bch {
		}
		close(bdone)
	}()
	cancel1()
	if !closedWithin(d1, opTimeout) {
		t.Fatalf("Watch channel not closed %v after its ctx was cancelled", opTimeout)
	}
	if isClosed(d2) {
		t.Fatalf("cancelling one Watch closed another")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !closedWithin(d2, opTimeout) {
		t.Fatalf("Watch channel not closed %v after the Backend closed", opTimeout)
	}
	if !closedWithin(bdone, opTimeout) {
		t.Fatalf("WatchBrokers channel not closed %v after the Backend closed", opTimeout)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v (Close must be idempotent)", err)
	}
	ctx := testCtx(t)
	if _, err := w.Get(ctx, p+"x"); !errors.Is(err, coord.ErrClosed) {
		t.Errorf("Get after Close: err %v, want ErrClosed", err)
	}
	if _, err := w.Create(ctx, p+"x", nil); !errors.Is(err, coord.ErrClosed) {
		t.Errorf("Create after Close: err %v, want ErrClosed", err)
	}
	if _, err := w.Watch(ctx, p); !errors.Is(err, coord.ErrClosed) {
		t.Errorf("Watch after Close: err %v, want ErrClosed", err)
	}
}

func (s *suite) testRegistration(t *testing.T) {
	a := s.h.New(t)
	t.Cleanup(func() { _ = a.Close() })
	obs := s.client(t)
	bw := watchBrokers(t, obs)
	ctx := testCtx(t)
	info1 := coord.BrokerInfo{ID: s.base + 1, Rack: "r1", Endpoints: []string{"PLAINTEXT://127.0.0.1:19092", "SSL://127.0.0.1:19093"}, Meta: map[string]string{"k": "v"}}
	info2 := coord.BrokerInfo{ID: s.base + 2, Endpoints: []string{"PLAINTEXT://127.0.0.1:19094"}}
	reg1, err := a.Register(ctx, info1)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	reg2, err := a.Register(ctx, info2)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	for _, want := range []coord.BrokerInfo{info1, info2} {
		eventually(t, 15*time.Second, fmt.Sprintf("broker %d appears", want.ID), func() error {
			got, ok, _ := bw.find(want.ID)
			if !ok {
				return fmt.Errorf("not in the live set")
			}
			if !sameBroker(got, want) {
				return fmt.Errorf("registered %+v, WatchBrokers shows %+v", want, got)
			}
			return nil
		})
	}
	if isClosed(reg1.Lost()) || isClosed(reg2.Lost()) {
		t.Fatalf("a live registration's Lost is closed")
	}
	if err := reg1.Close(ctx); err != nil {
		t.Fatalf("Registration.Close: %v", err)
	}
	start := time.Now()
	eventually(t, 15*time.Second, "a closed registration disappears", func() error {
		if _, ok, _ := bw.find(info1.ID); ok {
			return fmt.Errorf("broker %d still live", info1.ID)
		}
		return nil
	})
	t.Logf("a closed registration left the live set after %v", time.Since(start).Round(time.Millisecond))
	if _, ok, _ := bw.find(info2.ID); !ok {
		t.Fatalf("closing one registration removed another")
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, 15*time.Second, "a closed backend's registration disappears", func() error {
		if _, ok, _ := bw.find(info2.ID); ok {
			return fmt.Errorf("broker %d still live", info2.ID)
		}
		return nil
	})
	if v := bw.violation(); v != "" {
		t.Fatal(v)
	}
}

func (s *suite) testKilledRegistrant(t *testing.T) {
	obs := s.client(t)
	bw := watchBrokers(t, obs)
	id := s.base + 10
	c := s.startChild(t, id, false, s.campaignLimit())
	want := childInfo(id)
	eventually(t, 15*time.Second, "the child's registration appears", func() error {
		got, ok, _ := bw.find(id)
		if !ok {
			return fmt.Errorf("broker %d not live", id)
		}
		if !sameBroker(got, want) {
			return fmt.Errorf("child registered %+v, WatchBrokers shows %+v", want, got)
		}
		return nil
	})
	c.kill()
	limit := s.h.SessionTimeout + s.margin()
	var goneAt time.Time
	eventually(t, limit+5*time.Second, "the killed registrant disappears", func() error {
		_, ok, at := bw.find(id)
		if ok {
			return fmt.Errorf("broker %d still live %v after SIGKILL", id, time.Since(c.killed).Round(time.Millisecond))
		}
		goneAt = at
		return nil
	})
	took := goneAt.Sub(c.killed)
	t.Logf("%s: registrant SIGKILLed, gone from WatchBrokers after %v (session time-out %v)", s.h.Name, took.Round(time.Millisecond), s.h.SessionTimeout)
	if took > limit {
		t.Fatalf("killed registrant disappeared after %v, more than session time-out %v + margin %v", took, s.h.SessionTimeout, s.margin())
	}
	if v := bw.violation(); v != "" {
		t.Fatal(v)
	}
}

type campaignResult struct {
	who int
	l   coord.Leadership
	err error
	at  time.Time
}

func (s *suite) testOneController(t *testing.T) {
	const n = 3
	cs := make([]coord.Backend, n)
	for i := range cs {
		cs[i] = s.h.New(t)
		c := cs[i]
		t.Cleanup(func() { _ = c.Close() })
	}
	if !s.caps.SingleController {
		promise(t, s.h.Name, s.caps, "SingleController", "in steady state on a healthy network the campaigns settle on one controller and later winners have higher epochs")
	}
	if !s.caps.FencedWrites {
		promise(t, s.h.Name, s.caps, "FencedWrites", "a stale leadership's write is logged whether or not it was refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.campaignLimit())
	defer cancel()
	results := make(chan campaignResult, n)
	for i, c := range cs {
		go func() {
			l, err := c.Campaign(ctx, s.base+20+int32(i))
			results <- campaignResult{i, l, err, time.Now()}
		}()
	}
	next := func(what string) campaignResult {
		t.Helper()
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("%s: Campaign of client %d: %v", what, r.who, r.err)
			}
			return r
		case <-time.After(s.campaignLimit()):
			t.Fatalf("%s: no campaign won within %v", what, s.campaignLimit())
		}
		return campaignResult{}
	}
	first := next("first controller")
	t.Logf("client %d (broker %d) won with epoch %d", first.who, s.base+20+int32(first.who), first.l.Epoch())
	// Steady state: nobody else wins while first holds it.
	select {
	case r := <-results:
		if s.caps.SingleController || r.err != nil {
			t.Fatalf("a second campaign ended while client %d is controller: client %d, err %v", first.who, r.who, r.err)
		}
		t.Logf("%s: a second controller (client %d, epoch %d) won while client %d held it: allowed without SingleController", s.h.Name, r.who, r.l.Epoch(), first.who)
		results <- r
	case <-time.After(min(max(s.h.SessionTimeout, time.Second), 3*time.Second)):
	}
	s.checkController(t, cs, s.base+20+int32(first.who), first.l.Epoch())

	// Writes through the controller's fenced Store work.
	key := s.prefix(t) + "fenced"
	fctx := testCtx(t)
	v, err := first.l.Store().Create(fctx, key, []byte("c1"))
	if err != nil {
		t.Fatalf("Create through the controller's Store: %v", err)
	}
	if v, err = first.l.Store().CompareAndSet(fctx, key, []byte("c1b"), v); err != nil {
		t.Fatalf("CompareAndSet through the controller's Store: %v", err)
	}
	if r, err := first.l.Store().Get(fctx, key); err != nil || string(r.Value) != "c1b" {
		t.Fatalf("Get through the controller's Store = %+v, %v", r, err)
	}

	// Resign: Lost closes, someone else wins with a higher epoch, and the old
	// Store is fenced.
	resignAt := time.Now()
	if err := first.l.Resign(fctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if !closedWithin(first.l.Lost(), 10*time.Second) {
		t.Fatalf("Lost not closed 10 s after Resign")
	}
	second := next("controller after Resign")
	t.Logf("client %d won with epoch %d after client %d resigned (%v later)", second.who, second.l.Epoch(), first.who, second.at.Sub(resignAt).Round(time.Millisecond))
	if second.l.Epoch() <= first.l.Epoch() {
		t.Fatalf("new controller's epoch %d is not above the old %d", second.l.Epoch(), first.l.Epoch())
	}
	s.checkController(t, cs, s.base+20+int32(second.who), second.l.Epoch())
	s.checkFenced(t, first.l.Store(), key, v, "a resigned leadership")

	// Close the second winner's backend: its Lost closes, the third wins.
	if err := cs[second.who].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !closedWithin(second.l.Lost(), 10*time.Second) {
		t.Fatalf("Lost not closed 10 s after the winner's Backend closed")
	}
	third := next("controller after Close")
	if third.l.Epoch() <= second.l.Epoch() {
		t.Fatalf("new controller's epoch %d is not above the old %d", third.l.Epoch(), second.l.Epoch())
	}
	t.Logf("client %d won with epoch %d after client %d closed", third.who, third.l.Epoch(), second.who)
	s.checkFenced(t, second.l.Store(), key, v, "a closed backend's leadership")
	if isClosed(third.l.Lost()) {
		t.Fatalf("the current controller's Lost is closed")
	}
	if _, err := third.l.Store().CompareAndSet(fctx, key, []byte("c3"), v); err != nil {
		t.Fatalf("CompareAndSet through the current controller's Store: %v", err)
	}
	if err := third.l.Resign(fctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	eventually(t, 15*time.Second, "no controller after the last one resigned", func() error {
		id, ep, err := cs[third.who].Controller(fctx)
		if !errors.Is(err, coord.ErrNotFound) {
			return fmt.Errorf("Controller() = %d, %d, %v; want ErrNotFound", id, ep, err)
		}
		return nil
	})
}

// checkController waits until every open client's Controller() names id at epoch.
func (s *suite) checkController(t *testing.T, cs []coord.Backend, id int32, epoch int64) {
	t.Helper()
	eventually(t, 15*time.Second, "every client agrees on the controller", func() error {
		for i, c := range cs {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			got, ep, err := c.Controller(ctx)
			cancel()
			if errors.Is(err, coord.ErrClosed) {
				continue
			}
			if err != nil || got != id || ep != epoch {
				return fmt.Errorf("client %d: Controller() = %d, %d, %v; want %d, %d", i, got, ep, err, id, epoch)
			}
		}
		return nil
	})
}

// checkFenced writes through a stale leadership's Store and demands refusal
// (when the backend fences) and an unchanged record.
func (s *suite) checkFenced(t *testing.T, st coord.Store, key string, v coord.Version, what string) {
	t.Helper()
	ctx := testCtx(t)
	reader := s.client(t)
	before, err := reader.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_, errCAS := st.CompareAndSet(ctx, key, []byte("stale"), before.Version)
	_, errCreate := st.Create(ctx, key+"-stale", []byte("stale"))
	errDel := st.Delete(ctx, key, coord.NoVersion)
	after, err := reader.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get after the stale writes: %v (the stale Delete went through?)", err)
	}
	_, errStale := reader.Get(ctx, key+"-stale")
	refused := func(err error) bool { return errors.Is(err, coord.ErrFenced) || errors.Is(err, coord.ErrClosed) }
	if !s.caps.FencedWrites {
		t.Logf("%s: writes through %s: cas %v, create %v, delete %v", s.h.Name, what, errCAS, errCreate, errDel)
		return
	}
	for name, err := range map[string]error{"CompareAndSet": errCAS, "Create": errCreate, "Delete": errDel} {
		if !refused(err) {
			t.Errorf("%s through %s: err %v, want ErrFenced", name, what, err)
		}
	}
	if after.Version != before.Version || !bytes.Equal(after.Value, before.Value) {
		t.Errorf("a write through %s changed %s from %q@%d to %q@%d", what, key, before.Value, before.Version, after.Value, after.Version)
	}
	if !errors.Is(errStale, coord.ErrNotFound) {
		t.Errorf("a Create through %s made %s-stale (Get err %v)", what, key, errStale)
	}
}

func (s *suite) testKilledController(t *testing.T) {
	obs := s.h.New(t)
	t.Cleanup(func() { _ = obs.Close() })
	bw := watchBrokers(t, obs)
	id := s.base + 30
	c := s.startChild(t, id, true, s.campaignLimit())
	eventually(t, 15*time.Second, "the child is the controller", func() error {
		got, ep, err := obs.Controller(testCtx(t))
		if err != nil || got != id || ep != c.epoch {
			return fmt.Errorf("Controller() = %d, %d, %v; want %d, %d", got, ep, err, id, c.epoch)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.campaignLimit())
	defer cancel()
	won := make(chan campaignResult, 1)
	go func() {
		l, err := obs.Campaign(ctx, s.base+31)
		won <- campaignResult{0, l, err, time.Now()}
	}()
	select {
	case r := <-won:
		if s.caps.SingleController {
			t.Fatalf("a campaign ended (err %v) while the child is controller", r.err)
		}
		t.Logf("%s: a second controller won while the child held it: allowed without SingleController", s.h.Name)
		won <- r
	case <-time.After(time.Second):
	}
	c.kill()
	limit := s.h.SessionTimeout + s.margin()
	var r campaignResult
	select {
	case r = <-won:
	case <-time.After(limit + 10*time.Second):
		t.Fatalf("no new controller %v after the controller was SIGKILLed", limit+10*time.Second)
	}
	if r.err != nil {
		t.Fatalf("Campaign: %v", r.err)
	}
	took := r.at.Sub(c.killed)
	t.Logf("%s: controller SIGKILLed; new controller elected after %v (epoch %d -> %d); session time-out %v",
		s.h.Name, took.Round(time.Millisecond), c.epoch, r.l.Epoch(), s.h.SessionTimeout)
	eventually(t, limit, "the killed controller leaves the live set", func() error {
		_, live, at := bw.find(id)
		if live {
			return fmt.Errorf("broker %d still live", id)
		}
		t.Logf("%s: the killed controller left the live set after %v", s.h.Name, at.Sub(c.killed).Round(time.Millisecond))
		return nil
	})
	if took > limit {
		t.Errorf("new controller after %v, more than session time-out %v + margin %v", took, s.h.SessionTimeout, s.margin())
	}
	if r.l.Epoch() <= c.epoch {
		t.Fatalf("new controller's epoch %d is not above the killed one's %d", r.l.Epoch(), c.epoch)
	}
	s.checkController(t, []coord.Backend{obs}, s.base+31, r.l.Epoch())
	if err := r.l.Resign(testCtx(t)); err != nil {
		t.Fatalf("Resign: %v", err)
	}
}

func (s *suite) testLinearizable(t *testing.T) {
	const n = 5
	stores := make([]coord.Store, n)
	for i := range stores {
		stores[i] = s.client(t)
	}
	key := s.prefix(t) + "register"
	if s.caps.Linearizable {
		res := CheckLinearizable(t, stores, key, LinearizableOptions{})
		if res.Ops < n*10 {
			t.Fatalf("only %d calls recorded: too few to judge", res.Ops)
		}
		return
	}
	promise(t, s.h.Name, s.caps, "Linearizable", "the porcupine check runs and its verdict is logged, not enforced")
	res := checkLinearizable(t, stores, key, LinearizableOptions{})
	t.Logf("%s: porcupine verdict on a non-linearizable backend: %s", s.h.Name, res.Result)
}

func (s *suite) testWatchRestart(t *testing.T) {
	if s.h.Restart == nil {
		t.Logf("%s: Harness.Restart is nil: a watch across a backend reconnect is not exercised by this run", s.h.Name)
		return
	}
	p := s.prefix(t)
	wr := s.client(t)
	w := s.client(t)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := w.Watch(wctx, p)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	log := collect(ch)
	// write retries a write through the restart; its outcome may be unknown.
	write := func(i int) {
		key := fmt.Sprintf("%sk%d", p, i%4)
		_ = poll(60*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := wr.Get(ctx, key)
			if errors.Is(err, coord.ErrNotFound) {
				_, err = wr.Create(ctx, key, []byte(fmt.Sprint(i)))
			} else if err == nil {
				_, err = wr.CompareAndSet(ctx, key, []byte(fmt.Sprint(i)), r.Version)
			}
			if errors.Is(err, coord.ErrConflict) {
				return nil
			}
			return err
		})
	}
	for i := 0; i < 20; i++ {
		write(i)
	}
	converge(t, log, wr, p, 30*time.Second)
	restarted := time.Now()
	s.h.Restart(t)
	t.Logf("restart took %v", time.Since(restarted).Round(time.Millisecond))
	for i := 20; i < 40; i++ {
		write(i)
	}
	converge(t, log, wr, p, 60*time.Second)
	select {
	case <-log.done:
		t.Fatalf("the watch channel closed across the restart")
	default:
	}
	resyncs := 0
	for _, ev := range log.snapshot() {
		if ev.Kind == coord.EventResync {
			resyncs++
		}
	}
	t.Logf("%s: watch converged after the restart; %d resyncs seen (first included)", s.h.Name, resyncs)
}

func (s *suite) startChild(t *testing.T, id int32, campaign bool, limit time.Duration) *Child {
	t.Helper()
	if s.h.ChildSpec == "" {
		t.Fatalf("%s: Harness.ChildSpec is empty: the suite cannot start a registrant process", s.h.Name)
	}
	return StartChild(t, s.h.ChildSpec, id, campaign, limit)
}

func createArtifact(t *testing.T, pattern string) (*os.File, error) {
	return os.CreateTemp("", pattern)
}
