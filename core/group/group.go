package group

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// NewMemberJoinTimeout bounds how long a new member's parked JoinGroup may
// wait (Kafka's NewMemberJoinTimeoutMs).
const NewMemberJoinTimeout = 5 * time.Minute

// maxTimerFirings bounds the timers one Tick fires (a guard against zero
// time-outs; each firing otherwise makes progress).
const maxTimerFirings = 1 << 16

type member struct {
	id, instanceID     string
	clientID, host     string
	session, rebalance time.Duration
	protocolType       string
	protocols          []Protocol
	assignment         []byte
	isNew              bool
	hasJoin, hasSync   bool
	joinReq, syncReq   ReqID
	joinVersion        int16
	deadline           time.Time // session deadline
}

func (m *member) metadataFor(proto string) []byte {
	for _, p := range m.protocols {
		if p.Name == proto {
			return p.Metadata
		}
	}
	return nil
}

func (m *member) matches(ps []Protocol) bool {
	if len(ps) != len(m.protocols) {
		return false
	}
	for i := range ps {
		if ps[i].Name != m.protocols[i].Name || string(ps[i].Metadata) != string(m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// Group is the state machine of one consumer group. It is not safe for
// concurrent use; the driver serialises events.
type Group struct {
	cfg   Config
	newID func(prefix string) string
	log   *slog.Logger

	state        State
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	order        []string             // member ids in join order
	static       map[string]string    // group.instance.id -> member id
	pending      map[string]time.Time // MEMBER_ID_REQUIRED ids -> expiry
	pendingSync  map[string]bool
	protoCount   map[string]int // members supporting each protocol
	awaiting     int            // members with a parked join

	joinDeadline     time.Time // PreparingRebalance only
	initialDelay     bool      // the join timer is Kafka's InitialDelayedJoin
	initialRemaining time.Duration
	newMemberAdded   bool
	syncDeadline     time.Time // zero when no pending-sync expiry is armed

	storing  bool // a leader's assignment awaits Stored
	storeGen int32
	storeAsg map[string][]byte

	out Ready
}

// Option configures a Group.
type Option func(*Group)

// WithMemberIDs replaces the member id generator (default: prefix + "-" +
// 32 random hex digits, prefix being the group.instance.id or client id, as
// Kafka). Tests pass a deterministic one.
func WithMemberIDs(f func(prefix string) string) Option {
	return func(g *Group) { g.newID = f }
}

// WithLogger logs rebalances and member removals with their reasons (Kafka
// logs the same at INFO). nil means discard.
func WithLogger(l *slog.Logger) Option {
	return func(g *Group) { g.log = l }
}

// New returns an Empty group. cfg must pass Validate.
func New(cfg Config, opts ...Option) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Group{
		cfg:         cfg,
		members:     map[string]*member{},
		static:      map[string]string{},
		pending:     map[string]time.Time{},
		pendingSync: map[string]bool{},
		protoCount:  map[string]int{},
		newID:       randomMemberID,
	}
	for _, o := range opts {
		o(g)
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g, nil
}

func randomMemberID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + "-" + hex.EncodeToString(b[:])
}

// State returns the current state.
func (g *Group) State() State { return g.state }

// Generation returns the current generation.
func (g *Group) Generation() int32 { return g.generation }

// ProtocolType is the group's protocol type ("consumer" for consumer
// groups; "" until a member has joined).
func (g *Group) ProtocolType() string { return g.protocolType }

// IsEmpty reports whether the group has no members and no pending members.
func (g *Group) IsEmpty() bool { return len(g.members) == 0 && len(g.pending) == 0 }

// Describe returns the group with every member's metadata for the selected
// protocol and its assignment. Kafka's DescribeGroups shows the protocol,
// metadata and assignments only for a Stable group (empty otherwise); the
// API handler should blank them the same way.
func (g *Group) Describe() Description {
	d := Description{State: g.state, Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader}
	d.Members = g.memberSnapshots()
	return d
}

func (g *Group) memberSnapshots() []MemberSnapshot {
	out := make([]MemberSnapshot, 0, len(g.order))
	for _, id := range g.order {
		m := g.members[id]
		out = append(out, MemberSnapshot{
			MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.host,
			SessionTimeout: m.session, RebalanceTimeout: m.rebalance,
			Metadata: m.metadataFor(g.protocol), Assignment: m.assignment,
		})
	}
	return out
}

func (g *Group) snapshot() *Snapshot {
	return &Snapshot{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, Members: g.memberSnapshots()}
}

// Restore loads a stored snapshot into a fresh group (coordinator start or
// takeover): Stable with its members, or Empty. Session deadlines start at now.
func Restore(cfg Config, s Snapshot, now time.Time, opts ...Option) (*Group, error) {
	g, err := New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	g.generation, g.protocolType, g.protocol = s.Generation, s.ProtocolType, s.Protocol
	for _, ms := range s.Members {
		if _, dup := g.members[ms.MemberID]; dup || ms.MemberID == "" {
			continue
		}
		m := &member{id: ms.MemberID, instanceID: ms.InstanceID, clientID: ms.ClientID, host: ms.ClientHost,
			session: ms.SessionTimeout, rebalance: ms.RebalanceTimeout, protocolType: s.ProtocolType,
			protocols: []Protocol{{Name: s.Protocol, Metadata: ms.Metadata}}, assignment: ms.Assignment,
			deadline: now.Add(ms.SessionTimeout)}
		g.members[m.id] = m
		g.order = append(g.order, m.id)
		g.countProtocols(m.protocols, 1)
		if m.instanceID != "" {
			g.static[m.instanceID] = m.id
		}
	}
	if len(g.members) > 0 {
		g.state = Stable
		g.leader = s.Leader
		if g.members[g.leader] == nil {
			g.leader = g.order[0]
		}
	} else {
		g.protocol = ""
	}
	return g, nil
}

// ---- output ----

func (g *Group) drain(now time.Time) Ready {
	g.tryCompleteJoin(now)
	r := g.out
	g.out = Ready{}
	return r
}

func errJoin(req ReqID, memberID string, err *kerr.Error) JoinResult {
	return JoinResult{Req: req, JoinResponse: JoinResponse{ErrorCode: err.Code, Generation: -1, MemberID: memberID}}
}

func (g *Group) respondJoin(now time.Time, req ReqID, r JoinResponse, m *member) {
	g.out.Joins = append(g.out.Joins, JoinResult{Req: req, JoinResponse: r})
	if m != nil {
		m.deadline = now.Add(m.session)
	}
}

// answerParkedJoin releases m's parked join, if any.
func (g *Group) answerParkedJoin(now time.Time, m *member, r JoinResponse) {
	if !m.hasJoin {
		return
	}
	g.setParkedJoin(m, false)
	g.respondJoin(now, m.joinReq, r, m)
}

// answerParkedSync releases m's parked sync, if any.
func (g *Group) answerParkedSync(now time.Time, m *member, r SyncResponse) {
	if !m.hasSync {
		return
	}
	m.hasSync = false
	g.out.Syncs = append(g.out.Syncs, SyncResult{Req: m.syncReq, MemberID: m.id, SyncResponse: r})
	m.deadline = now.Add(m.session)
}

func (g *Group) syncNow(req ReqID, memberID string, r SyncResponse) {
	g.out.Syncs = append(g.out.Syncs, SyncResult{Req: req, MemberID: memberID, SyncResponse: r})
}

// ---- membership bookkeeping ----

func (g *Group) isPending(id string) bool {
	_, ok := g.pending[id]
	return ok
}

func (g *Group) numAwaitingJoin() int { return g.awaiting }

func (g *Group) setParkedJoin(m *member, on bool) {
	if m.hasJoin != on {
		if on {
			g.awaiting++
		} else {
			g.awaiting--
		}
	}
	m.hasJoin = on
}

// countProtocols adds (delta 1) or removes (-1) a member's protocols from
// the per-protocol support counts (Kafka's supportedProtocols).
func (g *Group) countProtocols(ps []Protocol, delta int) {
	for i, p := range ps {
		dup := false
		for _, q := range ps[:i] {
			if q.Name == p.Name {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		g.protoCount[p.Name] += delta
		if g.protoCount[p.Name] == 0 {
			delete(g.protoCount, p.Name)
		}
	}
}

func (g *Group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalance)
	}
	return d
}

// supportsProtocols is Kafka's GroupMetadata.supportsProtocols.
func (g *Group) supportsProtocols(ptype string, ps []Protocol) bool {
	if g.state == Empty || len(g.members) == 0 {
		return ptype != "" && len(ps) > 0
	}
	if ptype != g.protocolType {
		return false
	}
	for _, p := range ps {
		if g.allSupport(p.Name) {
			return true
		}
	}
	return false
}

// validateMember is Kafka's validateCurrentMember.
func (g *Group) validateMember(memberID, instanceID string) *kerr.Error {
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		if !ok {
			return kerr.UnknownMemberID
		}
		if cur != memberID {
			return kerr.FencedInstanceID
		}
		return nil
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID
	}
	return nil
}

func (g *Group) add(now time.Time, m *member) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	g.members[m.id] = m
	g.order = append(g.order, m.id)
	g.countProtocols(m.protocols, 1)
	if m.hasJoin {
		g.awaiting++
	}
	if g.leader == "" {
		g.leader = m.id
	}
	if m.instanceID != "" {
		g.static[m.instanceID] = m.id
	}
	delete(g.pending, m.id)
}

