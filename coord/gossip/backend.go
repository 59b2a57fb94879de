package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/brokkr/brokkr/coord"
)

// Backend is one gossip node: a memberlist member that holds a full replica
// of the records. It implements coord.Backend.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	name string
	addr string // advertised host:port
	ml   *memberlist.Memberlist

	queue    *memberlist.TransmitLimitedQueue
	nMembers atomic.Int32 // for the queue's NumNodes: must not take mu

	mu        sync.Mutex
	st        *store
	regs      []*registration
	cands     map[int32]uint64 // broker ID -> campaign token
	meta      []byte           // what NodeMeta returns
	members   map[string]*member
	deadAddrs map[string]time.Time // dead members' addresses, for reconnects
	watchers  map[*watcher]struct{}
	leaders   map[*leadership]struct{}
	changed   chan struct{} // closed and replaced on every change
	closed    bool

	start    time.Time    // monotonic base for lastTick
	lastTick atomic.Int64 // ns since start when the pause watchdog last ran

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ coord.Backend = (*Backend)(nil)

// member is another live (alive or suspect) node as this node sees it.
type member struct {
	name string
	addr string
	meta nodeMeta
}

// nodeMeta is what a node advertises in its memberlist metadata (at most
// memberlist.MetaMaxSize = 512 bytes of JSON).
type nodeMeta struct {
	Brokers []coord.BrokerInfo `json:"b,omitempty"`
	Cands   map[int32]uint64   `json:"c,omitempty"`
}

func random64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	v := binary.BigEndian.Uint64(b[:])
	if v == 0 {
		v = 1
	}
	return v
}

// Open starts a gossip node and joins the cluster through cfg.Seeds. It fails
// with a one-line error wrapping coord.ErrUnavailable when no seed can be
// joined within cfg.JoinTimeout, unless cfg.Bootstrap allows starting alone.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeName == "" {
		cfg.NodeName = defaultNodeName()
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lg = lg.With("node", cfg.NodeName)
	b := &Backend{
		cfg:       cfg,
		log:       lg,
		name:      cfg.NodeName,
		st:        newStore(time.Now),
		cands:     map[int32]uint64{},
		members:   map[string]*member{},
		deadAddrs: map[string]time.Time{},
		watchers:  map[*watcher]struct{}{},
		leaders:   map[*leadership]struct{}{},
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
		start:     time.Now(),
	}
	b.nMembers.Store(1)
	b.meta = b.encodeMetaLocked()
	b.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(b.nMembers.Load()) },
		RetransmitMult: cfg.RetransmitMult,
	}

	if cfg.StateFile != "" {
		if err := b.loadState(cfg.StateFile); err != nil {
			return nil, err
		}
	}

	mlLog := log.New(&logBridge{log: lg}, "", 0)
	nt, err := newNetTransport(cfg, mlLog)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	port := nt.GetAutoBindPort()
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = port
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = port
	}
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mc.AwarenessMaxMultiplier = cfg.AwarenessMaxMultiplier
	mc.GossipInterval = cfg.GossipInterval
	mc.GossipNodes = cfg.GossipNodes
	mc.RetransmitMult = cfg.RetransmitMult
	mc.PushPullInterval = cfg.PushPullInterval
	mc.GossipToTheDeadTime = cfg.PushPullInterval
	_, worst := cfg.FailureDetection(1)
	mc.DeadNodeReclaimTime = worst
	if cfg.ProbeInterval < time.Second {
		mc.TCPTimeout = 2 * time.Second
	}
	mc.Delegate = b
	mc.Events = b
	mc.Logger = mlLog
	var tr memberlist.Transport = nt
	if cfg.transport != nil {
		tr = cfg.transport(nt)
	}
	mc.Transport = tr

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("gossip: start node %s: %w", cfg.NodeName, err)
	}
	b.ml = ml
	self := ml.LocalNode()
	b.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))

	if err := b.join(ctx); err != nil {
		_ = ml.Shutdown()
		return nil, err
	}
	// The join exchanged state with one seed; exchange it with every member
	// too, so a new node starts with every write any reachable member had.
	sctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	if err := b.Sync(sctx); err != nil {
		b.log.Warn("initial state sync incomplete; anti-entropy will repair", "err", err)
	}
	cancel()
	if cfg.StateFile != "" {
		b.wg.Add(1)
		go b.persistLoop()
	}
	b.wg.Add(3)
	go b.reconnectLoop()
	go b.pauseWatchdog()
	go b.gcLoop()
	b.log.Info("gossip node started", "addr", b.addr, "members", ml.NumMembers())
	return b, nil
}

