package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/segment"
)

// Files of the log cleaner in a partition directory (see the package doc,
// "Cleaning").
const (
	// CleanerCheckpointFile holds the cleaner checkpoint of the partition:
	// "0\n1\n<cleanedTo>\n". Offsets below it have been cleaned.
	CleanerCheckpointFile = "cleaner-offset-checkpoint"
	// cleanerSwapFile is the commit record of one clean: while it exists,
	// the new segment set is the truth and Open completes the swap.
	cleanerSwapFile = "cleaner-swap"
	// cleanerStagingDir is where output segments are built before they are
	// moved next to the log as <base><ext>.cleaned.
	cleanerStagingDir = "cleaner-staging"
	// CleanedSuffix ends the name of a cleaned output file not yet swapped in.
	CleanedSuffix = ".cleaned"
)

// cleanWindow is the size of the cleaner's reads (a variable for tests).
var cleanWindow = 1 << 20

// maxDecompressed caps the records of one compressed batch the cleaner
// decompresses (a batch claiming more is refused and the clean fails).
const maxDecompressed = 256 << 20

// ErrCleanAborted: the log changed under a clean (retention, truncation or
// close removed or changed a segment being cleaned); nothing was swapped.
// The next clean starts over.
var ErrCleanAborted = errors.New("log: clean aborted: the log changed while cleaning")

// CleanOptions configure one Clean.
type CleanOptions struct {
	// Policy decides which records survive (plugins/builtin's Compaction
	// for cleanup.policy=compact).
	Policy plugins.CompactionPolicy
	// NowMs is the host clock in Unix milliseconds, passed to the policy in
	// CompactionParams and used with min.compaction.lag.ms.
	NowMs int64
	// Config is the topic's effective config (Kafka names + brokkr.*), passed
	// to the policy; Clean reads min.compaction.lag.ms from it.
	Config map[string]string
	// Throttle is shared across the broker's cleaner threads
	// (log.cleaner.io.max.bytes.per.second); nil = unthrottled.
	Throttle *Throttle
	// BatchRecords is the number of records per Scan/Survivors call
	// (default 1000).
	BatchRecords int
}

// CleanResult says what one Clean did.
type CleanResult struct {
	FirstDirty int64 // the cleaner checkpoint before the clean
	CleanedTo  int64 // the cleaner checkpoint after it (offsets below are clean)
	// BytesRead counts both passes (the dirty section is read twice);
	// BytesWritten the new segments' .log bytes.
	BytesRead, BytesWritten     int64
	RecordsKept, RecordsRemoved int64
	// SegmentsBefore is the number of segments replaced, SegmentsAfter the
	// number that replaced them.
	SegmentsBefore, SegmentsAfter int
	Took                          time.Duration
	// SwapTook is how long the log's lock was held (the commit record,
	// renames and directory syncs of the swap): appends and fetches wait
	// this long, never the whole clean.
	SwapTook time.Duration
}

// CleanState is what a cleaner loop needs to choose a log.
type CleanState struct {
	// CleanedTo is the cleaner checkpoint: offsets below it are clean. It is
	// a segment base offset (or the log start).
	CleanedTo int64
	// CleanBytes: .log bytes of the segments below CleanedTo. DirtyBytes:
	// bytes of the whole segments from CleanedTo up to FirstUncleanable
	// (what a clean now would scan). The dirty ratio is
	// DirtyBytes/(CleanBytes+DirtyBytes).
	CleanBytes, DirtyBytes int64
	// FirstUncleanable = min(active segment base, high watermark, base of the
	// first segment with a record newer than now - min.compaction.lag.ms).
	// Only whole segments below it are cleaned.
	FirstUncleanable int64
	// OldestDirtyTimestamp is the smallest first-batch max timestamp of the
	// non-active segments from CleanedTo on (Kafka's basis for
	// max.compaction.lag.ms); -1 when unknown or nothing is dirty.
	OldestDirtyTimestamp int64
}

// cleanerState is the Log's cleaner bookkeeping.
type cleanerState struct {
	mu        sync.Mutex // one Clean at a time; taken before Log.mu
	cleanedTo int64      // guarded by Log.mu
	// finishMu guards pending and the checkpoint file's writes; taken after
	// Log.mu when both are held.
	finishMu sync.Mutex
	pending  *pendingSwap
	// step, when set (tests), is called at each named step of a clean; a
	// panic there simulates a crash at that point.
	step func(name string)
}

func (l *Log) cleanStep(name string) {
	if f := l.cl.step; f != nil {
		f(name)
	}
}

// Throttle is a token bucket over bytes, shared by the cleaner threads of a
// broker (log.cleaner.io.max.bytes.per.second). A nil *Throttle never waits.
type Throttle struct {
	rate  float64 // bytes per second
	burst float64
	mu    sync.Mutex
	avail float64 // tokens; negative = borrowed by waiters
	last  time.Time
}

// NewThrottle returns a throttle of bytesPerSecond. A rate <= 0, infinite or
// NaN, or >= math.MaxFloat64 (Kafka's default Double.MaxValue) returns nil:
// unthrottled.
func NewThrottle(bytesPerSecond float64) *Throttle {
	if !(bytesPerSecond > 0) || math.IsInf(bytesPerSecond, 0) || bytesPerSecond >= math.MaxFloat64 {
		return nil
	}
	// The bucket starts empty and holds at most 100 ms of tokens, so a
	// transfer of N bytes takes at least N/rate - 0.1 s.
	return &Throttle{rate: bytesPerSecond, burst: bytesPerSecond / 10, last: time.Now()}
}

