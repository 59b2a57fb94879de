package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupOverrides keep group tests fast: no initial rebalance delay, few
// __consumer_offsets partitions (each is a log to recover after kill -9),
// short sessions allowed.
var groupOverrides = []string{
	"group.initial.rebalance.delay.ms=0",
	"offsets.topic.num.partitions=5",
	"group.min.session.timeout.ms=1000",
}

func produceN(t *testing.T, addr, topic string, n int) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctxFor(t, 20*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// committed fetches a group's committed offsets, retrying the retriable
// coordinator errors (the coordinator loads after a restart).
func committed(t *testing.T, addr, grp string) kadm.OffsetResponses {
	t.Helper()
	adm := newAdmin(t, addr)
	var out kadm.OffsetResponses
	testbroker.Eventually(t, 20*time.Second, "OffsetFetch of "+grp, func() bool {
		r, err := adm.FetchOffsets(ctxFor(t, 10*time.Second), grp)
		if err != nil {
			return false
		}
		out = r
		return true
	})
	return out
}

// TestGroupConsumeCommitSurvivesRestart: a kgo group consumer reads a
// 4-partition topic and commits; OffsetFetch returns the end offsets;
// ListGroups and DescribeGroups show the live group; the offsets are still
// there after a clean restart and after kill -9.
func TestGroupConsumeCommitSurvivesRestart(t *testing.T) {
	t0 := time.Now()
	phase := func(what string) { t.Logf("%v: %s", time.Since(t0).Round(time.Millisecond), what) }
	b := testbroker.Start(t, groupOverrides...)
	const topic, grp, n = "gc-topic", "gc-group", 400
	phase("started")
	createTopic(t, b.Addr, topic, 4, nil)
	produceN(t, b.Addr, topic, n)

	cl := newClient(t, b.Addr, kgo.ConsumerGroup(grp), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("gc-client"))
	got := 0
	ctx := ctxFor(t, 30*time.Second)
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", got, n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch error %s/%d: %v", tp, p, err) })
		got += fs.NumRecords()
	}
	if got != n {
		t.Fatalf("consumed %d records, want %d", got, n)
	}
	phase("consumed")
	if err := cl.CommitUncommittedOffsets(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	phase("committed")

	// The live group as ListGroups and DescribeGroups show it.
	adm := newAdmin(t, b.Addr)
	lg, err := adm.ListGroups(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := lg[grp]; !ok || g.State != "Stable" || g.ProtocolType != "consumer" {
		t.Fatalf("ListGroups: %+v, want %s Stable consumer", lg, grp)
	}
	dg, err := adm.DescribeGroups(ctxFor(t, 10*time.Second), grp)
	if err != nil {
		t.Fatal(err)
	}
	d := dg[grp]
	if d.Err != nil || d.State != "Stable" || d.Protocol == "" || len(d.Members) != 1 {
		t.Fatalf("DescribeGroups: %+v", d)
	}
	if m := d.Members[0]; m.ClientID != "gc-client" || m.ClientHost != "/127.0.0.1" {
		t.Fatalf("member client id %q host %q, want gc-client /127.0.0.1", m.ClientID, m.ClientHost)
	}
	if a, ok := d.Members[0].Assigned.AsConsumer(); !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 4 {
		t.Fatalf("member assignment %+v, want all 4 partitions", d.Members[0].Assigned)
	}

	check := func(when string) {
		t.Helper()
		offs := committed(t, b.Addr, grp)
		total := int64(0)
		for p := int32(0); p < 4; p++ {
			o, ok := offs.Lookup(topic, p)
			if !ok || o.Err != nil {
				t.Fatalf("%s: no committed offset for %s/%d: %+v", when, topic, p, o)
			}
			if end := endOffset(t, b.Addr, topic, p); o.At != end {
				t.Fatalf("%s: committed %d for partition %d, log end %d", when, o.At, p, end)
			}
			total += o.At
		}
		if total != n {
			t.Fatalf("%s: committed offsets sum to %d, want %d", when, total, n)
		}
	}
	phase("described")
	check("before restart")
	phase("checked")
	cl.Close() // leaves the group

	if took, clean := b.Stop(); !clean {
		t.Fatalf("clean stop took %v and did not finish", took)
	}
	phase("stopped")
	b.Restart(t)
	phase("restarted")
	check("after a clean restart")
	phase("checked")
	// The group is known again (Empty, with its protocol type).
	testbroker.Eventually(t, 10*time.Second, "ListGroups after restart", func() bool {
		lg, err := newAdmin(t, b.Addr).ListGroups(ctxFor(t, 5*time.Second))
		return err == nil && lg[grp].State == "Empty" && lg[grp].ProtocolType == "consumer"
	})

	b.Kill9()
	b.Restart(t)
	check("after kill -9 and restart")
	assertNoPanic(t, b)
}

// joinReq builds a JoinGroup request of version v.
func joinReq(v int16, grp, member string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.SetVersion(v)
	req.Group, req.MemberID, req.ProtocolType = grp, member, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 10000
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"jv-topic"}
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", meta.AppendTo(nil)
	req.Protocols = []kmsg.JoinGroupRequestProtocol{p}
	return req
}