// remove is Kafka's GroupMetadata.remove: no state change.
func (g *Group) remove(id string) {
	if m := g.members[id]; m != nil {
		delete(g.members, id)
		g.countProtocols(m.protocols, -1)
		if m.hasJoin {
			g.awaiting--
		}
		for i, o := range g.order {
			if o == id {
				g.order = append(g.order[:i:i], g.order[i+1:]...)
				break
			}
		}
		if m.instanceID != "" && g.static[m.instanceID] == id {
			delete(g.static, m.instanceID)
		}
	}
	if g.leader == id {
		g.leader = ""
		if len(g.order) > 0 {
			g.leader = g.order[0]
		}
	}
	delete(g.pending, id)
	g.removePendingSync(id)
}

func (g *Group) removePendingSync(id string) {
	delete(g.pendingSync, id)
	if len(g.pendingSync) == 0 {
		g.syncDeadline = time.Time{}
	}
}

// removeMemberAndUpdate is Kafka's removeMemberAndUpdateGroup.
func (g *Group) removeMemberAndUpdate(now time.Time, m *member, why string) {
	g.log.Info("removing member", "member", m.id, "instance", m.instanceID, "reason", why, "state", g.state.String())
	g.answerParkedJoin(now, m, JoinResponse{ErrorCode: kerr.UnknownMemberID.Code, Generation: -1})
	g.answerParkedSync(now, m, SyncResponse{ErrorCode: kerr.UnknownMemberID.Code})
	g.remove(m.id)
	switch g.state {
	case Stable, CompletingRebalance:
		g.maybePrepareRebalance(now, "member "+m.id+" removed: "+why)
	}
	// PreparingRebalance: drain checks whether the join can complete.
}