// Wait blocks until n bytes may be transferred or ctx ends. Callers take
// their share in order (a large n borrows ahead and later callers wait).
func (t *Throttle) Wait(ctx context.Context, n int) error {
	if t == nil || n <= 0 {
		return ctx.Err()
	}
	t.mu.Lock()
	now := time.Now()
	t.avail = min(t.avail+now.Sub(t.last).Seconds()*t.rate, t.burst)
	t.last = now
	t.avail -= float64(n)
	var d time.Duration
	if t.avail < 0 {
		d = time.Duration(-t.avail / t.rate * float64(time.Second))
	}
	t.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// minCompactionLag reads min.compaction.lag.ms from a topic config (Kafka's
// default 0).
func minCompactionLag(cfg map[string]string) (int64, error) {
	s := strings.TrimSpace(cfg["min.compaction.lag.ms"])
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("min.compaction.lag.ms: %q is not a non-negative integer", s)
	}
	return v, nil
}

// firstUncleanable: see CleanState.FirstUncleanable. l.mu held.
func (l *Log) firstUncleanable(nowMs, lagMs int64) int64 {
	fu := min(l.active().Base(), l.hw)
	if lagMs > 0 {
		for _, s := range l.segs {
			if s.Base() >= fu {
				break
			}
			if s.MaxTimestamp() > nowMs-lagMs {
				fu = s.Base()
				break
			}
		}
	}
	return fu
}

// cleanableCount is the number of leading segments wholly below fu (never
// the active one). l.mu held.
func (l *Log) cleanableCount(fu int64) int {
	k := 0
	for k+1 < len(l.segs) && l.segs[k+1].Base() <= fu {
		k++
	}
	return k
}

func (l *Log) cleanedToLocked() int64 {
	return max(l.cl.cleanedTo, l.segs[0].Base())
}

// CleanState reports the log's cleanable and dirty sections for a cleaner
// loop (dirty ratio, max.compaction.lag.ms).
func (l *Log) CleanState(nowMs int64, minCompactionLagMs int64) CleanState {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := CleanState{CleanedTo: l.cleanedToLocked(), OldestDirtyTimestamp: -1}
	if l.closed {
		return st
	}
	st.FirstUncleanable = l.firstUncleanable(nowMs, minCompactionLagMs)
	k := l.cleanableCount(st.FirstUncleanable)
	for i, s := range l.segs {
		switch {
		case s.Base() < st.CleanedTo:
			st.CleanBytes += s.Size()
		case i < k:
			st.DirtyBytes += s.Size()
		}
		if s.Base() >= st.CleanedTo && i < len(l.segs)-1 && s.Size() > 0 {
			// The first batch's header only (Kafka's first batch timestamp).
			if r, err := s.Read(0, 0, s.Size(), true); err == nil {
				var hb [segment.HeaderSize]byte
				_, err := r.File.ReadAt(hb[:], r.Pos)
				r.Release()
				if h, _ := segment.ParseHeader(hb[:]); (err == nil || err == io.EOF) && (st.OldestDirtyTimestamp < 0 || h.MaxTimestamp < st.OldestDirtyTimestamp) {
					st.OldestDirtyTimestamp = h.MaxTimestamp
				}
			}
		}
	}
	return st
}

// CleanedTo is the cleaner checkpoint (offsets below it are clean).
func (l *Log) CleanedTo() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cleanedToLocked()
}

// srcSeg is a segment being cleaned: a reference to its .log file that
// stays readable whatever happens to the segment meanwhile.
type srcSeg struct {
	s      *seg
	region segment.Region
	idx    int64 // offset index bytes
	next   int64
}

