package gossip

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/brokkr/brokkr/coord"
)

// TestMergeOrderIndependent: replicas that receive the same writes in any
// order (and any number of times) end with the same records: the property
// that makes gossip converge.
func TestMergeOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var writes []*entry
		used := map[string]bool{} // a writer never reuses a clock value
		for i := 0; i < 30; i++ {
			st := stamp{Epoch: int64(rng.IntN(3)), Ctl: int32(rng.IntN(2)), HLC: uint64(rng.IntN(20)), Node: fmt.Sprint("n", rng.IntN(3))}
			if id := fmt.Sprint(st.HLC, st.Node); used[id] {
				continue
			} else {
				used[id] = true
			}
			writes = append(writes, &entry{
				Key:     fmt.Sprintf("/k%d", rng.IntN(4)),
				Value:   []byte(fmt.Sprint(i)),
				Deleted: rng.IntN(4) == 0,
				Stamp:   st,
			})
		}
		var want string
		for r := 0; r < 5; r++ {
			s := newStore(time.Now)
			perm := rng.Perm(len(writes))
			for _, i := range perm {
				s.apply(writes[i])
				if rng.IntN(3) == 0 {
					s.apply(writes[i]) // duplicates are harmless
				}
			}
			got := fmt.Sprint(s.list("/"))
			if r == 0 {
				want = got
			} else if got != want {
				t.Fatalf("round %d: order %v gives %s, another order %s", round, perm, got, want)
			}
		}
		// The winner per key is the maximum stamp (a dumb model).
		model := map[string]*entry{}
		for _, w := range writes {
			if m := model[w.Key]; m == nil || m.Stamp.less(w.Stamp) {
				model[w.Key] = w
			}
		}
		s := newStore(time.Now)
		for _, w := range writes {
			s.apply(w)
		}
		for k, m := range model {
			e := s.entries[k]
			if e.Stamp != m.Stamp || e.Deleted != m.Deleted {
				t.Fatalf("key %s: store kept %+v, model %+v", k, e.Stamp, m.Stamp)
			}
		}
	}
}

func TestStampOrderAndVersions(t *testing.T) {
	a := stamp{Epoch: 1, HLC: 100, Node: "z"}
	b := stamp{Epoch: 2, HLC: 5, Node: "a"}
	if !a.less(b) || b.less(a) {
		t.Fatalf("a higher epoch must win over a later clock")
	}
	c := stamp{Epoch: 1, HLC: 100, Node: "y"}
	if !c.less(a) {
		t.Fatalf("equal epoch and clock: node name breaks the tie")
	}
	// Two controllers elected at the same epoch (a three-way split): the
	// lower broker ID's term wins, as its claim does, whatever the clocks.
	ctl3 := stamp{Epoch: 5, Ctl: 3, HLC: 10, Node: "a"}
	ctl7 := stamp{Epoch: 5, Ctl: 7, HLC: 99, Node: "b"}
	if !ctl7.less(ctl3) || ctl3.less(ctl7) {
		t.Fatalf("at equal epochs the lower controller ID must win")
	}
	if ctl3.version() == ctl7.version() || ctl3.version() == (stamp{Epoch: 5, Ctl: 4, HLC: 10, Node: "a"}).version() {
		t.Fatalf("the controller ID is not part of the version")
	}
	seen := map[coord.Version]stamp{}
	for _, s := range []stamp{a, b, c, {Epoch: 1, HLC: 100, Node: "zz"}, {Epoch: 0, HLC: 100, Node: "z"}} {
		v := s.version()
		if v < 0 {
			t.Fatalf("version %d is negative (could be NoVersion)", v)
		}
		if o, dup := seen[v]; dup {
			t.Fatalf("stamps %+v and %+v share version %d", o, s, v)
		}
		seen[v] = s
	}
	// The clock never repeats and stays above what it observed.
	wall := time.UnixMilli(1000)
	h := hlc{wall: func() time.Time { return wall }}
	prev := h.now()
	for i := 0; i < 1000; i++ {
		if i == 500 {
			h.observe(prev + 1<<20) // a remote clock far ahead
		}
		if i == 700 {
			wall = wall.Add(-time.Hour) // the wall clock steps back
		}
		n := h.now()
		if n <= prev {
			t.Fatalf("clock went from %d to %d", prev, n)
		}
		prev = n
	}
	// A delete then re-create gets a new version; a tombstone hides an older put.
	s := newStore(time.Now)
	first := &entry{Key: "/x", Value: []byte("1"), Stamp: s.newStamp("n", nil)}
	s.apply(first)
	del := &entry{Key: "/x", Deleted: true, Stamp: s.newStamp("n", nil)}
	if _, ev := s.apply(del); ev == nil || ev.Kind != coord.EventDelete {
		t.Fatalf("delete event %+v", ev)
	}
	if applied, _ := s.apply(first); applied || s.live("/x") != nil {
		t.Fatalf("an old put came back over its tombstone")
	}
	again := &entry{Key: "/x", Value: []byte("2"), Stamp: s.newStamp("n", nil)}
	s.apply(again)
	if again.Stamp.version() == first.Stamp.version() {
		t.Fatalf("re-created record reused its old version")
	}
	if n := s.gc(time.Now().Add(time.Hour), time.Minute); n != 0 {
		t.Fatalf("gc dropped %d live records", n)
	}
	s.apply(&entry{Key: "/x", Deleted: true, Stamp: s.newStamp("n", nil)})
	if n := s.gc(time.Now().Add(time.Hour), time.Minute); n != 1 || len(s.entries) != 0 {
		t.Fatalf("gc of an expired tombstone: dropped %d, left %d", n, len(s.entries))
	}
}

