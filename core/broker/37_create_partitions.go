package broker

// CreatePartitions (key 37), v0–v3.
//
// Grows a topic to Count partitions (never shrinks: INVALID_PARTITIONS),
// optionally with explicit replica assignments for the new ones; the new
// partitions' logs are created before the answer.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	m := b.controllerMeta()
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if m == nil {
			st.ErrorCode = kerr.NotController.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		var assign [][]int32
		for _, a := range rt.Assignment {
			assign = append(assign, a.Replicas)
		}
		err := m.AddPartitions(ctx, rt.Topic, rt.Count, assign, b.liveIDs(), req.ValidateOnly)
		if err == nil && !req.ValidateOnly {
			if top, terr := b.topic(ctx, rt.Topic); terr == nil {
				if lerr := b.ensureLocalLogs(top); lerr != nil {
					err = lerr
				}
			}
		}
		st.ErrorCode, st.ErrorMessage = errCode(err)
		resp.Topics = append(resp.Topics, st)
	}
	return response{msg: resp}
}