// Clean compacts the log: the dirty section [CleanedTo, first uncleanable)
// is shown to the policy's Scan, then every whole segment below the first
// uncleanable offset is shown to Survivors and rewritten with the surviving
// records, keeping their offsets. The rewrite happens without the log's
// lock; the lock is taken only to swap the segment list. The swap is
// crash-safe (package doc, "Cleaning"). A policy error or panic
// (plugins.ErrPolicyFailed), an invalid Survivors answer
// (plugins.ErrRefused), a corrupt batch, a cancelled ctx, a disk error
// (ErrStorage) or a log that changed meanwhile (ErrCleanAborted: retry
// later) changes nothing and leaves no file behind; so does ErrClosed.
//
// The Key, Value and header slices of the records passed to Scan and
// Survivors point into the cleaner's buffers and are valid only during the
// call: a policy that keeps them must copy them.
func (l *Log) Clean(ctx context.Context, o CleanOptions) (res CleanResult, err error) {
	t0 := time.Now()
	if o.Policy == nil {
		return res, errors.New("log: clean: no compaction policy")
	}
	if o.BatchRecords <= 0 {
		o.BatchRecords = 1000
	}
	lag, err := minCompactionLag(o.Config)
	if err != nil {
		return res, err
	}
	l.cl.mu.Lock()
	defer l.cl.mu.Unlock()

	// Snapshot the cleanable segments, holding their files.
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return res, ErrClosed
	}
	fu := l.firstUncleanable(o.NowMs, lag)
	k := l.cleanableCount(fu)
	cleanedTo := l.cleanedToLocked()
	res.FirstDirty, res.CleanedTo = cleanedTo, cleanedTo
	var srcs []srcSeg
	if k > 0 && l.segs[k].Base() > cleanedTo {
		for _, s := range l.segs[:k] {
			r, err := s.Read(0, s.Size(), s.Size(), true)
			if err != nil {
				for i := range srcs {
					srcs[i].region.Release()
				}
				l.mu.RUnlock()
				return res, err
			}
			srcs = append(srcs, srcSeg{s: s, region: r, idx: int64(s.IndexEntryCount()) * 8, next: s.NextOffset()})
		}
	}
	var end int64
	if len(srcs) > 0 {
		end = l.segs[k].Base()
	}
	cfg := l.cfg
	l.mu.RUnlock()
	defer func() {
		for i := range srcs {
			srcs[i].region.Release()
		}
	}()
	if len(srcs) == 0 {
		res.Took = time.Since(t0)
		return res, nil // nothing dirty
	}

	// A pending or stale commit record (its removal not yet durable) must
	// go before new .cleaned files appear, or a crash could apply it to
	// them.
	if err := l.finishPending(); err != nil {
		return res, err
	}
	if err := l.removeCleanLeftovers(); err != nil {
		return res, err
	}
	c := &cleaning{l: l, o: o, ctx: ctx, cfg: cfg, res: &res}
	if err := c.begin(); err != nil {
		return res, err
	}
	defer c.close()
	// Phase 1: the dirty section (every cleanable segment for a policy
	// that asks for it: plugins.FullScanner).
	fsc, _ := o.Policy.(plugins.FullScanner)
	full := fsc != nil && fsc.FullScan()
	for i := range srcs {
		if srcs[i].s.Base() < cleanedTo && !full {
			continue
		}
		if err := c.scanSegment(&srcs[i]); err != nil {
			return res, err
		}
	}
	if err := c.flushScan(); err != nil {
		return res, err
	}
	// Phase 2: rewrite every cleanable segment, group by group.
	staging := filepath.Join(l.dir, cleanerStagingDir)
	if _, err := l.fs.Stat(l.dir); err != nil { // deleted meanwhile: do not make it again
		return res, fmt.Errorf("%w: %w", ErrCleanAborted, err)
	}
	if err := l.fs.MkdirAll(staging, 0o755); err != nil {
		return res, fmt.Errorf("%w: mkdir %s: %w", ErrStorage, staging, err)
	}
	var newBases []int64
	fail := func(err error) (CleanResult, error) {
		l.discardStaged(newBases)
		res.Took = time.Since(t0)
		return res, err
	}
	type outGroup struct {
		from, to int // srcs[from:to]
		kept     bool
	}
	var groups []outGroup
	for _, g := range groupSegments(srcs, cfg) {
		kept, err := c.rewriteGroup(staging, g, g[0].s.Base() == srcs[0].s.Base())
		if err != nil {
			return fail(err)
		}
		from := 0
		if n := len(groups); n > 0 {
			from = groups[n-1].to
		}
		groups = append(groups, outGroup{from: from, to: from + len(g), kept: kept})
		if kept {
			newBases = append(newBases, g[0].s.Base())
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fail(fmt.Errorf("%w: sync %s: %w", ErrStorage, l.dir, err))
	}
	l.fs.RemoveAll(staging)
	l.cleanStep("staged")

	// The commit record, written and synced before the lock; renaming it
	// into place (and syncing the directory) is the commit.
	oldBases := make([]int64, len(srcs))
	for i := range srcs {
		oldBases[i] = srcs[i].s.Base()
	}
	if err := prepareSwapRecord(l.fs, l.dir, oldBases, newBases, end); err != nil {
		return fail(err)
	}
	fail = func(err error) (CleanResult, error) {
		l.fs.Remove(filepath.Join(l.dir, cleanerSwapFile+".tmp"))
		l.discardStaged(newBases)
		res.Took = time.Since(t0)
		return res, err
	}

	// Swap under the lock.
	l.mu.Lock()
	locked := time.Now()
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			res.SwapTook = time.Since(locked)
			l.mu.Unlock()
		}
	}
	defer unlock()
	// Retention may have deleted a prefix srcs[:gone] meanwhile (it deletes
	// whole segments from the front); anything else changed aborts.
	gone := 0
	for gone < len(srcs) && len(l.segs) > 0 && l.segs[0] != srcs[gone].s {
		gone++
	}
	n := len(srcs) - gone // source segments still in the log
	changed := l.closed || n == 0 || len(l.segs) <= n || l.segs[n].Base() != end
	for i := 0; !changed && i < n; i++ {
		changed = l.segs[i] != srcs[gone+i].s || l.segs[i].NextOffset() != srcs[gone+i].next
	}
	var dropped []int64 // outputs of groups retention deleted whole
	if !changed && gone > 0 {
		keepBases := newBases[:0:0]
		for _, g := range groups {
			switch {
			case g.from < gone && g.to > gone:
				changed = true // a group half deleted: its output would bring deleted records back
			case g.from == gone && !g.kept:
				changed = true // the new first segment's output was dropped (empty)
			case g.to <= gone && g.kept:
				dropped = append(dropped, srcs[g.from].s.Base())
			case g.from >= gone && g.kept:
				keepBases = append(keepBases, srcs[g.from].s.Base())
			}
		}
		newBases = keepBases
	}
	if l.closed {
		// Closed, maybe deleted: if the partition dir was renamed away while
		// we staged, our MkdirAll made an empty one again; take it back
		// (Remove fails on a dir that still holds the log).
		fail(ErrClosed)
		l.fs.Remove(l.dir)
		return res, ErrClosed
	}
	if changed {
		return fail(ErrCleanAborted)
	}
	if len(dropped) > 0 {
		// The commit record names them as new: remove their files durably
		// first, so that a replay cannot bring deleted records back.
		for _, b := range dropped {
			if err := l.removeCleaned(b); err != nil {
				return fail(err)
			}
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fail(fmt.Errorf("%w: sync %s: %w", ErrStorage, l.dir, err))
		}
		l.log.Info("retention deleted segments during the clean; their outputs are dropped", "bases", dropped)
	}
	l.cleanStep("locked")
	if err := commitSwapRecord(l.fs, l.dir); err != nil {
		// Not committed unless the rename happened and the sync failed;
		// either way the old files are untouched: remove the record so
		// that no later Open applies it.
		l.fs.Remove(filepath.Join(l.dir, cleanerSwapFile))
		return fail(l.storageError(err))
	}
	l.cl.finishMu.Lock()
	l.cl.pending = &pendingSwap{cleanedTo: end}
	l.cl.finishMu.Unlock()
	l.cleanStep("committed")
	// From here the new set is the truth on disk: any failure takes the log
	// offline and Open completes the swap.
	offline := func(err error, opened []*seg) (CleanResult, error) {
		for _, s := range opened {
			s.CloseNoSeal()
		}
		for _, s := range l.segs {
			s.CloseNoSeal()
		}
		l.closed = true
		l.wake()
		res.Took = time.Since(t0)
		return res, l.storageError(fmt.Errorf("%w: log %s taken offline after a committed clean; reopening completes the swap: %w", ErrStorage, l.dir, err))
	}
	if err := l.applySwap(oldBases, newBases); err != nil {
		return offline(err, nil)
	}
	var opened []*seg
	now := l.opts.Now()
	for _, b := range newBases {
		s, _, err := segment.Open(l.fs, l.dir, b, cfg.segmentConfig(), -1)
		if err == nil {
			if err = s.Seal(); err != nil {
				s.CloseNoSeal()
			}
		}
		if err != nil {
			return offline(err, opened)
		}
		created := now
		for i := range srcs {
			if srcs[i].s.Base() == b {
				created = srcs[i].s.created
			}
		}
		opened = append(opened, &seg{Segment: s, created: created})
	}
	for _, s := range l.segs[:n] {
		s.CloseNoSeal() // files already renamed over or removed; readers keep theirs
	}
	l.segs = append(opened, l.segs[n:]...)
	l.cl.cleanedTo = end
	unlock()
	l.cleanStep("swapped")

	// Make the swap durable and drop the commit record, without the lock.
	if err := l.finishPending(); err != nil {
		// The new set is in use; the record stays and the next clean,
		// truncation or Open completes it.
		l.log.Warn("cannot complete a clean's swap on disk; will retry", "err", err)
	}
	res.CleanedTo = end
	res.SegmentsBefore, res.SegmentsAfter = n, len(opened)
	res.Took = time.Since(t0)
	l.log.Info("cleaned", "from", res.FirstDirty, "to", end, "segments_before", res.SegmentsBefore, "segments_after", res.SegmentsAfter,
		"records_kept", res.RecordsKept, "records_removed", res.RecordsRemoved, "bytes_read", res.BytesRead, "bytes_written", res.BytesWritten,
		"took", res.Took, "swap_took", res.SwapTook)
	return res, nil
}