func TestClaimOrder(t *testing.T) {
	s := newStore(time.Now)
	c1 := claim{Epoch: 3, BrokerID: 5, Node: "a", Token: 1}
	if !s.applyClaim(c1) || s.maxTerm != (term{3, 5}) {
		t.Fatalf("first claim not kept")
	}
	if s.applyClaim(claim{Epoch: 2, BrokerID: 1, Node: "b", Token: 2}) {
		t.Fatalf("a lower epoch replaced a higher one")
	}
	c2 := claim{Epoch: 3, BrokerID: 4, Node: "c", Token: 3}
	if !s.applyClaim(c2) || *s.claim != c2 {
		t.Fatalf("equal epochs: the lower broker ID must win")
	}
	if s.applyClaim(c1) {
		t.Fatalf("claims must not flip back")
	}
}

// bareBackend is a Backend without a network, for feeding it messages.
func bareBackend() *Backend {
	b := &Backend{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), name: "self", st: newStore(time.Now),
		cands: map[int32]uint64{}, members: map[string]*member{}, deadAddrs: map[string]time.Time{},
		watchers: map[*watcher]struct{}{}, leaders: map[*leadership]struct{}{},
		changed: make(chan struct{}), done: make(chan struct{}), start: time.Now(),
	}
	b.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 1 }, RetransmitMult: 1}
	return b
}

// FuzzRemoteInput: whatever arrives from the network (gossip messages and
// push/pull states) never panics, and the replica only ever holds valid keys.
func FuzzRemoteInput(f *testing.F) {
	e := &entry{Key: "/a", Value: []byte("v"), Stamp: stamp{Epoch: 1, HLC: 7, Node: "n"}}
	f.Add(encodeMsg(msgEntry, e))
	f.Add(encodeMsg(msgClaim, claim{Epoch: 2, BrokerID: 1, Node: "n", Token: 9}))
	ps, _ := json.Marshal(pushState{Entries: []*entry{e, nil, {Key: "bad"}}, Claim: &claim{Epoch: 1}})
	f.Add(append([]byte{'p'}, ps...))
	f.Add([]byte("r{\"k\":\"/x\",\"s\":{\"e\":-1,\"h\":18446744073709551615}}"))
	f.Add([]byte{'c'})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := bareBackend()
		if len(data) > 0 && data[0] == 'p' {
			b.MergeRemoteState(data[1:], false)
		} else {
			b.NotifyMsg(data)
		}
		for k := range b.st.entries {
			if err := checkKey(k); err != nil {
				t.Fatalf("replica holds invalid key: %v", err)
			}
		}
	})
}

// TestSlowWatcherGetsResync: a watcher that stops reading is not allowed to
// grow memory without bound: past maxPending events it gets one
// EventResync with the current snapshot instead.
func TestSlowWatcherGetsResync(t *testing.T) {
	b := bareBackend()
	w := &watcher{prefix: "/", sig: make(chan struct{}, 1)}
	b.watchers[w] = struct{}{}
	for i := 0; i < maxPending+10; i++ {
		b.mu.Lock()
		b.applyLocked(&entry{Key: fmt.Sprintf("/k%d", i%7), Value: []byte{1}, Stamp: b.st.newStamp("self", nil)})
		b.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.resync || len(w.pending) != 0 {
		t.Fatalf("after %d events: resync %v, %d pending; want a resync and nothing queued", maxPending+10, w.resync, len(w.pending))
	}
}