func newNetTransport(cfg Config, lg *log.Logger) (*memberlist.NetTransport, error) {
	tries := 1
	if cfg.BindPort == 0 {
		tries = 10 // a free TCP port may be taken for UDP: try again
	}
	var err error
	for i := 0; i < tries; i++ {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{cfg.BindAddr},
			BindPort:  cfg.BindPort,
			Logger:    lg,
		})
		if err == nil {
			return nt, nil
		}
	}
	return nil, err
}

// join contacts the seeds until one answers or JoinTimeout passes.
func (b *Backend) join(ctx context.Context) error {
	var seeds []string
	for _, s := range b.cfg.Seeds {
		if s != b.addr {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		b.log.Info("no other seed: starting a new cluster (Bootstrap)")
		return nil
	}
	deadline := time.Now().Add(b.cfg.JoinTimeout)
	var lastErr error
	for attempt := 0; ; attempt++ {
		n, err := b.ml.Join(seeds)
		if n > 0 {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(500*time.Millisecond, b.cfg.JoinTimeout/4)):
		}
	}
	if b.cfg.Bootstrap {
		b.log.Warn("no seed answered: starting a new cluster alone (Bootstrap)", "seeds", seeds, "err", lastErr)
		return nil
	}
	if ctx.Err() != nil {
		lastErr = ctx.Err()
	}
	return fmt.Errorf("gossip: could not join any seed of %v within %v: %v: %w", seeds, b.cfg.JoinTimeout, oneLine(lastErr), coord.ErrUnavailable)
}

// oneLine flattens an error (memberlist returns multi-line multierrors)
// into one line.
func oneLine(err error) string {
	if err == nil {
		return "no answer"
	}
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "* "))
		if l == "" || strings.HasSuffix(l, "occurred:") {
			continue
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

// Sync exchanges the full replica (a memberlist push/pull) with every live
// member in parallel and returns when all have answered or failed, or ctx
// ends. Afterwards this node holds every write that any member it reached
// had applied before the call. Watch calls it before taking its snapshot.
// It reports the members it could not reach; the replicas still converge
// through gossip and the periodic push/pull.
func (b *Backend) Sync(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.closedErr("sync")
	}
	var addrs []string
	for _, m := range b.members {
		addrs = append(addrs, m.addr)
	}
	b.mu.Unlock()
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		go func() {
			_, err := b.ml.Join([]string{a})
			if err != nil {
				err = fmt.Errorf("%s: %v", a, oneLine(err))
			}
			errs <- err
		}()
	}
	var failed []error
	for range addrs {
		select {
		case err := <-errs:
			if err != nil {
				failed = append(failed, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("gossip sync: %w", ctx.Err())
		case <-b.done:
			return b.closedErr("sync")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("gossip sync: %d of %d members unreachable: %w: %w", len(failed), len(addrs), errors.Join(failed...), coord.ErrUnavailable)
	}
	return nil
}

// Name is this node's memberlist name; Addr is its advertised host:port
// (what other nodes use as a seed).
func (b *Backend) Name() string { return b.name }

// Addr is this node's advertised gossip address, usable as a seed.
func (b *Backend) Addr() string { return b.addr }

// Capabilities: gossip has no consensus. See docs/coordination.md.
func (b *Backend) Capabilities() coord.Capabilities {
	return coord.Capabilities{Linearizable: false, SingleController: false, FencedWrites: false}
}

// notifyLocked wakes everything waiting for a change.
func (b *Backend) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Backend) encodeMetaLocked() []byte {
	m := nodeMeta{Cands: b.cands}
	for _, r := range b.regs {
		m.Brokers = append(m.Brokers, r.info)
	}
	out, _ := json.Marshal(m)
	return out
}

// setMetaLocked re-encodes the metadata; it fails (leaving it unchanged) if
// it would not fit memberlist's limit.
func (b *Backend) setMetaLocked() error {
	m := b.encodeMetaLocked()
	if len(m) > memberlist.MetaMaxSize {
		return fmt.Errorf("gossip: node metadata would be %d bytes, memberlist allows %d: fewer or shorter endpoints/meta", len(m), memberlist.MetaMaxSize)
	}
	b.meta = m
	return nil
}

// advertise sends the current metadata to the cluster. Never call with mu held.
func (b *Backend) advertise() {
	if err := b.ml.UpdateNode(2 * time.Second); err != nil {
		b.log.Debug("metadata update not yet confirmed", "err", err)
	}
}

// ---- memberlist.Delegate ----

// NodeMeta implements memberlist.Delegate.
func (b *Backend) NodeMeta(limit int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.meta) > limit { // cannot happen: setMetaLocked checks
		return nil
	}
	return append([]byte(nil), b.meta...)
}