// waitCoordinator waits until FindCoordinator answers for grp.
func waitCoordinator(t *testing.T, addr, grp string) {
	t.Helper()
	rc := dial(t, addr)
	testbroker.Eventually(t, 15*time.Second, "FindCoordinator", func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.SetVersion(1)
		req.CoordinatorKey = grp
		resp := rc.mustRoundTrip(req).(*kmsg.FindCoordinatorResponse)
		return resp.ErrorCode == 0
	})
}

// TestJoinGroupVersionEdges: JoinGroup v0–v9 with an empty member id (v4+
// MEMBER_ID_REQUIRED and then a join with the given id; v0–v3 join at
// once), SyncGroup, and Heartbeat's ILLEGAL_GENERATION and
// UNKNOWN_MEMBER_ID, each version on its own group.
func TestJoinGroupVersionEdges(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	createTopic(t, b.Addr, "jv-topic", 1, nil)
	waitCoordinator(t, b.Addr, "jv-0")
	rc := dial(t, b.Addr)
	for v := int16(0); v <= 9; v++ {
		grp := fmt.Sprintf("jv-%d", v)
		resp := rc.mustRoundTrip(joinReq(v, grp, "")).(*kmsg.JoinGroupResponse)
		if v >= 4 {
			if resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
				t.Fatalf("v%d empty member id: error %d member %q, want MEMBER_ID_REQUIRED with an id", v, resp.ErrorCode, resp.MemberID)
			}
			resp = rc.mustRoundTrip(joinReq(v, grp, resp.MemberID)).(*kmsg.JoinGroupResponse)
		}
		if resp.ErrorCode != 0 || resp.MemberID == "" || resp.Generation != 1 || resp.LeaderID != resp.MemberID {
			t.Fatalf("v%d join: %+v", v, resp)
		}
		if resp.Protocol == nil || *resp.Protocol != "range" {
			t.Fatalf("v%d join: protocol %v, want range", v, resp.Protocol)
		}
		if v >= 7 && (resp.ProtocolType == nil || *resp.ProtocolType != "consumer") {
			t.Fatalf("v%d join: protocol type %v, want consumer", v, resp.ProtocolType)
		}
		if len(resp.Members) != 1 {
			t.Fatalf("v%d join: leader got %d members, want 1", v, len(resp.Members))
		}
		member, gen := resp.MemberID, resp.Generation
		memberCommit := func(g int32) int16 {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.SetVersion(9)
			req.Group, req.MemberID, req.Generation = grp, member, g
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = "jv-topic"
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Offset = 1
			rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
			req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
			return rc.mustRoundTrip(req).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
		}
		if v == 9 {
			// Awaiting the leader's assignment, a member's commit is
			// REBALANCE_IN_PROGRESS, as Kafka.
			if c := memberCommit(gen); c != kerr.RebalanceInProgress.Code {
				t.Fatalf("commit before the sync: error %d, want REBALANCE_IN_PROGRESS", c)
			}
		}

		sv := min(v, 5)
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.SetVersion(sv)
		sync.Group, sync.MemberID, sync.Generation = grp, member, gen
		if sv >= 5 {
			sync.ProtocolType, sync.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
		}
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = member, []byte("assignment")
		sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{a}
		sresp := rc.mustRoundTrip(sync).(*kmsg.SyncGroupResponse)
		if sresp.ErrorCode != 0 || string(sresp.MemberAssignment) != "assignment" {
			t.Fatalf("v%d sync: error %d assignment %q", v, sresp.ErrorCode, sresp.MemberAssignment)
		}

		hv := min(v, 4)
		hb := func(m string, g int32) int16 {
			req := kmsg.NewPtrHeartbeatRequest()
			req.SetVersion(hv)
			req.Group, req.MemberID, req.Generation = grp, m, g
			return rc.mustRoundTrip(req).(*kmsg.HeartbeatResponse).ErrorCode
		}
		if c := hb(member, gen); c != 0 {
			t.Fatalf("v%d heartbeat: error %d", v, c)
		}
		if c := hb(member, gen+1); c != kerr.IllegalGeneration.Code {
			t.Fatalf("v%d heartbeat with a wrong generation: error %d, want ILLEGAL_GENERATION", v, c)
		}
		if c := hb("nobody", gen); c != kerr.UnknownMemberID.Code {
			t.Fatalf("v%d heartbeat of an unknown member: error %d, want UNKNOWN_MEMBER_ID", v, c)
		}
		if v == 9 {
			if c := memberCommit(gen + 1); c != kerr.IllegalGeneration.Code {
				t.Fatalf("commit with a stale generation: error %d, want ILLEGAL_GENERATION", c)
			}
			if c := memberCommit(gen); c != 0 {
				t.Fatalf("member commit: error %d", c)
			}
		}
	}
	// A heartbeat for a group that does not exist.
	req := kmsg.NewPtrHeartbeatRequest()
	req.SetVersion(4)
	req.Group, req.MemberID, req.Generation = "no-such-group", "m", 1
	if c := rc.mustRoundTrip(req).(*kmsg.HeartbeatResponse).ErrorCode; c != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of an unknown group: error %d, want UNKNOWN_MEMBER_ID", c)
	}
	assertNoPanic(t, b)
}

