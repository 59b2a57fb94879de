package group

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestConfigValidateReportsAll(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c := Config{MinSessionTimeout: 10 * time.Second, MaxSessionTimeout: time.Second, InitialRebalanceDelay: -1, MaxSize: 0}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"group.max.session.timeout.ms", "group.initial.rebalance.delay.ms", "group.max.size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := New(c); err == nil {
		t.Fatal("New accepted a bad config")
	}
}

// A group rebuilt from its stored snapshot (coordinator takeover) is Stable,
// keeps generation, leader and assignments, and times its members out from
// the restore time.
func TestRestoreFromStore(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	now := h.now
	var last *Snapshot
	run := func(r Ready) {
		if r.Store != nil {
			last = r.Store
			r = h.g.Stored(now, r.Store.Generation, 0)
			if r.Store != nil {
				last = r.Store
			}
		}
	}
	join := func(client, inst string) {
		run(h.g.Join(now, Join{Req: h.req(), InstanceID: inst, ClientID: client, SessionTimeout: 10 * time.Second,
			ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: []byte(client)}}, Version: 3}))
	}
	join("a", "")
	join("b", "sb")
	now = now.Add(6 * time.Second)
	run(h.g.Tick(now))
	run(h.g.Sync(now, Sync{Req: h.req(), MemberID: "a-1", Generation: 1,
		Assignments: []Assignment{{MemberID: "a-1", Assignment: []byte("p0")}, {MemberID: "sb-2", Assignment: []byte("p1")}}}))
	if h.g.State() != Stable || last == nil || last.Generation != 1 {
		t.Fatalf("setup: state %s, store %+v", h.g.State(), last)
	}

	later := now.Add(time.Hour)
	g, err := Restore(DefaultConfig(), *last, later)
	if err != nil {
		t.Fatal(err)
	}
	d := g.Describe()
	if d.State != Stable || d.Generation != 1 || d.Leader != "a-1" || d.Protocol != "range" || len(d.Members) != 2 {
		t.Fatalf("restored %+v", d)
	}
	if r := g.Sync(later, Sync{Req: 1, MemberID: "sb-2", InstanceID: "sb", Generation: 1}); len(r.Syncs) != 1 || string(r.Syncs[0].Assignment) != "p1" {
		t.Fatalf("restored sync: %+v", r.Syncs)
	}
	if r := g.Heartbeat(later, Heartbeat{MemberID: "sb-2", InstanceID: "sb", Generation: 1}); r.ErrorCode != 0 {
		t.Fatalf("restored heartbeat: %s", errName(r.ErrorCode))
	}
	// The static member restarts after the takeover: no rebalance.
	r := g.Join(later, Join{Req: 2, InstanceID: "sb", ClientID: "b", SessionTimeout: 10 * time.Second,
		ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: []byte("b")}}, Version: 5})
	if len(r.Joins) != 1 || r.Joins[0].ErrorCode != 0 || g.State() != Stable {
		t.Fatalf("static rejoin after restore: %+v, %s", r.Joins, g.State())
	}
	// a never heartbeats after the restore: it expires 10s after it.
	dl, ok := g.NextDeadline()
	if !ok || !dl.Equal(later.Add(10*time.Second)) {
		t.Fatalf("next deadline %v %v, want %v", dl, ok, later.Add(10*time.Second))
	}
	newB := r.Joins[0].MemberID
	if !strings.HasPrefix(newB, "sb-") || newB == "sb-2" {
		t.Fatalf("static member's new id %q", newB)
	}
	if hb := g.Heartbeat(later.Add(5*time.Second), Heartbeat{MemberID: newB, InstanceID: "sb", Generation: 1}); hb.ErrorCode != 0 {
		t.Fatalf("new id heartbeat: %s", errName(hb.ErrorCode))
	}
	if hb := g.Heartbeat(later.Add(5*time.Second), Heartbeat{MemberID: "sb-2", InstanceID: "sb", Generation: 1}); hb.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("old id heartbeat: %s", errName(hb.ErrorCode))
	}
	g.Tick(later.Add(10 * time.Second))
	if g.State() != PreparingRebalance || len(g.Describe().Members) != 1 {
		t.Fatalf("after a's expiry: %s %+v", g.State(), g.Describe().Members)
	}
	if hb := g.Heartbeat(later, Heartbeat{MemberID: "a-1", Generation: 1}); hb.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member heartbeat: %s", errName(hb.ErrorCode))
	}
}

// Time is an input: one big clock jump fires the time-outs it crosses in
// order, ending where small steps end.
func TestOneJumpEqualsSmallSteps(t *testing.T) {
	build := func() *Group {
		g, err := New(DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	t0 := time.Unix(1_000_000, 0)
	script := func(g *Group, tick func(time.Time)) {
		for i, c := range []string{"a", "b", "c"} {
			g.Join(t0, Join{Req: ReqID(i + 1), ClientID: c, SessionTimeout: time.Duration(6+4*i) * time.Second,
				RebalanceTimeout: 20 * time.Second, ProtocolType: "consumer", Protocols: []Protocol{{Name: "range"}}, Version: 3})
		}
		tick(t0.Add(2 * time.Minute))
	}
	big := build()
	script(big, func(to time.Time) { big.Tick(to) })
	small := build()
	script(small, func(to time.Time) {
		for at := t0; !at.After(to); at = at.Add(100 * time.Millisecond) {
			small.Tick(at)
		}
	})
	db, ds := big.Describe(), small.Describe()
	if db.State != ds.State || db.Generation != ds.Generation || len(db.Members) != len(ds.Members) {
		t.Fatalf("one jump: %s gen %d %d members; small steps: %s gen %d %d members",
			db.State, db.Generation, len(db.Members), ds.State, ds.Generation, len(ds.Members))
	}
	// Nobody synced or heartbeated: the group must have lost everyone.
	if db.State != Empty || db.Generation < 2 {
		t.Fatalf("after 2 idle minutes: %s gen %d", db.State, db.Generation)
	}
}

func TestLoggerNamesRebalanceReasons(t *testing.T) {
	var buf bytes.Buffer
	g, err := New(DefaultConfig(), WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	r := g.Join(t0, Join{Req: 1, ClientID: "a", SessionTimeout: 6 * time.Second, ProtocolType: "consumer",
		Protocols: []Protocol{{Name: "range"}}, Version: 3})
	r = g.Tick(t0.Add(3 * time.Second))
	if len(r.Joins) != 1 || r.Joins[0].ErrorCode != 0 {
		t.Fatalf("join: %+v", r.Joins)
	}
	g.Tick(t0.Add(time.Minute))
	for _, want := range []string{"new member a-", "session timed out", "join phase complete"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}