// groupSegments groups adjacent segments whose total .log size fits
// segment.bytes, whose offset indexes together fit segment.index.bytes and
// whose offsets fit 32-bit relative offsets from the group's base, as
// Kafka's groupSegmentsBySize.
func groupSegments(srcs []srcSeg, cfg Config) [][]srcSeg {
	var out [][]srcSeg
	for i := 0; i < len(srcs); {
		j, size, idx := i+1, srcs[i].region.Len, srcs[i].idx
		for j < len(srcs) && size+srcs[j].region.Len <= cfg.SegmentBytes && idx+srcs[j].idx <= int64(cfg.SegmentIndexBytes) &&
			srcs[j].next-1-srcs[i].s.Base() <= math.MaxInt32 {
			size += srcs[j].region.Len
			idx += srcs[j].idx
			j++
		}
		out = append(out, srcs[i:j])
		i = j
	}
	return out
}

// cleaning is one Clean's state between the phases.
type cleaning struct {
	l    *Log
	o    CleanOptions
	ctx  context.Context
	cfg  Config
	res  *CleanResult
	pass plugins.CompactionPass
	vals bool

	scanBuf []plugins.Record
	window  []byte // read buffer
	arena   []byte // copies of the pending batches

	// phase 2: batches waiting for a Survivors answer
	pending []pendingBatch
	recs    []plugins.Record
	out     *segment.Segment
	outBuf  []byte
	outHdrs []segment.BatchHeader
}

type pendingBatch struct {
	raw  []byte // the batch as stored
	h    segment.BatchHeader
	recs []segment.Record // decoded (nil for a control batch)
}

// call runs a policy call, turning a panic of an in-process policy into an
// error.
func (c *cleaning) call(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if cp, ok := r.(crashPoint); ok {
				panic(cp)
			}
			err = fmt.Errorf("%w: %s: %s panicked: %v", plugins.ErrPolicyFailed, c.o.Policy.Info().Name, what, r)
		}
	}()
	if err = f(); err != nil && !errors.Is(err, plugins.ErrPolicyFailed) {
		err = fmt.Errorf("%w: %s: %s: %w", plugins.ErrPolicyFailed, c.o.Policy.Info().Name, what, err)
	}
	return err
}

