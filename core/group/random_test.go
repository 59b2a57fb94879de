package group

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// client is what a simulated consumer remembers.
type client struct {
	name     string
	instance string
	memberID string
	gen      int32
	members  []JoinMember // from its last leader JoinGroup response
	leaderOf int32        // generation it leads, or -1
	rejoin   bool         // told to rejoin
	synced   bool         // has its assignment for gen
}

// protos picks the client's protocol list: its own one, mostly.
func (c *client) protos(dice, n int) int {
	if dice == 0 {
		return int(c.name[0]+1) % n
	}
	return int(c.name[0]) % n
}

// cooperative is the action a well-behaved client takes next.
func (c *client) cooperative() int {
	switch {
	case c.memberID == "" || c.rejoin:
		return 0 // join
	case !c.synced:
		return 2 // sync
	}
	return 4 // heartbeat
}

// sim drives a Group with arbitrary (not necessarily well-behaved) clients
// and checks invariants after every event.
type sim struct {
	t       testing.TB
	pick    func(n int) int // uniform in [0, n)
	g       *Group
	now     time.Time
	clients []*client
	nextReq ReqID
	parked  map[ReqID]bool
	done    map[ReqID]bool
	maxGen  int32
	leaders map[int32]string // generation -> the member told it leads
	store   *Snapshot        // an unacknowledged Store
	steps   int
	owner   map[ReqID]*client // who sent each request
}

func newSim(t testing.TB, pick func(int) int) *sim {
	cfg := DefaultConfig()
	cfg.MaxSize = 4
	seq := 0 // member ids: prefix-seq
	g, err := New(cfg, WithMemberIDs(func(p string) string { seq++; return fmt.Sprintf("%s-%d", p, seq) }))
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, pick: pick, g: g, now: time.Unix(1_000_000, 0), parked: map[ReqID]bool{},
		done: map[ReqID]bool{}, leaders: map[int32]string{}, owner: map[ReqID]*client{}}
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		c := &client{name: name, leaderOf: -1}
		if i >= 3 {
			c.instance = "static-" + name
		}
		s.clients = append(s.clients, c)
	}
	return s
}

func (s *sim) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("step %d: "+format, append([]any{s.steps}, args...)...)
}

func (s *sim) req() ReqID {
	s.nextReq++
	s.parked[s.nextReq] = true
	return s.nextReq
}

func (s *sim) answered(r ReqID) {
	if s.done[r] {
		s.fatalf("request %d answered twice", r)
	}
	if !s.parked[r] {
		s.fatalf("response to request %d that was never sent", r)
	}
	s.done[r] = true
	delete(s.parked, r)
}

// apply delivers released responses to the clients and checks them.
func (s *sim) apply(r Ready) {
	for _, j := range r.Joins {
		s.answered(j.Req)
		c := s.owner[j.Req]
		if j.ErrorCode == 0 {
			// One Tick may complete several join phases, so an answer
			// may be for an older generation, never a newer one.
			if j.Generation > s.g.Generation() || j.Generation <= 0 {
				s.fatalf("join answer for generation %d while the group is at %d", j.Generation, s.g.Generation())
			}
			if len(j.Members) > 0 && !j.SkipAssignment {
				if l, ok := s.leaders[j.Generation]; ok && l != j.MemberID {
					s.fatalf("generation %d has two leaders: %s and %s", j.Generation, l, j.MemberID)
				}
				s.leaders[j.Generation] = j.MemberID
			}
		}
		if c == nil {
			continue
		}
		switch {
		case j.ErrorCode == 0:
			c.memberID, c.gen = j.MemberID, j.Generation
			c.rejoin, c.synced = false, false
			c.leaderOf, c.members = -1, nil
			if len(j.Members) > 0 && !j.SkipAssignment {
				c.leaderOf, c.members = j.Generation, j.Members
			}
		case j.ErrorCode == 79: // MEMBER_ID_REQUIRED
			c.memberID = j.MemberID
		case j.ErrorCode == 25 || j.ErrorCode == 82: // UNKNOWN_MEMBER_ID, FENCED
			if c.memberID == j.MemberID || j.MemberID == "" {
				c.memberID = ""
			}
		}
	}
	for _, y := range r.Syncs {
		s.answered(y.Req)
		if c := s.owner[y.Req]; c != nil && c.memberID == y.MemberID {
			c.synced, c.rejoin = y.ErrorCode == 0, y.ErrorCode != 0
		}
		if y.ErrorCode == 0 && s.g.State() != Stable {
			s.fatalf("sync answered with an assignment while %s", s.g.State())
		}
	}
	if r.Store != nil {
		s.store = r.Store
	}
}

