package broker

// OffsetDelete (key 47), v0.
//
// Deletes committed offsets of a group (tombstones appended to its
// __consumer_offsets partition). As Kafka: an unknown (or Dead) group is
// GROUP_ID_NOT_FOUND; an Empty group may delete any partition; a group
// with members using the "consumer" protocol type may delete partitions of
// topics none of its members subscribes to (GROUP_SUBSCRIBED_TO_TOPIC for
// the others, read from each member's ConsumerMemberMetadata); any other
// group with members is NON_EMPTY_GROUP. A partition of an unknown topic
// is UNKNOWN_TOPIC_OR_PARTITION; deleting an offset that was never
// committed succeeds.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(47, 0, 0, handleOffsetDelete) }

func handleOffsetDelete(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	resp.ErrorCode = b.offsetDelete(ctx, req, codes)
	if resp.ErrorCode != 0 {
		return response{msg: resp}
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return response{msg: resp}
}

func (b *Broker) offsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest, codes [][]int16) int16 {
	if req.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	asked := make(map[string]int32, len(req.Topics))
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			noteAsked(asked, t.Topic, p.Partition)
		}
		noteAsked(asked, t.Topic, -1)
	}
	known, err := b.partitionCounts(ctx, asked)
	if err != nil {
		return kerr.CoordinatorNotAvailable.Code
	}
	s, code := b.groups.lock(req.Group)
	if code != 0 {
		return code
	}
	defer s.mu.Unlock()
	now := time.Now()
	e := s.entry(req.Group, false, now)
	if e == nil || e.g.State() == group.Dead {
		return kerr.GroupIDNotFound.Code
	}
	var subscribed map[string]bool
	if e.g.State() != group.Empty {
		d := e.g.Describe()
		if d.ProtocolType != "consumer" {
			return kerr.NonEmptyGroup.Code
		}
		subscribed = subscribedTopics(d)
	}
	// As Kafka's isSubscribedToTopic: when the subscriptions cannot be
	// known (no protocol chosen yet during the first rebalance, or a
	// member's metadata that does not parse), every topic counts as
	// subscribed, so offsets in use are never deleted.
	unknownSubs := subscribed != nil && subscribed[unknownSubscription]
	var kvs [][2][]byte
	var keys []group.OffsetKey
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			switch {
			case known[t.Topic] < 0 || p.Partition < 0 || p.Partition >= known[t.Topic]:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
				continue
			case unknownSubs || subscribed[t.Topic]:
				codes[i][j] = kerr.GroupSubscribedToTopic.Code
				continue
			}
			k := group.OffsetKey{Group: req.Group, Topic: t.Topic, Partition: p.Partition}
			if _, ok := s.offsets.Get(k); !ok {
				continue
			}
			key, val := group.OffsetCommitRecord(k, nil)
			kvs = append(kvs, [2][]byte{key, val})
			keys = append(keys, k)
		}
	}
	if err := s.appendRecords(now, kvs); err != nil {
		b.log.Error("writing offset deletion tombstones failed", "group", req.Group, "err", err)
		return appendErrCode(err, false)
	}
	for _, k := range keys {
		s.offsets.Delete(k)
	}
	s.c.touched(keys, false)
	return 0
}

// unknownSubscription marks, in subscribedTopics' answer, that some
// member's subscription could not be read. It cannot be a topic name
// (topic names are [a-zA-Z0-9._-]).
const unknownSubscription = "\x00unknown"

// subscribedTopics reads the topics the members subscribe to from their
// consumer-protocol metadata (Kafka's GroupMetadata.subscribedTopics).
// No protocol chosen yet, or metadata that does not parse, adds
// unknownSubscription.
func subscribedTopics(d group.Description) map[string]bool {
	out := map[string]bool{}
	if d.Protocol == "" {
		out[unknownSubscription] = true
	}
	for _, m := range d.Members {
		var meta kmsg.ConsumerMemberMetadata
		if len(m.Metadata) == 0 || meta.ReadFrom(m.Metadata) != nil {
			out[unknownSubscription] = true
			continue
		}
		for _, t := range meta.Topics {
			out[t] = true
		}
	}
	return out
}
