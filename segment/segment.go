package segment

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
)

// File name extensions.
const (
	LogExt       = ".log"
	IndexExt     = ".index"
	TimeIndexExt = ".timeindex"
)

// Config holds the segment settings, Kafka's names in comments.
type Config struct {
	// IndexMaxBytes is segment.index.bytes: the preallocated size of each
	// index file while the segment is active. Default 10 MiB.
	IndexMaxBytes int
	// IndexIntervalBytes is index.interval.bytes: log bytes between
	// index entries. Default 4096.
	IndexIntervalBytes int
}

// DefaultConfig has Kafka's defaults.
func DefaultConfig() Config {
	return Config{IndexMaxBytes: 10 << 20, IndexIntervalBytes: 4096}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.IndexMaxBytes <= 0 {
		c.IndexMaxBytes = d.IndexMaxBytes
	}
	if c.IndexMaxBytes < 4*timeEntrySize {
		c.IndexMaxBytes = 4 * timeEntrySize
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	return c
}

// FileName is dir/<base as 20 digits><ext>.
func FileName(dir string, base int64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
}

// ErrOffsetOverflow: a batch's offsets do not fit the segment's 32-bit
// relative offsets; the caller must roll first.
var ErrOffsetOverflow = errors.New("segment: offset does not fit a 32-bit relative offset")

// Segment is one segment: .log, .index, .timeindex.
type Segment struct {
	fs   FS
	dir  string
	base int64
	cfg  Config

	log  *logFile
	idx  offsetIndex
	tidx timeIndex

	size       int64 // bytes of complete batches in .log
	next       int64 // offset after the last batch
	maxTs      int64 // max batch timestamp, -1 when none
	offMaxTs   int64 // last offset of the batch with maxTs
	bytesSince int64 // log bytes since the last index entry
	active     bool  // indexes at full size
	closed     bool
}

// logFile is the .log file with a reference count, so that a region
// handed out for zero-copy stays readable until released even if the
// segment is closed or deleted meanwhile.
type logFile struct {
	File
	refs atomic.Int32
}

func (l *logFile) release() {
	if l.refs.Add(-1) == 0 {
		l.File.Close()
	}
}

func openFile(fsys FS, name string, flag int) (File, error) {
	f, err := fsys.OpenFile(name, flag, 0o644)
	if err != nil {
		return nil, storageErr("open", name, err)
	}
	return f, nil
}

// Create makes a new, empty, active segment with base offset base.
// Existing files of that name are replaced.
func Create(fsys FS, dir string, base int64, cfg Config) (*Segment, error) {
	s := &Segment{fs: fsys, dir: dir, base: base, cfg: cfg.withDefaults(), next: base, maxTs: -1, offMaxTs: base}
	if err := s.openFiles(os.O_RDWR | os.O_CREATE | os.O_TRUNC); err != nil {
		return nil, err
	}
	for _, m := range []*mapped{&s.idx.mapped, &s.tidx.mapped} {
		if err := m.resize(0); err != nil {
			s.Delete()
			return nil, err
		}
	}
	if err := s.Activate(); err != nil {
		s.Delete() // e.g. ENOSPC preallocating the indexes: leave no half segment
		return nil, err
	}
	return s, nil
}

func (s *Segment) openFiles(flag int) error {
	lf, err := openFile(s.fs, FileName(s.dir, s.base, LogExt), flag)
	if err != nil {
		return err
	}
	s.log = &logFile{File: lf}
	s.log.refs.Store(1)
	xf, err := openFile(s.fs, FileName(s.dir, s.base, IndexExt), flag|os.O_CREATE)
	if err != nil {
		s.log.release()
		return err
	}
	tf, err := openFile(s.fs, FileName(s.dir, s.base, TimeIndexExt), flag|os.O_CREATE)
	if err != nil {
		s.log.release()
		xf.Close()
		return err
	}
	s.idx = offsetIndex{mapped: mapped{f: xf}, base: s.base}
	s.tidx = timeIndex{mapped: mapped{f: tf}, base: s.base}
	return nil
}

func (s *Segment) closeFiles() error {
	err := s.idx.close()
	if e := s.tidx.close(); err == nil {
		err = e
	}
	s.log.release()
	return err
}

// Recovery says what opening or recovering a segment found and did.
// Nothing is dropped without being named here.
type Recovery struct {
	Base    int64 // the segment's base offset
	From    int64 // position where the batch scan started
	Scanned int64 // bytes of batches read (CRC-checked when Checked)
	Batches int   // batches scanned and kept
	Checked bool  // CRCs were verified

	// TruncatedAt is the position where the .log was cut, -1 if it was not.
	TruncatedAt     int64
	TruncatedBytes  int64
	FirstLostOffset int64  // base offset of the first dropped batch, -1 if unreadable or none
	Corrupt         bool   // a complete batch failed its checks (not merely a torn tail)
	Reason          string // why the tail was cut

	IndexRebuilt bool   // .index/.timeindex rebuilt (missing or damaged)
	IndexReason  string // why
}

// Truncated reports whether log bytes were dropped.
func (r Recovery) Truncated() bool { return r.TruncatedAt >= 0 }

// Open opens an existing segment. recoverFrom < 0 trusts the segment (it
// is below the recovery point or was closed cleanly): only the index is
// sanity-checked and the batches after the last index entry are read. A
// recoverFrom >= 0 re-reads and CRC-checks every batch holding offsets >=
// recoverFrom (starting at the index entry below it), cuts a torn or
// corrupt tail, and rebuilds the indexes from there. Either way a damaged
// or missing index is rebuilt and a bad tail is cut, and the returned
// Recovery says so. The segment is left active (indexes at full size);
// call Seal for a segment that is not the last.
func Open(fsys FS, dir string, base int64, cfg Config, recoverFrom int64) (*Segment, Recovery, error) {
	s := &Segment{fs: fsys, dir: dir, base: base, cfg: cfg.withDefaults(), next: base, maxTs: -1, offMaxTs: base}
	rec := Recovery{Base: base, TruncatedAt: -1, FirstLostOffset: -1}
	if _, err := fsys.Stat(FileName(dir, base, LogExt)); err != nil {
		return nil, rec, storageErr("stat", FileName(dir, base, LogExt), err)
	}
	if err := s.openFiles(os.O_RDWR); err != nil {
		return nil, rec, err
	}
	fail := func(err error) (*Segment, Recovery, error) {
		s.closeFiles()
		return nil, rec, err
	}
	size, err := s.log.Size()
	if err != nil {
		return fail(storageErr("stat", s.log.Name(), err))
	}
	s.size = size
	for _, m := range []*mapped{&s.idx.mapped, &s.tidx.mapped} {
		cur, err := m.f.Size()
		if err != nil {
			return fail(storageErr("stat", m.f.Name(), err))
		}
		if err := m.resize(cur); err != nil {
			return fail(err)
		}
	}
	// Sanity-check the indexes.
	reason := ""
	n, garbage := s.idx.validPrefix(size)
	s.idx.n = n
	switch {
	case len(s.idx.buf) == 0 && size > 0 && s.cfg.IndexIntervalBytes < int(size):
		reason = "offset index missing or empty"
	case garbage:
		reason = fmt.Sprintf("offset index damaged after entry %d", n)
	}
	tn, tgarbage := s.tidx.validPrefix(math.MaxInt64)
	s.tidx.n = tn
	if reason == "" && tgarbage {
		reason = fmt.Sprintf("time index damaged after entry %d", tn)
	}
	if reason == "" && n > 0 {
		e := s.idx.entry(n - 1)
		h, err := s.headerAt(e.Position, size)
		if err != nil || h.LastOffset() != e.Offset {
			reason = fmt.Sprintf("offset index entry %d (offset %d, position %d) does not match the log", n-1, e.Offset, e.Position)
		}
	}
	if reason == "" && tn > 0 {
		// every time index offset must lie inside the segment
		if l, _ := s.tidx.last(); l.Offset < base || (n > 0 && l.Offset > s.idx.entry(n-1).Offset+int64(math.MaxInt32)) {
			reason = "time index entries outside the segment"
		}
	}
	k := n - 1
	if reason != "" {
		k = -1
	}
	if reason == "" && recoverFrom < 0 {
		ok, err := s.trustTail(k, size)
		if err != nil {
			return fail(err)
		}
		if ok {
			return s, rec, nil // left as found; Activate before appending
		}
		recoverFrom = base // the trusted tail was not sane: check it all
		k = -1
		reason = "index does not cover the log tail"
	}
	if reason == "" && recoverFrom >= 0 {
		k = s.idx.floor(recoverFrom - 1) // last entry whose batch is below recoverFrom
	}
	if err := s.Activate(); err != nil {
		// E.g. ENOSPC preallocating on a full disk: recover within the
		// indexes' current size (entries that do not fit are skipped, which
		// only lengthens lookups); Append retries the activation.
		if !errors.Is(err, ErrStorage) || s.idx.buf == nil && s.idx.n > 0 || s.tidx.buf == nil && s.tidx.n > 0 {
			return fail(err)
		}
	}
	if reason != "" {
		rec.IndexRebuilt, rec.IndexReason = true, reason
	}
	if err := s.replay(k, size, true, &rec); err != nil {
		return fail(err)
	}
	if rec.Truncated() {
		if err := s.log.Truncate(s.size); err != nil {
			return fail(storageErr("truncate", s.log.Name(), err))
		}
	}
	return s, rec, nil
}

// trustTail computes the segment's end state from the index without
// rewriting anything: the batches after the last entry k are walked. It
// returns false if they are not sane or the index misses entries for them.
func (s *Segment) trustTail(k int, size int64) (bool, error) {
	st, ok, err := s.tailState(k)
	if err != nil || !ok {
		return false, err
	}
	pos := st.pos
	for pos < size {
		h, err := s.headerAt(pos, size)
		if err != nil {
			if errors.Is(err, ErrStorage) {
				return false, err
			}
			return false, nil
		}
		if h.BaseOffset < st.next || h.LastOffset()-s.base > math.MaxUint32 {
			return false, nil
		}
		if pos != st.pos || k < 0 {
			if st.bytesSince > int64(s.cfg.IndexIntervalBytes) && pos > 0 {
				return false, nil // an entry is missing
			}
		}
		if h.MaxTimestamp > st.maxTs {
			st.maxTs, st.offMax = h.MaxTimestamp, h.LastOffset()
		}
		if pos == st.pos && k >= 0 {
			st.bytesSince = 0
		}
		st.bytesSince += h.Size()
		st.next = h.NextOffset()
		pos += h.Size()
	}
	if l, ok := s.tidx.last(); ok && l.Offset >= st.next && st.next > s.base {
		return false, nil
	}
	s.size, s.next, s.maxTs, s.offMaxTs, s.bytesSince = size, st.next, st.maxTs, st.offMax, st.bytesSince
	return true, nil
}

type tailState struct {
	pos        int64 // position of the batch of entry k (0 if k < 0)
	next       int64
	maxTs      int64
	offMax     int64
	bytesSince int64
	timeKeep   int // time index entries to keep (offset < base of batch at pos)
}

// tailState derives the state at the batch of index entry k (or the start
// for k < 0): the max timestamp of everything before it comes from the
// time index entries below it plus the batches since the entry k-1.
func (s *Segment) tailState(k int) (tailState, bool, error) {
	st := tailState{next: s.base, maxTs: -1, offMax: s.base}
	if k < 0 {
		return st, true, nil
	}
	e := s.idx.entry(k)
	h, err := s.headerAt(e.Position, s.size)
	if err != nil || h.LastOffset() != e.Offset {
		if errors.Is(err, ErrStorage) {
			return st, false, err
		}
		return st, false, nil
	}
	st.pos, st.next = e.Position, h.BaseOffset
	st.timeKeep = sort.Search(s.tidx.n, func(i int) bool { return s.tidx.entry(i).Offset >= h.BaseOffset })
	if st.timeKeep > 0 {
		t := s.tidx.entry(st.timeKeep - 1)
		st.maxTs, st.offMax = t.Timestamp, t.Offset
	}
	w := int64(0)
	if k > 0 {
		w = s.idx.entry(k - 1).Position
	}
	for w < e.Position {
		h, err := s.headerAt(w, e.Position)
		if err != nil {
			if errors.Is(err, ErrStorage) {
				return st, false, err
			}
			return st, false, nil
		}
		if h.MaxTimestamp > st.maxTs {
			st.maxTs, st.offMax = h.MaxTimestamp, h.LastOffset()
		}
		w += h.Size()
	}
	if w != e.Position {
		return st, false, nil
	}
	return st, true, nil
}

// replay rebuilds the segment's state and indexes from index entry k (-1:
// from the start) by reading batches up to end, CRC-checking them when
// check is set. It stops at the first incomplete or bad batch, records it
// in rec, and sets s.size there; the caller truncates the file.
func (s *Segment) replay(k int, end int64, check bool, rec *Recovery) error {
	st, ok, err := s.tailState(k)
	if err != nil {
		return err
	}
	if !ok {
		rec.IndexRebuilt = true
		if rec.IndexReason == "" {
			rec.IndexReason = fmt.Sprintf("offset index entry %d does not match the log", k)
		}
		k = -1
		st, _, _ = s.tailState(-1)
	}
	if err := s.idx.truncateEntries(k + 1); err != nil {
		return err
	}
	if err := s.tidx.truncateEntries(st.timeKeep); err != nil {
		return err
	}
	fileSize, err := s.log.Size()
	if err != nil {
		return storageErr("stat", s.log.Name(), err)
	}
	rec.From, rec.Checked = st.pos, check
	pos := st.pos
	win := newReadWindow(s.log, end)
	cut := func(reason string, corrupt bool, first int64) {
		rec.TruncatedAt, rec.TruncatedBytes = pos, fileSize-pos
		rec.Reason, rec.Corrupt, rec.FirstLostOffset = reason, corrupt, first
	}
	for pos < end {
		if end-pos < HeaderSize {
			cut(fmt.Sprintf("torn tail: %d bytes at position %d are less than a batch header", end-pos, pos), false, -1)
			break
		}
		hb, err := win.at(pos, HeaderSize)
		if err != nil {
			return storageErr("read", s.log.Name(), err)
		}
		h, _ := ParseHeader(hb)
		if err := checkHeader(h, 0); err != nil {
			first := int64(-1)
			if allZero(hb) {
				cut(fmt.Sprintf("torn tail: zero bytes at position %d", pos), false, -1)
			} else {
				if h.Magic == 2 {
					first = h.BaseOffset
				}
				cut(fmt.Sprintf("corrupt batch header at position %d: %v", pos, err), true, first)
			}
			break
		}
		if pos+h.Size() > end {
			cut(fmt.Sprintf("torn tail: batch at position %d needs %d bytes, %d remain", pos, h.Size(), end-pos), false, h.BaseOffset)
			break
		}
		if h.BaseOffset < st.next || h.LastOffset()-s.base > math.MaxUint32 {
			cut(fmt.Sprintf("corrupt batch at position %d: base offset %d after next offset %d", pos, h.BaseOffset, st.next), true, -1)
			break
		}
		if k >= 0 && pos == st.pos && h.LastOffset() != s.idx.entry(k).Offset {
			return fmt.Errorf("segment %d: index entry changed under replay", s.base)
		}
		if check {
			b, err := win.at(pos, h.Size())
			if err != nil {
				return storageErr("read", s.log.Name(), err)
			}
			if !CRCValid(b) {
				cut(fmt.Sprintf("corrupt batch at position %d (offsets %d-%d): CRC-32C mismatch", pos, h.BaseOffset, h.LastOffset()), true, h.BaseOffset)
				break
			}
		}
		if h.MaxTimestamp > st.maxTs {
			st.maxTs, st.offMax = h.MaxTimestamp, h.LastOffset()
		}
		if k >= 0 && pos == st.pos {
			if err := s.tidx.maybeAppend(st.maxTs, st.offMax); err != nil {
				return err
			}
			st.bytesSince = 0
		} else if st.bytesSince > int64(s.cfg.IndexIntervalBytes) && !s.idx.full() {
			if err := s.idx.append(h.LastOffset(), pos); err != nil {
				return err
			}
			if err := s.tidx.maybeAppend(st.maxTs, st.offMax); err != nil {
				return err
			}
			st.bytesSince = 0
		}
		st.bytesSince += h.Size()
		st.next = h.NextOffset()
		rec.Batches++
		rec.Scanned += h.Size()
		pos += h.Size()
	}
	if pos == end && end < fileSize && !rec.Truncated() {
		rec.TruncatedAt, rec.TruncatedBytes = pos, fileSize-pos
	}
	s.size, s.next, s.maxTs, s.offMaxTs, s.bytesSince = pos, st.next, st.maxTs, st.offMax, st.bytesSince
	return nil
}

// headerAt reads and checks the batch header at pos; the batch must end
// by limit.
func (s *Segment) headerAt(pos, limit int64) (BatchHeader, error) {
	if pos < 0 || limit-pos < HeaderSize {
		return BatchHeader{}, fmt.Errorf("%w: no batch header at position %d", ErrCorruptMessage, pos)
	}
	var hb [HeaderSize]byte
	if _, err := s.log.ReadAt(hb[:], pos); err != nil && err != io.EOF {
		return BatchHeader{}, storageErr("read", s.log.Name(), err)
	}
	h, _ := ParseHeader(hb[:])
	if err := checkHeader(h, 0); err != nil {
		return h, fmt.Errorf("position %d: %w", pos, err)
	}
	if pos+h.Size() > limit {
		return h, fmt.Errorf("%w: batch at position %d runs past %d", ErrCorruptMessage, pos, limit)
	}
	return h, nil
}

// Activate sizes the indexes for appends (segment.index.bytes).
func (s *Segment) Activate() error {
	if s.active {
		return nil
	}
	want := int64(s.cfg.IndexMaxBytes)
	if err := s.idx.resize(max(want/offsetEntrySize*offsetEntrySize, int64(s.idx.n*offsetEntrySize))); err != nil {
		return err
	}
	if err := s.tidx.resize(max(want/timeEntrySize*timeEntrySize, int64(s.tidx.n*timeEntrySize))); err != nil {
		return err
	}
	s.active = true
	return nil
}

// Seal ends appends to this segment: a final time index entry records the
// max timestamp, and the indexes are trimmed to their entries and synced.
// The .log is not synced here (that can take seconds for 1 GiB): use
// Flush, or LogSync from another goroutine. A sealed segment can be
// re-activated (after a truncation).
func (s *Segment) Seal() error {
	if !s.active {
		return nil
	}
	if s.maxTs >= 0 && s.next > s.base {
		if err := s.tidx.maybeAppend(s.maxTs, s.offMaxTs); err != nil {
			return err
		}
	}
	if err := s.idx.resize(int64(s.idx.n * offsetEntrySize)); err != nil {
		return err
	}
	if err := s.tidx.resize(int64(s.tidx.n * timeEntrySize)); err != nil {
		return err
	}
	if err := s.idx.f.Sync(); err != nil {
		return storageErr("sync", s.idx.f.Name(), err)
	}
	if err := s.tidx.f.Sync(); err != nil {
		return storageErr("sync", s.tidx.f.Name(), err)
	}
	s.active = false
	return nil
}

// Base is the segment's base offset.
func (s *Segment) Base() int64 { return s.base }

// Size is the byte size of the .log (complete batches only).
func (s *Segment) Size() int64 { return s.size }

// NextOffset is the offset after the last batch (Base when empty).
func (s *Segment) NextOffset() int64 { return s.next }

// MaxTimestamp is the largest batch max timestamp, -1 when empty.
func (s *Segment) MaxTimestamp() int64 { return s.maxTs }

// OffsetOfMaxTimestamp is the last offset of the batch with MaxTimestamp.
func (s *Segment) OffsetOfMaxTimestamp() int64 { return s.offMaxTs }

// IndexFull reports that the offset index has no room for another entry:
// the caller must roll.
func (s *Segment) IndexFull() bool { return s.active && s.idx.full() }

// Fits reports whether offsets up to last fit the 32-bit relative
// offsets of this segment.
func (s *Segment) Fits(last int64) bool { return last-s.base <= math.MaxUint32 && last >= s.base }

// Append writes already validated batches (headers hs, in order, as
// returned by Batches, with base offsets assigned) at the end of the log
// and indexes them. It returns the position of the first byte. On a write
// error the file is cut back to its previous size and the segment is
// unchanged: no half-written batch is ever visible.
func (s *Segment) Append(batches []byte, hs []BatchHeader) (int64, error) {
	pos := s.size
	if len(batches) == 0 || len(hs) == 0 {
		return pos, nil
	}
	if s.closed {
		return pos, fmt.Errorf("%w: segment %d is closed", ErrStorage, s.base)
	}
	if hs[0].BaseOffset < s.next {
		return pos, fmt.Errorf("segment %d: base offset %d is below the next offset %d", s.base, hs[0].BaseOffset, s.next)
	}
	if !s.Fits(hs[len(hs)-1].LastOffset()) {
		return pos, ErrOffsetOverflow
	}
	if !s.active {
		if err := s.Activate(); err != nil {
			return pos, err
		}
	}
	if _, err := s.log.WriteAt(batches, pos); err != nil {
		s.undo(pos, s.idx.n, s.tidx.n)
		return pos, storageErr("write", s.log.Name(), err)
	}
	in, tn := s.idx.n, s.tidx.n
	maxTs, offMax, since := s.maxTs, s.offMaxTs, s.bytesSince
	p := pos
	for _, h := range hs {
		if h.MaxTimestamp > maxTs {
			maxTs, offMax = h.MaxTimestamp, h.LastOffset()
		}
		if since > int64(s.cfg.IndexIntervalBytes) && !s.idx.full() {
			err := s.idx.append(h.LastOffset(), p)
			if err == nil {
				err = s.tidx.maybeAppend(maxTs, offMax)
			}
			if err != nil {
				s.undo(pos, in, tn)
				return pos, err
			}
			since = 0
		}
		since += h.Size()
		p += h.Size()
	}
	s.size = p
	s.next = hs[len(hs)-1].NextOffset()
	s.maxTs, s.offMaxTs, s.bytesSince = maxTs, offMax, since
	return pos, nil
}

// undo cuts the log back to pos and the indexes to in/tn entries after a
// failed append. Errors here are secondary: the append already failed,
// and the in-memory size, which readers use, never moved.
func (s *Segment) undo(pos int64, in, tn int) {
	s.log.Truncate(pos)
	s.idx.truncateEntries(in)
	s.tidx.truncateEntries(tn)
}

// Translate finds the first batch whose last offset is >= off: its
// position and header. ok is false when off is at or past NextOffset.
func (s *Segment) Translate(off int64) (pos int64, h BatchHeader, ok bool, err error) {
	return s.translateFrom(off, s.size)
}

func (s *Segment) translateFrom(off, limit int64) (int64, BatchHeader, bool, error) {
	if off >= s.next {
		return limit, BatchHeader{}, false, nil
	}
	pos, hint := int64(0), limit
	i := s.idx.floor(off)
	if i+1 < s.idx.n {
		// The answer is at or before the next entry's batch: read up to
		// its header in one go.
		hint = min(limit, s.idx.entry(i+1).Position+HeaderSize)
	}
	if i+1 < s.idx.n {
		// Fast path, one small read: when the next entry's batch starts
		// right after entry i's offsets, no batch lies between them, so it
		// holds off unless entry i's batch ends exactly at off.
		e1 := s.idx.entry(i + 1)
		prev := s.base - 1
		if i >= 0 {
			prev = s.idx.entry(i).Offset
		}
		if prev < off && e1.Position+HeaderSize <= limit {
			var hb [HeaderSize]byte
			if _, err := s.log.ReadAt(hb[:], e1.Position); err == nil || err == io.EOF {
				h, _ := ParseHeader(hb[:])
				if checkHeader(h, 0) == nil && h.LastOffset() == e1.Offset && h.BaseOffset == prev+1 && e1.Position+h.Size() <= limit {
					return e1.Position, h, true, nil
				}
			}
		}
	}
	var want int64 = -1 // last offset the first header must have
	if i >= 0 {
		e := s.idx.entry(i)
		pos, want = e.Position, e.Offset
	}
	it := headerIter{s: s, limit: limit, hint: hint}
	defer it.free()
	for pos < limit {
		h, err := it.at(pos)
		if err != nil || (want >= 0 && h.LastOffset() != want) {
			if want >= 0 {
				// The index disagrees with the log: scan from the start.
				pos, want, it.hint = 0, -1, limit
				continue
			}
			return pos, h, false, fmt.Errorf("segment %d: %w", s.base, err)
		}
		want = -1
		if h.LastOffset() >= off {
			return pos, h, true, nil
		}
		pos += h.Size()
	}
	return limit, BatchHeader{}, false, nil
}

var windowPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// headerIter reads batch headers through a window buffer so that a short
// forward scan costs one pread instead of one per header.
type headerIter struct {
	s           *Segment
	limit, hint int64 // batches end by limit; reads try to stop at hint
	buf         *[]byte
	wpos, wlen  int64 // window [wpos, wpos+wlen) of the file in buf
}

func (it *headerIter) free() {
	if it.buf != nil {
		windowPool.Put(it.buf)
		it.buf = nil
	}
}

func (it *headerIter) at(pos int64) (BatchHeader, error) {
	if pos < 0 || it.limit-pos < HeaderSize {
		return BatchHeader{}, fmt.Errorf("%w: no batch header at position %d", ErrCorruptMessage, pos)
	}
	if pos < it.wpos || pos+HeaderSize > it.wpos+it.wlen {
		if it.buf == nil {
			it.buf = windowPool.Get().(*[]byte)
		}
		n := min(int64(len(*it.buf)), max(it.hint, pos+HeaderSize)-pos, it.limit-pos)
		if _, err := it.s.log.ReadAt((*it.buf)[:n], pos); err != nil && err != io.EOF {
			return BatchHeader{}, storageErr("read", it.s.log.Name(), err)
		}
		it.wpos, it.wlen = pos, n
	}
	h, _ := ParseHeader((*it.buf)[pos-it.wpos:])
	if err := checkHeader(h, 0); err != nil {
		return h, fmt.Errorf("position %d: %w", pos, err)
	}
	if pos+h.Size() > it.limit {
		return h, fmt.Errorf("%w: batch at position %d runs past %d", ErrCorruptMessage, pos, it.limit)
	}
	return h, nil
}

// Region is a byte range of a .log file for a zero-copy send. File is the
// *os.File when the file system has one (use sendfile), else a ReaderAt.
// Call Release when the bytes have been sent.
type Region struct {
	File io.ReaderAt
	Pos  int64
	Len  int64
	lf   *logFile
}

// Release lets the file close if its segment was closed or deleted.
func (r *Region) Release() {
	if r.lf != nil {
		r.lf.release()
		r.lf = nil
	}
}

// Read returns the region of whole batches starting at position pos
// (a batch boundary, e.g. from Translate), ending at or before maxPos
// (a batch boundary; use Size for all) and holding at most maxBytes, except
// that the first batch is always included when minOne is set (KIP-74).
// No record bytes are read into memory: only a few batch headers.
func (s *Segment) Read(pos, maxBytes, maxPos int64, minOne bool) (Region, error) {
	end := min(maxPos, s.size)
	r := Region{File: s.log.File, Pos: pos}
	if of, ok := s.log.File.(OSFiler); ok {
		r.File = of.OSFile()
	}
	if pos >= end {
		return r, nil
	}
	limit := min(end, pos+maxBytes)
	if maxBytes < 0 {
		limit = pos
	}
	// Jump to the last indexed batch boundary at or before limit.
	cur := pos
	i := sort.Search(s.idx.n, func(i int) bool { return s.idx.entry(i).Position > limit }) - 1
	if i >= 0 {
		if e := s.idx.entry(i); e.Position > cur {
			if h, err := s.headerAt(e.Position, end); err == nil && h.LastOffset() == e.Offset {
				cur = e.Position // verified to be a batch boundary
			}
		}
	}
	for cur < end {
		h, err := s.headerAt(cur, end)
		if err != nil {
			return r, fmt.Errorf("segment %d: %w", s.base, err)
		}
		if cur+h.Size() > limit && !(minOne && cur == pos) {
			break
		}
		cur += h.Size()
	}
	r.Len = cur - pos
	if r.Len > 0 {
		s.log.refs.Add(1)
		r.lf = s.log
	}
	return r, nil
}

// FindOffsetByTimestamp returns the first offset >= startOffset whose
// timestamp is >= ts: the exact record for uncompressed batches, the
// batch's base offset (or startOffset) for compressed ones. ok is false
// when no batch in the segment qualifies.
func (s *Segment) FindOffsetByTimestamp(ts, startOffset int64) (int64, bool, error) {
	if s.next == s.base || s.maxTs < ts {
		return 0, false, nil
	}
	from := max(startOffset, s.base)
	if i := s.tidx.floor(ts - 1); i >= 0 {
		from = max(from, s.tidx.entry(i).Offset)
	}
	pos, _, ok, err := s.Translate(from)
	if err != nil || !ok {
		return 0, false, err
	}
	for pos < s.size {
		h, err := s.headerAt(pos, s.size)
		if err != nil {
			return 0, false, fmt.Errorf("segment %d: %w", s.base, err)
		}
		if h.MaxTimestamp >= ts && h.LastOffset() >= startOffset {
			if h.Codec() != CodecNone || h.LogAppendTime() {
				return max(h.BaseOffset, startOffset), true, nil
			}
			b := make([]byte, h.Size())
			if _, err := s.log.ReadAt(b, pos); err != nil && err != io.EOF {
				return 0, false, storageErr("read", s.log.Name(), err)
			}
			found := int64(-1)
			werr := WalkRecords(b, func(r Record) error {
				off := h.BaseOffset + int64(r.OffsetDelta)
				if found < 0 && off >= startOffset && h.BaseTimestamp+r.TimestampDelta >= ts {
					found = off
				}
				return nil
			})
			if werr == nil && found >= 0 {
				return found, true, nil
			}
			if werr != nil {
				return max(h.BaseOffset, startOffset), true, nil
			}
		}
		pos += h.Size()
	}
	return 0, false, nil
}

// TruncateTo removes every batch holding an offset >= off (a batch that
// straddles off goes entirely) and returns the bytes removed.
func (s *Segment) TruncateTo(off int64) (int64, error) {
	if off >= s.next {
		return 0, nil
	}
	cut := int64(0)
	if off > s.base {
		pos, _, ok, err := s.Translate(off)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, nil
		}
		cut = pos
	}
	if !s.active {
		if err := s.Activate(); err != nil {
			return 0, err
		}
	}
	k := sort.Search(s.idx.n, func(i int) bool { return s.idx.entry(i).Position >= cut }) - 1
	old := s.size
	rec := Recovery{TruncatedAt: -1}
	if err := s.replay(k, cut, false, &rec); err != nil {
		return 0, err
	}
	if err := s.log.Truncate(s.size); err != nil {
		return 0, storageErr("truncate", s.log.Name(), err)
	}
	return old - s.size, nil
}

