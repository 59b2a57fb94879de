package segment

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sys/unix"
)

const (
	offsetEntrySize = 8
	timeEntrySize   = 12
)

// IndexEntry is one .index entry, with absolute offset.
type IndexEntry struct {
	Offset   int64 // last offset of the batch at Position
	Position int64
}

// TimeEntry is one .timeindex entry, with absolute offset.
type TimeEntry struct {
	Timestamp int64
	Offset    int64
}

// mapped is the bytes of an index file: a shared memory map when the file
// has a descriptor, else a heap copy mirrored to the file with WriteAt.
type mapped struct {
	f    File
	buf  []byte
	mmap bool
}

// zeroFrom reports whether the bytes from pos on are all zero. For a
// mapped OS file it asks the file system where data lies (SEEK_DATA and
// SEEK_HOLE) and compares only those ranges: a preallocated, never written
// 10 MiB index is holes or unwritten extents, and touching it page by page
// made recovering one empty partition cost ~10 ms (50 of them for a fresh
// __consumer_offsets). The bytes the file system calls data are still
// compared, so the answer is exact whatever it says.
func (m *mapped) zeroFrom(pos int) bool {
	zero := true
	m.dataRanges(pos, len(m.buf), func(b []byte) bool {
		zero = allZero(b)
		return zero
	})
	return zero
}

// dataRanges calls fn for the parts of buf[from:to] that may hold non-zero
// bytes (all of it unless the buffer maps an OS file whose holes the file
// system reports), until fn returns false.
func (m *mapped) dataRanges(from, to int, fn func(b []byte) bool) {
	if from >= to {
		return
	}
	of, ok := m.f.(OSFiler)
	if !m.mmap || !ok {
		fn(m.buf[from:to])
		return
	}
	fd := int(of.OSFile().Fd())
	off, end := int64(from), int64(to)
	for off < end {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return // no data at or after off
		}
		if err != nil || d < off {
			fn(m.buf[off:end])
			return
		}
		if d >= end {
			return
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h <= d {
			fn(m.buf[d:end])
			return
		}
		h = min(h, end)
		if !fn(m.buf[d:h]) {
			return
		}
		off = h
	}
}

// noReadaheadInHoles turns readahead off (MADV_RANDOM) over the part of
// the mapping from the file's first hole on: the preallocated, never
// written tail of an index. A fault there with readahead pulled up to
// 8 MiB of zeros into the page cache, where SEEK_DATA then counts them as
// data (zeroFrom). The written part keeps normal readahead, so the walk
// over a flushed segment's whole index at open faults in batches rather
// than page by page.
func (m *mapped) noReadaheadInHoles(fd int) {
	h, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	if err != nil {
		return
	}
	page := int64(unix.Getpagesize())
	h = (h + page - 1) / page * page
	if h < int64(len(m.buf)) {
		_ = unix.Madvise(m.buf[h:], unix.MADV_RANDOM)
	}
}

