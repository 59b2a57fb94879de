package broker

import (
	"context"
	"errors"

	"github.com/brokkr/brokkr/core/controller"
	"github.com/twmb/franz-go/pkg/kerr"
)

// topics returns every topic from the metadata store.
func (b *Broker) topics(ctx context.Context) ([]controller.Topic, error) {
	return (&controller.Metadata{Store: b.Coord}).Topics(ctx)
}

func (b *Broker) topic(ctx context.Context, name string) (controller.Topic, error) {
	return (&controller.Metadata{Store: b.Coord}).Topic(ctx, name)
}

// createTopic creates a topic's metadata and then the local logs of the
// partitions this broker hosts.
func (b *Broker) createTopic(ctx context.Context, m *controller.Metadata, req controller.CreateTopicRequest) (controller.Topic, error) {
	if err := b.checkPolicyConfigs(req.Configs); err != nil {
		return controller.Topic{}, err
	}
	t, err := m.CreateTopic(ctx, &b.Config, req, b.liveIDs())
	if err != nil || req.ValidateOnly {
		return t, err
	}
	if err := b.ensureLocalLogs(t); err != nil {
		b.log.Error("creating local logs of a new topic", "topic", t.Name, "err", err)
		return t, &controller.Error{Err: kerr.KafkaStorageError, Message: err.Error()}
	}
	b.log.Info("topic created", "topic", t.Name, "id", t.ID.String(), "partitions", len(t.Partitions))
	return t, nil
}

// deleteTopic deletes a topic completely: intent, local data, metadata,
// intent. On error the intent stays and the next start (or retry) finishes.
func (b *Broker) deleteTopic(ctx context.Context, m *controller.Metadata, name string, id controller.TopicID) (controller.Topic, error) {
	if !b.Config.DeleteTopicEnable {
		return controller.Topic{}, &controller.Error{Err: kerr.TopicDeletionDisabled, Message: "delete.topic.enable is false"}
	}
	t, err := m.BeginDelete(ctx, name, id)
	if err != nil {
		return t, err
	}
	return t, b.finishDelete(ctx, m, name)
}

func (b *Broker) finishDelete(ctx context.Context, m *controller.Metadata, name string) error {
	if err := b.deleteLocalLogs(name); err != nil {
		b.log.Error("deleting local logs", "topic", name, "err", err)
		return &controller.Error{Err: kerr.KafkaStorageError, Message: err.Error()}
	}
	if b.groups != nil {
		b.groups.topicDeleted(name)
	}
	if err := m.FinishDelete(ctx, name); err != nil {
		return err
	}
	b.log.Info("topic deleted", "topic", name)
	return nil
}

// finishPendingDeletes completes deletions a crash interrupted.
func (b *Broker) finishPendingDeletes(ctx context.Context, m *controller.Metadata) error {
	names, err := m.PendingDeletes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		b.log.Info("finishing an interrupted topic deletion", "topic", n)
		if err := b.finishDelete(ctx, m, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errCode extracts the Kafka error of a controller error (UNKNOWN_SERVER_ERROR
// for anything else) and its message.
func errCode(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	var ce *controller.Error
	if errors.As(err, &ce) {
		msg := ce.Message
		return ce.Err.Code, &msg
	}
	msg := err.Error()
	return kerr.UnknownServerError.Code, &msg
}
