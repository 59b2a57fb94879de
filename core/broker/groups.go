package broker

// The group coordinator: the driver of core/group's state machine.
//
// Every partition of __consumer_offsets this broker leads is a shard: it
// holds the groups that hash to it (group.Partition(id, n), Kafka's
// abs(hashCode) % n), their committed offsets, and the requests parked on
// them. A shard starts in the loading state; a background goroutine reads
// its partition from log start to log end through the log (group.Loader),
// restores each group (group.Restore) and only then serves. While loading,
// the shard answers COORDINATOR_LOAD_IN_PROGRESS (Heartbeat and SyncGroup
// answer as Kafka does, see their files), never NOT_COORDINATOR.
//
// Events of a shard are serialised by the shard's mutex: a request locks
// it, feeds the group's machine, acts on the Ready (answers parked
// JoinGroup/SyncGroup requests, possibly of other connections; appends a
// Store to the partition and reports Stored), re-arms the group's timer and
// unlocks. Each group has one timer (time.AfterFunc) set to the machine's
// NextDeadline; it locks the shard and calls Tick. Offset commits are
// appended to the partition before they are acknowledged, under the same
// lock, so the log order is the order of the in-memory changes.
//
// On Close every parked request is answered NOT_COORDINATOR (as Kafka's
// resignation does) so no client waits for a broker that is going away.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/core/group"
	plog "github.com/brokkr/brokkr/core/log"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/segment"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetsTopic is Kafka's internal topic for group metadata and offsets.
const offsetsTopic = "__consumer_offsets"

// offsetsTopicSegmentBytes is Kafka's offsets.topic.segment.bytes default.
const offsetsTopicSegmentBytes = 100 << 20

type shardState int8

const (
	shardLoading shardState = iota
	shardActive
	shardClosed
)

// groupCoord is the broker's group coordinator: the shards it leads.
type groupCoord struct {
	b   *Broker
	cfg group.Config
	seq atomic.Uint64 // ReqIDs

	mu      sync.RWMutex
	n       int32   // partitions of __consumer_offsets; 0 until known
	leaders []int32 // leader of each partition
	shards  map[int32]*shard
	closed  bool

	minMu sync.Mutex // guards mins; taken before a shard's lock
	mins  map[tp]int64

	dirtyMu  sync.Mutex // a leaf lock: guards dirty, dirtyAll
	dirty    map[tp]bool
	dirtyAll bool
}

// shard is one __consumer_offsets partition this broker leads.
type shard struct {
	c    *groupCoord
	idx  int32
	part *partition

	mu      sync.Mutex
	state   shardState
	groups  map[string]*groupEntry
	offsets *group.Offsets
	parked  map[group.ReqID]chan any // JoinResponse or SyncResponse
	// deletedTopics were deleted while the shard was loading; their
	// offsets are dropped when the load finishes.
	deletedTopics []string
}

// groupEntry is one group of a shard.
type groupEntry struct {
	name       string
	g          *group.Group
	state      group.State
	stateSince int64 // ms: when the group entered its current state (Kafka's currentStateTimestamp)
	timer      *time.Timer
}

func newGroupCoord(b *Broker) *groupCoord {
	return &groupCoord{b: b, cfg: b.groupConfig(), shards: map[int32]*shard{}}
}

// groupConfig maps the broker config to the state machine's.
func (b *Broker) groupConfig() group.Config {
	c := group.DefaultConfig()
	c.MinSessionTimeout = time.Duration(b.Config.GroupMinSessionTimeoutMs) * time.Millisecond
	c.MaxSessionTimeout = time.Duration(b.Config.GroupMaxSessionTimeoutMs) * time.Millisecond
	c.InitialRebalanceDelay = time.Duration(b.Config.GroupInitialRebalanceDelayMs) * time.Millisecond
	c.MaxSize = int(b.Config.GroupMaxSize)
	return c
}

func (c *groupCoord) nextReq() group.ReqID { return group.ReqID(c.seq.Add(1)) }

