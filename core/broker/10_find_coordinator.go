package broker

// FindCoordinator (key 10), v0–v4.
//
// The coordinator of a group is the leader of its __consumer_offsets
// partition (group.Partition: Kafka's abs(hashCode) % partitions), given
// with its endpoint on the listener the request came in on. v4 batches
// keys (CoordinatorKeys) and answers each with its own error. Key type 1
// (transactions) is answered COORDINATOR_NOT_AVAILABLE: Brokkr has no
// transaction coordinator yet, and that is the retriable code Kafka gives
// while its transaction topic is unavailable; any other key type is
// INVALID_REQUEST. Until __consumer_offsets exists (the first moments after
// the first start) the answer is COORDINATOR_NOT_AVAILABLE, which clients
// retry.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(10, 0, 4, handleFindCoordinator) }

func handleFindCoordinator(_ context.Context, b *Broker, rc *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if req.Version < 4 {
		c := b.findCoordinator(rc.listener, req.CoordinatorType, req.CoordinatorKey)
		resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.NodeID, c.Host, c.Port
		if req.Version >= 1 {
			resp.ErrorMessage = c.ErrorMessage
		}
		return response{msg: resp}
	}
	for _, k := range req.CoordinatorKeys {
		resp.Coordinators = append(resp.Coordinators, b.findCoordinator(rc.listener, req.CoordinatorType, k))
	}
	return response{msg: resp}
}

func (b *Broker) findCoordinator(listener string, typ int8, key string) kmsg.FindCoordinatorResponseCoordinator {
	c := kmsg.NewFindCoordinatorResponseCoordinator()
	c.Key, c.NodeID, c.Port = key, -1, -1
	fail := func(e *kerr.Error, msg string) kmsg.FindCoordinatorResponseCoordinator {
		c.ErrorCode = e.Code
		if msg != "" {
			c.ErrorMessage = &msg
		}
		return c
	}
	switch typ {
	case 0:
	case 1:
		return fail(kerr.CoordinatorNotAvailable, "transactions are not supported by this broker")
	default:
		return fail(kerr.InvalidRequest, "unknown coordinator type")
	}
	id, code := b.groups.coordinatorOf(key)
	if code != 0 {
		return fail(kerr.ErrorForCode(code).(*kerr.Error), "")
	}
	for _, bl := range b.brokersOn(listener) {
		if bl.id == id {
			c.NodeID, c.Host, c.Port = bl.id, bl.host, bl.port
			return c
		}
	}
	return fail(kerr.CoordinatorNotAvailable, "the coordinator is not live")
}
