package log

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokkr/brokkr/segment"
)

// ErrStorage is segment.ErrStorage: a disk operation failed. The broker
// answers KAFKA_STORAGE_ERROR (56); errors.Is finds the os error (ENOSPC,
// EIO) underneath.
var ErrStorage = segment.ErrStorage

// ErrOffsetOutOfRange (1, OFFSET_OUT_OF_RANGE): a read below the log start
// offset or above the log end offset.
var ErrOffsetOutOfRange = &segment.KafkaError{Code: 1, Name: "OFFSET_OUT_OF_RANGE"}

// ErrClosed: the log was closed (or deleted).
var ErrClosed = errors.New("log: closed")

// Log is one partition's log.
type Log struct {
	dir  string
	cfg  Config
	opts Options
	fs   segment.FS
	log  *slog.Logger

	mu             sync.RWMutex
	segs           []*seg
	logStart       int64
	hw             int64
	rp             int64 // recovery point: offsets below are flushed
	unflushed      int64 // records appended since the last flush
	firstUnflushed time.Time
	truncations    int64      // TruncateTo calls, so a flush that ran unlocked knows its LEO still stands
	flushMu        sync.Mutex // one flushAside at a time
	epochs         *epochCache
	epochDirty     bool
	notify         chan struct{}
	closed         bool
	bg             sync.WaitGroup // background syncs of rolled segments
	cl             cleanerState   // the log cleaner's checkpoint and lock (cleaner.go)
}

type seg struct {
	*segment.Segment
	created time.Time
}

// SegmentInfo describes a segment for retention and tools.
type SegmentInfo struct {
	Base         int64
	LastOffset   int64 // Base-1 when empty
	Size         int64
	MaxTimestamp int64 // -1 when empty
	Created      time.Time
	Active       bool
}

// AppendResult is what Append assigned.
type AppendResult struct {
	BaseOffset    int64
	LastOffset    int64
	LogAppendTime int64 // ms, the log's clock at the append
	Records       int64
}

// Open opens (creating if needed) the partition log in dir and recovers
// it: segments holding offsets >= opts.RecoveryPoint are re-read and
// CRC-checked, a torn or corrupt tail is cut and reported (log line and
// Events), and segments after a cut are dropped (reported too).
func Open(dir string, cfg Config, opts Options) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	l := &Log{dir: dir, cfg: cfg, opts: opts, fs: opts.FS, log: opts.Logger.With("log", dir), notify: make(chan struct{})}
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: mkdir %s: %w", ErrStorage, dir, err)
	}
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			s.CloseNoSeal()
		}
		return nil, err
	}
	return l, nil
}