// crashPoint is what a test's step hook panics with to simulate a crash.
type crashPoint string

func (c *cleaning) begin() error {
	c.vals = c.o.Policy.Info().NeedsValues
	tp, _ := ParsePartitionDir(filepath.Base(c.l.dir))
	p := plugins.CompactionParams{Topic: tp.Topic, Partition: tp.Partition, Config: c.o.Config, NowMs: c.o.NowMs}
	return c.call("Begin", func() (err error) {
		c.pass, err = c.o.Policy.Begin(c.ctx, p)
		if err == nil && c.pass == nil {
			err = errors.New("Begin returned no pass")
		}
		return err
	})
}

func (c *cleaning) close() {
	if c.pass != nil {
		c.call("Close", c.pass.Close)
	}
	if c.out != nil {
		c.out.Delete()
		c.out = nil
	}
}

// batches reads the batches of a source segment in order, CRC-checked,
// throttled, calling fn with each. b aliases a read window that is
// overwritten after refill is called (nil: no call): keep nothing that
// points into b past it.
func (c *cleaning) batches(src *srcSeg, refill func() error, fn func(b []byte, h segment.BatchHeader) error) error {
	r := src.region
	window := int64(cleanWindow)
	if c.window == nil {
		c.window = make([]byte, 0, window)
	}
	buf := c.window[:0]
	defer func() { c.window = buf[:0] }()
	bufPos := int64(-1 << 62) // file position of buf[0]
	for pos := r.Pos; pos < r.Pos+r.Len; {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		need := func(n int64) error {
			if pos >= bufPos && pos+n <= bufPos+int64(len(buf)) {
				return nil
			}
			if refill != nil {
				if err := refill(); err != nil {
					return err
				}
			}
			m := max(n, min(window, r.Pos+r.Len-pos))
			if int64(cap(buf)) < m {
				buf = make([]byte, 0, m)
			}
			buf = buf[:m]
			if err := c.o.Throttle.Wait(c.ctx, int(m)); err != nil {
				return err
			}
			if _, err := r.File.ReadAt(buf, pos); err != nil && err != io.EOF {
				return fmt.Errorf("%w: read segment %d: %w", ErrStorage, src.s.Base(), err)
			}
			c.res.BytesRead += m
			bufPos = pos
			return nil
		}
		if err := need(segment.HeaderSize); err != nil {
			return err
		}
		h, _ := segment.ParseHeader(buf[pos-bufPos:])
		if h.Magic != 2 || h.BatchLength < segment.HeaderSize-segment.LogOverhead || pos+h.Size() > r.Pos+r.Len {
			return fmt.Errorf("%w: segment %d position %d: not a batch", segment.ErrCorruptMessage, src.s.Base(), pos)
		}
		if err := need(h.Size()); err != nil {
			return err
		}
		b := buf[pos-bufPos : pos-bufPos+h.Size()]
		if !segment.CRCValid(b) {
			return fmt.Errorf("%w: segment %d position %d (offsets %d-%d): CRC-32C mismatch", segment.ErrCorruptMessage, src.s.Base(), pos, h.BaseOffset, h.LastOffset())
		}
		if err := fn(b, h); err != nil {
			return err
		}
		pos += h.Size()
	}
	return nil
}

// decode returns the records of a batch (decompressed, capped) and appends
// their policy view to dst.
func (c *cleaning) decode(b []byte, h segment.BatchHeader, dst []plugins.Record) ([]segment.Record, []plugins.Record, error) {
	plain, err := codec.PlainBatch(b, maxDecompressed)
	if err != nil {
		return nil, dst, fmt.Errorf("%w: batch at offset %d: %w", segment.ErrCorruptMessage, h.BaseOffset, err)
	}
	var recs []segment.Record
	err = segment.WalkRecords(plain, func(r segment.Record) error {
		recs = append(recs, r)
		pr := plugins.Record{Offset: h.BaseOffset + int64(r.OffsetDelta), Key: r.Key, TimestampMs: h.BaseTimestamp + r.TimestampDelta, Tombstone: r.Value == nil}
		if h.LogAppendTime() {
			pr.TimestampMs = h.MaxTimestamp
		}
		if len(r.Headers) > 0 {
			pr.Headers = make([]plugins.Header, len(r.Headers))
			for i, x := range r.Headers {
				pr.Headers[i] = plugins.Header{Key: x.Key, Value: x.Value}
			}
		}
		if c.vals {
			pr.Value = r.Value
		}
		dst = append(dst, pr)
		return nil
	})
	if err != nil {
		return nil, dst, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
	}
	return recs, dst, nil
}

func (c *cleaning) scanSegment(src *srcSeg) error {
	// The records handed to Scan point into the read window: Scan them
	// before it is refilled.
	return c.batches(src, c.flushScan, func(b []byte, h segment.BatchHeader) error {
		if h.Control() {
			return nil
		}
		var err error
		if _, c.scanBuf, err = c.decode(b, h, c.scanBuf); err != nil {
			return err
		}
		if len(c.scanBuf) >= c.o.BatchRecords {
			return c.flushScan()
		}
		return nil
	})
}

