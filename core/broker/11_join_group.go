package broker

// JoinGroup (key 11), v0–v9.
//
// The request becomes a group.Join (v0 has no rebalance time-out: the
// session time-out is used) and is parked until the group's state machine
// answers it, which may happen in another member's request or at a timer;
// meanwhile the connection goes on serving other requests (netio.Later).
// v4+ members with an empty member id get MEMBER_ID_REQUIRED with an id to
// rejoin with; v0–v3 members join at once (the machine does this from the
// version). ProtocolType is answered from v7 (null on error), SkipAssignment
// from v9. An empty group id is INVALID_GROUP_ID; a group of a shard still
// loading gets COORDINATOR_LOAD_IN_PROGRESS, of another broker
// NOT_COORDINATOR. A parked join is answered NOT_COORDINATOR when the
// broker shuts down.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(11, 0, 9, handleJoinGroup) }

func handleJoinGroup(_ context.Context, b *Broker, rc *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.JoinGroupRequest)
	build := func(v any) kmsg.Response {
		var r group.JoinResponse
		switch v := v.(type) {
		case group.JoinResponse:
			r = v
		case errParked:
			r = group.JoinResponse{ErrorCode: int16(v), Generation: -1, MemberID: req.MemberID}
		}
		return joinGroupResponse(req, r)
	}
	if req.Group == "" {
		return response{msg: build(errParked(kerr.InvalidGroupID.Code))}
	}
	s, code := b.groups.lock(req.Group)
	if code != 0 {
		return response{msg: build(errParked(code))}
	}
	now := time.Now()
	e := s.entry(req.Group, true, now)
	id, ch := s.park()
	j := group.Join{
		Req: id, MemberID: req.MemberID, InstanceID: derefStr(req.InstanceID), ClientID: rc.clientID,
		ClientHost: clientHost(rc.remote), SessionTimeout: time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		ProtocolType: req.ProtocolType, Version: req.Version,
	}
	if req.Version >= 1 {
		j.RebalanceTimeout = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	for _, p := range req.Protocols {
		j.Protocols = append(j.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	if req.Reason != nil && *req.Reason != "" {
		b.log.Debug("join group", "group", req.Group, "member", req.MemberID, "reason", *req.Reason)
	}
	s.apply(e, e.g.Join(now, j), now)
	if e.g.State() == group.Empty && e.g.IsEmpty() && e.g.Generation() == 0 && len(s.offsets.Group(req.Group)) == 0 {
		// The join was refused (a bad session time-out, protocol, ...):
		// do not keep a group that never had a member, as Kafka validates
		// before it creates one.
		s.drop(e)
	}
	s.mu.Unlock()
	return b.awaitGroup(ch, build)
}

func joinGroupResponse(req *kmsg.JoinGroupRequest, r group.JoinResponse) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.ErrorCode, resp.Generation, resp.LeaderID, resp.MemberID = r.ErrorCode, r.Generation, r.Leader, r.MemberID
	if r.ErrorCode != 0 && r.Generation == 0 {
		resp.Generation = -1
	}
	if req.Version >= 7 {
		resp.ProtocolType = strPtrOrNil(r.ProtocolType)
		resp.Protocol = strPtrOrNil(r.Protocol)
	} else {
		p := r.Protocol
		resp.Protocol = &p
	}
	if req.Version >= 9 {
		resp.SkipAssignment = r.SkipAssignment
	}
	for _, m := range r.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.ProtocolMetadata = m.MemberID, m.Metadata
		if req.Version >= 5 {
			rm.InstanceID = strPtrOrNil(m.InstanceID)
		}
		resp.Members = append(resp.Members, rm)
	}
	if resp.Members == nil {
		resp.Members = []kmsg.JoinGroupResponseMember{}
	}
	return resp
}