func (l *Log) load() error {
	// A clean interrupted by a crash: complete it if it was committed
	// (cleaner.go); its .cleaned files are removed below otherwise.
	if err := l.recoverClean(); err != nil {
		return err
	}
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrStorage, l.dir, err)
	}
	logs := map[int64]bool{}
	var bases []int64
	for _, e := range ents {
		name := e.Name
		if e.IsDir {
			continue
		}
		if strings.HasSuffix(name, ".deleted") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".swap") || strings.HasSuffix(name, ".cleaned") {
			l.log.Info("removing leftover file", "file", name)
			l.fs.Remove(l.dir + "/" + name)
			continue
		}
		if b, ok := parseSegmentName(name, segment.LogExt); ok {
			logs[b] = true
			bases = append(bases, b)
		}
	}
	for _, e := range ents { // indexes without a log are leftovers
		for _, ext := range []string{segment.IndexExt, segment.TimeIndexExt} {
			if b, ok := parseSegmentName(e.Name, ext); ok && !logs[b] {
				l.log.Info("removing index without a log", "file", e.Name)
				l.fs.Remove(l.dir + "/" + e.Name)
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	rp := l.opts.RecoveryPoint
	now := l.opts.Now()
	for i, b := range bases {
		from := int64(-1)
		if rp != math.MaxInt64 {
			last := i == len(bases)-1
			if last || bases[i+1] > rp {
				from = max(rp, b)
			}
		}
		t0 := time.Now()
		s, rec, err := segment.Open(l.fs, l.dir, b, l.cfg.segmentConfig(), from)
		if err != nil {
			return err
		}
		if from >= 0 {
			l.log.Info("recovered segment", "base", b, "from_position", rec.From, "bytes", rec.Scanned, "batches", rec.Batches, "took", time.Since(t0))
			if f := l.opts.Events.SegmentRecovered; f != nil {
				f(l.dir, rec)
			}
		}
		if rec.IndexRebuilt {
			l.log.Warn("rebuilt index", "base", b, "reason", rec.IndexReason)
			if f := l.opts.Events.IndexRebuilt; f != nil {
				f(l.dir, rec)
			}
		}
		if n := len(l.segs); n > 0 && s.Base() < l.segs[n-1].NextOffset() {
			// Overlapping segments cannot come from our own writes.
			s.CloseNoSeal()
			return fmt.Errorf("log %s: segment %d overlaps the previous one (next offset %d)", l.dir, b, l.segs[n-1].NextOffset())
		}
		l.segs = append(l.segs, &seg{Segment: s, created: now})
		if from >= 0 && !rec.Truncated() && i < len(bases)-1 && s.NextOffset() < bases[i+1] && bases[i+1] > l.cl.cleanedTo {
			// (Below the cleaner checkpoint a segment may end before the
			// next one starts: the cleaner removed its last records, and it
			// synced every segment it wrote.)
			// Unflushed data of this segment was lost (power loss) while a
			// later segment's survived: keep the log a prefix, no holes.
			rec.TruncatedAt, rec.Reason = s.Size(), fmt.Sprintf("offsets %d-%d lost: the segment ends before the next one starts", s.NextOffset(), bases[i+1]-1)
			rec.FirstLostOffset = s.NextOffset()
		}
		if rec.Truncated() {
			l.log.Warn("recovery truncated a segment", "base", b, "position", rec.TruncatedAt, "bytes", rec.TruncatedBytes,
				"first_lost_offset", rec.FirstLostOffset, "corrupt", rec.Corrupt, "reason", rec.Reason)
			if f := l.opts.Events.RecoveryTruncated; f != nil {
				f(l.dir, rec)
			}
			if i < len(bases)-1 {
				// Everything after a cut is unreachable: drop it, loudly.
				drop := bases[i+1:]
				l.log.Warn("dropping segments after a truncated one", "bases", drop)
				for _, d := range drop {
					for _, ext := range []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt} {
						l.fs.Remove(segment.FileName(l.dir, d, ext))
					}
				}
				if f := l.opts.Events.SegmentsDropped; f != nil {
					f(l.dir, drop, "after a truncated segment")
				}
				break
			}
		}
	}
	// Empty segments other than the last carry nothing.
	// (An empty first segment below the cleaner checkpoint is the
	// cleaner's: it keeps the log start offset.)
	for len(l.segs) > 1 && l.segs[0].Size() == 0 && l.segs[1].Base() > l.cl.cleanedTo {
		l.segs[0].Delete()
		l.segs = l.segs[1:]
	}
	if len(l.segs) == 0 {
		s, err := segment.Create(l.fs, l.dir, 0, l.cfg.segmentConfig())
		if err != nil {
			return err
		}
		l.segs = append(l.segs, &seg{Segment: s, created: now})
	}
	for _, s := range l.segs[:len(l.segs)-1] {
		if err := s.Seal(); err != nil {
			return err
		}
	}
	if err := l.active().Activate(); err != nil {
		// A full disk: the log opens and serves reads; appends retry the
		// preallocation and fail with ErrStorage until space is freed.
		l.log.Warn("cannot preallocate the active segment's indexes", "err", err)
	}
	l.logStart = l.segs[0].Base()
	l.cl.cleanedTo = min(l.cl.cleanedTo, l.active().Base())
	leo := l.leo()
	l.rp = min(rp, leo)
	l.hw = l.logStart
	ec, err := loadEpochCache(l.fs, l.dir)
	if err != nil {
		return err
	}
	l.epochs = ec
	a := ec.truncateFromEnd(leo)
	b := ec.truncateFromStart(l.logStart)
	if a || b {
		if err := ec.persist(); err != nil {
			return err
		}
	}
	return nil
}

func parseSegmentName(name, ext string) (int64, bool) {
	if !strings.HasSuffix(name, ext) || len(name) != 20+len(ext) {
		return 0, false
	}
	b, err := strconv.ParseInt(name[:20], 10, 64)
	return b, err == nil && b >= 0
}

func (l *Log) active() *seg { return l.segs[len(l.segs)-1] }

func (l *Log) leo() int64 { return l.active().NextOffset() }

// Dir is the partition's directory.
func (l *Log) Dir() string { return l.dir }

// Config is the log's configuration.
func (l *Log) Config() Config {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg
}

// Append validates every batch of a produce payload (one or more
// concatenated v2 batches), assigns offsets from the log end offset,
// stamps leaderEpoch, and writes them. The payload is modified in place
// (base offset and partition leader epoch only) and may be reused by the
// caller afterwards. A payload with any bad batch is rejected whole with
// an error that KafkaCode maps; a disk failure returns an error wrapping
// ErrStorage and leaves the log unchanged.
func (l *Log) Append(payload []byte, leaderEpoch int32) (AppendResult, error) {
	l.mu.RLock()
	maxBytes := l.cfg.MaxMessageBytes // SetConfig may change it
	l.mu.RUnlock()
	// Validation (CRC, record walk) runs outside the lock.
	hs, err := segment.Batches(payload, maxBytes, l.opts.Check)
	if err != nil {
		return AppendResult{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return AppendResult{}, ErrClosed
	}
	leo := l.leo()
	off, pos := leo, 0
	var records int64
	for i := range hs {
		b := payload[pos:]
		segment.SetBaseOffset(b, off)
		segment.SetPartitionLeaderEpoch(b, leaderEpoch)
		hs[i].BaseOffset, hs[i].PartitionLeaderEpoch = off, leaderEpoch
		off = hs[i].NextOffset()
		records += int64(hs[i].RecordCount)
		pos += int(hs[i].Size())
	}
	now := l.opts.Now()
	if reason := l.rollReason(len(payload), off-1, now); reason != "" {
		if err := l.roll(leo, reason, now); err != nil {
			return AppendResult{}, l.storageError(err)
		}
	}
	if _, err := l.active().Append(payload, hs); err != nil {
		return AppendResult{}, l.storageError(err)
	}
	if l.epochs.assign(leaderEpoch, leo) {
		if err := l.epochs.persist(); err != nil {
			// The batch is in the log; the cache is rebuilt on the next flush.
			l.epochDirty = true
			l.storageError(err)
		}
	}
	if l.unflushed == 0 {
		l.firstUnflushed = now
	}
	l.unflushed += records
	l.wake()
	res := AppendResult{BaseOffset: leo, LastOffset: off - 1, LogAppendTime: now.UnixMilli(), Records: records}
	if fm := l.cfg.FlushMessages; fm > 0 && fm != math.MaxInt64 && l.unflushed >= fm {
		if err := l.flushLocked(); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (l *Log) storageError(err error) error {
	if errors.Is(err, ErrStorage) {
		l.log.Error("storage error", "err", err)
		if f := l.opts.Events.StorageError; f != nil {
			f(l.dir, err)
		}
	}
	return err
}

func (l *Log) rollReason(size int, last int64, now time.Time) string {
	a := l.active()
	if a.Size() == 0 {
		return ""
	}
	switch {
	case a.Size()+int64(size) > l.cfg.SegmentBytes:
		return "segment.bytes"
	case now.Sub(a.created) >= time.Duration(l.cfg.SegmentMs)*time.Millisecond:
		return "segment.ms"
	case a.IndexFull():
		return "index full"
	case !a.Fits(last):
		return "relative offset overflow"
	}
	return ""
}

func (l *Log) roll(base int64, reason string, now time.Time) error {
	old := l.active()
	if err := old.Seal(); err != nil {
		return err
	}
	// Sync the sealed segment's .log in the background (as Kafka does on
	// roll) and move the recovery point past it when done: appends do not
	// wait for a 1 GiB fdatasync, and restarts need not re-read it.
	sync := old.LogSync()
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		err := sync()
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.storageError(err)
			return
		}
		if !l.closed && l.rp >= old.Base() && slices.Contains(l.segs, old) {
			l.rp = min(max(l.rp, old.NextOffset()), l.leo())
		}
	}()
	s, err := segment.Create(l.fs, l.dir, base, l.cfg.segmentConfig())
	if err != nil {
		return err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		s.Delete()
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, l.dir, err)
	}
	l.segs = append(l.segs, &seg{Segment: s, created: now})
	l.log.Info("rolled segment", "base", base, "reason", reason)
	if f := l.opts.Events.SegmentRolled; f != nil {
		f(l.dir, base, reason)
	}
	return nil
}

// wake closes the current notifier channel; long-polls waiting on it see
// the change and ask again.
func (l *Log) wake() {
	close(l.notify)
	l.notify = make(chan struct{})
}

// Changed returns a channel closed at the next append, high watermark
// change, truncation or close. Take it before checking the state you wait
// on, then wait on it; never poll.
func (l *Log) Changed() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.notify
}

