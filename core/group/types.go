package group

import "time"

// State is a group's state, named as Kafka's.
type State int8

const (
	Empty State = iota
	PreparingRebalance
	CompletingRebalance
	Stable
	Dead
)

func (s State) String() string {
	switch s {
	case Empty:
		return "Empty"
	case PreparingRebalance:
		return "PreparingRebalance"
	case CompletingRebalance:
		return "CompletingRebalance"
	case Stable:
		return "Stable"
	case Dead:
		return "Dead"
	}
	return "Unknown"
}

// ReqID names a request the driver parked; it is echoed in the response so
// the driver can find the connection to answer. The machine never answers a
// ReqID twice; IDs must be unique among requests in flight for this group.
type ReqID uint64

// Protocol is one (name, metadata) pair of a JoinGroup request, in the
// member's order of preference.
type Protocol struct {
	Name     string
	Metadata []byte
}

// Join is a JoinGroup request.
type Join struct {
	Req              ReqID
	MemberID         string // "" for a new member
	InstanceID       string // group.instance.id; "" for a dynamic member
	ClientID         string
	ClientHost       string
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration // 0 (JoinGroup v0) means SessionTimeout
	ProtocolType     string
	Protocols        []Protocol
	Version          int16 // JoinGroup request version
}

// Assignment is the leader's assignment for one member.
type Assignment struct {
	MemberID   string
	Assignment []byte
}

// Sync is a SyncGroup request.
type Sync struct {
	Req          ReqID
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string // v5+; "" when absent
	Protocol     string // v5+; "" when absent
	Assignments  []Assignment
}

// Heartbeat is a Heartbeat request.
type Heartbeat struct {
	MemberID   string
	InstanceID string
	Generation int32
}

// LeaveMember is one member of a (batch, v3+) LeaveGroup request. Before v3
// the request names one MemberID.
type LeaveMember struct {
	MemberID   string
	InstanceID string
}

// Leave is a LeaveGroup request.
type Leave struct {
	Members []LeaveMember
}

// JoinMember is one member in the leader's JoinGroup response.
type JoinMember struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// JoinResponse is the body of a JoinGroup response.
type JoinResponse struct {
	ErrorCode      int16
	Generation     int32 // -1 on error
	ProtocolType   string
	Protocol       string
	Leader         string
	SkipAssignment bool // v9+: a static leader rejoining a stable group
	MemberID       string
	Members        []JoinMember // the leader's only
}

// JoinResult is a JoinGroup response released for a parked request.
type JoinResult struct {
	Req ReqID
	JoinResponse
}

// SyncResponse is the body of a SyncGroup response.
type SyncResponse struct {
	ErrorCode    int16
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// SyncResult is a SyncGroup response released for a parked request.
type SyncResult struct {
	Req      ReqID
	MemberID string
	SyncResponse
}

// HeartbeatResponse is the body of a Heartbeat response.
type HeartbeatResponse struct {
	ErrorCode int16
}

// LeaveMemberResult is one member's outcome in a LeaveGroup response.
type LeaveMemberResult struct {
	MemberID   string
	InstanceID string
	ErrorCode  int16
}

// LeaveResponse is the body of a LeaveGroup response.
type LeaveResponse struct {
	ErrorCode int16
	Members   []LeaveMemberResult
}

// MemberSnapshot is one member as stored and described.
type MemberSnapshot struct {
	MemberID         string
	InstanceID       string
	ClientID         string
	ClientHost       string
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	Metadata         []byte // for the selected protocol
	Assignment       []byte
}

// Snapshot is the group metadata to persist (a Store action) and to
// restore from on load.
type Snapshot struct {
	Generation   int32
	ProtocolType string
	Protocol     string
	Leader       string
	Members      []MemberSnapshot
}

// Description is the answer to DescribeGroups for this group.
type Description struct {
	State        State
	Generation   int32
	ProtocolType string
	Protocol     string
	Leader       string
	Members      []MemberSnapshot
}

// Ready is what an event released: responses to parked (and immediate)
// JoinGroup and SyncGroup requests, in order, and group metadata to store.
// The driver sends Joins and Syncs, persists Store (if any) and then reports
// Group.Stored(Store.Generation, errCode). A leader's assignment is released
// to the parked syncs only by that report; reports the machine is not
// waiting for (an emptied group, a static member's new id) are ignored.
type Ready struct {
	Joins []JoinResult
	Syncs []SyncResult
	Store *Snapshot
}

// Empty reports whether nothing was released.
func (r Ready) Empty() bool { return len(r.Joins) == 0 && len(r.Syncs) == 0 && r.Store == nil }