// ---- rebalance ----

func (g *Group) maybePrepareRebalance(now time.Time, why string) {
	switch g.state {
	case Stable, CompletingRebalance, Empty:
		g.prepareRebalance(now, why)
	}
}

func (g *Group) prepareRebalance(now time.Time, why string) {
	g.log.Info("preparing rebalance", "reason", why, "from", g.state.String(), "generation", g.generation, "members", len(g.members))
	if g.state == CompletingRebalance {
		// Kafka's resetAndPropagateAssignmentError.
		for _, id := range g.order {
			m := g.members[id]
			m.assignment = nil
			g.answerParkedSync(now, m, SyncResponse{ErrorCode: kerr.RebalanceInProgress.Code})
		}
	}
	clear(g.pendingSync)
	g.syncDeadline = time.Time{}
	g.storing = false
	if g.state == Empty {
		g.initialDelay = true
		g.newMemberAdded = false
		delay := g.cfg.InitialRebalanceDelay
		g.initialRemaining = max(g.rebalanceTimeout()-delay, 0)
		g.joinDeadline = now.Add(delay)
	} else {
		g.initialDelay = false
		g.joinDeadline = now.Add(g.rebalanceTimeout())
	}
	g.state = PreparingRebalance
}

// tryCompleteJoin is Kafka's DelayedJoin.tryComplete (InitialDelayedJoin
// never completes early).
func (g *Group) tryCompleteJoin(now time.Time) {
	if g.state != PreparingRebalance || g.initialDelay {
		return
	}
	if g.numAwaitingJoin() == len(g.members) && len(g.pending) == 0 {
		g.completeJoin(now)
	}
}