// ReadLimit bounds what Read may return.
type ReadLimit int

const (
	// LimitHighWatermark: consumers see only committed records.
	LimitHighWatermark ReadLimit = iota
	// LimitLogEnd: followers read up to the log end offset.
	LimitLogEnd
)

// ReadOptions of a Read.
type ReadOptions struct {
	MaxBytes    int64
	Limit       ReadLimit
	MinOneBatch bool // return the first batch even if larger than MaxBytes (KIP-74)
}

// ReadResult is a Fetch partition's data: the file region (zero-copy; call
// Release after sending) and the offsets the response carries.
type ReadResult struct {
	Region           segment.Region
	HighWatermark    int64
	LastStableOffset int64 // = HighWatermark (no transactions in the log layer)
	LogStartOffset   int64
	LogEndOffset     int64
}

// Release releases the region's file.
func (r *ReadResult) Release() { r.Region.Release() }

// Read returns the whole batches from the one holding offset, up to
// MaxBytes, within one segment, never past the limit. An offset below the
// log start or above the log end is ErrOffsetOutOfRange (the offsets are
// still filled in); at the limit the region is empty.
func (l *Log) Read(offset int64, o ReadOptions) (ReadResult, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	leo := l.leo()
	res := ReadResult{HighWatermark: l.hw, LastStableOffset: l.hw, LogStartOffset: l.logStart, LogEndOffset: leo}
	if l.closed {
		return res, ErrClosed
	}
	if offset < l.logStart || offset > leo {
		return res, fmt.Errorf("%w: offset %d outside [%d, %d]", ErrOffsetOutOfRange, offset, l.logStart, leo)
	}
	upTo := leo
	if o.Limit == LimitHighWatermark {
		upTo = l.hw
	}
	if offset >= upTo {
		return res, nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].Base() > offset }) - 1
	for ; i < len(l.segs); i++ {
		s := l.segs[i]
		pos, _, ok, err := s.Translate(offset)
		if err != nil {
			return res, err
		}
		if !ok {
			continue // offset is past this segment's batches (a gap): the next one
		}
		maxPos := s.Size()
		if upTo < s.NextOffset() {
			p, _, ok, err := s.Translate(upTo)
			if err != nil {
				return res, err
			}
			if ok {
				maxPos = p
			}
		}
		r, err := s.Read(pos, o.MaxBytes, maxPos, o.MinOneBatch)
		if err != nil {
			return res, err
		}
		res.Region = r
		return res, nil
	}
	return res, nil
}