func (c *cleaning) flushScan() error {
	if len(c.scanBuf) == 0 {
		return nil
	}
	err := c.call("Scan", func() error { return c.pass.Scan(c.ctx, c.scanBuf) })
	c.scanBuf = c.scanBuf[:0]
	return err
}

// rewriteGroup writes the survivors of a group of segments into one new
// segment, moved next to the log as <base><ext>.cleaned. It reports
// whether an output was kept: an empty output is dropped unless first
// (the first segment keeps the log start offset's base).
func (c *cleaning) rewriteGroup(staging string, g []srcSeg, first bool) (bool, error) {
	base := g[0].s.Base()
	// Size the indexes for the output, not segment.index.bytes: the output
	// has no more index entries than its inputs had together (one more per
	// input at most), and preallocating 2 x 10 MiB per output costs more
	// than the clean of a small segment. Seal trims them anyway.
	scfg := c.cfg.segmentConfig()
	var entries int64
	for i := range g {
		entries += g[i].idx/8 + 2
	}
	scfg.IndexMaxBytes = int(min(int64(scfg.IndexMaxBytes), entries*12))
	s, err := segment.Create(c.l.fs, staging, base, scfg)
	if err != nil {
		return false, err
	}
	c.out, c.outBuf, c.outHdrs = s, c.outBuf[:0], c.outHdrs[:0]
	for i := range g {
		err := c.batches(&g[i], nil, func(b []byte, h segment.BatchHeader) error { // pending batches are copies
			pb := pendingBatch{raw: c.keep(b), h: h}
			if !h.Control() {
				var err error
				if pb.recs, c.recs, err = c.decode(pb.raw, h, c.recs); err != nil {
					return err
				}
			}
			c.pending = append(c.pending, pb)
			if len(c.recs) >= c.o.BatchRecords {
				return c.flushSurvivors()
			}
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	if err := c.flushSurvivors(); err != nil {
		return false, err
	}
	if err := c.writeOut(); err != nil {
		return false, err
	}
	empty := s.Size() == 0
	c.out = nil
	if empty && !first {
		return false, s.Delete()
	}
	if err := s.Close(); err != nil { // flush, trim the indexes, sync
		s.Delete()
		return false, err
	}
	for _, ext := range segmentExts {
		from, to := segment.FileName(staging, base, ext), segment.FileName(c.l.dir, base, ext)+CleanedSuffix
		if err := c.l.fs.Rename(from, to); err != nil {
			return false, fmt.Errorf("%w: rename %s: %w", ErrStorage, from, err)
		}
	}
	return true, nil
}

// flushSurvivors asks the policy about the pending batches and emits what
// survives.
func (c *cleaning) flushSurvivors() error {
	if len(c.pending) == 0 {
		return nil
	}
	var keep []int64
	if len(c.recs) > 0 {
		var ans []int64
		if err := c.call("Survivors", func() (err error) { ans, err = c.pass.Survivors(c.ctx, c.recs); return err }); err != nil {
			return err
		}
		var err error
		if keep, err = plugins.ValidateSurvivors(c.recs, ans); err != nil {
			return fmt.Errorf("%s: %w", c.o.Policy.Info().Name, err)
		}
	}
	for _, pb := range c.pending {
		if pb.h.Control() {
			if err := c.emit(pb.raw, pb.h); err != nil {
				return err
			}
			continue
		}
		// keep is sorted; take this batch's survivors.
		lo, _ := slices.BinarySearch(keep, pb.h.BaseOffset)
		hi, _ := slices.BinarySearch(keep, pb.h.LastOffset()+1)
		kept := keep[lo:hi]
		c.res.RecordsKept += int64(len(kept))
		c.res.RecordsRemoved += int64(len(pb.recs) - len(kept))
		switch {
		case len(kept) == len(pb.recs):
			if err := c.emit(pb.raw, pb.h); err != nil {
				return err
			}
		case len(kept) > 0:
			if err := c.emitKept(pb, kept); err != nil {
				return err
			}
		}
	}
	c.pending, c.recs, c.arena = c.pending[:0], c.recs[:0], c.arena[:0]
	return nil
}

// keep copies a batch for the pending list (the read window is reused).
// Copies live in an arena emptied when the pending batches are emitted.
func (c *cleaning) keep(b []byte) []byte {
	if cap(c.arena)-len(c.arena) < len(b) {
		c.arena = make([]byte, 0, max(4<<20, len(b)))
	}
	n := len(c.arena)
	c.arena = append(c.arena, b...)
	return c.arena[n:len(c.arena):len(c.arena)]
}

// emitKept writes the kept records of a partly kept batch as one batch,
// as Kafka's cleaner does: the batch keeps the original's base offset,
// lastOffsetDelta, base sequence, attributes (codec, timestamp type,
// transactional bit), partition leader epoch, producer id and epoch and
// base timestamp, and every kept record its offset delta, timestamp, key,
// value and headers; the offset deltas of removed records are gaps. So a
// cleaned batch is never larger than the original, its records stay
// compressed together, and the producer's sequence range is unchanged.
// segment accepts such sparse batches in the log (WalkRecords) and refuses
// them from producers (ValidateBatch).
// (One dense batch per run of kept offsets grew a zstd log 8.6 times when
// every other record was kept.)
func (c *cleaning) emitKept(pb pendingBatch, kept []int64) error {
	h := pb.h
	var recs []codec.Record
	for _, r := range pb.recs {
		if _, ok := slices.BinarySearch(kept, h.BaseOffset+int64(r.OffsetDelta)); !ok {
			continue
		}
		cr := codec.Record{OffsetDelta: r.OffsetDelta, TimestampDelta: r.TimestampDelta, Key: r.Key, Value: r.Value}
		for _, x := range r.Headers {
			cr.Headers = append(cr.Headers, codec.Header{Key: x.Key, Value: x.Value})
		}
		recs = append(recs, cr)
	}
	if len(recs) == 0 {
		return nil
	}
	ch := codec.BatchHeader{BaseOffset: h.BaseOffset, PartitionLeaderEpoch: h.PartitionLeaderEpoch, Attributes: h.Attributes,
		BaseTimestamp: h.BaseTimestamp, ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch, BaseSequence: h.BaseSequence,
		LastOffsetDelta: h.LastOffsetDelta}
	if h.LogAppendTime() {
		ch.MaxTimestamp = h.MaxTimestamp
	}
	b, err := codec.EncodeBatch(ch, recs)
	if err != nil {
		return fmt.Errorf("re-encode batch at offset %d: %w", h.BaseOffset, err)
	}
	nh, _ := segment.ParseHeader(b)
	return c.emit(b, nh)
}

func (c *cleaning) emit(b []byte, h segment.BatchHeader) error {
	c.outBuf = append(c.outBuf, b...)
	c.outHdrs = append(c.outHdrs, h)
	if len(c.outBuf) >= 1<<20 {
		return c.writeOut()
	}
	return nil
}

func (c *cleaning) writeOut() error {
	if len(c.outBuf) == 0 {
		return nil
	}
	if err := c.o.Throttle.Wait(c.ctx, len(c.outBuf)); err != nil {
		return err
	}
	if _, err := c.out.Append(c.outBuf, c.outHdrs); err != nil {
		return err
	}
	c.res.BytesWritten += int64(len(c.outBuf))
	c.outBuf, c.outHdrs = c.outBuf[:0], c.outHdrs[:0]
	return nil
}

// discardStaged removes what an aborted (uncommitted) clean wrote: the
// staging directory and every *.cleaned file, also those of a group whose
// files were being moved when it failed.
func (l *Log) discardStaged(newBases []int64) {
	l.fs.RemoveAll(filepath.Join(l.dir, cleanerStagingDir))
	for _, b := range newBases {
		l.removeCleaned(b)
	}
	if ents, err := l.fs.ReadDir(l.dir); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name, CleanedSuffix) {
				l.fs.Remove(filepath.Join(l.dir, e.Name))
			}
		}
	}
}

