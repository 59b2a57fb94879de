package group

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRebalance: n members join an empty group, the join phase
// completes, everyone syncs, and the leader's assignment is stored.
func BenchmarkRebalance(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				seq := 0
				g, _ := New(DefaultConfig(), WithMemberIDs(func(p string) string { seq++; return fmt.Sprintf("%s-%d", p, seq) }))
				t0 := time.Unix(1_000_000, 0)
				for i := range n {
					g.Join(t0, Join{Req: ReqID(i), ClientID: "c", SessionTimeout: 10 * time.Second,
						ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: []byte("m")}}, Version: 3})
				}
				now := t0.Add(10 * time.Second)
				r := g.Tick(now)
				if len(r.Joins) != n || g.State() != CompletingRebalance {
					b.Fatalf("%d joins, state %s", len(r.Joins), g.State())
				}
				var asg []Assignment
				for _, m := range r.Joins[0].Members {
					asg = append(asg, Assignment{MemberID: m.MemberID, Assignment: []byte("p")})
				}
				for k, j := range r.Joins[1:] {
					g.Sync(now, Sync{Req: ReqID(n + 1 + k), MemberID: j.MemberID, Generation: 1})
				}
				g.Sync(now, Sync{Req: ReqID(n), MemberID: r.Joins[0].MemberID, Generation: 1, Assignments: asg})
				r = g.Stored(now, 1, 0)
				if len(r.Syncs) != n || g.State() != Stable {
					b.Fatalf("%d syncs, state %s", len(r.Syncs), g.State())
				}
			}
		})
	}
}

// BenchmarkHeartbeatTick: the steady state of a stable group of 1000 —
// one heartbeat and one Tick.
func BenchmarkHeartbeatTick(b *testing.B) {
	g, _ := New(DefaultConfig())
	t0 := time.Unix(1_000_000, 0)
	for i := range 1000 {
		g.Join(t0, Join{Req: ReqID(i), ClientID: "c", SessionTimeout: 20 * time.Minute,
			ProtocolType: "consumer", Protocols: []Protocol{{Name: "range"}}, Version: 3})
	}
	r := g.Tick(t0.Add(time.Minute))
	id := r.Joins[0].MemberID
	now := t0.Add(time.Minute)
	for b.Loop() {
		now = now.Add(time.Millisecond)
		if g.Heartbeat(now, Heartbeat{MemberID: id, Generation: 1}).ErrorCode != 0 {
			b.Fatal("heartbeat refused")
		}
		g.Tick(now)
	}
}