// LogStartOffset is the first offset still in the log.
func (l *Log) LogStartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.logStart
}

// LogEndOffset is the offset the next append gets (LEO).
func (l *Log) LogEndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.leo()
}

// HighWatermark is the slot the replica layer drives.
func (l *Log) HighWatermark() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.hw
}

// SetHighWatermark sets the high watermark, clamped to [log start, LEO],
// and wakes waiting fetches if it moved. It returns the value set.
func (l *Log) SetHighWatermark(hw int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	hw = min(max(hw, l.logStart), l.leo())
	if hw != l.hw {
		l.hw = hw
		l.wake()
	}
	return hw
}

// RecoveryPoint: every offset below it is on disk.
func (l *Log) RecoveryPoint() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.rp
}

// Flush makes everything appended so far durable and moves the recovery
// point to the LEO.
func (l *Log) Flush() error {
	return l.flushAside(func() (bool, error) {
		if l.closed {
			return false, ErrClosed
		}
		return true, nil
	})
}

// FlushIfDue flushes when flush.ms has passed since the oldest unflushed
// append (called by Manager's flusher with its clock).
func (l *Log) FlushIfDue(now time.Time) error {
	return l.flushAside(func() (bool, error) {
		fm := l.cfg.FlushMs
		return !l.closed && l.unflushed > 0 && fm > 0 && fm != math.MaxInt64 && now.Sub(l.firstUnflushed) >= time.Duration(fm)*time.Millisecond, nil
	})
}

