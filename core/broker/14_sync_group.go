package broker

// SyncGroup (key 14), v0–v5.
//
// The leader's assignment is stored in __consumer_offsets (a GroupMetadata
// record) before any member gets its part; followers that sync first are
// parked until then (netio.Later). v5 checks ProtocolType and Protocol
// against the group's (INCONSISTENT_GROUP_PROTOCOL) and answers them. A
// group of a shard still loading gets REBALANCE_IN_PROGRESS, as Kafka: the
// rebalance in progress was lost with the old coordinator, and older
// clients do not expect COORDINATOR_LOAD_IN_PROGRESS here; they rejoin. An
// unknown group is UNKNOWN_MEMBER_ID.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(14, 0, 5, handleSyncGroup) }

func handleSyncGroup(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.SyncGroupRequest)
	build := func(v any) kmsg.Response {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		switch v := v.(type) {
		case group.SyncResponse:
			resp.ErrorCode, resp.MemberAssignment = v.ErrorCode, v.Assignment
			if req.Version >= 5 && v.ErrorCode == 0 {
				resp.ProtocolType, resp.Protocol = strPtrOrNil(v.ProtocolType), strPtrOrNil(v.Protocol)
			}
		case errParked:
			resp.ErrorCode = int16(v)
		}
		if resp.MemberAssignment == nil {
			resp.MemberAssignment = []byte{}
		}
		return resp
	}
	if req.Group == "" {
		return response{msg: build(errParked(kerr.InvalidGroupID.Code))}
	}
	s, code := b.groups.lock(req.Group)
	if code == kerr.CoordinatorLoadInProgress.Code {
		code = kerr.RebalanceInProgress.Code
	}
	if code != 0 {
		return response{msg: build(errParked(code))}
	}
	now := time.Now()
	e := s.entry(req.Group, false, now)
	if e == nil {
		s.mu.Unlock()
		return response{msg: build(errParked(kerr.UnknownMemberID.Code))}
	}
	id, ch := s.park()
	sy := group.Sync{Req: id, MemberID: req.MemberID, InstanceID: derefStr(req.InstanceID), Generation: req.Generation,
		ProtocolType: derefStr(req.ProtocolType), Protocol: derefStr(req.Protocol)}
	for _, a := range req.GroupAssignment {
		sy.Assignments = append(sy.Assignments, group.Assignment{MemberID: a.MemberID, Assignment: a.MemberAssignment})
	}
	s.apply(e, e.g.Sync(now, sy), now)
	s.mu.Unlock()
	return b.awaitGroup(ch, build)
}