// joinTimerFired handles the join deadline at time t.
func (g *Group) joinTimerFired(t time.Time) {
	if g.initialDelay && g.newMemberAdded && g.initialRemaining > 0 && g.cfg.InitialRebalanceDelay > 0 {
		g.newMemberAdded = false
		delay := min(g.cfg.InitialRebalanceDelay, g.initialRemaining)
		g.initialRemaining = max(g.initialRemaining-delay, 0)
		g.joinDeadline = t.Add(delay)
		return
	}
	g.completeJoin(t)
}

// completeJoin is Kafka's onCompleteJoin.
func (g *Group) completeJoin(now time.Time) {
	g.joinDeadline = time.Time{}
	g.initialDelay = false
	for _, id := range append([]string(nil), g.order...) {
		if m := g.members[id]; !m.hasJoin && m.instanceID == "" {
			g.remove(id)
		}
	}
	if len(g.members) > 0 && !g.electJoinedLeader() {
		// Nobody rejoined: wait another rebalance time-out for the
		// session expiries to remove the silent members.
		g.joinDeadline = now.Add(g.rebalanceTimeout())
		return
	}
	g.generation++
	clear(g.pendingSync)
	g.syncDeadline = time.Time{}
	if len(g.members) == 0 {
		g.protocol = ""
		g.state = Empty
		g.out.Store = g.snapshot()
		return
	}
	g.protocol = g.selectProtocol()
	g.state = CompletingRebalance
	g.log.Info("join phase complete", "generation", g.generation, "protocol", g.protocol, "leader", g.leader, "members", len(g.members))
	var all []JoinMember
	for _, id := range g.order {
		m := g.members[id]
		all = append(all, JoinMember{MemberID: m.id, InstanceID: m.instanceID, Metadata: m.metadataFor(g.protocol)})
	}
	for _, id := range g.order {
		m := g.members[id]
		r := JoinResponse{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: m.id}
		if id == g.leader {
			r.Members = all
		}
		g.answerParkedJoin(now, m, r)
		m.deadline = now.Add(m.session)
		m.isNew = false
		g.pendingSync[id] = true
	}
	g.syncDeadline = now.Add(g.rebalanceTimeout())
}

// electJoinedLeader is Kafka's maybeElectNewJoinedLeader.
func (g *Group) electJoinedLeader() bool {
	l := g.members[g.leader]
	if l == nil {
		return false
	}
	if l.hasJoin {
		return true
	}
	for _, id := range g.order {
		if g.members[id].hasJoin {
			g.leader = id
			return true
		}
	}
	return false
}

