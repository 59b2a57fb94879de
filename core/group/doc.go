// Package group is the pure state machine of one classic-protocol consumer
// group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), in the style of
// etcd raft: events go in, responses and actions come out. There are no
// goroutines, no clock and no I/O inside; every event carries `now`, and
// Tick(now) fires the time-outs. A thin driver (the broker's coordinator)
// owns the sockets, parks JoinGroup/SyncGroup requests under a ReqID, sends
// the responses the machine releases, and persists the Store actions to
// __consumer_offsets.
//
// # States and transitions (as Kafka's GroupCoordinator / ClassicGroup)
//
//	Empty ──join──▶ PreparingRebalance ──all joined / rebalance time-out──▶ CompletingRebalance
//	  ▲                    ▲   │ (no members left)                              │ leader SyncGroup
//	  └────────────────────┼───┘                                                ▼ (after Stored)
//	                       └──── join of a new member, leader rejoin, ──────── Stable
//	                             changed metadata, member expiry/leave
//	any state but Dead ──Delete (group empty)──▶ Dead
//
// The states:
//
//   - Empty: no members. The first join arms group.initial.rebalance.delay.ms
//     (Kafka's InitialDelayedJoin): the join completes only when the delay
//     passes, and each new member during it extends the wait by another delay,
//     up to the rebalance time-out in total.
//   - PreparingRebalance: joins are parked. The join phase completes when
//     every member has rejoined and no MEMBER_ID_REQUIRED member is pending
//     (Kafka's DelayedJoin.tryComplete), or at the rebalance time-out (the
//     largest rebalance time-out of the members). At completion, dynamic
//     members that did not rejoin are removed (static ones stay), the leader
//     is kept if it rejoined (else any joined member is elected), the
//     generation is bumped, the protocol is chosen by vote among the
//     protocols every member supports, and each parked join is answered
//     (the leader gets the member list).
//   - CompletingRebalance (Kafka's AwaitingSync): syncs are parked; the
//     leader's sync (missing members get an empty assignment) emits a Store
//     action; when the driver reports Stored the parked syncs are answered
//     and the group becomes Stable. A member that does not sync within the
//     rebalance time-out is removed (Kafka's pending-sync expiry) and a new
//     rebalance starts; so does a member whose session expires.
//   - Stable: followers' syncs get their assignment at once; a leader join,
//     a join with changed metadata, a new member, a leave or an expiry starts
//     a rebalance. A static member (group.instance.id, KIP-345) that rejoins
//     with an empty member id gets a new member id without a rebalance when
//     the selected protocol would not change; its old member id is fenced
//     (FENCED_INSTANCE_ID), and the join answer names the old leader so no
//     member believes itself leader of a stable group.
//   - Dead: after Delete; every request gets COORDINATOR_NOT_AVAILABLE.
//
// # Version-tied behaviour
//
// JoinGroup v4+ (Join.Version >= 4) with an empty member id from a dynamic
// member is answered MEMBER_ID_REQUIRED with a generated id; that id is
// tracked as pending (it holds up join completion) until the member rejoins
// with it or its session time-out passes. v0–v3 with an empty member id
// join at once. A zero RebalanceTimeout (JoinGroup v0) means the session
// time-out, as Kafka does.
//
// # Errors (codes from franz-go's kerr, as Kafka)
//
// INVALID_SESSION_TIMEOUT outside [group.min.session.timeout.ms,
// group.max.session.timeout.ms]; INCONSISTENT_GROUP_PROTOCOL for an empty
// protocol type or list, another protocol type, or no protocol all members
// support; UNKNOWN_MEMBER_ID; ILLEGAL_GENERATION; REBALANCE_IN_PROGRESS for
// a heartbeat or sync of the current generation during PreparingRebalance,
// and for parked syncs when a new rebalance starts; GROUP_MAX_SIZE_REACHED
// (Kafka's acceptJoiningMember: counted against awaiting members while
// preparing, against all members otherwise).
//
// # Session time-outs
//
// A member's session deadline is reset by every heartbeat, join and sync
// and whenever a parked response is sent. While a member waits for a
// parked response its session does not expire (Kafka's
// hasSatisfiedHeartbeat), except a brand-new member, which is expired after
// 5 minutes (Kafka's NewMemberJoinTimeoutMs) and answered UNKNOWN_MEMBER_ID.
// Tick fires due timers in deadline order, so one large clock jump behaves
// as the sequence of the time-outs it crosses.
//
// # Driver contract
//
// The broker's coordinator keeps one Group per group id and serialises the
// events of a group. JoinGroup vN becomes Join{Version: N} (RebalanceTimeout
// 0 for v0) and SyncGroup becomes Sync; each is parked under its ReqID until
// a JoinResult or SyncResult with that ReqID comes out of some later Ready
// (possibly from another member's request or from Tick). Heartbeat and
// LeaveGroup are answered at once; LeaveGroup v0–v2 names one member and
// returns that member's code as the top-level error. The driver calls
// Tick(now) at NextDeadline (or on a steady timer), persists each Store to
// __consumer_offsets and reports Stored, and on load or takeover rebuilds
// the group with Restore. A Dead group answers COORDINATOR_NOT_AVAILABLE;
// the driver drops it and creates a fresh Group for the next JoinGroup.
// Version-dependent response fields (ProtocolType v7+, SkipAssignment v9+)
// are the encoder's business.
//
// Eager and cooperative (cooperative-sticky) clients both work: assignment
// is client-side and the classic protocol is the same for both.
//
// # Where this differs from Kafka, on purpose
//
// Kafka silently drops a parked JoinGroup/SyncGroup callback when the same
// member sends another one or is removed; here every parked request is
// answered exactly once (the superseded or orphaned one with
// REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID), so a driver never leaks a
// parked request. A static member replacement in a Stable group emits a
// Store action but is answered at once (Kafka waits for the store). Where
// Kafka picks by hash-map order, this machine is deterministic: a protocol
// vote tie goes to the protocol voted first in join order, and a removed
// leader is succeeded by the earliest-joined remaining member.
package group
