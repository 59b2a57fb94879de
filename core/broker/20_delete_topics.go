package broker

// DeleteTopics (key 20), v0–v6.
//
// Deletion is complete when the answer comes: the local data is removed and
// so is the metadata. v6+ may name topics by id. If anything fails midway the
// deletion intent stays recorded and is finished at the next start, so a
// topic is never left "marked for deletion". __consumer_offsets cannot be
// deleted (INVALID_REQUEST): it holds every group's offsets.

import (
	"context"

	"github.com/brokkr/brokkr/core/controller"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(20, 0, 6, handleDeleteTopics) }

func handleDeleteTopics(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	m := b.controllerMeta()
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version < 6 {
		for i := range req.TopicNames {
			targets = append(targets, target{name: &req.TopicNames[i]})
		}
	} else {
		for _, t := range req.Topics {
			targets = append(targets, target{name: t.Topic, id: t.TopicID})
		}
	}
	var all []controller.Topic
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = tg.name, tg.id
		if m == nil {
			st.ErrorCode = kerr.NotController.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		name := ""
		if tg.name != nil {
			name = *tg.name
		} else {
			if all == nil {
				var err error
				if all, err = b.topics(ctx); err != nil {
					st.ErrorCode, st.ErrorMessage = errCode(err)
					resp.Topics = append(resp.Topics, st)
					continue
				}
			}
			for _, t := range all {
				if t.ID == tg.id {
					name = t.Name
				}
			}
			if name == "" {
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			st.Topic = &name
		}
		if name == offsetsTopic {
			// Every group's offsets live there; Kafka's tools refuse this too.
			st.ErrorCode = kerr.InvalidRequest.Code
			msg := "__consumer_offsets is an internal topic and cannot be deleted"
			st.ErrorMessage = &msg
			resp.Topics = append(resp.Topics, st)
			continue
		}
		t, err := b.deleteTopic(ctx, m, name, controller.TopicID(tg.id))
		st.ErrorCode, st.ErrorMessage = errCode(err)
		if err == nil {
			st.TopicID = t.ID
		}
		resp.Topics = append(resp.Topics, st)
	}
	return response{msg: resp}
}
