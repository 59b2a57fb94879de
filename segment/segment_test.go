package segment_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// model is what a test appended: each batch's position and header.
type model struct {
	base    int64
	pos     []int64
	hs      []segment.BatchHeader
	batches [][]byte
	size    int64
}

func (m *model) next() int64 {
	if len(m.hs) == 0 {
		return m.base
	}
	return m.hs[len(m.hs)-1].NextOffset()
}

// translate is the linear-scan answer for Translate.
func (m *model) translate(off int64) (int, bool) {
	for i, h := range m.hs {
		if h.LastOffset() >= off {
			return i, true
		}
	}
	return -1, false
}

// tsLookup is the linear-scan answer for FindOffsetByTimestamp on
// uncompressed batches: the first record with timestamp >= ts.
func (m *model) tsLookup(ts, start int64) (int64, bool) {
	for i, h := range m.hs {
		if h.LastOffset() < start || h.MaxTimestamp < ts {
			continue
		}
		found := int64(-1)
		segment.WalkRecords(m.batches[i], func(r segment.Record) error {
			o := h.BaseOffset + int64(r.OffsetDelta)
			if found < 0 && o >= start && h.BaseTimestamp+r.TimestampDelta >= ts {
				found = o
			}
			return nil
		})
		if found >= 0 {
			return found, true
		}
	}
	return 0, false
}

func (m *model) truncate(off int64) {
	for i, h := range m.hs {
		if h.LastOffset() >= off {
			m.size = m.pos[i]
			m.pos, m.hs, m.batches = m.pos[:i], m.hs[:i], m.batches[:i]
			return
		}
	}
}

// appendRandom appends n random batches (1..maxRecs records, random
// timestamps that are not monotonic) and records them in m.
func appendRandom(t testing.TB, s *segment.Segment, m *model, rng *rand.Rand, n, maxRecs, maxValue int) {
	t.Helper()
	for i := 0; i < n; i++ {
		b := segmenttest.Batch(segmenttest.Spec{
			BaseOffset:    m.next(),
			Records:       1 + rng.IntN(maxRecs),
			ValueSize:     rng.IntN(maxValue + 1),
			BaseTimestamp: 1000 + rng.Int64N(5000),
			TimestampStep: rng.Int64N(3),
			Seed:          byte(i),
		})
		hs := segmenttest.Headers(b)
		pos, err := s.Append(b, hs)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if pos != m.size {
			t.Fatalf("append %d at %d, want %d", i, pos, m.size)
		}
		m.pos = append(m.pos, pos)
		m.hs = append(m.hs, hs[0])
		m.batches = append(m.batches, b)
		m.size += int64(len(b))
	}
}

// checkAgainstModel compares every lookup with the linear scan.
func checkAgainstModel(t *testing.T, s *segment.Segment, m *model) {
	t.Helper()
	if s.Size() != m.size || s.NextOffset() != m.next() {
		t.Fatalf("size %d next %d, model %d %d", s.Size(), s.NextOffset(), m.size, m.next())
	}
	var maxTs int64 = -1
	for _, h := range m.hs {
		maxTs = max(maxTs, h.MaxTimestamp)
	}
	if s.MaxTimestamp() != maxTs {
		t.Fatalf("max timestamp %d, model %d", s.MaxTimestamp(), maxTs)
	}
	for off := m.base - 1; off <= m.next()+1; off++ {
		pos, h, ok, err := s.Translate(off)
		if err != nil {
			t.Fatalf("translate %d: %v", off, err)
		}
		i, mok := m.translate(off)
		if ok != mok || (ok && (pos != m.pos[i] || h != m.hs[i])) {
			t.Fatalf("translate %d = (%d, %v), model (%v, %v)", off, pos, ok, i, mok)
		}
	}
	for ts := int64(990); ts < 7010; ts += 37 {
		for _, start := range []int64{m.base, m.base + 3} {
			got, ok, err := s.FindOffsetByTimestamp(ts, start)
			want, wok := m.tsLookup(ts, start)
			if err != nil || ok != wok || (ok && got != want) {
				t.Fatalf("timestamp %d from %d = (%d, %v, %v), model (%d, %v)", ts, start, got, ok, err, want, wok)
			}
		}
	}
	// Reads: from each batch with a few maxBytes, must end on a boundary.
	for i := range m.hs {
		for _, maxBytes := range []int64{0, 1, 4096, 1 << 20} {
			r, err := s.Read(m.pos[i], maxBytes, s.Size(), true)
			if err != nil {
				t.Fatal(err)
			}
			// model: whole batches, at least one, total <= maxBytes
			j, total := i, int64(0)
			for j < len(m.hs) && (j == i || total+int64(len(m.batches[j])) <= maxBytes) {
				total += int64(len(m.batches[j]))
				j++
			}
			if r.Pos != m.pos[i] || r.Len != total {
				t.Fatalf("read at batch %d max %d = %d+%d, model %d", i, maxBytes, r.Pos, r.Len, total)
			}
			got := make([]byte, r.Len)
			if _, err := r.File.ReadAt(got, r.Pos); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.Join(m.batches[i:j], nil)) {
				t.Fatalf("read at batch %d: bytes differ", i)
			}
			r.Release()
		}
	}
}

