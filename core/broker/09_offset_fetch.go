package broker

// OffsetFetch (key 9), v0–v9.
//
// Returns a group's committed offsets: the requested partitions (offset -1
// and empty metadata for a partition with none, and for an unknown group),
// or with a null topic list (v2+) every committed partition. v8+ asks for
// several groups at once, each with its own error. A group-level error
// (INVALID_GROUP_ID, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR) is
// given per partition for v0–v1, as the top-level error for v2–v7 and per
// group for v8+, as Kafka does. RequireStable (v7+) needs no wait: there
// are no pending transactional commits. v9's member id and epoch belong to
// KIP-848 groups and are not checked for classic groups, as Kafka.

import (
	"context"
	"sort"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(9, 0, 9, handleOffsetFetch) }

// fetchedPartition is one partition of an OffsetFetch answer.
type fetchedPartition struct {
	partition int32
	o         group.Offset
	found     bool
}

type fetchedTopic struct {
	topic      string
	partitions []fetchedPartition
}

func handleOffsetFetch(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var want []kmsg.OffsetFetchRequestTopic
			if rg.Topics != nil {
				want = []kmsg.OffsetFetchRequestTopic{}
				for _, t := range rg.Topics {
					want = append(want, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
				}
			}
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			topics, code := b.fetchOffsets(rg.Group, want)
			g.ErrorCode = code
			if code == 0 {
				for _, t := range topics {
					rt := kmsg.NewOffsetFetchResponseGroupTopic()
					rt.Topic = t.topic
					for _, p := range t.partitions {
						rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
						rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = p.partition, -1, -1, ptr("")
						if p.found {
							rp.Offset, rp.LeaderEpoch, rp.Metadata = p.o.Offset, p.o.LeaderEpoch, ptr(p.o.Metadata)
						}
						rt.Partitions = append(rt.Partitions, rp)
					}
					g.Topics = append(g.Topics, rt)
				}
			}
			resp.Groups = append(resp.Groups, g)
		}
		return response{msg: resp}
	}
	want := req.Topics
	if req.Version < 2 && want == nil {
		want = []kmsg.OffsetFetchRequestTopic{} // null means all only from v2
	}
	topics, code := b.fetchOffsets(req.Group, want)
	if code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return response{msg: resp}
		}
		// v0–v1 have no top-level error: every partition carries it.
		topics = nil
		for _, t := range req.Topics {
			ft := fetchedTopic{topic: t.Topic}
			for _, p := range t.Partitions {
				ft.partitions = append(ft.partitions, fetchedPartition{partition: p})
			}
			topics = append(topics, ft)
		}
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.topic
		for _, p := range t.partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.partition, -1, -1, ptr(""), code
			if p.found {
				rp.Offset, rp.LeaderEpoch, rp.Metadata = p.o.Offset, p.o.LeaderEpoch, ptr(p.o.Metadata)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return response{msg: resp}
}

// fetchOffsets reads a group's committed offsets: the requested partitions,
// or (want == nil) all of them, sorted by topic and partition.
func (b *Broker) fetchOffsets(groupID string, want []kmsg.OffsetFetchRequestTopic) ([]fetchedTopic, int16) {
	if groupID == "" {
		return nil, kerr.InvalidGroupID.Code
	}
	s, code := b.groups.lock(groupID)
	if code != 0 {
		return nil, code
	}
	defer s.mu.Unlock()
	var out []fetchedTopic
	if want == nil {
		offs := s.offsets.Group(groupID)
		names := make([]string, 0, len(offs))
		for t := range offs {
			names = append(names, t)
		}
		sort.Strings(names)
		for _, t := range names {
			ft := fetchedTopic{topic: t}
			for p, o := range offs[t] {
				ft.partitions = append(ft.partitions, fetchedPartition{partition: p, o: o, found: true})
			}
			sort.Slice(ft.partitions, func(i, j int) bool { return ft.partitions[i].partition < ft.partitions[j].partition })
			out = append(out, ft)
		}
		return out, 0
	}
	for _, t := range want {
		ft := fetchedTopic{topic: t.Topic}
		for _, p := range t.Partitions {
			o, ok := s.offsets.Get(group.OffsetKey{Group: groupID, Topic: t.Topic, Partition: p})
			ft.partitions = append(ft.partitions, fetchedPartition{partition: p, o: o, found: ok})
		}
		out = append(out, ft)
	}
	return out, 0
}
