package broker

// OffsetCommit (key 8), v0–v9.
//
// Checks in Kafka's order (GroupCoordinator.handleCommitOffsets): an empty
// group id is INVALID_GROUP_ID; a shard still loading
// COORDINATOR_LOAD_IN_PROGRESS; another broker's group NOT_COORDINATOR. A
// commit without a generation (v0, or generation -1 with an empty member id
// and no instance id) is a simple commit, allowed only while the group has
// no members (UNKNOWN_MEMBER_ID otherwise) and creating the group when it
// is unknown; a commit naming a generation of an unknown group is
// ILLEGAL_GENERATION. A member's commit is checked as Kafka does:
// FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, and
// REBALANCE_IN_PROGRESS while the group awaits its leader's assignment;
// a valid commit counts as a heartbeat. Per partition: an unknown topic or
// partition is UNKNOWN_TOPIC_OR_PARTITION, metadata longer than
// offset.metadata.max.bytes OFFSET_METADATA_TOO_LARGE; the rest is
// appended as one batch of OffsetCommit records to the group's
// __consumer_offsets partition and acknowledged only after that. v2–v4
// retention times set the offset's expire timestamp (-1 = the broker's
// offsets.retention.minutes).

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(8, 0, 9, handleOffsetCommit) }

func handleOffsetCommit(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	all := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				codes[i][j] = code
			}
		}
	}
	b.offsetCommit(ctx, req, codes, all)
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return response{msg: resp}
}

func (b *Broker) offsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest, codes [][]int16, all func(int16)) {
	gen, member, instance := req.Generation, req.MemberID, derefStr(req.InstanceID)
	if req.Version == 0 {
		gen, member, instance = -1, "", ""
	}
	if req.Group == "" {
		all(kerr.InvalidGroupID.Code)
		return
	}
	// Topic existence is checked before taking the shard's lock.
	known, err := b.partitionCounts(ctx, askedPartitions(req))
	if err != nil {
		all(kerr.CoordinatorNotAvailable.Code)
		return
	}
	s, code := b.groups.lock(req.Group)
	if code != 0 {
		all(code)
		return
	}
	defer s.mu.Unlock()
	now := time.Now()
	simple := gen < 0 && member == "" && instance == ""
	e := s.entry(req.Group, false, now)
	switch {
	case e == nil && gen >= 0:
		// As Kafka: a generation for a group this coordinator does not
		// know is from an older generation.
		all(kerr.IllegalGeneration.Code)
		return
	case e == nil:
		// As Kafka, the group is made (Empty) first; a member id or an
		// instance id with generation -1 then gets UNKNOWN_MEMBER_ID.
		e = s.entry(req.Group, true, now)
	}
	if code := commitCheck(e.g, simple, gen, member, instance); code != 0 {
		all(code)
		return
	}
	maxMeta := int(b.Config.OffsetMetadataMaxBytes)
	type pending struct {
		i, j int
		k    group.OffsetKey
		o    group.Offset
	}
	var todo []pending
	var kvs [][2][]byte
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			meta := derefStr(p.Metadata)
			switch {
			case known[t.Topic] < 0 || p.Partition < 0 || p.Partition >= known[t.Topic]:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
				continue
			case len(meta) > maxMeta:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			o := group.Offset{Offset: p.Offset, LeaderEpoch: -1, Metadata: meta, CommitTimestamp: now.UnixMilli(), ExpireTimestamp: -1}
			if req.Version >= 6 {
				o.LeaderEpoch = p.LeaderEpoch
			}
			if req.Version >= 2 && req.Version <= 4 && req.RetentionTimeMillis != -1 {
				o.ExpireTimestamp = o.CommitTimestamp + req.RetentionTimeMillis
			}
			k := group.OffsetKey{Group: req.Group, Topic: t.Topic, Partition: p.Partition}
			key, val := group.OffsetCommitRecord(k, &o)
			kvs = append(kvs, [2][]byte{key, val})
			todo = append(todo, pending{i, j, k, o})
		}
	}
	if err := s.appendRecords(now, kvs); err != nil {
		b.log.Error("appending offset commits failed", "group", req.Group, "partition", s.idx, "err", err)
		code := appendErrCode(err, true)
		for _, p := range todo {
			codes[p.i][p.j] = code
		}
		return
	}
	keys := make([]group.OffsetKey, 0, len(todo))
	for _, p := range todo {
		s.offsets.Commit(p.k, p.o)
		keys = append(keys, p.k)
	}
	s.c.touched(keys, false)
	if !simple {
		// A member's commit proves it is alive, as a heartbeat does.
		e.g.Heartbeat(now, group.Heartbeat{MemberID: member, InstanceID: instance, Generation: gen})
		s.arm(e)
	}
}

// askedPartitions maps each topic of a commit to the highest partition
// index it names.
func askedPartitions(req *kmsg.OffsetCommitRequest) map[string]int32 {
	out := make(map[string]int32, len(req.Topics))
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			noteAsked(out, t.Topic, p.Partition)
		}
		noteAsked(out, t.Topic, -1)
	}
	return out
}

// noteAsked records that a request names partition p of topic (-1: the
// topic, no partition).
func noteAsked(asked map[string]int32, topic string, p int32) {
	if hi, ok := asked[topic]; !ok || p > hi {
		asked[topic] = p
	}
}

// partitionCounts answers, for each topic of asked (topic -> highest
// partition index a request names), how many partitions it has: -1 for a
// topic that does not exist. When this broker hosts partitions 0..n-1 of a
// topic and the request names none above n-1, n is answer enough (every
// index asked exists); otherwise one metadata read serves the request. The
// local partition map alone cannot give the count: another broker may
// host the partitions in between.
func (b *Broker) partitionCounts(ctx context.Context, asked map[string]int32) (map[string]int32, error) {
	out := make(map[string]int32, len(asked))
	missing := false
	for n, hi := range asked {
		c := int32(0)
		for b.partitionFor(n, c) != nil {
			c++
		}
		if c == 0 || hi >= c {
			out[n] = -1
			missing = true
			continue
		}
		out[n] = c
	}
	if !missing {
		return out, nil
	}
	ts, err := b.topics(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if c, want := out[t.Name]; want && c < 0 && !t.Deleting {
			out[t.Name] = int32(len(t.Partitions))
		}
	}
	return out, nil
}

// commitCheck is Kafka's validateOffsetCommit plus its
// CompletingRebalance rule.
func commitCheck(g *group.Group, simple bool, gen int32, member, instance string) int16 {
	if g.State() == group.Dead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if simple {
		// Only an Empty group takes commits from outside (Kafka checks the
		// state alone: members still pending after MEMBER_ID_REQUIRED do not
		// block an operator's offset reset).
		if g.State() != group.Empty {
			return kerr.UnknownMemberID.Code
		}
		return 0
	}
	d := g.Describe()
	found := false
	for _, m := range d.Members {
		if instance != "" && m.InstanceID == instance && m.MemberID != member {
			return kerr.FencedInstanceID.Code
		}
		found = found || m.MemberID == member
	}
	switch {
	case !found:
		return kerr.UnknownMemberID.Code
	case gen != d.Generation:
		return kerr.IllegalGeneration.Code
	case d.State == group.CompletingRebalance:
		return kerr.RebalanceInProgress.Code
	}
	return 0
}
