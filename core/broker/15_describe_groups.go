package broker

// DescribeGroups (key 15), v0–v5.
//
// Per group: its state (Kafka's names: Empty, PreparingRebalance,
// CompletingRebalance, Stable, Dead), protocol type, and members with
// client id and host. As Kafka, the selected protocol and each member's
// metadata and assignment are given only for a Stable group. An unknown
// group is answered as Dead with no error (Kafka before KIP-848's v6).
// Group-level errors: INVALID_GROUP_ID, COORDINATOR_LOAD_IN_PROGRESS,
// NOT_COORDINATOR. v4+ carry instance ids; authorized operations are not
// computed (no ACLs) and left at Kafka's "not requested" value.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(15, 0, 5, handleDescribeGroups) }

func handleDescribeGroups(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = id
		rg.Members = []kmsg.DescribeGroupsResponseGroupMember{}
		d, code := b.describeGroup(id)
		rg.ErrorCode = code
		if code == 0 {
			rg.State, rg.ProtocolType = d.State.String(), d.ProtocolType
			stable := d.State == group.Stable
			if stable {
				rg.Protocol = d.Protocol
			}
			for _, m := range d.Members {
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID, rm.ClientID, rm.ClientHost = m.MemberID, m.ClientID, m.ClientHost
				rm.ProtocolMetadata, rm.MemberAssignment = []byte{}, []byte{}
				if req.Version >= 4 {
					rm.InstanceID = strPtrOrNil(m.InstanceID)
				}
				if stable {
					if m.Metadata != nil {
						rm.ProtocolMetadata = m.Metadata
					}
					if m.Assignment != nil {
						rm.MemberAssignment = m.Assignment
					}
				}
				rg.Members = append(rg.Members, rm)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return response{msg: resp}
}

// describeGroup describes a group; an unknown one is Dead.
func (b *Broker) describeGroup(id string) (group.Description, int16) {
	if id == "" {
		return group.Description{}, kerr.InvalidGroupID.Code
	}
	s, code := b.groups.lock(id)
	if code != 0 {
		return group.Description{}, code
	}
	defer s.mu.Unlock()
	e := s.entry(id, false, time.Now())
	if e == nil {
		return group.Description{State: group.Dead}, 0
	}
	return e.g.Describe(), 0
}
