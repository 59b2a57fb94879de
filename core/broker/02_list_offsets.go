package broker

// ListOffsets (key 2), v1–v8.
//
// Timestamp -2 is the log start offset, -1 the high watermark (what a
// consumer may read; the log end for a follower, replica id >= 0), -3 (v7+)
// the offset of the largest timestamp, -4 (v8+) the earliest local offset
// (the log start: there is no tiered storage). Any other timestamp finds the
// first offset whose timestamp is at or after it, through the time index;
// none gives offset -1. Advertised from v1, as librdkafka expects; v0's
// old-style offset arrays are not served.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(2, 1, 8, handleListOffsets) }

func handleListOffsets(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition, sp.Timestamp, sp.Offset, sp.LeaderEpoch = rp.Partition, -1, -1, -1
			p := b.partitionFor(rt.Topic, rp.Partition)
			switch {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case p.epochError(req.Version >= 4, rp.CurrentLeaderEpoch) != nil:
				sp.ErrorCode = p.epochError(true, rp.CurrentLeaderEpoch).Code
			default:
				sp.LeaderEpoch = p.leaderEpoch
				switch ts := rp.Timestamp; {
				case ts == -2 || ts == -4:
					sp.Offset = p.log.StartOffset()
				case ts == -1:
					sp.Offset = p.log.HighWatermark()
					if req.ReplicaID >= 0 {
						sp.Offset = p.log.EndOffset()
					}
				case ts == -3:
					sp.Timestamp, sp.Offset = p.log.MaxTimestamp()
				case ts < 0:
					sp.ErrorCode = kerr.InvalidRequest.Code
				default:
					off, t, found, err := p.log.OffsetForTimestamp(ts)
					switch {
					case err != nil:
						sp.ErrorCode = kerr.KafkaStorageError.Code
					case found && off < p.log.HighWatermark():
						sp.Offset, sp.Timestamp = off, t
					}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return response{msg: resp}
}