// Flush makes the log and both indexes durable.
func (s *Segment) Flush() error {
	if err := s.log.Sync(); err != nil {
		return storageErr("sync", s.log.Name(), err)
	}
	if err := s.idx.sync(s.idx.n * offsetEntrySize); err != nil {
		return err
	}
	return s.tidx.sync(s.tidx.n * timeEntrySize)
}

// LogSync returns a function that fdatasyncs the .log, holding a
// reference so it may run in another goroutine even if the segment is
// closed or deleted meanwhile. Call it exactly once.
func (s *Segment) LogSync() func() error {
	lf := s.log
	lf.refs.Add(1)
	return func() error {
		defer lf.release()
		return storageErr("sync", lf.Name(), lf.Sync())
	}
}

// SyncIndexes msyncs the offset and time indexes (the .log is synced on
// its own with LogSync, which may run without the caller's lock).
func (s *Segment) SyncIndexes() error {
	if err := s.idx.sync(s.idx.n * offsetEntrySize); err != nil {
		return err
	}
	return s.tidx.sync(s.tidx.n * timeEntrySize)
}

// Close flushes, seals (trims the indexes) and closes the segment. Regions
// still held keep the .log open until released.
func (s *Segment) Close() error {
	if s.closed {
		return nil
	}
	err := s.Flush()
	if serr := s.Seal(); err == nil {
		err = serr
	}
	s.closed = true
	if cerr := s.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

// CloseNoSeal closes without trimming or flushing (what a crash leaves).
func (s *Segment) CloseNoSeal() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeFiles()
}