// selectProtocol is Kafka's vote among the protocols every member supports;
// ties go to the protocol voted first in join order.
func (g *Group) selectProtocol() string {
	votes := map[string]int{}
	var first []string
	for _, id := range g.order {
		m := g.members[id]
		for _, p := range m.protocols {
			if g.allSupport(p.Name) {
				if votes[p.Name] == 0 {
					first = append(first, p.Name)
				}
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, name := range first {
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

func (g *Group) allSupport(name string) bool {
	return len(g.members) > 0 && g.protoCount[name] == len(g.members)
}

// ---- JoinGroup ----

// Join handles a JoinGroup request. Its response is in the returned Ready
// (now, or in a later Ready when the join phase completes).
func (g *Group) Join(now time.Time, j Join) Ready {
	g.join(now, j)
	return g.drain(now)
}

func (g *Group) join(now time.Time, j Join) {
	if j.RebalanceTimeout <= 0 {
		j.RebalanceTimeout = j.SessionTimeout
	}
	switch {
	case j.SessionTimeout < g.cfg.MinSessionTimeout || j.SessionTimeout > g.cfg.MaxSessionTimeout:
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, kerr.InvalidSessionTimeout))
		return
	case !g.acceptJoiningMember(j.MemberID):
		// Kafka checks the size before anything else about the group.
		if m := g.members[j.MemberID]; m != nil {
			g.removeMemberAndUpdate(now, m, "group.max.size reached")
		}
		delete(g.pending, j.MemberID)
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, "", kerr.GroupMaxSizeReached))
		return
	case g.state == Dead:
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, kerr.CoordinatorNotAvailable))
		return
	case !g.supportsProtocols(j.ProtocolType, j.Protocols):
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, kerr.InconsistentGroupProtocol))
		return
	}
	if j.MemberID == "" {
		g.newMemberJoin(now, j)
	} else {
		g.currentMemberJoin(now, j)
	}
}

// acceptJoiningMember is Kafka's: awaiting members count while preparing,
// all members otherwise.
func (g *Group) acceptJoiningMember(id string) bool {
	m := g.members[id]
	switch g.state {
	case PreparingRebalance:
		return (m != nil && m.hasJoin) || g.numAwaitingJoin() < g.cfg.MaxSize
	case CompletingRebalance, Stable:
		return m != nil || len(g.members) < g.cfg.MaxSize
	}
	return true
}

func (g *Group) newMemberJoin(now time.Time, j Join) {
	prefix := j.ClientID
	if j.InstanceID != "" {
		prefix = j.InstanceID
	}
	id := g.newID(prefix)
	for g.members[id] != nil || g.isPending(id) {
		id = g.newID(prefix)
	}
	switch {
	case j.InstanceID != "":
		if old, ok := g.static[j.InstanceID]; ok {
			g.updateStaticMember(now, old, id, j)
		} else {
			g.addMemberAndRebalance(now, id, j)
		}
	case j.Version >= 4:
		g.pending[id] = now.Add(j.SessionTimeout)
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, id, kerr.MemberIDRequired))
	default:
		g.addMemberAndRebalance(now, id, j)
	}
}

func (g *Group) addMemberAndRebalance(now time.Time, id string, j Join) {
	m := &member{id: id, instanceID: j.InstanceID, clientID: j.ClientID, host: j.ClientHost,
		session: j.SessionTimeout, rebalance: j.RebalanceTimeout, protocolType: j.ProtocolType,
		protocols: j.Protocols, isNew: true, hasJoin: true, joinReq: j.Req, joinVersion: j.Version,
		deadline: now.Add(NewMemberJoinTimeout)}
	if g.state == PreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.add(now, m)
	g.maybePrepareRebalance(now, "new member "+id+" joined")
}

// updateMember is Kafka's GroupMetadata.updateMember with a new parked join.
func (g *Group) updateMember(now time.Time, m *member, j Join) {
	g.countProtocols(m.protocols, -1)
	m.protocols = j.Protocols
	g.countProtocols(m.protocols, 1)
	m.protocolType = j.ProtocolType
	m.session, m.rebalance = j.SessionTimeout, j.RebalanceTimeout
	m.clientID, m.host = j.ClientID, j.ClientHost
	m.joinVersion = j.Version
	// Kafka drops a superseded callback; answer it so no request leaks.
	g.answerParkedJoin(now, m, JoinResponse{ErrorCode: kerr.RebalanceInProgress.Code, Generation: -1, MemberID: m.id})
	g.setParkedJoin(m, true)
	m.joinReq = j.Req
}

func (g *Group) updateMemberAndRebalance(now time.Time, m *member, j Join) {
	g.updateMember(now, m, j)
	g.maybePrepareRebalance(now, "member "+m.id+" rejoined (leader or changed metadata)")
}