func (s *sim) check() {
	g := s.g
	if g.Generation() < s.maxGen {
		s.fatalf("generation went back from %d to %d", s.maxGen, g.Generation())
	}
	s.maxGen = g.Generation()
	d := g.Describe()
	if (len(d.Members) == 0) != (d.Leader == "") {
		s.fatalf("leader %q with %d members", d.Leader, len(d.Members))
	}
	if d.Leader != "" && g.members[d.Leader] == nil {
		s.fatalf("leader %s is not a member", d.Leader)
	}
	// group.max.size as Kafka enforces it: members awaiting a join never
	// exceed it, nor do dynamic members once the join phase is over (static
	// members that miss a rebalance are kept, as in Kafka).
	if n := g.numAwaitingJoin(); n > g.cfg.MaxSize {
		s.fatalf("%d members awaiting join over group.max.size %d", n, g.cfg.MaxSize)
	}
	if d.State == CompletingRebalance || d.State == Stable {
		dynamic := 0
		for _, m := range d.Members {
			if m.InstanceID == "" {
				dynamic++
			}
		}
		if dynamic > g.cfg.MaxSize {
			s.fatalf("%d dynamic members over group.max.size %d", dynamic, g.cfg.MaxSize)
		}
	}
	if d.State == Stable {
		for _, m := range d.Members {
			if len(m.Assignment) == 0 {
				s.fatalf("member %s has no assignment in a Stable group", m.MemberID)
			}
		}
	}
	if (d.State == Empty || d.State == Dead) && len(d.Members) > 0 {
		s.fatalf("%s with %d members", d.State, len(d.Members))
	}
	if d.State != Empty && d.State != Dead && len(d.Members) == 0 && d.State != PreparingRebalance {
		s.fatalf("%s with no members", d.State)
	}
	// The incremental counts equal a recount.
	awaiting, counts := 0, map[string]int{}
	for _, m := range g.members {
		if m.hasJoin {
			awaiting++
		}
		for i, p := range m.protocols {
			if !slices.ContainsFunc(m.protocols[:i], func(q Protocol) bool { return q.Name == p.Name }) {
				counts[p.Name]++
			}
		}
	}
	if awaiting != g.awaiting || !maps.Equal(counts, g.protoCount) {
		s.fatalf("counts drifted: awaiting %d (recount %d), protocols %v (recount %v)", g.awaiting, awaiting, g.protoCount, counts)
	}
	seen := map[string]bool{}
	for inst, id := range g.static {
		if g.members[id] == nil || g.members[id].instanceID != inst {
			s.fatalf("static %s maps to %s, not its member", inst, id)
		}
		if seen[id] {
			s.fatalf("member %s holds two instance ids", id)
		}
		seen[id] = true
	}
	for _, id := range g.order {
		if m := g.members[id]; m.hasJoin && g.state != PreparingRebalance {
			s.fatalf("member %s has a parked join in %s", id, g.state)
		}
		if m := g.members[id]; m.hasSync && g.state != CompletingRebalance {
			s.fatalf("member %s has a parked sync in %s", id, g.state)
		}
	}
}