// TestFindCoordinatorVersions: v0–v3 name this broker; v4 answers each
// batched key; a transaction key is COORDINATOR_NOT_AVAILABLE.
func TestFindCoordinatorVersions(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	waitCoordinator(t, b.Addr, "fc")
	rc := dial(t, b.Addr)
	host, portS, _ := cutHostPort(b.Addr)
	port, _ := strconv.Atoi(portS)
	for v := int16(0); v <= 3; v++ {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.SetVersion(v)
		req.CoordinatorKey = "fc"
		resp := rc.mustRoundTrip(req).(*kmsg.FindCoordinatorResponse)
		if resp.ErrorCode != 0 || resp.NodeID != 0 || resp.Host != host || resp.Port != int32(port) {
			t.Fatalf("v%d: %+v, want node 0 at %s", v, resp, b.Addr)
		}
	}
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.SetVersion(4)
	req.CoordinatorKeys = []string{"a", "b", "c"}
	resp := rc.mustRoundTrip(req).(*kmsg.FindCoordinatorResponse)
	if len(resp.Coordinators) != 3 {
		t.Fatalf("v4: %d coordinators, want 3", len(resp.Coordinators))
	}
	for i, c := range resp.Coordinators {
		if c.Key != req.CoordinatorKeys[i] || c.ErrorCode != 0 || c.NodeID != 0 || c.Host != host || c.Port != int32(port) {
			t.Fatalf("v4 key %d: %+v", i, c)
		}
	}
	req.CoordinatorType = 1
	resp = rc.mustRoundTrip(req).(*kmsg.FindCoordinatorResponse)
	if len(resp.Coordinators) != 3 || resp.Coordinators[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("v4 transaction keys: %+v, want COORDINATOR_NOT_AVAILABLE", resp.Coordinators)
	}
	req.CoordinatorType = 7
	resp = rc.mustRoundTrip(req).(*kmsg.FindCoordinatorResponse)
	if resp.Coordinators[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("v4 unknown key type: %+v, want INVALID_REQUEST", resp.Coordinators[0])
	}
}