// updateStaticMember is Kafka's updateStaticMemberAndRebalance.
func (g *Group) updateStaticMember(now time.Time, oldID, newID string, j Join) {
	oldLeader := g.leader
	m := g.members[oldID]
	// replaceStaticMember: fence whoever waits under the old id.
	g.answerParkedJoin(now, m, JoinResponse{ErrorCode: kerr.FencedInstanceID.Code, Generation: -1, MemberID: oldID})
	g.answerParkedSync(now, m, SyncResponse{ErrorCode: kerr.FencedInstanceID.Code})
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	for i, o := range g.order {
		if o == oldID {
			g.order[i] = newID
		}
	}
	if g.leader == oldID {
		g.leader = newID
	}
	g.static[j.InstanceID] = newID
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	m.deadline = now.Add(j.SessionTimeout)
	g.updateMember(now, m, j)

	switch g.state {
	case Stable:
		if g.selectProtocol() == g.protocol {
			g.setParkedJoin(m, false)
			r := JoinResponse{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol,
				Leader: oldLeader, MemberID: newID}
			if j.Version >= 9 && g.leader == newID {
				// KIP-814: the static leader learns the members but must not reassign.
				r.Leader, r.SkipAssignment = newID, true
				for _, id := range g.order {
					o := g.members[id]
					r.Members = append(r.Members, JoinMember{MemberID: o.id, InstanceID: o.instanceID, Metadata: o.metadataFor(g.protocol)})
				}
			}
			g.respondJoin(now, j.Req, r, m)
			g.out.Store = g.snapshot()
		} else {
			g.prepareRebalance(now, "static member "+newID+" rejoined with a protocol change")
		}
	case CompletingRebalance:
		g.prepareRebalance(now, "static member "+newID+" rejoined during CompletingRebalance")
	}
	// PreparingRebalance: the join stays parked.
}

func (g *Group) currentMemberJoin(now time.Time, j Join) {
	if _, ok := g.pending[j.MemberID]; ok {
		if j.InstanceID != "" {
			// Kafka never makes a static member pending; refuse the mix.
			g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, kerr.UnknownMemberID))
			return
		}
		g.addMemberAndRebalance(now, j.MemberID, j)
		return
	}
	if err := g.validateMember(j.MemberID, j.InstanceID); err != nil {
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, err))
		return
	}
	m := g.members[j.MemberID]
	current := func(withMembers bool) {
		r := JoinResponse{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: m.id}
		if withMembers {
			for _, id := range g.order {
				o := g.members[id]
				r.Members = append(r.Members, JoinMember{MemberID: o.id, InstanceID: o.instanceID, Metadata: o.metadataFor(g.protocol)})
			}
		}
		g.respondJoin(now, j.Req, r, m)
	}
	switch g.state {
	case PreparingRebalance:
		g.updateMemberAndRebalance(now, m, j)
	case CompletingRebalance:
		if m.matches(j.Protocols) {
			current(m.id == g.leader)
		} else {
			g.updateMemberAndRebalance(now, m, j)
		}
	case Stable:
		if m.id == g.leader || !m.matches(j.Protocols) {
			g.updateMemberAndRebalance(now, m, j)
		} else {
			current(false)
		}
	default:
		g.out.Joins = append(g.out.Joins, errJoin(j.Req, j.MemberID, kerr.UnknownMemberID))
	}
}

// ---- SyncGroup ----

// Sync handles a SyncGroup request; its response is in the returned Ready
// or a later one.
func (g *Group) Sync(now time.Time, s Sync) Ready {
	g.sync(now, s)
	return g.drain(now)
}