// segmentExts are the files of a segment.
var segmentExts = []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt}

// removeCleaned removes the .cleaned files of the output at base (all it
// can; the first error is returned).
func (l *Log) removeCleaned(base int64) (err error) {
	for _, ext := range segmentExts {
		n := segment.FileName(l.dir, base, ext) + CleanedSuffix
		if rerr := l.fs.Remove(n); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("%w: remove %s: %w", ErrStorage, n, rerr)
		}
	}
	return err
}

// removeCleanLeftovers removes a finished commit record whose removal may
// not be durable, .cleaned files and the staging directory, and syncs the
// directory, before a clean writes anything.
func (l *Log) removeCleanLeftovers() error {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrStorage, l.dir, err)
	}
	for _, e := range ents {
		switch {
		case e.Name == cleanerStagingDir:
			l.fs.RemoveAll(filepath.Join(l.dir, e.Name))
		case e.Name == cleanerSwapFile || strings.HasSuffix(e.Name, CleanedSuffix):
			// A commit record here is one whose swap already completed (the
			// lock was held from its commit to its removal).
			if err := l.fs.Remove(filepath.Join(l.dir, e.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: remove %s: %w", ErrStorage, e.Name, err)
			}
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, l.dir, err)
	}
	return nil
}

// prepareSwapRecord writes the commit record of a clean to
// cleaner-swap.tmp and syncs it: the replaced segments, the new ones and
// the new cleaner checkpoint.
func prepareSwapRecord(fsys segment.FS, dir string, oldBases, newBases []int64, cleanedTo int64) error {
	var b strings.Builder
	fmt.Fprintf(&b, "0\n%d\n", 1+len(oldBases)+len(newBases))
	fmt.Fprintf(&b, "cleaned-to %d\n", cleanedTo)
	for _, o := range oldBases {
		fmt.Fprintf(&b, "old %d\n", o)
	}
	for _, n := range newBases {
		fmt.Fprintf(&b, "new %d\n", n)
	}
	tmp := filepath.Join(dir, cleanerSwapFile+".tmp")
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%w: create %s: %w", ErrStorage, tmp, err)
	}
	_, err = f.WriteAt([]byte(b.String()), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", ErrStorage, tmp, err)
	}
	return nil
}

// commitSwapRecord renames the prepared record into place and syncs the
// directory: the commit point of a clean.
func commitSwapRecord(fsys segment.FS, dir string) error {
	tmp, name := filepath.Join(dir, cleanerSwapFile+".tmp"), filepath.Join(dir, cleanerSwapFile)
	if err := fsys.Rename(tmp, name); err != nil {
		return fmt.Errorf("%w: rename %s: %w", ErrStorage, tmp, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, dir, err)
	}
	return nil
}