func (s *sim) step() {
	s.steps++
	c := s.clients[s.pick(len(s.clients))]
	protos := [][]Protocol{
		{{Name: "range", Metadata: []byte("r")}},
		{{Name: "range", Metadata: []byte("r")}, {Name: "rr", Metadata: []byte("x")}},
		{{Name: "rr", Metadata: []byte("x")}, {Name: "range", Metadata: []byte("r")}},
	}
	if s.store != nil && s.pick(3) != 0 {
		st := s.store
		s.store = nil
		s.apply(s.g.Stored(s.now, st.Generation, 0))
		s.check()
		return
	}
	action := s.pick(10)
	if s.pick(4) != 0 {
		action = c.cooperative()
	}
	switch action {
	case 0, 1: // join
		j := Join{Req: s.req(), MemberID: c.memberID, InstanceID: c.instance, ClientID: c.name,
			SessionTimeout: time.Duration(6+s.pick(10)) * time.Second, RebalanceTimeout: time.Duration(s.pick(30)) * time.Second,
			ProtocolType: "consumer", Protocols: protos[c.protos(s.pick(4), len(protos))], Version: []int16{0, 3, 4, 5, 9}[s.pick(5)]}
		s.owner[j.Req] = c
		s.apply(s.g.Join(s.now, j))
	case 2, 3: // sync, as leader with a full assignment when it leads this generation
		y := Sync{Req: s.req(), MemberID: c.memberID, InstanceID: c.instance, Generation: c.gen}
		if c.leaderOf == c.gen {
			for _, m := range c.members {
				y.Assignments = append(y.Assignments, Assignment{MemberID: m.MemberID, Assignment: []byte("p-" + m.MemberID)})
			}
		}
		s.owner[y.Req] = c
		s.apply(s.g.Sync(s.now, y))
	case 4: // heartbeat
		r := s.g.Heartbeat(s.now, Heartbeat{MemberID: c.memberID, InstanceID: c.instance, Generation: c.gen})
		if r.ErrorCode == 0 && s.g.members[c.memberID] == nil {
			s.fatalf("heartbeat accepted from non-member %s", c.memberID)
		}
		c.rejoin = r.ErrorCode != 0
	case 5: // (batch) leave
		l := Leave{Members: []LeaveMember{{MemberID: c.memberID, InstanceID: c.instance}}}
		if s.pick(3) == 0 {
			o := s.clients[s.pick(len(s.clients))]
			l.Members = append(l.Members, LeaveMember{InstanceID: o.instance})
		}
		_, r := s.g.Leave(s.now, l)
		s.apply(r)
	case 6, 7: // time passes
		s.now = s.now.Add(time.Duration(s.pick(4000)) * time.Millisecond)
		s.apply(s.g.Tick(s.now))
	case 8: // the store completes, fails, or a stale report arrives
		if s.store != nil {
			code := int16(0)
			if s.pick(5) == 0 {
				code = 16
			}
			gen := s.store.Generation - int32(s.pick(2))
			if gen == s.store.Generation {
				s.store = nil
			} // else a stale report of an older store: the driver still reports this one later
			s.apply(s.g.Stored(s.now, gen, code))
		}
	case 9: // the client restarts and forgets its member id
		c.memberID, c.gen, c.leaderOf, c.synced = "", -1, -1, false
	}
	s.check()
}

// finish lets all time-outs run: every parked request must be answered and
// the group must end up Empty.
func (s *sim) finish() {
	for range 3 {
		s.now = s.now.Add(time.Hour)
		s.apply(s.g.Tick(s.now))
		if s.store != nil {
			st := s.store
			s.store = nil
			s.apply(s.g.Stored(s.now, st.Generation, 0))
		}
		s.check()
	}
	if len(s.parked) > 0 {
		s.fatalf("requests never answered: %v", s.parked)
	}
	if s.g.State() != Empty || !s.g.IsEmpty() {
		s.fatalf("after an idle hour the group is %s with %d members", s.g.State(), len(s.g.members))
	}
}

func TestRandomInvariants(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 42))
		s := newSim(t, r.IntN)
		for range 400 {
			s.step()
		}
		s.finish()
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

// TestRandomReachesStable guards the random test against vacuity: with
// cooperative clients it must see Stable groups with assignments.
func TestRandomReachesStable(t *testing.T) {
	stable := 0
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := newSim(t, r.IntN)
		for range 400 {
			s.step()
			if s.g.State() == Stable {
				stable++
			}
		}
	}
	t.Logf("%d of %d steps ended Stable", stable, 50*400)
	if testing.Verbose() {
		s := newSim(t, rand.New(rand.NewPCG(1, 7)).IntN)
		hist := map[State]int{}
		for range 400 {
			s.step()
			hist[s.g.State()]++
		}
		t.Logf("states: %v", hist)
	}
	if stable < 2000 {
		t.Fatalf("only %d steps ended Stable; the random driver does not exercise the machine", stable)
	}
}

// FuzzEvents drives the machine from fuzz bytes with the same invariants.
func FuzzEvents(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 6, 6, 6, 2, 3, 8, 4})
	f.Add([]byte("join sync heartbeat leave tick stored restart................"))
	f.Fuzz(func(t *testing.T, data []byte) {
		i := 0
		pick := func(n int) int {
			if i >= len(data) {
				return 0
			}
			b := int(data[i])
			i++
			if n > 256 {
				return b * (n / 256)
			}
			return b % n
		}
		s := newSim(t, pick)
		for i < len(data) {
			s.step()
		}
		s.finish()
	})
}