func (g *Group) sync(now time.Time, s Sync) {
	fail := func(err *kerr.Error) { g.syncNow(s.Req, s.MemberID, SyncResponse{ErrorCode: err.Code}) }
	if g.state == Dead {
		fail(kerr.CoordinatorNotAvailable)
		return
	}
	if err := g.validateMember(s.MemberID, s.InstanceID); err != nil {
		fail(err)
		return
	}
	if s.Generation != g.generation {
		fail(kerr.IllegalGeneration)
		return
	}
	if (s.ProtocolType != "" && s.ProtocolType != g.protocolType) || (s.Protocol != "" && s.Protocol != g.protocol) {
		fail(kerr.InconsistentGroupProtocol)
		return
	}
	m := g.members[s.MemberID]
	switch g.state {
	case Empty:
		fail(kerr.UnknownMemberID)
	case PreparingRebalance:
		fail(kerr.RebalanceInProgress)
	case CompletingRebalance:
		g.answerParkedSync(now, m, SyncResponse{ErrorCode: kerr.RebalanceInProgress.Code})
		m.hasSync, m.syncReq = true, s.Req
		g.removePendingSync(m.id)
		if m.id == g.leader && !g.storing {
			asg := map[string][]byte{}
			for _, a := range s.Assignments {
				if g.members[a.MemberID] != nil {
					asg[a.MemberID] = a.Assignment
				}
			}
			g.storing, g.storeGen, g.storeAsg = true, g.generation, asg
			snap := g.snapshot()
			for i := range snap.Members {
				snap.Members[i].Assignment = asg[snap.Members[i].MemberID]
			}
			g.out.Store = snap
		}
	case Stable:
		g.removePendingSync(m.id)
		g.syncNow(s.Req, m.id, SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment})
		m.deadline = now.Add(m.session)
	}
}

// Stored reports the outcome of persisting the Store of a leader's
// assignment for generation gen (errCode 0 on success). On success the
// parked syncs get their assignments and the group becomes Stable; on
// failure they get errCode and a rebalance starts. A stale report is
// ignored.
func (g *Group) Stored(now time.Time, gen int32, errCode int16) Ready {
	if !g.storing || gen != g.storeGen || g.state != CompletingRebalance || gen != g.generation {
		return g.drain(now)
	}
	g.storing = false
	asg := g.storeAsg
	g.storeAsg = nil
	if errCode != 0 {
		for _, id := range g.order {
			m := g.members[id]
			m.assignment = nil
			g.answerParkedSync(now, m, SyncResponse{ErrorCode: errCode})
		}
		g.prepareRebalance(now, "storing the assignment failed: "+errName(errCode))
		return g.drain(now)
	}
	for _, id := range g.order {
		m := g.members[id]
		m.assignment = asg[id]
		g.answerParkedSync(now, m, SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment})
	}
	g.state = Stable
	return g.drain(now)
}

// ---- Heartbeat ----

// Heartbeat handles a Heartbeat request, answered at once.
func (g *Group) Heartbeat(now time.Time, h Heartbeat) HeartbeatResponse {
	if g.state == Dead {
		return HeartbeatResponse{ErrorCode: kerr.CoordinatorNotAvailable.Code}
	}
	if err := g.validateMember(h.MemberID, h.InstanceID); err != nil {
		return HeartbeatResponse{ErrorCode: err.Code}
	}
	if h.Generation != g.generation {
		return HeartbeatResponse{ErrorCode: kerr.IllegalGeneration.Code}
	}
	m := g.members[h.MemberID]
	switch g.state {
	case Empty:
		return HeartbeatResponse{ErrorCode: kerr.UnknownMemberID.Code}
	case PreparingRebalance:
		m.deadline = now.Add(m.session)
		return HeartbeatResponse{ErrorCode: kerr.RebalanceInProgress.Code}
	}
	m.deadline = now.Add(m.session)
	return HeartbeatResponse{}
}

// ---- LeaveGroup ----

// Leave handles a (batch) LeaveGroup request: its response, and what the
// departures released.
func (g *Group) Leave(now time.Time, l Leave) (LeaveResponse, Ready) {
	if g.state == Dead {
		return LeaveResponse{ErrorCode: kerr.CoordinatorNotAvailable.Code}, g.drain(now)
	}
	var resp LeaveResponse
	for _, lm := range l.Members {
		res := LeaveMemberResult{MemberID: lm.MemberID, InstanceID: lm.InstanceID}
		switch {
		case lm.MemberID == "":
			if cur, ok := g.static[lm.InstanceID]; ok && lm.InstanceID != "" {
				g.removeMemberAndUpdate(now, g.members[cur], "left (by instance id)")
			} else {
				res.ErrorCode = kerr.UnknownMemberID.Code
			}
		case g.isPending(lm.MemberID):
			g.remove(lm.MemberID)
		default:
			if err := g.validateMember(lm.MemberID, lm.InstanceID); err != nil {
				res.ErrorCode = err.Code
			} else {
				g.removeMemberAndUpdate(now, g.members[lm.MemberID], "left")
			}
		}
		resp.Members = append(resp.Members, res)
	}
	return resp, g.drain(now)
}