func cutHostPort(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

// simpleCommit commits offsets without group management (OffsetCommit v2,
// generation -1), as kcat's and admin tools' commits are.
func simpleCommit(t *testing.T, rc *rawConn, grp, topic string, offs map[int32]int64) []int16 {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.SetVersion(2)
	req.Group, req.Generation, req.MemberID, req.RetentionTimeMillis = grp, -1, "", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < int32(len(offs)); p++ {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p, offs[p]
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	resp := rc.mustRoundTrip(req).(*kmsg.OffsetCommitResponse)
	var codes []int16
	for _, p := range resp.Topics[0].Partitions {
		codes = append(codes, p.ErrorCode)
	}
	return codes
}

// TestDeleteGroupsAndOffsets: DeleteGroups on a group with a member is
// NON_EMPTY_GROUP, on an empty one removes it and its offsets; OffsetDelete
// refuses a subscribed topic and deletes offsets of an empty group; simple
// commits with bad input get their per-partition codes.
func TestDeleteGroupsAndOffsets(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	const topic = "dg-topic"
	createTopic(t, b.Addr, topic, 2, nil)
	produceN(t, b.Addr, topic, 10)
	adm := newAdmin(t, b.Addr)
	waitCoordinator(t, b.Addr, "dg-live")

	// A live member subscribed to the topic.
	cl := newClient(t, b.Addr, kgo.ConsumerGroup("dg-live"), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxFor(t, 20*time.Second)
	for got := 0; got < 10 && ctx.Err() == nil; {
		got += cl.PollFetches(ctx).NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	dr, err := adm.DeleteGroups(ctxFor(t, 10*time.Second), "dg-live")
	if err != nil {
		t.Fatal(err)
	}
	if !isErr(dr["dg-live"].Err, kerr.NonEmptyGroup) {
		t.Fatalf("DeleteGroups of a live group: %v, want NON_EMPTY_GROUP", dr["dg-live"].Err)
	}
	od, err := adm.DeleteOffsets(ctxFor(t, 10*time.Second), "dg-live", kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if e := od[topic][0]; !isErr(e, kerr.GroupSubscribedToTopic) {
		t.Fatalf("OffsetDelete of a subscribed topic: %v, want GROUP_SUBSCRIBED_TO_TOPIC", e)
	}

	// Simple commits: an empty group may commit without a generation.
	rc := dial(t, b.Addr)
	codes := simpleCommit(t, rc, "dg-simple", topic, map[int32]int64{0: 3, 1: 4})
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("simple commit: codes %v", codes)
	}
	if codes := simpleCommit(t, rc, "dg-simple", "no-such-topic", map[int32]int64{0: 1}); codes[0] != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("commit to an unknown topic: code %d, want UNKNOWN_TOPIC_OR_PARTITION", codes[0])
	}
	// A simple commit to a group with members is UNKNOWN_MEMBER_ID.
	if codes := simpleCommit(t, rc, "dg-live", topic, map[int32]int64{0: 1, 1: 1}); codes[0] != kerr.UnknownMemberID.Code {
		t.Fatalf("simple commit to a live group: code %d, want UNKNOWN_MEMBER_ID", codes[0])
	}
	// Metadata larger than offset.metadata.max.bytes.
	big := kmsg.NewPtrOffsetCommitRequest()
	big.SetVersion(8)
	big.Group, big.Generation = "dg-simple", -1
	bt := kmsg.NewOffsetCommitRequestTopic()
	bt.Topic = topic
	bp := kmsg.NewOffsetCommitRequestTopicPartition()
	bp.Partition, bp.Offset, bp.Metadata = 0, 5, kmsg.StringPtr(string(make([]byte, 5000)))
	bt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{bp}
	big.Topics = []kmsg.OffsetCommitRequestTopic{bt}
	if c := rc.mustRoundTrip(big).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; c != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("oversized metadata: code %d, want OFFSET_METADATA_TOO_LARGE", c)
	}
	// A stale generation of a live group.
	stale := kmsg.NewPtrOffsetCommitRequest()
	stale.SetVersion(8)
	stale.Group, stale.Generation, stale.MemberID = "dg-live", 99, "someone"
	stale.Topics = []kmsg.OffsetCommitRequestTopic{bt}
	bt.Partitions[0].Metadata = nil
	if c := rc.mustRoundTrip(stale).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; c != kerr.UnknownMemberID.Code {
		t.Fatalf("commit by an unknown member: code %d, want UNKNOWN_MEMBER_ID", c)
	}

	// OffsetDelete on the empty group deletes one partition's offset.
	od, err = adm.DeleteOffsets(ctxFor(t, 10*time.Second), "dg-simple", kadm.TopicsSet{topic: {0: {}}})
	if err != nil || od[topic][0] != nil {
		t.Fatalf("OffsetDelete: %v %v", err, od)
	}
	offs := committed(t, b.Addr, "dg-simple")
	if o, ok := offs.Lookup(topic, 0); ok && o.At >= 0 {
		t.Fatalf("partition 0 still committed at %d after OffsetDelete", o.At)
	}
	if o, ok := offs.Lookup(topic, 1); !ok || o.At != 4 {
		t.Fatalf("partition 1: %+v, want 4", o)
	}

	// Once the live member leaves, the group is empty and can go.
	cl.Close()
	testbroker.Eventually(t, 10*time.Second, "dg-live deleted", func() bool {
		dr, err := adm.DeleteGroups(ctxFor(t, 5*time.Second), "dg-live")
		return err == nil && dr["dg-live"].Err == nil
	})
	if offs := committed(t, b.Addr, "dg-live"); len(offs) != 0 {
		t.Fatalf("offsets after DeleteGroups: %+v", offs)
	}
	dr, err = adm.DeleteGroups(ctxFor(t, 10*time.Second), "dg-live")
	if err != nil || !isErr(dr["dg-live"].Err, kerr.GroupIDNotFound) {
		t.Fatalf("DeleteGroups of a deleted group: %v %v, want GROUP_ID_NOT_FOUND", err, dr["dg-live"].Err)
	}
	// The deletion is durable.
	b.Stop()
	b.Restart(t)
	if offs := committed(t, b.Addr, "dg-live"); len(offs) != 0 {
		t.Fatalf("offsets after DeleteGroups and a restart: %+v", offs)
	}
	lg, err := newAdmin(t, b.Addr).ListGroups(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lg["dg-live"]; ok {
		t.Fatalf("deleted group listed after a restart: %+v", lg)
	}
	if _, ok := lg["dg-simple"]; !ok {
		t.Fatalf("group with only commits not listed after a restart: %+v", lg)
	}
}

func isErr(err error, want *kerr.Error) bool {
	e, ok := err.(*kerr.Error)
	return ok && e == want
}

// TestCoordinatorLoadingNeverNotCoordinator writes many commits, restarts,
// and queries at once: every answer is COORDINATOR_LOAD_IN_PROGRESS or the
// right offsets, never NOT_COORDINATOR.
func TestCoordinatorLoadingNeverNotCoordinator(t *testing.T) {
	b := testbroker.Start(t, "offsets.topic.num.partitions=1", groupOverrides[0], groupOverrides[2])
	const topic, parts = "ld-topic", 50
	createTopic(t, b.Addr, topic, parts, nil)
	waitCoordinator(t, b.Addr, "ld")
	rc := dial(t, b.Addr)
	want := map[int32]int64{}
	for round := range 400 {
		for p := int32(0); p < parts; p++ {
			want[p] = int64(round*parts) + int64(p)
		}
		simpleCommit(t, rc, "ld", topic, want)
	}
	b.Stop()
	b.Restart(t)
	rc = dial(t, b.Addr)
	req := kmsg.NewPtrOffsetFetchRequest()
	req.SetVersion(7)
	req.Group = "ld"
	loading := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := rc.mustRoundTrip(req).(*kmsg.OffsetFetchResponse)
		if resp.ErrorCode == kerr.CoordinatorLoadInProgress.Code {
			loading++
			if time.Now().After(deadline) {
				t.Fatal("still loading after 20 s")
			}
			continue
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("OffsetFetch while loading: error %d, want 0 or COORDINATOR_LOAD_IN_PROGRESS", resp.ErrorCode)
		}
		n := 0
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				if rt.Topic != topic || p.Offset != want[p.Partition] {
					t.Fatalf("after load: %s/%d at %d, want %d", rt.Topic, p.Partition, p.Offset, want[p.Partition])
				}
				n++
			}
		}
		if n != parts {
			t.Fatalf("after load: %d partitions, want %d", n, parts)
		}
		break
	}
	t.Logf("%d COORDINATOR_LOAD_IN_PROGRESS answers before the offsets (%d commit records loaded)", loading, 400*parts)
}