// NotifyMsg implements memberlist.Delegate: one gossiped change.
func (b *Backend) NotifyMsg(buf []byte) {
	if len(buf) < 2 {
		return
	}
	msg := append([]byte(nil), buf...) // memberlist reuses buf; we re-queue msg
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	var fresh bool
	switch msg[0] {
	case msgEntry:
		var e entry
		if json.Unmarshal(msg[1:], &e) != nil || checkKey(e.Key) != nil {
			b.log.Warn("dropping malformed record message", "len", len(msg))
			return
		}
		fresh = b.applyLocked(&e)
		if fresh {
			b.queueLocked("r:"+e.Key, msg)
		}
	case msgClaim:
		var c claim
		if json.Unmarshal(msg[1:], &c) != nil {
			return
		}
		if b.st.applyClaim(c) {
			b.queueLocked("c", msg)
		}
	default:
		return
	}
	b.checkLeadersLocked()
	b.notifyLocked()
}

// GetBroadcasts implements memberlist.Delegate.
func (b *Backend) GetBroadcasts(overhead, limit int) [][]byte {
	return b.queue.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: the full replica.
func (b *Backend) LocalState(join bool) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out, _ := json.Marshal(b.st.snapshot())
	return out
}

// MergeRemoteState implements memberlist.Delegate: anti-entropy.
func (b *Backend) MergeRemoteState(buf []byte, join bool) {
	var ps pushState
	if err := json.Unmarshal(buf, &ps); err != nil {
		b.log.Warn("dropping malformed push/pull state", "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, e := range ps.Entries {
		if e == nil || checkKey(e.Key) != nil {
			continue
		}
		b.applyLocked(e)
	}
	if ps.Claim != nil {
		b.st.applyClaim(*ps.Claim)
	}
	b.checkLeadersLocked()
	b.notifyLocked()
}

// applyLocked merges e and tells the watchers.
func (b *Backend) applyLocked(e *entry) bool {
	applied, ev := b.st.apply(e)
	if ev != nil {
		for w := range b.watchers {
			w.push(*ev)
		}
	}
	return applied
}

// sessionLostLocked ends every leadership of this node (their candidacies
// are withdrawn and re-advertised); registrations stay.
func (b *Backend) sessionLostLocked(reason string) {
	if len(b.leaders) > 0 {
		b.log.Warn("gossip session presumed lost: leaderships end", "reason", reason)
	}
	for l := range b.leaders {
		b.loseLocked(l, "session presumed lost: "+reason)
	}
}

type bcast struct {
	name string
	msg  []byte
}

func (m *bcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == m.name
}
func (m *bcast) Message() []byte { return m.msg }
func (m *bcast) Finished()       {}
func (m *bcast) Name() string    { return m.name }

// bigMsg: messages larger than this do not fit a gossip packet and go to
// every member over TCP instead.
const bigMsg = 1000

// queueLocked spreads msg: through the broadcast queue (under mu, so two
// writes of one key are queued in the order they were applied), or over
// TCP to every member when it is too big for a packet.
func (b *Backend) queueLocked(name string, msg []byte) {
	if len(msg) <= bigMsg {
		b.queue.QueueBroadcast(&bcast{name: name, msg: msg})
		return
	}
	var to []*memberlist.Node
	for _, m := range b.members {
		host, port, err := net.SplitHostPort(m.addr)
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(port)
		to = append(to, &memberlist.Node{Name: m.name, Addr: net.ParseIP(host), Port: uint16(p)})
	}
	go func() {
		for _, n := range to {
			if err := b.ml.SendReliable(n, msg); err != nil {
				b.log.Debug("reliable send failed; push/pull will repair", "to", n.Name, "err", err)
			}
		}
	}()
}

// ---- memberlist.EventDelegate ----

// NotifyJoin implements memberlist.EventDelegate.
func (b *Backend) NotifyJoin(n *memberlist.Node) { b.memberUp(n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (b *Backend) NotifyUpdate(n *memberlist.Node) { b.memberUp(n) }

func (b *Backend) memberUp(n *memberlist.Node) {
	if n.Name == b.name {
		return
	}
	var meta nodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		b.log.Warn("member with unreadable metadata", "member", n.Name, "err", err)
	}
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.members[n.Name]; !ok {
		b.log.Info("member up", "member", n.Name, "member_addr", addr)
	}
	b.members[n.Name] = &member{name: n.Name, addr: addr, meta: meta}
	b.nMembers.Store(int32(len(b.members) + 1))
	delete(b.deadAddrs, addr)
	b.notifyLocked()
}

// NotifyLeave implements memberlist.EventDelegate: the member was declared
// dead or left. Its registration and candidacies vanish with it; its
// address is redialled for a while (a partition may heal).
func (b *Backend) NotifyLeave(n *memberlist.Node) {
	if n.Name == b.name {
		return
	}
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.members, n.Name)
	b.nMembers.Store(int32(len(b.members) + 1))
	left := n.State == memberlist.StateLeft
	b.log.Info("member gone", "member", n.Name, "left", left)
	if !left && !b.closed {
		b.deadAddrs[addr] = time.Now()
	}
	b.notifyLocked()
}

// ---- background loops ----

// reconnectLoop dials seeds and recently dead members that are not alive,
// so that both halves of a healed partition find each other again.
func (b *Backend) reconnectLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		b.mu.Lock()
		alive := map[string]bool{b.addr: true}
		for _, m := range b.members {
			alive[m.addr] = true
		}
		var targets []string
		for _, s := range b.cfg.Seeds {
			if !alive[s] {
				targets = append(targets, s)
			}
		}
		for a, at := range b.deadAddrs {
			if time.Since(at) > b.cfg.ReconnectTimeout {
				delete(b.deadAddrs, a)
			} else if !alive[a] {
				targets = append(targets, a)
			}
		}
		b.mu.Unlock()
		for _, a := range targets {
			select {
			case <-b.done:
				return
			default:
			}
			if n, err := b.ml.Join([]string{a}); n > 0 {
				b.log.Info("reconnected", "to", a)
			} else {
				b.log.Debug("reconnect failed", "to", a, "err", err)
			}
		}
	}
}

