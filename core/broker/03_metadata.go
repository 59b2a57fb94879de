package broker

// Metadata (key 3), v0–v12.
//
// v0 with an empty topic list, or v1+ with a null list, means every topic.
// A requested topic that does not exist is created when
// auto.create.topics.enable is true and the request allows it (always for
// v0–v3, AllowAutoTopicCreation for v4+), with the broker's default
// partitions and replication factor; the answer already carries its leaders,
// because creation here is synchronous. Brokers are described by their
// endpoint on the listener the request came in on. v10+ topics requested by
// id only are looked up by id. Topics being deleted are reported as
// UNKNOWN_TOPIC_OR_PARTITION.

import (
	"context"

	"github.com/brokkr/brokkr/core/controller"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(3, 0, 12, handleMetadata) }

func handleMetadata(ctx context.Context, b *Broker, rc *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	resp.ClusterID = &b.clusterID
	resp.ControllerID = b.controllerID(ctx)
	for _, bl := range b.brokersOn(rc.listener) {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port, mb.Rack = bl.id, bl.host, bl.port, bl.rack
		resp.Brokers = append(resp.Brokers, mb)
	}

	topics, err := b.topics(ctx)
	if err != nil {
		// Without metadata we can say nothing true about any topic.
		for _, rt := range req.Topics {
			t := kmsg.NewMetadataResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			t.ErrorCode = kerr.LeaderNotAvailable.Code
			resp.Topics = append(resp.Topics, t)
		}
		return response{msg: resp}
	}
	byName := map[string]controller.Topic{}
	byID := map[[16]byte]controller.Topic{}
	for _, t := range topics {
		if t.Deleting {
			continue
		}
		byName[t.Name] = t
		byID[t.ID] = t
	}

	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range topics {
			if !t.Deleting {
				resp.Topics = append(resp.Topics, metadataTopic(t, req.Version))
			}
		}
		return response{msg: resp}
	}
	allowCreate := b.Config.AutoCreateTopicsEnable && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		var (
			t     controller.Topic
			found bool
		)
		if rt.Topic != nil {
			t, found = byName[*rt.Topic]
		} else {
			t, found = byID[rt.TopicID]
		}
		if !found && rt.Topic != nil && allowCreate {
			created, errCode := b.autoCreate(ctx, *rt.Topic)
			if errCode == nil {
				t, found = created, true
			} else {
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic, mt.ErrorCode = rt.Topic, errCode.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		}
		if !found {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID = rt.Topic, rt.TopicID
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if rt.Topic == nil {
				mt.ErrorCode = kerr.UnknownTopicID.Code
			} else if controller.ValidateTopicName(*rt.Topic) != nil {
				mt.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, metadataTopic(t, req.Version))
	}
	return response{msg: resp}
}

func metadataTopic(t controller.Topic, version int16) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic, mt.TopicID, mt.IsInternal = &name, t.ID, t.Internal
	for _, p := range t.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition, mp.Leader, mp.LeaderEpoch = p.Index, p.Leader, p.LeaderEpoch
		mp.Replicas, mp.ISR = p.Replicas, p.ISR
		if mp.Replicas == nil {
			mp.Replicas = []int32{}
		}
		if mp.ISR == nil {
			mp.ISR = []int32{}
		}
		mp.OfflineReplicas = []int32{}
		if p.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// autoCreate creates a topic with the broker defaults, as Metadata and
// (for v0–v3 producers) Produce do when auto.create.topics.enable is true.
func (b *Broker) autoCreate(ctx context.Context, name string) (controller.Topic, *kerr.Error) {
	if err := controller.ValidateTopicName(name); err != nil {
		return controller.Topic{}, kerr.InvalidTopicException
	}
	m := b.controllerMeta()
	if m == nil {
		return controller.Topic{}, kerr.LeaderNotAvailable
	}
	t, err := b.createTopic(ctx, m, controller.CreateTopicRequest{Name: name, NumPartitions: -1, ReplicationFactor: -1})
	if err != nil {
		if ce, ok := err.(*controller.Error); ok && ce.Err == kerr.TopicAlreadyExists {
			if t, err := b.topic(ctx, name); err == nil {
				return t, nil
			}
		}
		b.log.Warn("auto-creating a topic failed", "topic", name, "err", err)
		return controller.Topic{}, kerr.LeaderNotAvailable
	}
	return t, nil
}