// TestGroupMemberDiesOtherTakesOver: two consumers share a 4-partition
// topic; one stops without leaving (a static member closing) and the
// survivor owns all partitions within the session time-out plus margin.
func TestGroupMemberDiesOtherTakesOver(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	const topic, grp = "md-topic", "md-group"
	createTopic(t, b.Addr, topic, 4, nil)
	waitCoordinator(t, b.Addr, grp)

	var mu sync.Mutex
	owned := map[string]map[int32]bool{}
	track := func(name string) []kgo.Opt {
		set := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
			return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				if owned[name] == nil {
					owned[name] = map[int32]bool{}
				}
				for _, p := range m[topic] {
					if add {
						owned[name][p] = true
					} else {
						delete(owned[name], p)
					}
				}
			}
		}
		return []kgo.Opt{kgo.ConsumerGroup(grp), kgo.ConsumeTopics(topic), kgo.Balancers(kgo.RangeBalancer()),
			kgo.SessionTimeout(4 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond), kgo.RebalanceTimeout(10 * time.Second),
			kgo.OnPartitionsAssigned(set(true)), kgo.OnPartitionsRevoked(set(false)), kgo.OnPartitionsLost(set(false))}
	}
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(owned[name])
	}
	poll := func(cl *kgo.Client, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			cl.PollFetches(ctx)
			cancel()
		}
	}
	a := newClient(t, b.Addr, track("a")...)
	victim, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr), kgo.InstanceID("victim")}, track("v")...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopA, stopV := make(chan struct{}), make(chan struct{})
	doneA := make(chan struct{})
	go func() { poll(a, stopA); close(doneA) }()
	go poll(victim, stopV)
	t.Cleanup(func() { close(stopA); <-doneA })
	testbroker.Eventually(t, 30*time.Second, "both members own 2 partitions", func() bool {
		return count("a") == 2 && count("v") == 2
	})

	close(stopV)
	victim.Close() // a static member does not leave: its session must expire
	start := time.Now()
	testbroker.Eventually(t, 4*time.Second+15*time.Second, "the survivor owns all 4 partitions", func() bool {
		return count("a") == 4
	})
	t.Logf("survivor owned every partition %v after the other member stopped (session time-out 4 s)", time.Since(start).Round(100*time.Millisecond))
	if took := time.Since(start); took < 3*time.Second {
		t.Fatalf("takeover after %v: the static member seems to have left instead of timing out", took)
	}
}

