package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/group"
	plog "github.com/brokkr/brokkr/core/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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

	// A gzip batch, as a Kafka broker may have written.
	var gz []codec.Record
	for p := int32(0); p < 3; p++ {
		k := group.OffsetKey{Group: "gz", Topic: "t", Partition: p}
		o := group.Offset{Offset: 100 + int64(p), LeaderEpoch: 2, Metadata: "z", CommitTimestamp: now.UnixMilli(), ExpireTimestamp: -1}
		key, val := group.OffsetCommitRecord(k, &o)
		gz = append(gz, codec.Record{OffsetDelta: p, Key: key, Value: val})
		s.offsets.Commit(k, o)
	}
	batch, err := codec.EncodeBatch(codec.BatchHeader{Attributes: 1, PartitionLeaderEpoch: -1, BaseTimestamp: now.UnixMilli(),
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}, gz)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := part.log.Append(batch, 0); err != nil {
		t.Fatal(err)
	}
	part.log.SetHighWatermark(part.log.EndOffset())

	fresh := newShard()
	recs, groups, err := fresh.load()
	if err != nil {
		t.Fatal(err)
	}
	if recs != 50*4+2+3 || groups != 3 || fresh.state != shardActive {
		t.Fatalf("loaded %d records, %d groups, state %v; want 205, 3, active", recs, groups, fresh.state)
	}
	for _, k := range []group.OffsetKey{
		{Group: "g1", Topic: "t", Partition: 0}, {Group: "g1", Topic: "t", Partition: 1}, {Group: "g1", Topic: "t", Partition: 2},
		{Group: "g1", Topic: "t", Partition: 3}, {Group: "gz", Topic: "t", Partition: 0}, {Group: "gz", Topic: "t", Partition: 2},
	} {
		want, wok := s.offsets.Get(k)
		got, gok := fresh.offsets.Get(k)
		if wok != gok || want.Offset != got.Offset || want.Metadata != got.Metadata || want.LeaderEpoch != got.LeaderEpoch {
			t.Fatalf("%+v: loaded %+v %v, want %+v %v", k, got, gok, want, wok)
		}
	}
	g2 := fresh.groups["g2"]
	if g2 == nil || g2.g.State() != group.Stable || g2.g.Generation() != d.Generation {
		t.Fatalf("g2 after load: %+v", g2)
	}
	if a := g2.g.Describe().Members[0].Assignment; string(a) != "a" {
		t.Fatalf("g2's member assignment after load %q, want a", a)
	}
	if got := minCommitted([]*shard{fresh})[tp{"t", 0}]; got != 100 {
		t.Fatalf("min committed offset %d, want 100 (gz)", got)
	}
}