// flushAside is a flush that does not hold the log's lock across the
// fdatasync of the .log files (tens of milliseconds on a busy disk, during
// which appends and reads would otherwise wait: the once-a-second flush
// was the whole p99 of an end-to-end produce-to-consume benchmark). Under
// the lock it notes the log end and takes a reference to each file to
// sync; it syncs without the lock; then, under the lock again, it syncs the
// indexes and moves the recovery point to the noted log end, unless the
// log was truncated meanwhile (then the next flush does it). due is called
// with the lock held.
func (l *Log) flushAside(due func() (bool, error)) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	if run, err := due(); !run {
		l.mu.Unlock()
		return err
	}
	t0 := time.Now()
	leo, gen, pending := l.leo(), l.truncations, l.unflushed
	var syncs []func() error
	for _, s := range l.segs {
		if s.NextOffset() > l.rp || s == l.active() {
			syncs = append(syncs, s.LogSync())
		}
	}
	l.mu.Unlock()

	var first error
	for _, sync := range syncs {
		if err := sync(); err != nil && first == nil {
			first = err
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if first != nil {
		return l.storageError(first)
	}
	if l.closed || gen != l.truncations {
		return nil
	}
	for _, s := range l.segs {
		if s.Base() < leo && (s.NextOffset() > l.rp || s == l.active()) {
			if err := s.SyncIndexes(); err != nil {
				return l.storageError(err)
			}
		}
	}
	if l.epochDirty {
		if err := l.epochs.persist(); err != nil {
			return l.storageError(err)
		}
		l.epochDirty = false
	}
	l.rp = max(l.rp, leo)
	l.unflushed = max(l.unflushed-pending, 0)
	if l.unflushed > 0 {
		l.firstUnflushed = t0 // appended during the sync: due again one flush.ms from now
	}
	if f := l.opts.Events.Flushed; f != nil {
		f(l.dir, leo, time.Since(t0))
	}
	return nil
}

func (l *Log) flushLocked() error {
	t0 := time.Now()
	leo := l.leo()
	for _, s := range l.segs {
		if s.NextOffset() > l.rp || s == l.active() {
			if err := s.Flush(); err != nil {
				return l.storageError(err)
			}
		}
	}
	if l.epochDirty {
		if err := l.epochs.persist(); err != nil {
			return l.storageError(err)
		}
		l.epochDirty = false
	}
	l.rp = max(l.rp, leo)
	l.unflushed = 0
	if f := l.opts.Events.Flushed; f != nil {
		f(l.dir, leo, time.Since(t0))
	}
	return nil
}

// TruncateTo removes every offset >= offset (a follower after a leader
// change). A batch straddling offset goes entirely, so the LEO may end
// below offset; it is returned. The leader-epoch cache, the high
// watermark and the recovery point follow.
func (l *Log) TruncateTo(offset int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	l.truncations++
	if offset >= l.leo() {
		return l.leo(), nil
	}
	if offset < l.logStart {
		offset = l.logStart
	}
	for len(l.segs) > 1 && l.active().Base() >= offset {
		s := l.active()
		l.segs = l.segs[:len(l.segs)-1]
		if err := s.Delete(); err != nil {
			l.storageError(err)
		}
	}
	a := l.active()
	if _, err := a.TruncateTo(offset); err != nil {
		return l.leo(), l.storageError(err)
	}
	if err := a.Activate(); err != nil {
		return l.leo(), l.storageError(err)
	}
	leo := l.leo()
	if l.epochs.truncateFromEnd(leo) {
		if err := l.epochs.persist(); err != nil {
			l.epochDirty = true
			l.storageError(err)
		}
	}
	l.clampCleanedTo()
	l.hw = min(l.hw, leo)
	l.rp = min(l.rp, leo)
	l.wake()
	l.log.Info("truncated", "to", offset, "leo", leo)
	return leo, nil
}

// DeleteSegmentsBelow deletes whole segments whose offsets are all below
// offset and below the high watermark, never the active segment, and
// moves the log start offset to the first remaining segment. It returns
// what it deleted.
func (l *Log) DeleteSegmentsBelow(offset int64) ([]SegmentInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	limit := min(offset, l.hw)
	var out []SegmentInfo
	for len(l.segs) > 1 && l.segs[0].NextOffset() <= limit {
		s := l.segs[0]
		info := l.info(s)
		// Rename first so a crash mid-delete leaves a leftover, not a hole.
		for _, ext := range []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt} {
			n := segment.FileName(l.dir, s.Base(), ext)
			if err := l.fs.Rename(n, n+".deleted"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return out, l.storageError(fmt.Errorf("%w: rename %s: %w", ErrStorage, n, err))
			}
		}
		l.segs = l.segs[1:]
		s.Delete()
		for _, ext := range []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt} {
			l.fs.Remove(segment.FileName(l.dir, s.Base(), ext) + ".deleted")
		}
		out = append(out, info)
		if f := l.opts.Events.SegmentDeleted; f != nil {
			f(l.dir, info)
		}
	}
	if len(out) > 0 {
		l.logStart = max(l.logStart, l.segs[0].Base())
		l.hw = max(l.hw, l.logStart)
		if l.epochs.truncateFromStart(l.logStart) {
			if err := l.epochs.persist(); err != nil {
				l.epochDirty = true
				l.storageError(err)
			}
		}
		l.log.Info("deleted segments", "count", len(out), "log_start", l.logStart)
	}
	return out, nil
}