// resize makes the file exactly size bytes and maps it. Bytes past the
// old content read as zero.
func (m *mapped) resize(size int64) error {
	cur, err := m.f.Size()
	if err != nil {
		return storageErr("stat", m.f.Name(), err)
	}
	// Change the file first: if that fails (ENOSPC preallocating) the
	// current mapping stays valid and nothing changed.
	if size < cur {
		if err := m.f.Truncate(size); err != nil {
			return storageErr("truncate", m.f.Name(), err)
		}
	} else if size > cur {
		if p, ok := m.f.(Preallocator); ok {
			if err := p.Preallocate(size); err != nil {
				return storageErr("fallocate", m.f.Name(), err)
			}
		} else if err := m.f.Truncate(size); err != nil {
			return storageErr("truncate", m.f.Name(), err)
		}
	}
	if m.mmap {
		if err := unix.Munmap(m.buf); err != nil {
			return storageErr("munmap", m.f.Name(), err)
		}
		m.buf, m.mmap = nil, false
	}
	if size == 0 {
		m.buf = nil
		return nil
	}
	if of, ok := m.f.(OSFiler); ok {
		b, err := unix.Mmap(int(of.OSFile().Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err == nil {
			m.buf, m.mmap = b, true
			m.noReadaheadInHoles(int(of.OSFile().Fd()))
			return nil
		}
	}
	b := make([]byte, size)
	m.buf = b
	if _, err := m.f.ReadAt(b, 0); err != nil && err != io.EOF {
		return storageErr("read", m.f.Name(), err)
	}
	return nil
}

// write stores b at off in the map (and in the file when heap-backed).
func (m *mapped) write(off int, b []byte) error {
	if !m.mmap {
		if _, err := m.f.WriteAt(b, int64(off)); err != nil {
			return storageErr("write", m.f.Name(), err)
		}
	}
	copy(m.buf[off:], b)
	return nil
}

// zero clears [from, to).
func (m *mapped) zero(from, to int) error {
	if from >= to {
		return nil
	}
	if !m.mmap {
		if _, err := m.f.WriteAt(make([]byte, to-from), int64(from)); err != nil {
			return storageErr("write", m.f.Name(), err)
		}
	}
	// Clear only pages that hold something: writing zeros over a
	// preallocated index dirtied (and wrote back) all 10 MiB of it on
	// every recovery of an empty segment.
	m.dataRanges(from, to, func(b []byte) bool {
		for len(b) > 0 {
			n := min(len(b), len(zeroPage))
			if !allZero(b[:n]) {
				clear(b[:n])
			}
			b = b[n:]
		}
		return true
	})
	return nil
}

func (m *mapped) sync(upto int) error {
	if m.mmap && upto > 0 {
		end := min(upto, len(m.buf))
		if err := unix.Msync(m.buf[:end], unix.MS_SYNC); err != nil {
			return storageErr("msync", m.f.Name(), err)
		}
		return nil
	}
	return storageErr("sync", m.f.Name(), m.f.Sync())
}

func (m *mapped) close() error {
	var err error
	if m.mmap {
		err = storageErr("munmap", m.f.Name(), unix.Munmap(m.buf))
		m.buf, m.mmap = nil, false
	}
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// offsetIndex is the .index of one segment.
type offsetIndex struct {
	mapped
	base int64
	n    int
}

func (x *offsetIndex) entry(i int) IndexEntry {
	b := x.buf[i*offsetEntrySize:]
	return IndexEntry{
		Offset:   x.base + int64(binary.BigEndian.Uint32(b)),
		Position: int64(binary.BigEndian.Uint32(b[4:])),
	}
}

func (x *offsetIndex) full() bool { return (x.n+1)*offsetEntrySize > len(x.buf) }

func (x *offsetIndex) last() (IndexEntry, bool) {
	if x.n == 0 {
		return IndexEntry{}, false
	}
	return x.entry(x.n - 1), true
}

func (x *offsetIndex) append(off, pos int64) error {
	if x.full() {
		return fmt.Errorf("offset index %s is full", x.f.Name())
	}
	var b [offsetEntrySize]byte
	binary.BigEndian.PutUint32(b[:], uint32(off-x.base))
	binary.BigEndian.PutUint32(b[4:], uint32(pos))
	if err := x.write(x.n*offsetEntrySize, b[:]); err != nil {
		return err
	}
	x.n++
	return nil
}

// truncateEntries keeps the first n entries and zeroes the rest.
func (x *offsetIndex) truncateEntries(n int) error {
	if n >= x.n {
		return nil
	}
	if err := x.zero(n*offsetEntrySize, x.n*offsetEntrySize); err != nil {
		return err
	}
	x.n = n
	return nil
}

// floor is the index of the last entry with Offset <= off, or -1.
func (x *offsetIndex) floor(off int64) int {
	if off < x.base {
		return -1
	}
	rel := off - x.base
	if rel > 1<<32-1 {
		return x.n - 1
	}
	r := uint32(rel)
	i := sort.Search(x.n, func(i int) bool {
		return binary.BigEndian.Uint32(x.buf[i*offsetEntrySize:]) > r
	})
	return i - 1
}

// validPrefix counts the leading entries that are sane: strictly
// increasing offsets and positions, positions in (0, logSize). It also
// reports whether non-zero bytes follow them (a damaged index).
func (x *offsetIndex) validPrefix(logSize int64) (n int, garbage bool) {
	max := len(x.buf) / offsetEntrySize
	var prev IndexEntry
	for n = 0; n < max; n++ {
		e := x.entry(n)
		if e.Position == 0 || e.Position >= logSize || (n > 0 && (e.Offset <= prev.Offset || e.Position <= prev.Position)) {
			break
		}
		prev = e
	}
	return n, !x.zeroFrom(n * offsetEntrySize)
}

// timeIndex is the .timeindex of one segment.
type timeIndex struct {
	mapped
	base int64
	n    int
}

func (x *timeIndex) entry(i int) TimeEntry {
	b := x.buf[i*timeEntrySize:]
	return TimeEntry{
		Timestamp: int64(binary.BigEndian.Uint64(b)),
		Offset:    x.base + int64(binary.BigEndian.Uint32(b[8:])),
	}
}

func (x *timeIndex) last() (TimeEntry, bool) {
	if x.n == 0 {
		return TimeEntry{}, false
	}
	return x.entry(x.n - 1), true
}

// maybeAppend adds (ts, off) if ts is above the last entry's timestamp.
func (x *timeIndex) maybeAppend(ts, off int64) error {
	if l, ok := x.last(); ok && (ts <= l.Timestamp || off < l.Offset) {
		return nil
	}
	if (x.n+1)*timeEntrySize > len(x.buf) {
		return nil // full: the segment rolls on a full offset index first
	}
	var b [timeEntrySize]byte
	binary.BigEndian.PutUint64(b[:], uint64(ts))
	binary.BigEndian.PutUint32(b[8:], uint32(off-x.base))
	if err := x.write(x.n*timeEntrySize, b[:]); err != nil {
		return err
	}
	x.n++
	return nil
}

func (x *timeIndex) truncateEntries(n int) error {
	if n >= x.n {
		return nil
	}
	if err := x.zero(n*timeEntrySize, x.n*timeEntrySize); err != nil {
		return err
	}
	x.n = n
	return nil
}

// floor is the index of the last entry with Timestamp <= ts, or -1.
func (x *timeIndex) floor(ts int64) int {
	i := sort.Search(x.n, func(i int) bool {
		return int64(binary.BigEndian.Uint64(x.buf[i*timeEntrySize:])) > ts
	})
	return i - 1
}

// validPrefix counts leading entries with strictly increasing timestamps,
// non-decreasing offsets below next, and reports non-zero bytes after them.
func (x *timeIndex) validPrefix(next int64) (n int, garbage bool) {
	max := len(x.buf) / timeEntrySize
	var prev TimeEntry
	for n = 0; n < max; n++ {
		e := x.entry(n)
		if e.Offset >= next || (n > 0 && (e.Timestamp <= prev.Timestamp || e.Offset < prev.Offset)) {
			break
		}
		if n == 0 && e.Timestamp == 0 && e.Offset == x.base && x.zeroFrom(timeEntrySize) {
			break // an untrimmed empty index
		}
		prev = e
	}
	return n, !x.zeroFrom(n * timeEntrySize)
}

var zeroPage [4096]byte

// allZero compares in page-sized chunks (memequal is vectorised): an
// untrimmed 10 MiB index is checked in well under a millisecond.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// ParseOffsetIndex decodes .index file bytes of a segment with the given
// base offset, stopping at the first zero entry (an untrimmed tail).
func ParseOffsetIndex(data []byte, base int64) []IndexEntry {
	x := offsetIndex{mapped: mapped{buf: data}, base: base}
	var out []IndexEntry
	for i := 0; i < len(data)/offsetEntrySize; i++ {
		e := x.entry(i)
		if e.Position == 0 && e.Offset == base {
			break
		}
		out = append(out, e)
	}
	return out
}

// ParseTimeIndex decodes .timeindex file bytes, stopping at the first
// all-zero entry.
func ParseTimeIndex(data []byte, base int64) []TimeEntry {
	x := timeIndex{mapped: mapped{buf: data}, base: base}
	var out []TimeEntry
	for i := 0; i < len(data)/timeEntrySize; i++ {
		if allZero(data[i*timeEntrySize : (i+1)*timeEntrySize]) {
			break
		}
		out = append(out, x.entry(i))
	}
	return out
}