// Delete closes the segment without flushing and removes its files.
func (s *Segment) Delete() error {
	if !s.closed {
		s.closed = true
		s.closeFiles()
	}
	var first error
	for _, ext := range []string{LogExt, IndexExt, TimeIndexExt} {
		name := FileName(s.dir, s.base, ext)
		if err := s.fs.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = storageErr("remove", name, err)
		}
	}
	return first
}

// IndexEntryCount is the number of offset index entries.
func (s *Segment) IndexEntryCount() int { return s.idx.n }

// IndexEntries returns the offset index entries (for tools and tests).
func (s *Segment) IndexEntries() []IndexEntry {
	out := make([]IndexEntry, s.idx.n)
	for i := range out {
		out[i] = s.idx.entry(i)
	}
	return out
}

// TimeIndexEntries returns the time index entries.
func (s *Segment) TimeIndexEntries() []TimeEntry {
	out := make([]TimeEntry, s.tidx.n)
	for i := range out {
		out[i] = s.tidx.entry(i)
	}
	return out
}

// ScanLog reads the batches of a .log through r (size bytes) from
// position from, calling fn with each batch's position, header and whether
// its CRC is valid (for tools like a log dump). It stops at the end, at a
// header it cannot frame (returned as an error wrapping ErrCorruptMessage
// with the position), or when fn returns an error.
func ScanLog(r io.ReaderAt, from, size int64, fn func(pos int64, h BatchHeader, crcOK bool) error) error {
	var buf []byte
	for pos := from; pos < size; {
		if size-pos < HeaderSize {
			return fmt.Errorf("%w: %d trailing bytes at position %d", ErrCorruptMessage, size-pos, pos)
		}
		var hb [HeaderSize]byte
		if _, err := r.ReadAt(hb[:], pos); err != nil && err != io.EOF {
			return err
		}
		h, _ := ParseHeader(hb[:])
		if h.BatchLength < HeaderSize-LogOverhead || pos+h.Size() > size {
			return fmt.Errorf("%w: batch at position %d (batchLength %d) does not fit the file", ErrCorruptMessage, pos, h.BatchLength)
		}
		if int64(cap(buf)) < h.Size() {
			buf = make([]byte, h.Size())
		}
		b := buf[:h.Size()]
		if _, err := r.ReadAt(b, pos); err != nil && err != io.EOF {
			return err
		}
		if err := fn(pos, h, CRCValid(b)); err != nil {
			return err
		}
		pos += h.Size()
	}
	return nil
}

