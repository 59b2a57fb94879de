package broker

// CreateTopics (key 19), v0–v7.
//
// Only the controller creates topics; another broker answers NOT_CONTROLLER
// and the client retries against the controller named in Metadata. Configs
// are validated by core/config (INVALID_CONFIG names the bad entry);
// validate_only checks everything and writes nothing. v5+ answers carry the
// partition count, replication factor and effective configs; v7+ the topic id.

import (
	"context"

	"github.com/brokkr/brokkr/core/controller"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(19, 0, 7, handleCreateTopics) }

func handleCreateTopics(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	m := b.controllerMeta()
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		switch {
		case seen[rt.Topic] > 1:
			st.ErrorCode = kerr.InvalidRequest.Code
			msg := "topic listed more than once in one request"
			st.ErrorMessage = &msg
		case m == nil:
			st.ErrorCode = kerr.NotController.Code
		case rt.Topic == offsetsTopic:
			// The broker creates it at start with its own settings
			// (offsets.topic.*, compacted); a client cannot choose others.
			st.ErrorCode = kerr.TopicAlreadyExists.Code
			if _, err := b.ensureOffsetsTopic(ctx); err != nil {
				st.ErrorCode, st.ErrorMessage = errCode(err)
				break
			}
			msg := "__consumer_offsets is created by the broker"
			st.ErrorMessage = &msg
		default:
			cr := controller.CreateTopicRequest{
				Name: rt.Topic, NumPartitions: rt.NumPartitions, ReplicationFactor: rt.ReplicationFactor,
				ValidateOnly: req.ValidateOnly, Configs: map[string]string{},
			}
			for _, c := range rt.Configs {
				if c.Value != nil {
					cr.Configs[c.Name] = *c.Value
				}
			}
			if len(rt.ReplicaAssignment) > 0 {
				cr.Assignment = map[int32][]int32{}
				for _, a := range rt.ReplicaAssignment {
					cr.Assignment[a.Partition] = a.Replicas
				}
			}
			t, err := b.createTopic(ctx, m, cr)
			if err != nil {
				st.ErrorCode, st.ErrorMessage = errCode(err)
				break
			}
			st.TopicID = t.ID
			st.NumPartitions = int32(len(t.Partitions))
			if len(t.Partitions) > 0 {
				st.ReplicationFactor = int16(len(t.Partitions[0].Replicas))
			}
			for _, e := range b.Config.DescribeTopic(cr.Configs) {
				c := kmsg.NewCreateTopicsResponseTopicConfig()
				v := e.Value
				c.Name, c.Value, c.Source, c.ReadOnly, c.IsSensitive = e.Name, &v, int8(e.Source), e.ReadOnly, e.Sensitive
				st.Configs = append(st.Configs, c)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return response{msg: resp}
}