// TestGroupAPIVersionMatrix runs every advertised version of OffsetCommit,
// OffsetFetch, ListGroups, DescribeGroups, LeaveGroup and DeleteGroups
// with raw requests and checks the version-tied parts of the answers.
func TestGroupAPIVersionMatrix(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	want := map[int16][2]int16{8: {0, 9}, 9: {0, 9}, 10: {0, 4}, 11: {0, 9}, 12: {0, 4}, 13: {0, 5}, 14: {0, 5}, 15: {0, 5}, 16: {0, 5}, 42: {0, 2}, 47: {0, 0}}
	got := apiVersions(t, b.Addr)
	for k, r := range want {
		if got[k] != r {
			t.Errorf("ApiVersions: key %d advertised %v, want %v", k, got[k], r)
		}
	}
	const topic = "vm-topic"
	createTopic(t, b.Addr, topic, 1, nil)
	waitCoordinator(t, b.Addr, "vm-0")
	rc := dial(t, b.Addr)

	// OffsetCommit v0–v9 (simple commits), one group per version.
	for v := int16(0); v <= 9; v++ {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.SetVersion(v)
		req.Group, req.Generation, req.RetentionTimeMillis = fmt.Sprintf("vm-%d", v), -1, -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata, rp.LeaderEpoch = 0, int64(10+v), kmsg.StringPtr(fmt.Sprintf("meta-%d", v)), 3
		rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
		req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
		resp := rc.mustRoundTrip(req).(*kmsg.OffsetCommitResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("OffsetCommit v%d: %+v", v, resp.Topics)
		}
	}
	// OffsetFetch v0–v7 by partition, v2–v7 also for all topics (null).
	for v := int16(0); v <= 7; v++ {
		for _, all := range []bool{false, true} {
			if all && v < 2 {
				continue
			}
			req := kmsg.NewPtrOffsetFetchRequest()
			req.SetVersion(v)
			req.Group = fmt.Sprintf("vm-%d", v)
			if !all {
				rt := kmsg.NewOffsetFetchRequestTopic()
				rt.Topic, rt.Partitions = topic, []int32{0}
				req.Topics = []kmsg.OffsetFetchRequestTopic{rt}
			}
			resp := rc.mustRoundTrip(req).(*kmsg.OffsetFetchResponse)
			if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("OffsetFetch v%d all=%v: %+v", v, all, resp)
			}
			p := resp.Topics[0].Partitions[0]
			if p.Offset != int64(10+v) || p.Metadata == nil || *p.Metadata != fmt.Sprintf("meta-%d", v) || p.ErrorCode != 0 {
				t.Fatalf("OffsetFetch v%d: partition %+v, want offset %d", v, p, 10+v)
			}
			if v >= 6 && p.LeaderEpoch != 3 {
				t.Fatalf("OffsetFetch v%d: leader epoch %d, want 3 (committed with v%d)", v, p.LeaderEpoch, v)
			}
		}
	}
	// OffsetFetch v8–v9: several groups at once, one unknown.
	for v := int16(8); v <= 9; v++ {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.SetVersion(v)
		for _, g := range []string{"vm-8", "vm-9", "vm-none"} {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			if g != "vm-9" {
				rt := kmsg.NewOffsetFetchRequestGroupTopic()
				rt.Topic, rt.Partitions = topic, []int32{0}
				rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{rt}
			}
			req.Groups = append(req.Groups, rg)
		}
		resp := rc.mustRoundTrip(req).(*kmsg.OffsetFetchResponse)
		if len(resp.Groups) != 3 {
			t.Fatalf("OffsetFetch v%d: %d groups, want 3", v, len(resp.Groups))
		}
		for i, wantOff := range []int64{18, 19, -1} {
			g := resp.Groups[i]
			if g.ErrorCode != 0 || len(g.Topics) != 1 || len(g.Topics[0].Partitions) != 1 || g.Topics[0].Partitions[0].Offset != wantOff {
				t.Fatalf("OffsetFetch v%d group %s: %+v, want offset %d", v, g.Group, g, wantOff)
			}
		}
	}
	// ListGroups v0–v5; v4+ state filter, v5 type filter.
	for v := int16(0); v <= 5; v++ {
		req := kmsg.NewPtrListGroupsRequest()
		req.SetVersion(v)
		resp := rc.mustRoundTrip(req).(*kmsg.ListGroupsResponse)
		if resp.ErrorCode != 0 || len(resp.Groups) != 10 {
			t.Fatalf("ListGroups v%d: error %d, %d groups, want 10", v, resp.ErrorCode, len(resp.Groups))
		}
		if v >= 4 && resp.Groups[0].GroupState != "Empty" {
			t.Fatalf("ListGroups v%d: state %q, want Empty", v, resp.Groups[0].GroupState)
		}
		if v >= 4 {
			req.StatesFilter = []string{"stable"}
			if n := len(rc.mustRoundTrip(req).(*kmsg.ListGroupsResponse).Groups); n != 0 {
				t.Fatalf("ListGroups v%d filtered to Stable: %d groups, want 0", v, n)
			}
			req.StatesFilter = []string{"empty"}
			if n := len(rc.mustRoundTrip(req).(*kmsg.ListGroupsResponse).Groups); n != 10 {
				t.Fatalf("ListGroups v%d filtered to Empty: %d groups, want 10", v, n)
			}
		}
		if v >= 5 {
			req.StatesFilter, req.TypesFilter = nil, []string{"consumer"}
			if n := len(rc.mustRoundTrip(req).(*kmsg.ListGroupsResponse).Groups); n != 0 {
				t.Fatalf("ListGroups v5 filtered to type consumer: %d groups, want 0", n)
			}
		}
	}
	// DescribeGroups v0–v5: an offsets-only group is Empty; unknown is Dead.
	for v := int16(0); v <= 5; v++ {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.SetVersion(v)
		req.Groups = []string{"vm-1", "vm-unknown"}
		resp := rc.mustRoundTrip(req).(*kmsg.DescribeGroupsResponse)
		if len(resp.Groups) != 2 || resp.Groups[0].State != "Empty" || resp.Groups[1].State != "Dead" || resp.Groups[0].ErrorCode != 0 || resp.Groups[1].ErrorCode != 0 {
			t.Fatalf("DescribeGroups v%d: %+v", v, resp.Groups)
		}
	}
	// LeaveGroup v0–v5 of a member that joined with JoinGroup v3.
	for v := int16(0); v <= 5; v++ {
		grp := fmt.Sprintf("vm-leave-%d", v)
		j := rc.mustRoundTrip(joinReq(3, grp, "")).(*kmsg.JoinGroupResponse)
		if j.ErrorCode != 0 {
			t.Fatalf("join for LeaveGroup v%d: error %d", v, j.ErrorCode)
		}
		req := kmsg.NewPtrLeaveGroupRequest()
		req.SetVersion(v)
		req.Group = grp
		if v < 3 {
			req.MemberID = j.MemberID
		} else {
			for _, id := range []string{j.MemberID, "nobody"} {
				m := kmsg.NewLeaveGroupRequestMember()
				m.MemberID = id
				req.Members = append(req.Members, m)
			}
		}
		resp := rc.mustRoundTrip(req).(*kmsg.LeaveGroupResponse)
		if resp.ErrorCode != 0 {
			t.Fatalf("LeaveGroup v%d: error %d", v, resp.ErrorCode)
		}
		if v >= 3 && (len(resp.Members) != 2 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code) {
			t.Fatalf("LeaveGroup v%d: members %+v, want [ok, UNKNOWN_MEMBER_ID]", v, resp.Members)
		}
		if v < 3 {
			req.MemberID = "nobody"
			if c := rc.mustRoundTrip(req).(*kmsg.LeaveGroupResponse).ErrorCode; c != kerr.UnknownMemberID.Code {
				t.Fatalf("LeaveGroup v%d of an unknown member: error %d, want UNKNOWN_MEMBER_ID", v, c)
			}
		}
	}
	// DeleteGroups v0–v2.
	for v := int16(0); v <= 2; v++ {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.SetVersion(v)
		req.Groups = []string{fmt.Sprintf("vm-%d", v), "vm-unknown"}
		resp := rc.mustRoundTrip(req).(*kmsg.DeleteGroupsResponse)
		if len(resp.Groups) != 2 || resp.Groups[0].ErrorCode != 0 || resp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
			t.Fatalf("DeleteGroups v%d: %+v", v, resp.Groups)
		}
	}
}

