package coordtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// opTimeout bounds every single call the suite makes. Generous: the test
// machines are shared and noisy.
const opTimeout = 20 * time.Second

// eventually polls cond every 20-200 ms until it returns nil or limit passes,
// then fails the test with cond's last error. It is the suite's only way of
// waiting for something.
func eventually(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(limit, cond); err != nil {
		t.Fatalf("%s: not true within %v: %v", what, limit, err)
	}
}

// poll is eventually without the test: it returns cond's last error after limit.
func poll(limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	wait := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// testCtx bounds the calls of one subtest as a whole.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newRunID names one Run so that keys and broker IDs do not collide with an
// earlier run against the same (external) cluster.
func newRunID() string {
	return fmt.Sprintf("%d-%04x", time.Now().Unix(), rand.IntN(1<<16))
}

// promise logs, for a capability the backend does not claim, which promise is
// not made and which weaker assertion the suite checks instead. Never a
// silent skip.
func promise(t testing.TB, name string, caps coord.Capabilities, flag string, weaker string) {
	t.Helper()
	t.Logf("%s: Capabilities().%s is false: this promise is not made; checking the weaker one instead: %s", name, flag, weaker)
}

// view is a watcher's picture of a prefix, built from Events.
type view map[string]coord.Record

func (v view) apply(ev coord.Event) {
	switch ev.Kind {
	case coord.EventResync:
		clear(v)
		for _, r := range ev.Snapshot {
			v[r.Key] = r
		}
	case coord.EventPut:
		v[ev.Key] = coord.Record{Key: ev.Key, Value: ev.Value, Version: ev.Version}
	case coord.EventDelete:
		delete(v, ev.Key)
	}
}

// diff describes how v differs from the records in want, or "" when equal.
func (v view) diff(want []coord.Record) string {
	var b strings.Builder
	seen := make(map[string]bool, len(want))
	for _, r := range want {
		seen[r.Key] = true
		got, ok := v[r.Key]
		switch {
		case !ok:
			fmt.Fprintf(&b, "missing %s@%d; ", r.Key, r.Version)
		case got.Version != r.Version || string(got.Value) != string(r.Value):
			fmt.Fprintf(&b, "%s: have %q@%d, store has %q@%d; ", r.Key, got.Value, got.Version, r.Value, r.Version)
		}
	}
	for k, r := range v {
		if !seen[k] {
			fmt.Fprintf(&b, "extra %s@%d (deleted in store); ", k, r.Version)
		}
	}
	return b.String()
}

// eventLog collects a Watch's events in a goroutine.
type eventLog struct {
	mu     sync.Mutex
	events []coord.Event
	closed bool
	done   chan struct{}
}

func collect(ch <-chan coord.Event) *eventLog {
	l := &eventLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ev := range ch {
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
	}()
	return l
}

func (l *eventLog) snapshot() []coord.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]coord.Event(nil), l.events...)
}

func (l *eventLog) view() view {
	v := view{}
	for _, ev := range l.snapshot() {
		v.apply(ev)
	}
	return v
}

// converge waits until the watcher's view equals List(prefix) from store.
func converge(t testing.TB, l *eventLog, store coord.Store, prefix string, limit time.Duration) {
	t.Helper()
	eventually(t, limit, "watcher's view equals the store", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		recs, err := store.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if d := l.view().diff(recs); d != "" {
			return errors.New(d)
		}
		return nil
	})
}

// brokerWatch follows WatchBrokers and remembers when each snapshot arrived.
type brokerWatch struct {
	mu    sync.Mutex
	last  []coord.BrokerInfo
	at    time.Time
	count int
	bad   string // first contract violation seen
	done  chan struct{}
}

func watchBrokers(t testing.TB, b coord.Backend) *brokerWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := b.WatchBrokers(ctx)
	if err != nil {
		cancel()
		t.Fatalf("WatchBrokers: %v", err)
	}
	w := &brokerWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for list := range ch {
			now := time.Now()
			w.mu.Lock()
			if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].ID < list[j].ID }) && w.bad == "" {
				w.bad = fmt.Sprintf("WatchBrokers delivered a list not sorted by ID: %v", ids(list))
			}
			w.last, w.at = list, now
			w.count++
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(opTimeout):
			t.Errorf("WatchBrokers channel not closed %v after its ctx ended", opTimeout)
		}
	})
	return w
}

// find returns broker id in the latest delivery and when that delivery came.
func (w *brokerWatch) find(id int32) (coord.BrokerInfo, bool, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.last {
		if b.ID == id {
			return b, true, w.at
		}
	}
	return coord.BrokerInfo{}, false, w.at
}

func (w *brokerWatch) violation() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

func ids(list []coord.BrokerInfo) []int32 {
	out := make([]int32, len(list))
	for i, b := range list {
		out[i] = b.ID
	}
	return out
}

func sameBroker(a, b coord.BrokerInfo) bool {
	if a.ID != b.ID || a.Rack != b.Rack || len(a.Endpoints) != len(b.Endpoints) || len(a.Meta) != len(b.Meta) {
		return false
	}
	for i := range a.Endpoints {
		if a.Endpoints[i] != b.Endpoints[i] {
			return false
		}
	}
	for k, v := range a.Meta {
		if b.Meta[k] != v {
			return false
		}
	}
	return true
}

// closed reports whether ch is closed within limit.
func closedWithin(ch <-chan struct{}, limit time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(limit):
		return false
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