type fsCase struct {
	name string
	fs   func(t *testing.T) (segment.FS, string)
}

var fsCases = []fsCase{
	{"os", func(t *testing.T) (segment.FS, string) { return segment.OSFS{}, t.TempDir() }},
	{"mem", func(t *testing.T) (segment.FS, string) {
		m := segment.NewMemFS()
		m.MkdirAll("/d", 0o755)
		return m, "/d"
	}},
}

func TestLookupEdges(t *testing.T) {
	for _, fc := range fsCases {
		t.Run(fc.name, func(t *testing.T) {
			fsys, dir := fc.fs(t)
			cfg := segment.Config{IndexMaxBytes: 4096, IndexIntervalBytes: 100}
			s, err := segment.Create(fsys, dir, 50, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := &model{base: 50}
			// empty segment
			if _, _, ok, _ := s.Translate(50); ok {
				t.Fatal("empty segment found offset 50")
			}
			if _, ok, _ := s.FindOffsetByTimestamp(0, 0); ok {
				t.Fatal("empty segment found a timestamp")
			}
			if r, _ := s.Read(0, 1<<20, s.Size(), true); r.Len != 0 {
				t.Fatal("empty segment read returned bytes")
			}
			// 10 batches of 5 records, 200-byte values: every batch after
			// the first gets an index entry (interval 100).
			for i := 0; i < 10; i++ {
				b := segmenttest.Batch(segmenttest.Spec{BaseOffset: m.next(), Records: 5, ValueSize: 200, BaseTimestamp: int64(100 * (i + 1)), TimestampStep: 10})
				hs := segmenttest.Headers(b)
				pos, err := s.Append(b, hs)
				if err != nil {
					t.Fatal(err)
				}
				m.pos, m.hs, m.batches, m.size = append(m.pos, pos), append(m.hs, hs[0]), append(m.batches, b), m.size+int64(len(b))
			}
			if n := len(s.IndexEntries()); n != 9 {
				t.Fatalf("%d index entries, want 9 (batches 1..9: the first batch is never indexed)", n)
			}
			cases := []struct {
				name    string
				off     int64
				wantIdx int
			}{
				{"before base", 49, 0},
				{"base", 50, 0},
				{"exact last offset of an indexed batch", 64, 2},
				{"exact base of an indexed batch", 65, 3},
				{"between entries", 67, 3},
				{"last offset", 99, 9},
				{"past the end", 100, -1},
				{"far past the end", 1 << 40, -1},
			}
			for _, c := range cases {
				pos, _, ok, err := s.Translate(c.off)
				if err != nil || ok != (c.wantIdx >= 0) || (ok && pos != m.pos[c.wantIdx]) {
					t.Errorf("%s: Translate(%d) = %d %v %v, want batch %d", c.name, c.off, pos, ok, err, c.wantIdx)
				}
			}
			tcases := []struct {
				ts   int64
				want int64
				ok   bool
			}{{0, 50, true}, {100, 50, true}, {101, 51, true}, {140, 54, true}, {141, 55, true}, {545, 75, true}, {600, 75, true}, {601, 76, true}, {1040, 99, true}, {1041, 0, false}}
			for _, c := range tcases {
				got, ok, err := s.FindOffsetByTimestamp(c.ts, 50)
				if err != nil || ok != c.ok || (ok && got != c.want) {
					t.Errorf("FindOffsetByTimestamp(%d) = %d %v %v, want %d %v", c.ts, got, ok, err, c.want, c.ok)
				}
			}
			checkAgainstModel(t, s, m)
			// after truncation
			removed, err := s.TruncateTo(67) // inside batch 3: batch 3 goes entirely
			if err != nil || removed != m.size-m.pos[3] {
				t.Fatalf("truncate: removed %d, %v", removed, err)
			}
			m.truncate(67)
			if s.NextOffset() != 65 {
				t.Fatalf("next offset after truncate %d", s.NextOffset())
			}
			if _, _, ok, _ := s.Translate(65); ok {
				t.Fatal("truncated offset 65 still found")
			}
			if got, ok, _ := s.FindOffsetByTimestamp(400, 50); ok {
				t.Fatalf("timestamp 400 (truncated) found at %d", got)
			}
			checkAgainstModel(t, s, m)
			// append again after truncation, and truncate to the base
			rng := rand.New(rand.NewPCG(1, 2))
			appendRandom(t, s, m, rng, 20, 4, 150)
			checkAgainstModel(t, s, m)
			if _, err := s.TruncateTo(10); err != nil || s.Size() != 0 || s.NextOffset() != 50 || s.MaxTimestamp() != -1 {
				t.Fatalf("truncate to below base: size %d next %d maxTs %d err %v", s.Size(), s.NextOffset(), s.MaxTimestamp(), err)
			}
		})
	}
}

func TestLookupsMatchLinearScanOnRandomLogs(t *testing.T) {
	for _, fc := range fsCases {
		t.Run(fc.name, func(t *testing.T) {
			for seed := uint64(0); seed < 6; seed++ {
				rng := rand.New(rand.NewPCG(seed, 99))
				fsys, dir := fc.fs(t)
				dir = filepath.Join(dir, string(rune('a'+seed)))
				fsys.MkdirAll(dir, 0o755)
				cfg := segment.Config{IndexMaxBytes: 64 << 10, IndexIntervalBytes: 1 + rng.IntN(3000)}
				base := rng.Int64N(1 << 40)
				s, err := segment.Create(fsys, dir, base, cfg)
				if err != nil {
					t.Fatal(err)
				}
				m := &model{base: base}
				appendRandom(t, s, m, rng, 50+rng.IntN(100), 8, 300)
				checkAgainstModel(t, s, m)
				// truncate at a random offset, append more
				cut := base + rng.Int64N(m.next()-base+1)
				if _, err := s.TruncateTo(cut); err != nil {
					t.Fatal(err)
				}
				m.truncate(cut)
				checkAgainstModel(t, s, m)
				appendRandom(t, s, m, rng, 30, 8, 300)
				checkAgainstModel(t, s, m)
				// reopen trusted after a clean close, and after a full recovery
				idx := s.IndexEntries()
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				for _, from := range []int64{-1, base, m.next() - 1} {
					s2, rec, err := segment.Open(fsys, dir, base, cfg, from)
					if err != nil {
						t.Fatal(err)
					}
					if rec.Truncated() || rec.IndexRebuilt {
						t.Fatalf("clean segment reopened from %d: %+v", from, rec)
					}
					if got := s2.IndexEntries(); len(got) != len(idx) {
						t.Fatalf("reopen from %d: %d index entries, had %d", from, len(got), len(idx))
					}
					checkAgainstModel(t, s2, m)
					if err := s2.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

func newMemSeg(t *testing.T, cfg segment.Config) (*segment.MemFS, *segment.Segment, *model) {
	t.Helper()
	fsys := segment.NewMemFS()
	fsys.MkdirAll("/d", 0o755)
	s, err := segment.Create(fsys, "/d", 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fsys, s, &model{}
}

func TestRecoveryTornTailAndCorruption(t *testing.T) {
	cfg := segment.Config{IndexMaxBytes: 8192, IndexIntervalBytes: 512}
	rng := rand.New(rand.NewPCG(7, 7))
	fsys, s, m := newMemSeg(t, cfg)
	appendRandom(t, s, m, rng, 40, 5, 200)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.CloseNoSeal()
	logName := segment.FileName("/d", 0, segment.LogExt)

	t.Run("torn tail", func(t *testing.T) {
		f, _ := fsys.OpenFile(logName, os.O_RDWR, 0)
		half := m.batches[5][:30]
		f.WriteAt(half, m.size)
		f.Close()
		s2, rec, err := segment.Open(fsys, "/d", 0, cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.CloseNoSeal()
		if rec.TruncatedAt != m.size || rec.TruncatedBytes != 30 || rec.Corrupt || rec.Reason == "" || rec.Batches != 40 {
			t.Fatalf("recovery %+v", rec)
		}
		checkAgainstModel(t, s2, m)
	})
	t.Run("corrupt middle batch", func(t *testing.T) {
		fsys.Corrupt(logName, m.pos[17]+70, []byte{0xff})
		s2, rec, err := segment.Open(fsys, "/d", 0, cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.CloseNoSeal()
		if rec.TruncatedAt != m.pos[17] || !rec.Corrupt || rec.FirstLostOffset != m.hs[17].BaseOffset || rec.TruncatedBytes != m.size-m.pos[17] {
			t.Fatalf("recovery %+v", rec)
		}
		m.truncate(m.hs[17].BaseOffset)
		checkAgainstModel(t, s2, m)
	})
	t.Run("missing index rebuilt", func(t *testing.T) {
		s2, _, _ := segment.Open(fsys, "/d", 0, cfg, -1)
		want := s2.IndexEntries()
		wantT := s2.TimeIndexEntries()
		s2.Close()
		fsys.Remove(segment.FileName("/d", 0, segment.IndexExt))
		s3, rec, err := segment.Open(fsys, "/d", 0, cfg, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		if !rec.IndexRebuilt || rec.Truncated() {
			t.Fatalf("recovery %+v", rec)
		}
		got := s3.IndexEntries()
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("rebuilt %d entries, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("entry %d: %+v want %+v", i, got[i], want[i])
			}
		}
		if gt := s3.TimeIndexEntries(); len(gt) == 0 || gt[len(gt)-1].Timestamp != wantT[len(wantT)-1].Timestamp {
			t.Fatalf("time index %v, want last %v", gt, wantT)
		}
		checkAgainstModel(t, s3, m)
	})
	t.Run("garbage index entry rebuilt", func(t *testing.T) {
		fsys.Corrupt(segment.FileName("/d", 0, segment.IndexExt), 12, []byte{0xff, 0xff})
		s3, rec, err := segment.Open(fsys, "/d", 0, cfg, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		if !rec.IndexRebuilt {
			t.Fatalf("damaged index not noticed: %+v", rec)
		}
		checkAgainstModel(t, s3, m)
	})
}

func TestCrashKeepsWhatWasSynced(t *testing.T) {
	cfg := segment.Config{IndexMaxBytes: 8192, IndexIntervalBytes: 300}
	rng := rand.New(rand.NewPCG(3, 3))
	fsys, s, m := newMemSeg(t, cfg)
	appendRandom(t, s, m, rng, 30, 5, 200)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	synced := *m
	synced.pos = append([]int64(nil), m.pos...)
	synced.hs = append([]segment.BatchHeader(nil), m.hs...)
	synced.batches = append([][]byte(nil), m.batches...)
	appendRandom(t, s, m, rng, 30, 5, 200)
	fsys.Crash()
	s2, rec, err := segment.Open(fsys, "/d", 0, cfg, synced.next())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rec.Truncated() {
		t.Fatalf("nothing unsynced survived, yet recovery truncated: %+v", rec)
	}
	checkAgainstModel(t, s2, &synced)
	// The recovery started at the index entry below the recovery point, not
	// at byte 0.
	if rec.From == 0 {
		t.Fatalf("recovery scanned from the start: %+v", rec)
	}
}

func TestWriteErrorsLeaveNoHalfBatch(t *testing.T) {
	for _, errno := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			cfg := segment.Config{IndexMaxBytes: 8192, IndexIntervalBytes: 300}
			rng := rand.New(rand.NewPCG(5, 5))
			fsys, s, m := newMemSeg(t, cfg)
			appendRandom(t, s, m, rng, 10, 5, 200)
			for nth := 0; nth < 3; nth++ {
				fsys.FailWritesAfter(nth, errno)
				var err error
				for i := 0; i < 10 && err == nil; i++ {
					b := segmenttest.Batch(segmenttest.Spec{BaseOffset: m.next(), Records: 3, ValueSize: 400})
					hs := segmenttest.Headers(b)
					before := s.Size()
					_, err = s.Append(b, hs)
					if err == nil {
						m.pos, m.hs, m.batches, m.size = append(m.pos, before), append(m.hs, hs[0]), append(m.batches, b), m.size+int64(len(b))
					}
				}
				if !errors.Is(err, segment.ErrStorage) || !errors.Is(err, errno) || segment.KafkaCode(err) != 56 {
					t.Fatalf("nth %d: err %v", nth, err)
				}
				fsys.ClearFaults()
				checkAgainstModel(t, s, m)
				f, _ := fsys.OpenFile(segment.FileName("/d", 0, segment.LogExt), os.O_RDONLY, 0)
				if sz, _ := f.Size(); sz != m.size {
					t.Fatalf("file is %d bytes after a failed write, want %d", sz, m.size)
				}
				f.Close()
			}
			appendRandom(t, s, m, rng, 5, 5, 200)
			checkAgainstModel(t, s, m)
			fsys.FailSyncs(syscall.EIO)
			if err := s.Flush(); !errors.Is(err, segment.ErrStorage) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("flush with failing sync: %v", err)
			}
			fsys.ClearFaults()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2, rec, err := segment.Open(fsys, "/d", 0, cfg, 0)
			if err != nil || rec.Truncated() {
				t.Fatalf("reopen: %+v %v", rec, err)
			}
			checkAgainstModel(t, s2, m)
			s2.Close()
		})
	}
}

func TestRegionOutlivesDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := segment.Create(segment.OSFS{}, dir, 0, segment.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	b := segmenttest.Batch(segmenttest.Spec{Records: 4, ValueSize: 100})
	if _, err := s.Append(b, segmenttest.Headers(b)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Read(0, 1<<20, s.Size(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.File.(*os.File); !ok {
		t.Fatalf("region file is %T, want *os.File for sendfile", r.File)
	}
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(segment.FileName(dir, 0, segment.LogExt)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log file still there: %v", err)
	}
	got := make([]byte, r.Len)
	if _, err := r.File.ReadAt(got, r.Pos); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("region unreadable after delete: %v", err)
	}
	r.Release()
	if _, err := r.File.ReadAt(got, 0); err == nil {
		t.Fatal("file still open after the last release")
	}
}

func TestSealTrimsIndexes(t *testing.T) {
	dir := t.TempDir()
	cfg := segment.Config{IndexMaxBytes: 1 << 20, IndexIntervalBytes: 100}
	s, err := segment.Create(segment.OSFS{}, dir, 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(segment.FileName(dir, 0, segment.IndexExt))
	if st.Size() != 1<<20 {
		t.Fatalf("active index is %d bytes, want preallocated 1 MiB", st.Size())
	}
	m := &model{}
	appendRandom(t, s, m, rand.New(rand.NewPCG(1, 1)), 20, 3, 200)
	n := len(s.IndexEntries())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(segment.FileName(dir, 0, segment.IndexExt))
	tst, _ := os.Stat(segment.FileName(dir, 0, segment.TimeIndexExt))
	if st.Size() != int64(8*n) || n == 0 || tst.Size()%12 != 0 || tst.Size() == 0 {
		t.Fatalf("trimmed index %d bytes for %d entries, time index %d", st.Size(), n, tst.Size())
	}
	data, _ := os.ReadFile(segment.FileName(dir, 0, segment.IndexExt))
	if es := segment.ParseOffsetIndex(data, 0); len(es) != n {
		t.Fatalf("ParseOffsetIndex found %d entries, want %d", len(es), n)
	}
	// ScanLog sees every batch with a valid CRC.
	f, _ := os.Open(segment.FileName(dir, 0, segment.LogExt))
	defer f.Close()
	count := 0
	err = segment.ScanLog(f, 0, m.size, func(pos int64, h segment.BatchHeader, ok bool) error {
		if !ok || pos != m.pos[count] || h != m.hs[count] {
			t.Errorf("batch %d: pos %d ok %v", count, pos, ok)
		}
		count++
		return nil
	})
	if err != nil || count != len(m.hs) {
		t.Fatalf("ScanLog: %d batches, %v", count, err)
	}
}