// TestOffsetsTopicIsInternal: __consumer_offsets exists at start with the
// configured partition count, compacted, internal in Metadata; clients can
// neither delete it nor create it with other settings.
func TestOffsetsTopicIsInternal(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	waitCoordinator(t, b.Addr, "oi")
	adm := newAdmin(t, b.Addr)
	md, err := adm.Metadata(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	td, ok := md.Topics["__consumer_offsets"]
	if !ok || !td.IsInternal || len(td.Partitions) != 5 {
		t.Fatalf("__consumer_offsets in Metadata: found=%v internal=%v partitions=%d, want internal with 5", ok, td.IsInternal, len(td.Partitions))
	}
	rcs, err := adm.DescribeTopicConfigs(ctxFor(t, 10*time.Second), "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("__consumer_offsets", nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" || c.Key == "segment.bytes" {
			seen++
		}
		if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != "compact") {
			t.Fatalf("cleanup.policy %v, want compact", c.Value)
		}
		if c.Key == "segment.bytes" && (c.Value == nil || *c.Value != "104857600") {
			t.Fatalf("segment.bytes %v, want 104857600", c.Value)
		}
	}
	if seen != 2 {
		t.Fatalf("DescribeConfigs of __consumer_offsets lacks cleanup.policy or segment.bytes: %+v", rc.Configs)
	}
	dr, err := adm.DeleteTopics(ctxFor(t, 10*time.Second), "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	if !isErr(dr["__consumer_offsets"].Err, kerr.InvalidRequest) {
		t.Fatalf("deleting __consumer_offsets: %v, want INVALID_REQUEST", dr["__consumer_offsets"].Err)
	}
	cr, err := adm.CreateTopic(ctxFor(t, 10*time.Second), 3, 1, nil, "__consumer_offsets")
	if err != nil && !isErr(err, kerr.TopicAlreadyExists) || err == nil && !isErr(cr.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("creating __consumer_offsets: %v %v, want TOPIC_ALREADY_EXISTS", err, cr.Err)
	}
}

