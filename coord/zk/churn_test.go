package zk

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

// TestWatchConvergesUnderChurn: writers create, rewrite and delete records
// (some nested under others) as fast as they can while a watcher applies
// events to a map. Versions (mzxids) of one key only grow between resyncs,
// a Delete names a key the watcher has, and once the writers stop the
// watcher's map equals a fresh List.
func TestWatchConvergesUnderChurn(t *testing.T) {
	srv := zktest.Start(t)
	ctx := ctxT(t)
	w := open(t, srv.Addr(), "/churn", testSession)
	ch, err := w.Watch(ctx, "/c/")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"/c/a", "/c/a/x", "/c/a/x/y", "/c/b", "/c/b/1", "/c/b/2", "/c/d", "/c/e/f/g", "/c/e", "/c/h"}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		c := open(t, srv.Addr(), "/churn", testSession)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			for n := 0; time.Now().Before(stop); n++ {
				k := keys[rng.Intn(len(keys))]
				var err error
				switch rng.Intn(3) {
				case 0:
					_, err = c.Create(ctx, k, []byte(fmt.Sprintf("w%d-%d", i, n)))
				case 1:
					var rec coord.Record
					if rec, err = c.Get(ctx, k); err == nil {
						_, err = c.CompareAndSet(ctx, k, []byte(fmt.Sprintf("w%d-%d", i, n)), rec.Version)
					}
				case 2:
					err = c.Delete(ctx, k, coord.NoVersion)
				}
				if err != nil && !errors.Is(err, coord.ErrConflict) && !errors.Is(err, coord.ErrNotFound) {
					t.Errorf("writer %d: %v", i, err)
					return
				}
			}
		}()
	}
	view := map[string]coord.Record{}
	events, resyncs := 0, 0
	apply := func(ev coord.Event) {
		events++
		switch ev.Kind {
		case coord.EventResync:
			resyncs++
			clear(view)
			for _, r := range ev.Snapshot {
				view[r.Key] = r
			}
		case coord.EventPut:
			if old, ok := view[ev.Key]; ok && ev.Version <= old.Version {
				t.Errorf("put %s at version %d after %d", ev.Key, ev.Version, old.Version)
			}
			view[ev.Key] = coord.Record{Key: ev.Key, Value: ev.Value, Version: ev.Version}
		case coord.EventDelete:
			if _, ok := view[ev.Key]; !ok {
				t.Errorf("delete of %s that the watcher does not have", ev.Key)
			}
			delete(view, ev.Key)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case ev := <-ch:
			apply(ev)
		case <-done:
			running = false
		}
	}
	want, err := w.List(ctx, "/c/")
	if err != nil {
		t.Fatal(err)
	}
	same := func() bool {
		if len(view) != len(want) {
			return false
		}
		for _, r := range want {
			if v, ok := view[r.Key]; !ok || v.Version != r.Version || string(v.Value) != string(r.Value) {
				return false
			}
		}
		return true
	}
	deadline := time.After(20 * time.Second)
	for !same() {
		select {
		case ev := <-ch:
			apply(ev)
		case <-deadline:
			t.Fatalf("watcher view %v never matched List %v", view, want)
		}
	}
	t.Logf("%d events (%d resyncs); final %d records", events, resyncs, len(want))
	if events < 20 {
		t.Fatalf("only %d events: the churn proved little", events)
	}
}
