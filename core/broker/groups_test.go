package broker

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/group"
	plog "github.com/brokkr/brokkr/core/log"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestGroupCoordGate: while __consumer_offsets is unknown or a shard is
// loading, a group of this broker gets COORDINATOR_LOAD_IN_PROGRESS, never
// NOT_COORDINATOR; a group of a partition led elsewhere gets
// NOT_COORDINATOR; after Close every group gets NOT_COORDINATOR.
func TestGroupCoordGate(t *testing.T) {
	c := &groupCoord{shards: map[int32]*shard{}}
	if _, code := c.lock("g"); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("offsets topic unknown: code %d, want COORDINATOR_LOAD_IN_PROGRESS", code)
	}
	const n = 4
	// Two groups on different partitions; this broker leads only mine's.
	mine, other := "", ""
	for i := 0; mine == "" || other == ""; i++ {
		g := fmt.Sprintf("g%d", i)
		switch group.Partition(g, n) {
		case 1:
			mine = g
		case 2:
			other = g
		}
	}
	s := &shard{c: c, idx: 1, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	c.n, c.leaders, c.shards[1] = n, []int32{1, 0, 1, 1}, s
	if _, code := c.lock(mine); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("loading shard: code %d, want COORDINATOR_LOAD_IN_PROGRESS", code)
	}
	if _, code := c.lock(other); code != kerr.NotCoordinator.Code {
		t.Fatalf("another broker's group: code %d, want NOT_COORDINATOR", code)
	}
	s.state = shardActive
	got, code := c.lock(mine)
	if code != 0 || got != s {
		t.Fatalf("active shard: %v %d", got, code)
	}
	s.mu.Unlock()
	if id, code := c.coordinatorOf(mine); code != 0 || id != 0 {
		t.Fatalf("coordinator of %s: %d %d, want broker 0", mine, id, code)
	}
	ch := make(chan any, 1)
	s.parked[7] = ch
	c.close()
	if v := <-ch; v != errParked(kerr.NotCoordinator.Code) {
		t.Fatalf("parked request answered %v at close, want NOT_COORDINATOR", v)
	}
	if _, code := c.lock(mine); code != kerr.NotCoordinator.Code {
		t.Fatalf("after close: code %d, want NOT_COORDINATOR", code)
	}
}

// TestShardStoreAndLoad appends commits, a group's metadata and
// tombstones through a shard, over several batches and segments, and
// checks that a fresh shard loading the same log sees exactly the result.
func TestShardStoreAndLoad(t *testing.T) {
	m, err := plog.OpenManager(plog.ManagerConfig{LogDirs: []string{t.TempDir()}, Default: plog.DefaultConfig()}, plog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	lc := plog.DefaultConfig()
	lc.SegmentBytes = 4096 // several segments
	l, err := m.Create(offsetsTopic, 0, &lc)
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{Config: config.DefaultConfig(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := newGroupCoord(b)
	part := &partition{topic: offsetsTopic, log: &logAdapter{l: l}}
	newShard := func() *shard {
		return &shard{c: c, part: part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	}
	s := newShard()
	s.state = shardActive
	now := time.Now()
	for round := range 50 {
		var kvs [][2][]byte
		for p := int32(0); p < 4; p++ {
			k := group.OffsetKey{Group: "g1", Topic: "t", Partition: p}
			o := group.Offset{Offset: int64(round*10) + int64(p), LeaderEpoch: -1, Metadata: "m", CommitTimestamp: now.UnixMilli(), ExpireTimestamp: -1}
			key, val := group.OffsetCommitRecord(k, &o)
			kvs = append(kvs, [2][]byte{key, val})
			s.offsets.Commit(k, o)
		}
		if err := s.appendRecords(now, kvs); err != nil {
			t.Fatal(err)
		}
	}
	// A second group with a member, then one offset deleted.
	e := s.entry("g2", true, now)
	r := e.g.Join(now, group.Join{Req: 1, MemberID: "", ClientID: "c", SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		ProtocolType: "consumer", Protocols: []group.Protocol{{Name: "range", Metadata: []byte{0, 0}}}, Version: 3})
	s.parked[1] = make(chan any, 1)
	s.apply(e, r, now)
	s.apply(e, e.g.Tick(now.Add(4*time.Second)), now.Add(4*time.Second)) // the initial rebalance delay
	d := e.g.Describe()
	if len(d.Members) != 1 {
		t.Fatalf("g2 has %d members after its join, want 1", len(d.Members))
	}
	s.parked[2] = make(chan any, 1)
	s.apply(e, e.g.Sync(now, group.Sync{Req: 2, MemberID: d.Members[0].MemberID, Generation: d.Generation,
		Assignments: []group.Assignment{{MemberID: d.Members[0].MemberID, Assignment: []byte("a")}}}), now)
	if e.g.State() != group.Stable {
		t.Fatalf("g2 is %v after the leader's sync, want Stable", e.g.State())
	}
	del := group.OffsetKey{Group: "g1", Topic: "t", Partition: 3}
	key, val := group.OffsetCommitRecord(del, nil)
	if err := s.appendRecords(now, [][2][]byte{{key, val}}); err != nil {
		t.Fatal(err)
	}
	s.offsets.Delete(del)
	if len(l.Segments()) < 2 {
		t.Fatalf("%d segments, want several", len(l.Segments()))
	}

	fresh := newShard()
	recs, groups, err := fresh.load()
	if err != nil {
		t.Fatal(err)
	}
	if recs != 50*4+2 || groups != 2 || fresh.state != shardActive {
		t.Fatalf("loaded %d records, %d groups, state %v; want 202, 2, active", recs, groups, fresh.state)
	}
	for p := int32(0); p < 4; p++ {
		k := group.OffsetKey{Group: "g1", Topic: "t", Partition: p}
		want, wok := s.offsets.Get(k)
		got, gok := fresh.offsets.Get(k)
		if wok != gok || want.Offset != got.Offset || want.Metadata != got.Metadata {
			t.Fatalf("partition %d: loaded %+v %v, want %+v %v", p, got, gok, want, wok)
		}
	}
	g2 := fresh.groups["g2"]
	if g2 == nil || g2.g.State() != group.Stable || g2.g.Generation() != d.Generation {
		t.Fatalf("g2 after load: %+v", g2)
	}
	if a := g2.g.Describe().Members[0].Assignment; string(a) != "a" {
		t.Fatalf("g2's member assignment after load %q, want a", a)
	}
	if got := b.minCommittedOffsetIn([]*shard{fresh}, "t", 0); got != 490 {
		t.Fatalf("min committed offset %d, want 490", got)
	}
}