// pauseWatchdog notices that this process did not run for longer than
// PauseLimit (SIGSTOP, VM pause): the others may have declared it dead and
// elected another controller, so its leaderships end before it acts again.
func (b *Backend) pauseWatchdog() {
	defer b.wg.Done()
	if b.cfg.PauseLimit <= 0 {
		return
	}
	tick := max(b.cfg.PauseLimit/8, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			// Measured before taking any lock: waiting for the mutex is
			// not a pause, not getting scheduled at all is.
			now := int64(time.Since(b.start))
			if gap := time.Duration(now - b.lastTick.Swap(now)); gap > b.cfg.PauseLimit {
				b.mu.Lock()
				if !b.closed {
					b.sessionLostLocked(fmt.Sprintf("process did not run for %v (limit %v)", gap.Round(time.Millisecond), b.cfg.PauseLimit))
					b.notifyLocked()
				}
				b.mu.Unlock()
			}
		}
	}
}

// checkPauseLocked ends the leaderships if the watchdog has not run for
// longer than PauseLimit. Fenced writes call it, so a write queued while
// the process was stopped is refused even if it runs before the watchdog
// wakes up.
func (b *Backend) checkPauseLocked() {
	if b.cfg.PauseLimit <= 0 {
		return
	}
	if gap := time.Since(b.start) - time.Duration(b.lastTick.Load()); gap > b.cfg.PauseLimit {
		b.sessionLostLocked(fmt.Sprintf("process did not run for %v (limit %v)", gap.Round(time.Millisecond), b.cfg.PauseLimit))
	}
}

func (b *Backend) gcLoop() {
	defer b.wg.Done()
	t := time.NewTicker(max(min(b.cfg.TombstoneTTL/10, time.Minute), time.Second))
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case now := <-t.C:
			b.mu.Lock()
			if n := b.st.gc(now, b.cfg.TombstoneTTL); n > 0 {
				b.log.Debug("tombstones expired", "count", n)
			}
			b.mu.Unlock()
		}
	}
}

// Close leaves the cluster (the others see this node leave at once) and
// stops the node. Registrations and leaderships end. Idempotent.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		for l := range b.leaders {
			b.loseLocked(l, "backend closed")
		}
		for _, r := range b.regs {
			r.end()
		}
		b.regs = nil
		close(b.done)
		b.notifyLocked()
		b.mu.Unlock()
		if lerr := b.ml.Leave(time.Second); lerr != nil {
			b.log.Debug("leave", "err", lerr)
		}
		err = b.ml.Shutdown()
		b.wg.Wait()
	})
	return err
}

func (b *Backend) closedErr(op string) error {
	return fmt.Errorf("gossip %s: %w", op, coord.ErrClosed)
}

// ---- registration and broker watch ----