func (l *Log) info(s *seg) SegmentInfo {
	return SegmentInfo{Base: s.Base(), LastOffset: s.NextOffset() - 1, Size: s.Size(), MaxTimestamp: s.MaxTimestamp(), Created: s.created, Active: s == l.active()}
}

// Segments lists the segments, oldest first (for retention).
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = l.info(s)
	}
	return out
}

// Special timestamps of ListOffsets.
const (
	LatestTimestamp   int64 = -1
	EarliestTimestamp int64 = -2
	MaxTimestamp      int64 = -3
)

// OffsetForTimestamp answers ListOffsets: LatestTimestamp gives the LEO,
// EarliestTimestamp the log start, MaxTimestamp the last offset of the
// batch with the largest timestamp; any other ts the first offset whose
// timestamp is >= ts (found false when there is none).
func (l *Log) OffsetForTimestamp(ts int64) (int64, bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch ts {
	case LatestTimestamp:
		return l.leo(), true, nil
	case EarliestTimestamp:
		return l.logStart, true, nil
	case MaxTimestamp:
		best, off := int64(-1), int64(-1)
		for _, s := range l.segs {
			if s.MaxTimestamp() > best {
				best, off = s.MaxTimestamp(), s.OffsetOfMaxTimestamp()
			}
		}
		return off, off >= 0, nil
	}
	for _, s := range l.segs {
		if s.MaxTimestamp() < ts {
			continue
		}
		off, ok, err := s.FindOffsetByTimestamp(ts, l.logStart)
		if err != nil || ok {
			return off, ok, err
		}
	}
	return -1, false, nil
}

// LatestEpoch is the newest leader epoch in the cache (-1 if none).
func (l *Log) LatestEpoch() int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.latest()
}

// EpochEntries is a copy of the leader-epoch cache.
func (l *Log) EpochEntries() []EpochEntry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]EpochEntry(nil), l.epochs.entries...)
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch <=
// epoch known to the log and the offset where it ended (the start of the
// next epoch, or the LEO for the latest), Kafka's semantics including the
// (-1, -1) answers.
func (l *Log) EndOffsetForEpoch(epoch int32) (int32, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.endOffsetFor(epoch, l.leo())
}

// AssignEpoch records that a new leader epoch starts at the LEO (a new
// leader does this before its first append). It persists the checkpoint.
func (l *Log) AssignEpoch(epoch int32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epochs.assign(epoch, l.leo()) {
		return l.storageError(l.epochs.persist())
	}
	return nil
}

// Close flushes, trims the indexes and closes the log. Regions still held
// by readers stay readable until released.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.mu.Unlock()
	l.bg.Wait() // background syncs take the lock when done
	l.mu.Lock()
	if l.closed {
		return nil
	}
	err := l.flushLocked()
	for _, s := range l.segs {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	l.closed = true
	l.wake()
	return err
}

// abandon closes the files without flushing or trimming: what kill -9
// leaves behind (tests and benchmarks only).
func (l *Log) abandon() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		s.CloseNoSeal()
	}
	l.closed = true
}