// setup finds (or, as the controller, creates) __consumer_offsets and
// creates a loading shard for each partition this broker leads. Start
// calls it once so FindCoordinator answers as soon as the broker is ready;
// if that fails, run retries.
func (c *groupCoord) setup(ctx context.Context) ([]*shard, error) {
	t, err := c.b.ensureOffsetsTopic(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.b.ensureLocalLogs(t); err != nil {
		c.b.log.Error("opening the logs of __consumer_offsets", "err", err)
	}
	leaders := make([]int32, len(t.Partitions))
	var mine []*shard
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("closed")
	}
	for i, p := range t.Partitions {
		leaders[i] = p.Leader
		if p.Leader != c.b.Config.NodeID {
			continue
		}
		part := c.b.partitionFor(offsetsTopic, p.Index)
		if part == nil {
			continue
		}
		s := &shard{c: c, idx: p.Index, part: part, state: shardLoading, groups: map[string]*groupEntry{},
			offsets: group.NewOffsets(), parked: map[group.ReqID]chan any{}}
		c.shards[p.Index] = s
		mine = append(mine, s)
	}
	c.leaders = leaders
	c.n = int32(len(t.Partitions))
	return mine, nil
}

// run finishes what setup did not (retrying until ctx ends) and loads the
// shards (mine, when setup already ran) in the background.
func (c *groupCoord) run(ctx context.Context, mine []*shard, ready bool) {
	for attempt := 0; !ready; attempt++ {
		var err error
		if mine, err = c.setup(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if attempt%20 == 0 {
			c.b.log.Warn("__consumer_offsets is not available yet; group requests wait", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	start := time.Now()
	var recs, groups int
	pending := mine
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		var failed []*shard
		for _, s := range pending {
			if ctx.Err() != nil {
				return
			}
			n, g, err := s.load()
			if err != nil {
				// A shard that cannot be read stays loading (its groups get a
				// retriable error rather than a coordinator that forgot
				// them) and is read again after a back-off.
				c.b.log.Error("loading a group coordinator shard failed; its groups wait, retrying", "partition", s.idx, "err", err, "retry_in", delay)
				failed = append(failed, s)
				continue
			}
			recs += n
			groups += g
		}
		if len(pending) == len(mine) {
			c.b.log.Info("group coordinator loaded", "shards", len(mine)-len(failed), "failed", len(failed), "records", recs, "groups", groups, "in", time.Since(start))
		}
		if pending = failed; len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// ensureOffsetsTopic returns __consumer_offsets, creating it when this
// broker is the controller and it is missing.
func (b *Broker) ensureOffsetsTopic(ctx context.Context) (controller.Topic, error) {
	t, err := b.topic(ctx, offsetsTopic)
	if err == nil && !t.Deleting {
		return t, nil
	}
	var ce *controller.Error
	if err != nil && !(errors.As(err, &ce) && ce.Err == kerr.UnknownTopicOrPartition) {
		return t, err
	}
	m := b.controllerMeta()
	if m == nil {
		return t, errors.New("no controller to create it yet")
	}
	rf := b.Config.OffsetsTopicReplicationFactor
	if live := int16(len(b.liveIDs())); live > 0 && rf > live {
		// Kafka refuses to create the topic until enough brokers are up;
		// a single-broker Brokkr would never serve groups, so use what there is.
		b.log.Warn("offsets.topic.replication.factor is larger than the live brokers; creating __consumer_offsets with fewer replicas",
			"offsets.topic.replication.factor", rf, "live", live)
		rf = live
	}
	t, err = b.createTopic(ctx, m, controller.CreateTopicRequest{
		Name: offsetsTopic, NumPartitions: b.Config.OffsetsTopicNumPartitions, ReplicationFactor: rf, Internal: true,
		Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": fmt.Sprint(offsetsTopicSegmentBytes), "compression.type": "producer"},
	})
	if errors.As(err, &ce) && ce.Err == kerr.TopicAlreadyExists {
		return b.topic(ctx, offsetsTopic)
	}
	return t, err
}

// close answers every parked request and stops the timers.
func (c *groupCoord) close() {
	c.mu.Lock()
	c.closed = true
	shards := make([]*shard, 0, len(c.shards))
	for _, s := range c.shards {
		shards = append(shards, s)
	}
	c.mu.Unlock()
	for _, s := range shards {
		s.mu.Lock()
		s.state = shardClosed
		for _, e := range s.groups {
			if e.timer != nil {
				e.timer.Stop()
			}
		}
		for id, ch := range s.parked {
			ch <- errParked(kerr.NotCoordinator.Code)
			delete(s.parked, id)
		}
		s.mu.Unlock()
	}
}

// errParked is what a parked request gets when the shard goes away.
type errParked int16

// coordinatorOf returns the leader of the group's partition, or an error code.
func (c *groupCoord) coordinatorOf(groupID string) (int32, int16) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.n == 0 {
		return -1, kerr.CoordinatorNotAvailable.Code
	}
	l := c.leaders[group.Partition(groupID, int(c.n))]
	if l < 0 {
		return -1, kerr.CoordinatorNotAvailable.Code
	}
	return l, 0
}

// lock returns the group's shard locked and active, or the error code to
// answer: COORDINATOR_LOAD_IN_PROGRESS while the shard (or the offsets
// topic itself) is being set up, NOT_COORDINATOR for a group another broker
// leads and for every group once the broker is shutting down.
func (c *groupCoord) lock(groupID string) (*shard, int16) {
	c.mu.RLock()
	n, closed := c.n, c.closed
	var s *shard
	if n > 0 {
		s = c.shards[group.Partition(groupID, int(n))]
	}
	c.mu.RUnlock()
	switch {
	case closed:
		return nil, kerr.NotCoordinator.Code
	case n == 0:
		return nil, kerr.CoordinatorLoadInProgress.Code
	case s == nil:
		return nil, kerr.NotCoordinator.Code
	}
	s.mu.Lock()
	switch s.state {
	case shardLoading:
		s.mu.Unlock()
		return nil, kerr.CoordinatorLoadInProgress.Code
	case shardClosed:
		s.mu.Unlock()
		return nil, kerr.NotCoordinator.Code
	}
	return s, 0
}

// allShards returns the shards by partition, and whether the offsets
// topic is still unknown (so more shards may come).
func (c *groupCoord) allShards() ([]*shard, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*shard, 0, len(c.shards))
	for _, s := range c.shards {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].idx < out[j].idx })
	return out, c.n == 0
}

// entry returns the group, creating an Empty one when create is set.
func (s *shard) entry(name string, create bool, now time.Time) *groupEntry {
	if e := s.groups[name]; e != nil {
		return e
	}
	if !create {
		return nil
	}
	g, err := group.New(s.c.cfg, group.WithLogger(s.c.b.log.With("group", name)))
	if err != nil {
		panic(err) // the config was validated at start
	}
	e := &groupEntry{name: name, g: g, state: group.Empty, stateSince: now.UnixMilli()}
	s.groups[name] = e
	return e
}

// park registers a request that will be answered by a later Ready.
func (s *shard) park() (group.ReqID, chan any) {
	id := s.c.nextReq()
	ch := make(chan any, 1)
	s.parked[id] = ch
	return id, ch
}

func (s *shard) deliver(id group.ReqID, v any) {
	if ch, ok := s.parked[id]; ok {
		delete(s.parked, id)
		ch <- v
	}
}

// apply acts on what an event released: answers, the Store (appended, then
// reported with Stored, whose Ready is applied in turn), the state
// timestamp, the timer; a Dead group is dropped.
func (s *shard) apply(e *groupEntry, r group.Ready, now time.Time) {
	for range 100 { // each Stored releases at most one more Store; bounded anyway
		s.noteState(e, now)
		for _, j := range r.Joins {
			s.deliver(j.Req, j.JoinResponse)
		}
		for _, y := range r.Syncs {
			s.deliver(y.Req, y.SyncResponse)
		}
		if r.Store == nil {
			break
		}
		code := s.storeGroup(e, r.Store, now)
		r = e.g.Stored(now, r.Store.Generation, code)
	}
	s.noteState(e, now)
	if e.g.State() == group.Dead {
		s.drop(e)
		return
	}
	s.arm(e)
}

func (s *shard) noteState(e *groupEntry, now time.Time) {
	if st := e.g.State(); st != e.state {
		e.state, e.stateSince = st, now.UnixMilli()
	}
}

func (s *shard) drop(e *groupEntry) {
	if e.timer != nil {
		e.timer.Stop()
	}
	if s.groups[e.name] == e {
		delete(s.groups, e.name)
	}
}

// arm sets the group's timer to the machine's next deadline.
func (s *shard) arm(e *groupEntry) {
	at, ok := e.g.NextDeadline()
	if !ok {
		if e.timer != nil {
			e.timer.Stop()
		}
		return
	}
	d := time.Until(at)
	if e.timer == nil {
		e.timer = time.AfterFunc(d, func() { s.tick(e) })
		return
	}
	e.timer.Reset(d)
}

func (s *shard) tick(e *groupEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != shardActive || s.groups[e.name] != e {
		return
	}
	now := time.Now()
	s.apply(e, e.g.Tick(now), now)
}

// storeGroup appends a GroupMetadata record and returns the code to report
// with Stored (Kafka's mapping of append errors for a group's assignment).
func (s *shard) storeGroup(e *groupEntry, snap *group.Snapshot, now time.Time) int16 {
	since := e.stateSince
	if since < 0 {
		since = now.UnixMilli()
	}
	k, v := group.GroupMetadataRecord(e.name, snap, since)
	if err := s.appendRecords(now, [][2][]byte{{k, v}}); err != nil {
		s.c.b.log.Error("storing group metadata failed", "group", e.name, "partition", s.idx, "err", err)
		return appendErrCode(err, false)
	}
	return 0
}

// appendRecords appends key/value records as one batch to the shard's
// partition and advances the high watermark, as Produce does with one
// replica.
func (s *shard) appendRecords(now time.Time, kvs [][2][]byte) error {
	if len(kvs) == 0 {
		return nil
	}
	recs := make([]codec.Record, len(kvs))
	for i, kv := range kvs {
		recs[i] = codec.Record{OffsetDelta: int32(i), Key: kv[0], Value: kv[1]}
	}
	ts := now.UnixMilli()
	batch, err := codec.EncodeBatch(codec.BatchHeader{
		PartitionLeaderEpoch: -1, BaseTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1,
	}, recs)
	if err != nil {
		return err
	}
	p := s.part
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if _, _, err := p.log.Append(batch, p.leaderEpoch); err != nil {
		return err
	}
	p.log.SetHighWatermark(p.log.EndOffset())
	return nil
}

// appendErrCode maps an append error to the code a group API answers
// (Kafka's GroupMetadataManager: storage trouble means this broker cannot
// coordinate; too large a commit is INVALID_COMMIT_OFFSET_SIZE).
func appendErrCode(err error, commit bool) int16 {
	code := segment.KafkaCode(err)
	switch {
	case code == kerr.MessageTooLarge.Code || code == kerr.RecordListTooLarge.Code:
		if commit {
			return kerr.InvalidCommitOffsetSize.Code
		}
		return kerr.UnknownServerError.Code
	case errors.Is(err, segment.ErrStorage), errors.Is(err, plog.ErrClosed):
		return kerr.NotCoordinator.Code
	}
	return kerr.UnknownServerError.Code
}

// load reads the shard's partition and restores its groups and offsets.
// It returns the records read and the groups restored.
func (s *shard) load() (int, int, error) {
	start := time.Now()
	ld := group.NewLoader()
	var skipped int
	var firstBad error
	recs, err := readAll(s.part.log, func(key, value []byte) error {
		if err := ld.Apply(key, value); err != nil {
			// As Kafka's GroupMetadataManager: a record this version does
			// not know (a newer key version, a damaged value) is logged and
			// skipped; it must not keep every group of the shard offline.
			skipped++
			if firstBad == nil {
				firstBad = err
			}
		}
		return nil
	})
	if err != nil {
		return recs, 0, err
	}
	if skipped > 0 {
		s.c.b.log.Warn("skipped __consumer_offsets records that do not decode", "partition", s.idx, "skipped", skipped, "first", firstBad)
	}
	loaded := ld.Done()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == shardClosed {
		return recs, 0, nil
	}
	for name, lg := range loaded.Groups {
		g, err := group.Restore(s.c.cfg, lg.Snapshot, now, group.WithLogger(s.c.b.log.With("group", name)))
		if err != nil {
			return recs, 0, err
		}
		since := lg.CurrentStateTimestamp // -1 when unknown: offsets then age from their commit
		e := &groupEntry{name: name, g: g, state: g.State(), stateSince: since}
		s.groups[name] = e
		s.arm(e)
	}
	if loaded.Offsets != nil {
		s.offsets = loaded.Offsets
	}
	for _, name := range s.offsets.Groups() {
		if s.groups[name] == nil {
			s.entry(name, true, now)
		}
	}
	s.state = shardActive
	for _, t := range s.deletedTopics {
		s.dropTopicOffsets(t, now)
	}
	s.deletedTopics = nil
	s.c.touched(nil, true)
	s.c.b.log.Debug("group coordinator shard loaded", "partition", s.idx, "records", recs, "groups", len(s.groups), "in", time.Since(start))
	return recs, len(s.groups), nil
}

// readAll calls fn for every record of the log from its start to its end
// (compressed batches inflated; control batches skipped). Reading and
// decoding run in a goroutine of their own, a chunk (up to 8 MiB of
// batches) ahead of fn, so a load uses two cores; fn must not keep the
// slices it is given.
func readAll(pl partLog, fn func(key, value []byte) error) (int, error) {
	a, ok := pl.(*logAdapter)
	if !ok {
		return 0, fmt.Errorf("log %T cannot be read for loading", pl)
	}
	const depth = 2
	chunks := make(chan *decodedChunk, depth)
	free := make(chan *decodedChunk, depth+2)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(chunks)
		l := a.l
		off, end := l.LogStartOffset(), l.LogEndOffset()
		for off < end {
			var c *decodedChunk
			select {
			case c = <-free:
			default:
				c = &decodedChunk{}
			}
			next, err := c.read(l, off)
			if err == nil && next <= off {
				err = fmt.Errorf("no progress reading at offset %d", off)
			}
			c.err = err
			select {
			case chunks <- c:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
			off = next
		}
	}()
	n := 0
	for c := range chunks {
		for _, r := range c.recs {
			n++
			if err := fn(c.slice(r.key), c.slice(r.value)); err != nil {
				return n, err
			}
		}
		if c.err != nil {
			return n, c.err
		}
		select {
		case free <- c:
		default:
		}
	}
	return n, nil
}

// decodedChunk is one read of the log: its bytes, the inflated records of
// its compressed batches, and where each record's key and value are. The
// records are positions, not slices, so the garbage collector has nothing
// to scan or barrier in them.
type decodedChunk struct {
	buf    []byte
	plains [][]byte // inflated batches; span.buf-1 indexes them
	recs   []kvSpan
	err    error
}

type span struct {
	buf      int32 // 0: decodedChunk.buf; i > 0: plains[i-1]
	off, len int32 // len -1: null
}

type kvSpan struct{ key, value span }

func (c *decodedChunk) slice(s span) []byte {
	if s.len < 0 {
		return nil
	}
	b := c.buf
	if s.buf > 0 {
		b = c.plains[s.buf-1]
	}
	return b[s.off : s.off+s.len : s.off+s.len]
}

// read reads whole batches from off (up to 8 MiB, at least one batch) and
// locates their records; it returns the offset after the last batch read.
func (c *decodedChunk) read(l *plog.Log, off int64) (int64, error) {
	c.buf, c.plains, c.recs = c.buf[:0], c.plains[:0], c.recs[:0]
	res, err := l.Read(off, plog.ReadOptions{MaxBytes: 8 << 20, Limit: plog.LimitLogEnd, MinOneBatch: true})
	if err != nil {
		return off, err
	}
	if res.Region.Len == 0 {
		res.Release()
		return res.LogEndOffset, nil
	}
	if int64(cap(c.buf)) < res.Region.Len {
		c.buf = make([]byte, res.Region.Len)
	}
	c.buf = c.buf[:res.Region.Len]
	_, err = res.Region.File.ReadAt(c.buf, res.Region.Pos)
	res.Release()
	if err != nil {
		return off, err
	}
	next := off
	for pos := 0; pos+segment.HeaderSize <= len(c.buf); {
		h, err := segment.ParseHeader(c.buf[pos:])
		if err != nil {
			return next, fmt.Errorf("offset %d: %w", next, err)
		}
		size := int(h.Size())
		if pos+size > len(c.buf) {
			break
		}
		batch, base := c.buf[pos:pos+size], int32(pos)
		pos += size
		next = h.NextOffset()
		if h.Control() || h.NextOffset() <= off {
			continue
		}
		which := int32(0)
		if h.Codec() != segment.CodecNone {
			plain, err := codec.PlainBatch(batch, maxDecompressed)
			if err != nil {
				return next, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			c.plains = append(c.plains, plain)
			batch, base, which = plain, 0, int32(len(c.plains))
		}
		// Keys and values are subslices of batch (WalkRecords does not
		// copy): their positions follow from their addresses.
		start := uintptr(unsafe.Pointer(unsafe.SliceData(batch)))
		outside := false
		at := func(b []byte) span {
			if b == nil {
				return span{len: -1}
			}
			if len(b) == 0 {
				return span{buf: which}
			}
			d := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - start
			if d > uintptr(len(batch)-len(b)) {
				outside = true // not a subslice of batch: refuse rather than misread
				return span{len: -1}
			}
			return span{buf: which, off: base + int32(d), len: int32(len(b))}
		}
		err = segment.WalkRecords(batch, func(r segment.Record) error {
			if h.BaseOffset+int64(r.OffsetDelta) >= off {
				c.recs = append(c.recs, kvSpan{key: at(r.Key), value: at(r.Value)})
			}
			return nil
		})
		if err == nil && outside {
			err = errors.New("a record's key or value is not inside its batch")
		}
		if err != nil {
			return next, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
		}
	}
	return next, nil
}

// minCommittedOffset is the lowest offset any group committed for the
// partition, -1 when none has (or the coordinator does not know yet). The
// retention loop asks for every partition in turn, so the answers come
// from a table of all partitions built in one pass over the committed
// offsets; a commit marks its partition dirty (recomputed alone on the
// next question), a load, expiry or deletion marks everything.
func (b *Broker) minCommittedOffset(topic string, partition int32) int64 {
	c := b.groups
	if c == nil {
		return -1
	}
	k := tp{topic, partition}
	c.minMu.Lock()
	defer c.minMu.Unlock()
	c.dirtyMu.Lock()
	all, one := c.dirtyAll || c.mins == nil, c.dirty[k]
	if all {
		c.dirtyAll, c.dirty = false, map[tp]bool{}
	} else if one {
		delete(c.dirty, k)
	}
	c.dirtyMu.Unlock()
	shards, _ := c.allShards()
	switch {
	case all:
		c.mins = minCommitted(shards)
	case one:
		if v := minCommittedOne(shards, k); v >= 0 {
			c.mins[k] = v
		} else {
			delete(c.mins, k)
		}
	}
	if v, ok := c.mins[k]; ok {
		return v
	}
	return -1
}

// touched marks partitions whose committed offsets changed (nil keys:
// everything). Called with a shard's lock held; dirtyMu is a leaf lock.
func (c *groupCoord) touched(keys []group.OffsetKey, all bool) {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	if all {
		c.dirtyAll = true
		return
	}
	if c.dirty == nil {
		c.dirty = map[tp]bool{}
	}
	for _, k := range keys {
		c.dirty[tp{k.Topic, k.Partition}] = true
	}
}

// minCommittedOne is minCommitted for one partition.
func minCommittedOne(shards []*shard, k tp) int64 {
	low := int64(-1)
	for _, s := range shards {
		s.mu.Lock()
		if s.state == shardActive {
			for _, g := range s.offsets.Groups() {
				if o, ok := s.offsets.Get(group.OffsetKey{Group: g, Topic: k.topic, Partition: k.index}); ok && (low < 0 || o.Offset < low) {
					low = o.Offset
				}
			}
		}
		s.mu.Unlock()
	}
	return low
}

// minCommitted is the lowest committed offset of every partition any
// group of the shards committed.
func minCommitted(shards []*shard) map[tp]int64 {
	out := map[tp]int64{}
	for _, s := range shards {
		s.mu.Lock()
		if s.state == shardActive {
			for _, g := range s.offsets.Groups() {
				s.offsets.Each(g, func(topic string, p int32, o group.Offset) {
					k := tp{topic, p}
					if cur, ok := out[k]; !ok || o.Offset < cur {
						out[k] = o.Offset
					}
				})
			}
		}
		s.mu.Unlock()
	}
	return out
}

// retentionLoop removes expired offsets every
// offsets.retention.check.interval.ms.
func (c *groupCoord) retentionLoop(ctx context.Context) {
	t := time.NewTicker(time.Duration(c.b.Config.OffsetsRetentionCheckIntervalMs) * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.expireOffsets(now)
		}
	}
}

// expireOffsets writes tombstones for the expired offsets of every shard
// (Kafka's cleanupGroupMetadata) and removes Empty groups left without
// offsets. It returns how many offsets went.
func (c *groupCoord) expireOffsets(now time.Time) int {
	retention := c.b.Config.OffsetsRetentionMinutes * 60 * 1000
	shards, _ := c.allShards()
	total := 0
	for _, s := range shards {
		s.mu.Lock()
		if s.state != shardActive {
			s.mu.Unlock()
			continue
		}
		keys := s.offsets.Expired(now.UnixMilli(), retention, func(g string) (int64, bool) {
			e := s.groups[g]
			switch {
			case e == nil:
				return -1, true
			case e.g.State() != group.Empty || !e.g.IsEmpty():
				return 0, false
			case e.g.ProtocolType() == "":
				// A group that only commits (no group management): each
				// offset's own commit time counts, as Kafka's standalone groups.
				return -1, true
			}
			return e.stateSince, true
		})
		var kvs [][2][]byte
		for _, k := range keys {
			key, val := group.OffsetCommitRecord(k, nil)
			kvs = append(kvs, [2][]byte{key, val})
		}
		var gone []*groupEntry
		expired := map[string]int{}
		for _, k := range keys {
			expired[k.Group]++
		}
		for name, e := range s.groups {
			if e.g.State() != group.Empty || !e.g.IsEmpty() || s.offsets.Count(name) > expired[name] {
				continue
			}
			key, val := group.GroupMetadataRecord(name, nil, now.UnixMilli())
			kvs = append(kvs, [2][]byte{key, val})
			gone = append(gone, e)
		}
		if err := s.appendRecords(now, kvs); err != nil {
			c.b.log.Error("writing offset expiry tombstones failed; will retry", "partition", s.idx, "err", err)
			s.mu.Unlock()
			continue
		}
		for _, k := range keys {
			s.offsets.Delete(k)
		}
		c.touched(keys, false)
		for _, e := range gone {
			e.g.Delete(now)
			s.drop(e)
		}
		if len(keys) > 0 || len(gone) > 0 {
			c.b.log.Info("expired committed offsets", "partition", s.idx, "offsets", len(keys), "groups_removed", len(gone))
		}
		total += len(keys)
		s.mu.Unlock()
	}
	return total
}

// topicDeleted removes every group's committed offsets of a deleted topic,
// as Kafka's onPartitionsDeleted does, so that a topic created again under
// the same name does not inherit them (consumers would skip its first
// records, and minCommittedOffset would let retention delete them).
// Shards still loading drop them when their load finishes.
func (c *groupCoord) topicDeleted(topic string) {
	shards, _ := c.allShards()
	now := time.Now()
	for _, s := range shards {
		s.mu.Lock()
		switch s.state {
		case shardActive:
			s.dropTopicOffsets(topic, now)
		case shardLoading:
			s.deletedTopics = append(s.deletedTopics, topic)
		}
		s.mu.Unlock()
	}
}

// dropTopicOffsets writes tombstones for every offset of topic in this
// shard and forgets them. The caller holds s.mu.
func (s *shard) dropTopicOffsets(topic string, now time.Time) {
	var keys []group.OffsetKey
	var kvs [][2][]byte
	for _, g := range s.offsets.Groups() {
		s.offsets.Each(g, func(t string, p int32, _ group.Offset) {
			if t != topic {
				return
			}
			k := group.OffsetKey{Group: g, Topic: topic, Partition: p}
			key, val := group.OffsetCommitRecord(k, nil)
			keys, kvs = append(keys, k), append(kvs, [2][]byte{key, val})
		})
	}
	if len(keys) == 0 {
		return
	}
	if err := s.appendRecords(now, kvs); err != nil {
		// The offsets stay; offset expiry or the next deletion retries.
		s.c.b.log.Error("writing tombstones for a deleted topic's offsets failed", "topic", topic, "partition", s.idx, "err", err)
		return
	}
	for _, k := range keys {
		s.offsets.Delete(k)
	}
	s.c.touched(keys, false)
	s.c.b.log.Info("removed the committed offsets of a deleted topic", "topic", topic, "partition", s.idx, "offsets", len(keys))
}

// awaitGroup returns the response for a parked request: at once when the
// event already answered it, else a Later that waits for the answer, the
// connection's end or the broker's shutdown.
func (b *Broker) awaitGroup(ch chan any, build func(v any) kmsg.Response) response {
	select {
	case v := <-ch:
		return response{msg: build(v)}
	default:
	}
	return netResponse(netio.Later(func(ctx context.Context) netio.Response {
		select {
		case v := <-ch:
			return encode(response{msg: build(v)})
		case <-b.done:
			return encode(response{msg: build(errParked(kerr.NotCoordinator.Code))})
		case <-ctx.Done():
			return netio.NoResponse()
		}
	}))
}

// clientHost is the member's host as Kafka reports it ("/127.0.0.1").
func clientHost(remote string) string {
	host := remote
	if i := strings.LastIndex(remote, ":"); i >= 0 {
		host = remote[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return "/" + host
}

func strPtrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func derefStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