func readSwapRecord(fsys segment.FS, dir string) (found bool, oldBases, newBases []int64, cleanedTo int64, err error) {
	name := filepath.Join(dir, cleanerSwapFile)
	if _, err := fsys.Stat(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil, nil, 0, nil
		}
		return false, nil, nil, 0, fmt.Errorf("%w: stat %s: %w", ErrStorage, name, err)
	}
	rows, err := readCheckpointFile(fsys, name, 2)
	if err != nil {
		return true, nil, nil, 0, err
	}
	cleanedTo = -1
	for _, r := range rows {
		v, perr := strconv.ParseInt(r[1], 10, 64)
		if perr != nil || v < 0 {
			return true, nil, nil, 0, fmt.Errorf("%s: bad offset %q", name, r[1])
		}
		switch r[0] {
		case "cleaned-to":
			cleanedTo = v
		case "old":
			oldBases = append(oldBases, v)
		case "new":
			newBases = append(newBases, v)
		default:
			return true, nil, nil, 0, fmt.Errorf("%s: unknown entry %q", name, r[0])
		}
	}
	if cleanedTo < 0 || len(oldBases) == 0 {
		return true, nil, nil, 0, fmt.Errorf("%s: incomplete commit record", name)
	}
	return true, oldBases, newBases, cleanedTo, nil
}

// applySwap renames every <new base><ext>.cleaned still present over
// <new base><ext> and removes the files of every old base that is not a
// new base. Idempotent.
func (l *Log) applySwap(oldBases, newBases []int64) error {
	fsys, dir, step := l.fs, l.dir, l.cleanStep
	for _, b := range newBases {
		for _, ext := range segmentExts {
			n := segment.FileName(dir, b, ext)
			if err := fsys.Rename(n+CleanedSuffix, n); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: rename %s: %w", ErrStorage, n+CleanedSuffix, err)
			}
		}
		step("renamed " + strconv.FormatInt(b, 10))
	}
	for _, b := range oldBases {
		if slices.Contains(newBases, b) {
			continue
		}
		for _, ext := range segmentExts {
			n := segment.FileName(dir, b, ext)
			if err := fsys.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: remove %s: %w", ErrStorage, n, err)
			}
		}
		step("removed " + strconv.FormatInt(b, 10))
	}
	return nil
}

// completeSwap makes an applied swap durable and ends it: directory sync,
// cleaner checkpoint written, commit record removed, directory sync.
func (l *Log) completeSwap(cleanedTo int64) error {
	fsys, dir, step := l.fs, l.dir, l.cleanStep
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, dir, err)
	}
	if err := writeCheckpointFile(fsys, filepath.Join(dir, CleanerCheckpointFile), []string{strconv.FormatInt(cleanedTo, 10)}); err != nil {
		return err
	}
	step("checkpointed")
	if err := fsys.Remove(filepath.Join(dir, cleanerSwapFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: remove %s: %w", ErrStorage, cleanerSwapFile, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, dir, err)
	}
	return nil
}

// pendingSwap is a committed and applied swap whose commit record is not
// yet removed.
type pendingSwap struct {
	cleanedTo int64
}

// finishPending completes the pending swap, if any (see completeSwap).
// While a commit record exists no segment may be created with one of its
// old bases (a replay would remove it): only a truncation can do that, and
// TruncateTo calls this first. It takes cl.finishMu, never the Log's lock
// (callers may hold it).
func (l *Log) finishPending() error {
	l.cl.finishMu.Lock()
	defer l.cl.finishMu.Unlock()
	p := l.cl.pending
	if p == nil {
		return nil
	}
	if err := l.completeSwap(p.cleanedTo); err != nil {
		return err
	}
	l.cl.pending = nil
	return nil
}

// recoverClean runs first in Open: it removes the staging directory,
// completes a committed clean (commit record present) and reads the
// cleaner checkpoint. .cleaned files of an uncommitted clean are removed
// by load's leftover rule afterwards.
func (l *Log) recoverClean() error {
	l.fs.RemoveAll(filepath.Join(l.dir, cleanerStagingDir))
	found, oldBases, newBases, cleanedTo, err := readSwapRecord(l.fs, l.dir)
	if err != nil {
		return err
	}
	if found {
		l.log.Warn("completing a committed clean interrupted by a crash", "replaced", oldBases, "new", newBases, "cleaned_to", cleanedTo)
		if err := l.applySwap(oldBases, newBases); err != nil {
			return err
		}
		if err := l.completeSwap(cleanedTo); err != nil {
			return err
		}
	}
	rows, err := readCheckpointFile(l.fs, filepath.Join(l.dir, CleanerCheckpointFile), 1)
	if err != nil {
		return err
	}
	if len(rows) == 1 {
		if v, err := strconv.ParseInt(rows[0][0], 10, 64); err == nil && v >= 0 {
			l.cl.cleanedTo = v
		}
	}
	return nil
}

// clampCleanedTo keeps the cleaner checkpoint at or below the active
// segment's base after a truncation (l.mu held), so that later segments
// are never taken for cleaned ones at recovery.
func (l *Log) clampCleanedTo() {
	if err := l.finishPending(); err != nil {
		l.storageError(err)
	}
	if a := l.active().Base(); l.cl.cleanedTo > a {
		l.cl.cleanedTo = a
		l.cl.finishMu.Lock()
		defer l.cl.finishMu.Unlock()
		if err := writeCheckpointFile(l.fs, filepath.Join(l.dir, CleanerCheckpointFile), []string{strconv.FormatInt(a, 10)}); err != nil {
			l.storageError(err)
		}
	}
}
