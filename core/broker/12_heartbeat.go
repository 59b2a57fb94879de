package broker

// Heartbeat (key 12), v0–v4.
//
// Answered at once by the group's state machine: UNKNOWN_MEMBER_ID,
// ILLEGAL_GENERATION, FENCED_INSTANCE_ID (v3+ static members),
// REBALANCE_IN_PROGRESS while the group rebalances (the member must
// rejoin). An unknown group is UNKNOWN_MEMBER_ID. While the group's shard
// is loading the heartbeat is answered with no error, as Kafka does ("the
// group is still loading, so respond just blindly"): the member's session
// starts afresh when the group is restored.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(12, 0, 4, handleHeartbeat) }

func handleHeartbeat(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return response{msg: resp}
	}
	s, code := b.groups.lock(req.Group)
	if code == kerr.CoordinatorLoadInProgress.Code {
		code = 0
	}
	if s == nil {
		resp.ErrorCode = code
		return response{msg: resp}
	}
	defer s.mu.Unlock()
	now := time.Now()
	e := s.entry(req.Group, false, now)
	if e == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return response{msg: resp}
	}
	resp.ErrorCode = e.g.Heartbeat(now, group.Heartbeat{MemberID: req.MemberID, InstanceID: derefStr(req.InstanceID), Generation: req.Generation}).ErrorCode
	s.arm(e)
	return response{msg: resp}
}