// TestJoinGroupRefusals: a session time-out outside the configured bounds
// is INVALID_SESSION_TIMEOUT, an empty protocol list
// INCONSISTENT_GROUP_PROTOCOL, an empty group id INVALID_GROUP_ID; none of
// them leaves a group behind in ListGroups.
func TestJoinGroupRefusals(t *testing.T) {
	b := testbroker.Start(t, "group.initial.rebalance.delay.ms=0", "offsets.topic.num.partitions=5", "group.max.session.timeout.ms=20000")
	waitCoordinator(t, b.Addr, "jr")
	rc := dial(t, b.Addr)
	for _, tc := range []struct {
		name    string
		mod     func(*kmsg.JoinGroupRequest)
		wantErr *kerr.Error
	}{
		{"short session", func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = 100 }, kerr.InvalidSessionTimeout},
		{"long session", func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = 30000 }, kerr.InvalidSessionTimeout},
		{"no protocols", func(r *kmsg.JoinGroupRequest) { r.Protocols = nil }, kerr.InconsistentGroupProtocol},
		{"empty group id", func(r *kmsg.JoinGroupRequest) { r.Group = "" }, kerr.InvalidGroupID},
	} {
		req := joinReq(5, "jr", "")
		tc.mod(req)
		resp := rc.mustRoundTrip(req).(*kmsg.JoinGroupResponse)
		if resp.ErrorCode != tc.wantErr.Code || resp.Generation != -1 {
			t.Errorf("%s: error %d generation %d, want %s and -1", tc.name, resp.ErrorCode, resp.Generation, tc.wantErr.Message)
		}
	}
	req := kmsg.NewPtrListGroupsRequest()
	req.SetVersion(4)
	if gs := rc.mustRoundTrip(req).(*kmsg.ListGroupsResponse).Groups; len(gs) != 0 {
		t.Fatalf("refused joins left groups behind: %+v", gs)
	}
}

// TestShutdownAnswersParkedJoin: a JoinGroup parked in a rebalance (the
// other member has not rejoined) is answered NOT_COORDINATOR when the
// broker stops, and the stop is prompt.
func TestShutdownAnswersParkedJoin(t *testing.T) {
	b := testbroker.Start(t, groupOverrides...)
	waitCoordinator(t, b.Addr, "sd")
	a := dial(t, b.Addr)
	ja := a.mustRoundTrip(joinReq(3, "sd", "")).(*kmsg.JoinGroupResponse)
	if ja.ErrorCode != 0 {
		t.Fatalf("first join: error %d", ja.ErrorCode)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.SetVersion(3)
	sync.Group, sync.MemberID, sync.Generation = "sd", ja.MemberID, ja.Generation
	if c := a.mustRoundTrip(sync).(*kmsg.SyncGroupResponse).ErrorCode; c != 0 {
		t.Fatalf("sync: error %d", c)
	}
	// A second member's join waits for the first to rejoin (10 s).
	c := dial(t, b.Addr)
	req := joinReq(3, "sd", "")
	corr := c.nextCorr()
	if err := c.write(frame(req, corr)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.readFrame(300 * time.Millisecond); err == nil {
		t.Fatal("the second join was answered before the first member rejoined")
	}
	start := time.Now()
	stopped := make(chan bool, 1)
	go func() { _, clean := b.Stop(); stopped <- clean }()
	got, body, err := c.readFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("parked join not answered at shutdown: %v", err)
	}
	resp, err := decode(req, body)
	if err != nil || got != corr {
		t.Fatalf("parked join answer: corr %d (want %d), %v", got, corr, err)
	}
	if code := resp.(*kmsg.JoinGroupResponse).ErrorCode; code != kerr.NotCoordinator.Code {
		t.Fatalf("parked join answered with error %d, want NOT_COORDINATOR", code)
	}
	if clean := <-stopped; !clean {
		t.Fatal("the broker did not stop cleanly")
	}
	took := time.Since(start)
	if took > 8*time.Second {
		t.Fatalf("stopping with a parked join took %v", took)
	}
	t.Logf("stopped in %v with a parked join answered", took.Round(time.Millisecond))
}