// ReadBatch reads the whole batch at pos (for tools and tests; the read
// path uses Read).
func (s *Segment) ReadBatch(pos int64) ([]byte, error) {
	h, err := s.headerAt(pos, s.size)
	if err != nil {
		return nil, err
	}
	b := make([]byte, h.Size())
	if _, err := s.log.ReadAt(b, pos); err != nil && err != io.EOF {
		return nil, storageErr("read", s.log.Name(), err)
	}
	return b, nil
}

// replayWindow is the most of a log file that recovery reads per call.
// Replaying one batch at a time cost two preads per batch, which on a log
// of small batches (an offsets topic: ~260 bytes each) was most of the
// recovery's CPU.
const replayWindow = 1 << 20

// readWindow reads a file front to back through one buffer. at returns a
// view that is valid until the next call; bytes past the end of the file
// read as zeros, as a fresh buffer did before (a torn tail of zeros is
// recognised by that).
type readWindow struct {
	f     io.ReaderAt
	limit int64 // nothing at or past limit is needed
	buf   []byte
	off   int64 // file position of buf[0]
	n     int   // valid bytes in buf
}

func newReadWindow(f io.ReaderAt, limit int64) *readWindow {
	return &readWindow{f: f, limit: limit}
}

func (w *readWindow) at(pos, size int64) ([]byte, error) {
	if pos >= w.off && pos+size <= w.off+int64(w.n) {
		return w.buf[pos-w.off : pos-w.off+size], nil
	}
	if int64(len(w.buf)) < size { // a batch larger than the window grows it
		w.buf = make([]byte, max(size, min(replayWindow, w.limit-pos)))
	}
	want := min(int64(len(w.buf)), max(w.limit-pos, size))
	b := w.buf[:want]
	if err := readFull(w.f, b, pos); err != nil {
		w.n = 0
		return nil, err
	}
	w.off, w.n = pos, int(want)
	return b[:size], nil
}

// readFull fills b from pos; what lies past the end of the file is zeroed.
func readFull(f io.ReaderAt, b []byte, pos int64) error {
	n, err := f.ReadAt(b, pos)
	if err != nil && err != io.EOF {
		return err
	}
	clear(b[n:])
	return nil
}