// ---- DeleteGroups ----

// Delete marks an empty group Dead (DeleteGroups): NON_EMPTY_GROUP while it
// has members (or MEMBER_ID_REQUIRED ids pending), GROUP_ID_NOT_FOUND when
// already Dead, as Kafka.
func (g *Group) Delete(now time.Time) int16 {
	switch g.state {
	case Dead:
		return kerr.GroupIDNotFound.Code
	case Empty:
		if len(g.pending) == 0 {
			g.state = Dead
			return 0
		}
	}
	return kerr.NonEmptyGroup.Code
}

// ---- time ----

// Tick fires every time-out due at or before now, in deadline order:
// session expiries, MEMBER_ID_REQUIRED expiries, the pending-sync expiry and
// the join phase's deadline.
func (g *Group) Tick(now time.Time) Ready {
	for range maxTimerFirings {
		kind, t, id := g.nextTimer()
		if kind == timerNone || t.After(now) {
			break
		}
		switch kind {
		case timerSession:
			g.removeMemberAndUpdate(t, g.members[id], "session timed out")
		case timerPending:
			g.remove(id)
		case timerSync:
			g.syncExpired(t)
		case timerJoin:
			g.joinTimerFired(t)
		}
		g.tryCompleteJoin(t)
	}
	return g.drain(now)
}

// NextDeadline returns the earliest time Tick has work, if any; a driver
// may use it to schedule its timer.
func (g *Group) NextDeadline() (time.Time, bool) {
	kind, t, _ := g.nextTimer()
	return t, kind != timerNone
}

type timerKind int

const (
	timerNone timerKind = iota
	timerSession
	timerPending
	timerSync
	timerJoin
)

func (g *Group) nextTimer() (timerKind, time.Time, string) {
	kind, best, bid := timerNone, time.Time{}, ""
	consider := func(k timerKind, t time.Time, id string) {
		if t.IsZero() {
			return
		}
		if kind == timerNone || t.Before(best) {
			kind, best, bid = k, t, id
		}
	}
	if g.state == Dead {
		return timerNone, best, ""
	}
	for _, id := range g.order {
		m := g.members[id]
		// A member waiting for a parked response does not expire, unless
		// it is new (Kafka's hasSatisfiedHeartbeat).
		if !m.isNew && (m.hasJoin || m.hasSync) {
			continue
		}
		consider(timerSession, m.deadline, id)
	}
	var pend []string
	for id := range g.pending {
		pend = append(pend, id)
	}
	slices.Sort(pend)
	for _, id := range pend {
		consider(timerPending, g.pending[id], id)
	}
	if len(g.pendingSync) > 0 && (g.state == CompletingRebalance || g.state == Stable) {
		consider(timerSync, g.syncDeadline, "")
	}
	if g.state == PreparingRebalance {
		consider(timerJoin, g.joinDeadline, "")
	}
	return kind, best, bid
}

// syncExpired is Kafka's onExpirePendingSync: members that did not sync in
// the rebalance time-out are removed and a rebalance starts.
func (g *Group) syncExpired(t time.Time) {
	g.syncDeadline = time.Time{}
	if len(g.pendingSync) == 0 {
		return
	}
	for _, id := range append([]string(nil), g.order...) {
		if g.pendingSync[id] {
			m := g.members[id]
			g.answerParkedJoin(t, m, JoinResponse{ErrorCode: kerr.UnknownMemberID.Code, Generation: -1})
			g.answerParkedSync(t, m, SyncResponse{ErrorCode: kerr.UnknownMemberID.Code})
			g.remove(id)
		}
	}
	g.prepareRebalance(t, "members did not sync within the rebalance time-out")
}

func errName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if e, ok := kerr.ErrorForCode(code).(*kerr.Error); ok {
		return e.Message
	}
	return strconv.Itoa(int(code))
}
