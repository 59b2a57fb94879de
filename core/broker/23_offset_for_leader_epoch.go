package broker

// OffsetForLeaderEpoch (key 23), v0–v4.
//
// For each partition, the largest leader epoch <= the requested one and the
// offset where it ended (the start of the next epoch, or the log end for the
// current epoch), from the leader-epoch cache (leader-epoch-checkpoint);
// -1/-1 when the log knows no such epoch. This is what a follower or a
// consumer that saw a leader change uses to find where it diverged
// (KIP-101, KIP-320). Current leader epoch checks as in Fetch (v2+).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(23, 0, 4, handleOffsetForLeaderEpoch) }

func handleOffsetForLeaderEpoch(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, -1, -1
			p := b.partitionFor(rt.Topic, rp.Partition)
			switch {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case p.epochError(req.Version >= 2, rp.CurrentLeaderEpoch) != nil:
				sp.ErrorCode = p.epochError(true, rp.CurrentLeaderEpoch).Code
			default:
				sp.LeaderEpoch, sp.EndOffset = p.log.EndOffsetForEpoch(rp.LeaderEpoch)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return response{msg: resp}
}