// BenchmarkShardLoad loads a __consumer_offsets partition holding 1
// million offset commits of 10,000 groups (100 partitions each, 10 commits
// per partition), written 100 records to a batch as the coordinator does.
// Issue 6 asks for under 2 s.
//
//	go test -run '^$' -bench ShardLoad -benchtime 3x ./core/broker/
func BenchmarkShardLoad(b *testing.B) {
	m, err := plog.OpenManager(plog.ManagerConfig{LogDirs: []string{b.TempDir()}, Default: plog.DefaultConfig()}, plog.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	lc := plog.DefaultConfig()
	lc.SegmentBytes = offsetsTopicSegmentBytes
	l, err := m.Create(offsetsTopic, 0, &lc)
	if err != nil {
		b.Fatal(err)
	}
	br := &Broker{Config: config.DefaultConfig(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := newGroupCoord(br)
	part := &partition{topic: offsetsTopic, log: &logAdapter{l: l}}
	w := &shard{c: c, part: part, state: shardActive, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	now := time.Now()
	const groups, parts, rounds = 10000, 100, 10
	for r := range rounds {
		for g := range groups {
			kvs := make([][2][]byte, 0, parts)
			for p := int32(0); p < parts; p++ {
				o := group.Offset{Offset: int64(r*1000) + int64(p), LeaderEpoch: 0, CommitTimestamp: now.UnixMilli(), ExpireTimestamp: -1}
				key, val := group.OffsetCommitRecord(group.OffsetKey{Group: fmt.Sprintf("group-%05d", g), Topic: "orders", Partition: p}, &o)
				kvs = append(kvs, [2][]byte{key, val})
			}
			if err := w.appendRecords(now, kvs); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for range b.N {
		s := &shard{c: c, part: part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
		recs, n, err := s.load()
		if err != nil || recs != groups*parts*rounds || n != groups {
			b.Fatalf("loaded %d records, %d groups: %v", recs, n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
}

// testShard returns an active shard over a fresh log, with the broker
// config given.
func testShard(t testing.TB, cfg config.Config) *shard {
	m, err := plog.OpenManager(plog.ManagerConfig{LogDirs: []string{t.TempDir()}, Default: plog.DefaultConfig()}, plog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	l, err := m.Create(offsetsTopic, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{Config: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := newGroupCoord(b)
	b.groups = c
	s := &shard{c: c, part: &partition{topic: offsetsTopic, log: &logAdapter{l: l}}, state: shardActive,
		groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	c.n, c.leaders, c.shards = 1, []int32{0}, map[int32]*shard{0: s}
	return s
}

// joinStable makes a one-member Stable group (join, delay, leader sync).
func joinStable(t *testing.T, s *shard, name string, now time.Time) *groupEntry {
	t.Helper()
	e := s.entry(name, true, now)
	id, _ := s.park()
	s.apply(e, e.g.Join(now, group.Join{Req: id, ClientID: "c", SessionTimeout: 20 * time.Minute, RebalanceTimeout: time.Minute,
		ProtocolType: "consumer", Protocols: []group.Protocol{{Name: "range", Metadata: []byte{0, 0}}}, Version: 3}), now)
	now = now.Add(time.Minute)
	s.apply(e, e.g.Tick(now), now)
	d := e.g.Describe()
	id, _ = s.park()
	s.apply(e, e.g.Sync(now, group.Sync{Req: id, MemberID: d.Members[0].MemberID, Generation: d.Generation}), now)
	if e.g.State() != group.Stable {
		t.Fatalf("%s is %v, want Stable", name, e.g.State())
	}
	return e
}

func commitAt(t *testing.T, s *shard, g string, off int64, at time.Time) {
	t.Helper()
	k := group.OffsetKey{Group: g, Topic: "t", Partition: 0}
	o := group.Offset{Offset: off, LeaderEpoch: -1, CommitTimestamp: at.UnixMilli(), ExpireTimestamp: -1}
	key, val := group.OffsetCommitRecord(k, &o)
	if err := s.appendRecords(at, [][2][]byte{{key, val}}); err != nil {
		t.Fatal(err)
	}
	s.offsets.Commit(k, o)
	s.c.touched([]group.OffsetKey{k}, false)
	s.entry(g, true, at)
}

// TestOffsetExpiry: after offsets.retention.minutes, the offsets of a
// group that only commits and of a group Empty that long go (tombstones
// written, durable across a reload) and so do those groups; a Stable
// group's offsets and a recently emptied group's stay.
func TestOffsetExpiry(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.OffsetsRetentionMinutes = 60
	s := testShard(t, cfg)
	t0 := time.Now() // the groups' timers run on the real clock; expiry is asked about a later time
	retention := time.Hour

	commitAt(t, s, "simple", 1, t0)          // only commits
	joinStable(t, s, "stable", t0)           // has a member
	commitAt(t, s, "stable", 2, t0)          //
	left := joinStable(t, s, "left", t0)     // emptied long ago
	commitAt(t, s, "left", 3, t0)            //
	recent := joinStable(t, s, "recent", t0) // emptied just now
	commitAt(t, s, "recent", 4, t0)
	leave := func(e *groupEntry, at time.Time) {
		resp, r := e.g.Leave(at, group.Leave{Members: []group.LeaveMember{{MemberID: e.g.Describe().Members[0].MemberID}}})
		if resp.Members[0].ErrorCode != 0 {
			t.Fatalf("leave: %+v", resp)
		}
		s.apply(e, r, at)
	}
	leave(left, t0.Add(time.Minute))
	now := t0.Add(retention + 2*time.Minute)
	leave(recent, now.Add(-time.Minute))

	if m := s.c.b.minCommittedOffset("t", 0); m != 1 {
		t.Fatalf("min committed offset %d, want 1", m)
	}
	if m := s.c.b.minCommittedOffset("t", 1); m != -1 {
		t.Fatalf("min committed offset of an uncommitted partition %d, want -1", m)
	}
	commitAt(t, s, "recent", 0, t0) // a lower commit shows at once
	if m := s.c.b.minCommittedOffset("t", 0); m != 0 {
		t.Fatalf("min committed offset %d after a commit at 0, want 0", m)
	}
	commitAt(t, s, "recent", 4, t0)
	if n := s.c.expireOffsets(now); n != 2 {
		t.Fatalf("expired %d offsets, want 2 (simple and left)", n)
	}
	if m := s.c.b.minCommittedOffset("t", 0); m != 2 {
		t.Fatalf("min committed offset %d after expiry, want 2 (stable)", m)
	}
	for g, want := range map[string]bool{"simple": false, "left": false, "stable": true, "recent": true} {
		_, ok := s.offsets.Get(group.OffsetKey{Group: g, Topic: "t", Partition: 0})
		if ok != want {
			t.Errorf("%s: offset present=%v, want %v", g, ok, want)
		}
		if (s.groups[g] != nil) != want {
			t.Errorf("%s: group present=%v, want %v", g, s.groups[g] != nil, want)
		}
	}
	fresh := &shard{c: s.c, part: s.part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	if _, _, err := fresh.load(); err != nil {
		t.Fatal(err)
	}
	for g, want := range map[string]bool{"simple": false, "left": false, "stable": true, "recent": true} {
		if _, ok := fresh.offsets.Get(group.OffsetKey{Group: g, Topic: "t", Partition: 0}); ok != want {
			t.Errorf("after reload %s: offset present=%v, want %v", g, ok, want)
		}
		if (fresh.groups[g] != nil) != want {
			t.Errorf("after reload %s: group present=%v, want %v", g, fresh.groups[g] != nil, want)
		}
	}
}

// TestShardLoadSkipsRecordsItCannotDecode: a record of a key version this
// broker does not know (a KIP-848 record, a left-over of an aborted
// upgrade) between good commits is skipped, as Kafka does; the shard
// loads and the commits around it are there. Before, one such record kept
// every group of the shard at COORDINATOR_LOAD_IN_PROGRESS forever.
func TestShardLoadSkipsRecordsItCannotDecode(t *testing.T) {
	m, err := plog.OpenManager(plog.ManagerConfig{LogDirs: []string{t.TempDir()}, Default: plog.DefaultConfig()}, plog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	lc := plog.DefaultConfig()
	l, err := m.Create(offsetsTopic, 0, &lc)
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{Config: config.DefaultConfig(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := newGroupCoord(b)
	part := &partition{topic: offsetsTopic, log: &logAdapter{l: l}}
	s := &shard{c: c, part: part, state: shardActive, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	now := time.Now()
	commit := func(p int32, off int64) [2][]byte {
		k, v := group.OffsetCommitRecord(group.OffsetKey{Group: "g", Topic: "t", Partition: p},
			&group.Offset{Offset: off, LeaderEpoch: -1, CommitTimestamp: now.UnixMilli(), ExpireTimestamp: -1})
		return [2][]byte{k, v}
	}
	unknown := [2][]byte{{0x08, 0x31, 0, 1, 'x'}, {0, 0}} // key version 2097
	for _, kvs := range [][][2][]byte{{commit(0, 5)}, {unknown}, {commit(1, 7), unknown, commit(0, 9)}} {
		if err := s.appendRecords(now, kvs); err != nil {
			t.Fatal(err)
		}
	}
	fresh := &shard{c: c, part: part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	recs, _, err := fresh.load()
	if err != nil || fresh.state != shardActive || recs != 5 {
		t.Fatalf("load: %d records, state %v, err %v; want 5 records read and the shard active", recs, fresh.state, err)
	}
	for p, want := range map[int32]int64{0: 9, 1: 7} {
		if o, ok := fresh.offsets.Get(group.OffsetKey{Group: "g", Topic: "t", Partition: p}); !ok || o.Offset != want {
			t.Fatalf("partition %d: %+v %v, want offset %d", p, o, ok, want)
		}
	}
}

// listCounter is a coordination store that only counts List calls and
// fails them: enough to see whether partitionCounts read the metadata.
type listCounter struct {
	coord.Backend
	lists int
}

func (f *listCounter) List(context.Context, string) ([]coord.Record, error) {
	f.lists++
	return nil, errors.New("metadata unavailable in this test")
}

// TestPartitionCountsSparseLocalPartitions: a broker hosting partitions 0
// and 2 of a topic (another broker has 1) must not conclude the topic has
// one partition: a commit naming partition 1 or 2 reads the metadata; one
// naming only partition 0 is answered from the local map.
func TestPartitionCountsSparseLocalPartitions(t *testing.T) {
	s := testShard(t, config.DefaultConfig())
	b := s.c.b
	fake := &listCounter{}
	b.Coord = fake
	b.parts = map[tp]*partition{{"t", 0}: {topic: "t"}, {"t", 2}: {topic: "t", index: 2}}
	got, err := b.partitionCounts(context.Background(), map[string]int32{"t": 0})
	if err != nil || got["t"] != 1 || fake.lists != 0 {
		t.Fatalf("asking partition 0: %v %v after %d metadata reads; want 1 from the local map", got, err, fake.lists)
	}
	for _, hi := range []int32{1, 2} {
		fake.lists = 0
		if _, err := b.partitionCounts(context.Background(), map[string]int32{"t": hi}); err == nil || fake.lists == 0 {
			t.Fatalf("asking partition %d: answered without reading the metadata (err %v)", hi, err)
		}
	}
}

// TestOffsetDeleteDuringFirstRebalance: while no protocol is chosen yet
// the subscriptions are unknown, and, as Kafka, every topic counts as
// subscribed: the offset is kept (GROUP_SUBSCRIBED_TO_TOPIC).
func TestOffsetDeleteDuringFirstRebalance(t *testing.T) {
	s := testShard(t, config.DefaultConfig())
	b := s.c.b
	b.parts = map[tp]*partition{{"t", 0}: {topic: "t"}}
	now := time.Now()
	commitAt(t, s, "g", 7, now)
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t"}
	e := s.entry("g", true, now)
	id, _ := s.park()
	s.apply(e, e.g.Join(now, group.Join{Req: id, ClientID: "c", SessionTimeout: 20 * time.Second, RebalanceTimeout: time.Minute,
		ProtocolType: "consumer", Protocols: []group.Protocol{{Name: "range", Metadata: meta.AppendTo(nil)}}, Version: 3}), now)
	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = "g"
	rt := kmsg.NewOffsetDeleteRequestTopic()
	rt.Topic = "t"
	rt.Partitions = append(rt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	codes := [][]int16{make([]int16, 1)}
	top := b.offsetDelete(context.Background(), req, codes)
	_, still := s.offsets.Get(group.OffsetKey{Group: "g", Topic: "t", Partition: 0})
	if top != 0 || codes[0][0] != kerr.GroupSubscribedToTopic.Code || !still {
		t.Fatalf("offset delete mid-rebalance: top %d, partition %d, offset kept %v; want GROUP_SUBSCRIBED_TO_TOPIC and kept", top, codes[0][0], still)
	}
}

// TestDeletedTopicLosesItsOffsets: deleting a topic removes every group's
// committed offsets of it (tombstones, durable across a reload), as
// Kafka's onPartitionsDeleted; a shard still loading drops them when its
// load finishes. Otherwise a topic created again under the name inherits
// the old offsets.
func TestDeletedTopicLosesItsOffsets(t *testing.T) {
	s := testShard(t, config.DefaultConfig())
	b := s.c.b
	commitAt(t, s, "g", 500, time.Now())
	k := group.OffsetKey{Group: "g", Topic: "other", Partition: 0}
	key, val := group.OffsetCommitRecord(k, &group.Offset{Offset: 3, LeaderEpoch: -1, ExpireTimestamp: -1})
	if err := s.appendRecords(time.Now(), [][2][]byte{{key, val}}); err != nil {
		t.Fatal(err)
	}
	s.offsets.Commit(k, group.Offset{Offset: 3, LeaderEpoch: -1, ExpireTimestamp: -1})
	b.groups.topicDeleted("t")
	if _, ok := s.offsets.Get(group.OffsetKey{Group: "g", Topic: "t", Partition: 0}); ok || b.minCommittedOffset("t", 0) != -1 {
		t.Fatalf("after deleting t: offset still there (%v) or min committed %d", ok, b.minCommittedOffset("t", 0))
	}
	if _, ok := s.offsets.Get(k); !ok {
		t.Fatal("deleting t removed another topic's offset")
	}
	fresh := &shard{c: s.c, part: s.part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	if _, _, err := fresh.load(); err != nil {
		t.Fatal(err)
	}
	if _, ok := fresh.offsets.Get(group.OffsetKey{Group: "g", Topic: "t", Partition: 0}); ok {
		t.Fatal("the deleted topic's offset came back on reload: no tombstone")
	}
	// A deletion while a shard loads is applied when the load finishes.
	commitAt(t, s, "g", 9, time.Now())
	s.state = shardLoading
	b.groups.topicDeleted("t")
	s.state = shardActive
	loading := &shard{c: s.c, part: s.part, state: shardLoading, groups: map[string]*groupEntry{}, offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
	s.c.shards[0] = loading
	loading.deletedTopics = s.deletedTopics
	if _, _, err := loading.load(); err != nil {
		t.Fatal(err)
	}
	if _, ok := loading.offsets.Get(group.OffsetKey{Group: "g", Topic: "t", Partition: 0}); ok {
		t.Fatal("a topic deleted during the load kept its offsets")
	}
}

// TestProduceToOffsetsTopicRefused: as Kafka, clients cannot append to
// __consumer_offsets (their records would bypass the coordinator's state
// and take effect only at the next load).
func TestProduceToOffsetsTopicRefused(t *testing.T) {
	s := testShard(t, config.DefaultConfig())
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, -1
	rp := kmsg.NewProduceRequestTopicPartition()
	code, msg, _ := s.c.b.produceOne(offsetsTopic, rp, req)
	if code != kerr.InvalidTopicException.Code || msg == "" {
		t.Fatalf("produce to %s: code %d %q, want INVALID_TOPIC_EXCEPTION with a message", offsetsTopic, code, msg)
	}
}

// TestCommitToUnknownGroupAndPendingMembers pins two of Kafka's
// handleCommitOffsets rules: a commit naming a generation >= 0 for a group
// the coordinator does not know is ILLEGAL_GENERATION, while generation -1
// with a member id makes the (Empty) group and answers UNKNOWN_MEMBER_ID;
// and an operator's simple commit to an Empty group goes through even
// while a member is pending after MEMBER_ID_REQUIRED.
func TestCommitToUnknownGroupAndPendingMembers(t *testing.T) {
	s := testShard(t, config.DefaultConfig())
	b := s.c.b
	b.parts = map[tp]*partition{{"t", 0}: {topic: "t"}}
	commit := func(g string, gen int32, member string) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.Generation, req.MemberID = 8, g, gen, member
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 5
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		codes := [][]int16{make([]int16, 1)}
		b.offsetCommit(context.Background(), req, codes, func(c int16) { codes[0][0] = c })
		return codes[0][0]
	}
	if c := commit("unknown-a", 3, "m"); c != kerr.IllegalGeneration.Code {
		t.Fatalf("generation 3 to an unknown group: %d, want ILLEGAL_GENERATION", c)
	}
	if c := commit("unknown-b", -1, "m"); c != kerr.UnknownMemberID.Code {
		t.Fatalf("generation -1 with a member id to an unknown group: %d, want UNKNOWN_MEMBER_ID", c)
	}
	now := time.Now()
	e := s.entry("pending", true, now)
	id, _ := s.park()
	s.apply(e, e.g.Join(now, group.Join{Req: id, ClientID: "c", SessionTimeout: 20 * time.Second, RebalanceTimeout: time.Minute,
		ProtocolType: "consumer", Protocols: []group.Protocol{{Name: "range", Metadata: []byte{0, 0}}}, Version: 4}), now)
	if e.g.State() != group.Empty || e.g.IsEmpty() {
		t.Fatalf("after a v4 join with no member id the group is %v (empty %v), want Empty with a pending member", e.g.State(), e.g.IsEmpty())
	}
	if c := commit("pending", -1, ""); c != 0 {
		t.Fatalf("simple commit to an Empty group with a pending member: %d, want none", c)
	}
}
