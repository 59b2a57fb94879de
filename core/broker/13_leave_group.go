package broker

// LeaveGroup (key 13), v0–v5.
//
// v0–v2 name one member; its outcome is the top-level error. v3+ leave a
// batch of members (by member id, or by group.instance.id with an empty
// member id, KIP-345) with a code each. The departure may complete a
// rebalance, which answers parked JoinGroup requests of other members. An
// unknown group answers UNKNOWN_MEMBER_ID for every member (top level, for
// v0–v2). v5 reasons are logged.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(13, 0, 5, handleLeaveGroup) }

func handleLeaveGroup(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	var l group.Leave
	if req.Version < 3 {
		l.Members = []group.LeaveMember{{MemberID: req.MemberID}}
	} else {
		for _, m := range req.Members {
			l.Members = append(l.Members, group.LeaveMember{MemberID: m.MemberID, InstanceID: derefStr(m.InstanceID)})
			if m.Reason != nil && *m.Reason != "" {
				b.log.Debug("leave group", "group", req.Group, "member", m.MemberID, "reason", *m.Reason)
			}
		}
	}
	var out group.LeaveResponse
	switch s, code := b.groups.lock(req.Group); {
	case req.Group == "":
		if s != nil {
			s.mu.Unlock()
		}
		out.ErrorCode = kerr.InvalidGroupID.Code
	case s == nil:
		out.ErrorCode = code
	default:
		now := time.Now()
		if e := s.entry(req.Group, false, now); e == nil {
			for _, m := range l.Members {
				out.Members = append(out.Members, group.LeaveMemberResult{MemberID: m.MemberID, InstanceID: m.InstanceID, ErrorCode: kerr.UnknownMemberID.Code})
			}
		} else {
			var r group.Ready
			out, r = e.g.Leave(now, l)
			s.apply(e, r, now)
		}
		s.mu.Unlock()
	}
	if req.Version < 3 {
		resp.ErrorCode = out.ErrorCode
		if resp.ErrorCode == 0 && len(out.Members) == 1 {
			resp.ErrorCode = out.Members[0].ErrorCode
		}
		return response{msg: resp}
	}
	resp.ErrorCode = out.ErrorCode
	if resp.ErrorCode == 0 {
		for _, m := range out.Members {
			rm := kmsg.NewLeaveGroupResponseMember()
			rm.MemberID, rm.InstanceID, rm.ErrorCode = m.MemberID, strPtrOrNil(m.InstanceID), m.ErrorCode
			resp.Members = append(resp.Members, rm)
		}
	}
	return response{msg: resp}
}
