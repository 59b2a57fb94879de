package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// TestRemoteWatchConverges: four writers on four nodes race CAS, Create and
// Delete on a few keys while watchers on two other nodes follow the prefix.
// When the writers stop and every node agrees, each watcher's view (built
// only from its events) equals that agreed state, and every put it saw was
// a successful write of some writer, at that write's version.
func TestRemoteWatchConverges(t *testing.T) {
	c := newCluster(t, TestConfig)
	var nodes []*Backend
	for i := 0; i < 6; i++ {
		nodes = append(nodes, c.add(nil))
	}
	waitMembers(t, 20*time.Second, nodes...)
	writers, watchers := nodes[:4], nodes[4:]
	ctx := ctxT(t)
	const prefix = "/w/"

	type seen struct {
		mu     sync.Mutex
		view   map[string]coord.Record
		events []coord.Event
	}
	var logs []*seen
	for _, w := range watchers {
		ch, err := w.Watch(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		s := &seen{view: map[string]coord.Record{}}
		logs = append(logs, s)
		go func() {
			for ev := range ch {
				s.mu.Lock()
				s.events = append(s.events, ev)
				switch ev.Kind {
				case coord.EventResync:
					clear(s.view)
					for _, r := range ev.Snapshot {
						s.view[r.Key] = r
					}
				case coord.EventPut:
					s.view[ev.Key] = coord.Record{Key: ev.Key, Value: ev.Value, Version: ev.Version}
				case coord.EventDelete:
					delete(s.view, ev.Key)
				}
				s.mu.Unlock()
			}
		}()
	}

	var mu sync.Mutex
	written := map[coord.Version]string{} // every successful put: version -> value
	var wg sync.WaitGroup
	for wi, n := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wi), 3))
			for i := 0; i < 150; i++ {
				key := fmt.Sprintf("%sk%d", prefix, rng.IntN(4))
				val := fmt.Sprintf("w%d-%d", wi, i)
				r, err := n.Get(ctx, key)
				var v coord.Version
				switch {
				case errors.Is(err, coord.ErrNotFound):
					v, err = n.Create(ctx, key, []byte(val))
				case rng.IntN(6) == 0:
					err = n.Delete(ctx, key, r.Version)
					v = coord.NoVersion
				default:
					v, err = n.CompareAndSet(ctx, key, []byte(val), r.Version)
				}
				if err == nil && v != coord.NoVersion {
					mu.Lock()
					written[v] = val
					mu.Unlock()
				} else if err != nil && !errors.Is(err, coord.ErrConflict) && !errors.Is(err, coord.ErrNotFound) {
					t.Errorf("writer %d: %v", wi, err)
					return
				}
				if i%10 == 0 {
					time.Sleep(time.Millisecond) // let gossip interleave
				}
			}
		})
	}
	wg.Wait()

	// Every node agrees on the whole prefix...
	var agreed []coord.Record
	eventually(t, 30*time.Second, "all nodes agree on the prefix", func() error {
		first, _ := nodes[0].List(context.Background(), prefix)
		for i, n := range nodes[1:] {
			got, _ := n.List(context.Background(), prefix)
			if fmt.Sprint(got) != fmt.Sprint(first) {
				return fmt.Errorf("node %d differs from node 0", i+1)
			}
		}
		agreed = first
		return nil
	})
	// ...and each watcher's view, from events alone, equals it.
	for wi, s := range logs {
		eventually(t, 30*time.Second, fmt.Sprintf("watcher %d's view equals the agreed state", wi), func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.view) != len(agreed) {
				return fmt.Errorf("view has %d keys, agreed %d", len(s.view), len(agreed))
			}
			for _, r := range agreed {
				if v := s.view[r.Key]; v.Version != r.Version || string(v.Value) != string(r.Value) {
					return fmt.Errorf("%s: view %q@%d, agreed %q@%d", r.Key, v.Value, v.Version, r.Value, r.Version)
				}
			}
			return nil
		})
		s.mu.Lock()
		puts := 0
		for i, ev := range s.events {
			if ev.Kind == coord.EventPut {
				puts++
				mu.Lock()
				val, ok := written[ev.Version]
				mu.Unlock()
				if !ok || val != string(ev.Value) {
					t.Errorf("watcher %d event %d: put %s %q@%d that no writer made", wi, i, ev.Key, ev.Value, ev.Version)
				}
			}
		}
		if s.events[0].Kind != coord.EventResync {
			t.Errorf("watcher %d: first event %v, want resync", wi, s.events[0].Kind)
		}
		t.Logf("watcher %d: %d events, %d puts, for %d successful puts in all", wi, len(s.events), puts, len(written))
		if puts == 0 {
			t.Errorf("watcher %d saw no put at all", wi)
		}
		s.mu.Unlock()
	}
}