type registration struct {
	b       *Backend
	info    coord.BrokerInfo
	lost    chan struct{}
	endOnce sync.Once
}

func (r *registration) end()                  { r.endOnce.Do(func() { close(r.lost) }) }
func (r *registration) Lost() <-chan struct{} { return r.lost }

// Close removes the registration from this node's metadata; the others see
// it go with the next metadata update.
func (r *registration) Close(ctx context.Context) error {
	b := r.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	found := false
	for i, x := range b.regs {
		if x == r {
			b.regs = append(b.regs[:i:i], b.regs[i+1:]...)
			found = true
			break
		}
	}
	if found {
		_ = b.setMetaLocked() // smaller: always fits
		b.notifyLocked()
	}
	b.mu.Unlock()
	if found {
		b.advertise()
	}
	return nil
}

// Register puts b into this node's memberlist metadata: it is live exactly
// while this node is an alive or suspect member. Gossip re-establishes a
// session by itself (a node wrongly declared dead refutes and comes back),
// so Lost is closed only by Close of the Backend.
func (b *Backend) Register(ctx context.Context, info coord.BrokerInfo) (coord.Registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if info.ID < 0 {
		return nil, fmt.Errorf("gossip register: broker id %d is negative", info.ID)
	}
	info = copyInfo(info)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.closedErr("register")
	}
	for _, x := range b.liveBrokersLocked() {
		if x.ID == info.ID {
			b.mu.Unlock()
			return nil, fmt.Errorf("gossip register: broker %d is already registered by a live member: %w", info.ID, coord.ErrConflict)
		}
	}
	r := &registration{b: b, info: info, lost: make(chan struct{})}
	b.regs = append(b.regs, r)
	if err := b.setMetaLocked(); err != nil {
		b.regs = b.regs[:len(b.regs)-1]
		b.mu.Unlock()
		return nil, err
	}
	b.notifyLocked()
	b.mu.Unlock()
	b.advertise()
	return r, nil
}

func copyInfo(b coord.BrokerInfo) coord.BrokerInfo {
	b.Endpoints = append([]string(nil), b.Endpoints...)
	if b.Meta != nil {
		m := make(map[string]string, len(b.Meta))
		for k, v := range b.Meta {
			m[k] = v
		}
		b.Meta = m
	}
	return b
}

// liveBrokersLocked is the registrations of this node and of every alive or
// suspect member, sorted by ID; a broker ID registered by two members (a
// race between two partitions) is shown once, from the lowest node name.
func (b *Backend) liveBrokersLocked() []coord.BrokerInfo {
	type reg struct {
		node string
		info coord.BrokerInfo
	}
	byID := map[int32]reg{}
	add := func(node string, info coord.BrokerInfo) {
		if cur, ok := byID[info.ID]; !ok || node < cur.node {
			byID[info.ID] = reg{node, info}
		}
	}
	if !b.closed {
		for _, r := range b.regs {
			add(b.name, r.info)
		}
	}
	for _, m := range b.members {
		for _, info := range m.meta.Brokers {
			add(m.name, info)
		}
	}
	out := make([]coord.BrokerInfo, 0, len(byID))
	for _, r := range byID {
		out = append(out, copyInfo(r.info))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// WatchBrokers delivers the live brokers now and after every change of
// membership or metadata (consecutive equal lists are sent once).
func (b *Backend) WatchBrokers(ctx context.Context) (<-chan []coord.BrokerInfo, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.closedErr("watch brokers")
	}
	b.mu.Unlock()
	out := make(chan []coord.BrokerInfo, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		var last []byte
		first := true
		for {
			b.mu.Lock()
			list := b.liveBrokersLocked()
			wake := b.changed
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return
			}
			enc, _ := json.Marshal(list)
			if first || !bytes.Equal(enc, last) {
				select {
				case out <- list:
				case <-ctx.Done():
					return
				case <-b.done:
					return
				}
				first, last = false, enc
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			case <-b.done:
				return
			}
		}
	}()
	return out, nil
}

// ---- log bridge ----

// logBridge turns memberlist's "[LEVEL] memberlist: ..." lines into slog.
type logBridge struct{ log *slog.Logger }

func (l *logBridge) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	level := slog.LevelInfo
	for _, lv := range []struct {
		tag string
		lvl slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if i := bytes.Index(p, []byte(lv.tag)); i >= 0 {
			level = lv.lvl
			line = string(bytes.TrimSpace(p[i+len(lv.tag):]))
			break
		}
	}
	l.log.Log(context.Background(), level, line)
	return len(p), nil
}

var errNoController = errors.New("no live controller")
