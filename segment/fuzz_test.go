package segment_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// FuzzBatches: no input panics the batch parser; what it accepts is
// self-consistent, stays valid after the offset/epoch rewrite, and every
// error names a Kafka code.
func FuzzBatches(f *testing.F) {
	a := segmenttest.Batch(segmenttest.Spec{Records: 3, ValueSize: 7, BaseTimestamp: 5})
	b := segmenttest.Batch(segmenttest.Spec{Records: 1, ValueSize: 0})
	f.Add(a)
	f.Add(append(append([]byte{}, a...), b...))
	f.Add(a[:len(a)-1])
	f.Add(segmenttest.Batch(segmenttest.Spec{Records: 2, Attributes: segment.CodecLZ4}))
	f.Fuzz(func(t *testing.T, data []byte) {
		hs, err := segment.Batches(data, 1<<20, nil)
		if err != nil {
			if c := segment.KafkaCode(err); c != 2 && c != 10 && c != 43 && c != 87 {
				t.Fatalf("error %v has code %d", err, c)
			}
			return
		}
		var total int64
		for _, h := range hs {
			total += h.Size()
			if h.RecordCount != h.LastOffsetDelta+1 || h.Magic != 2 {
				t.Fatalf("accepted header %+v", h)
			}
		}
		if total != int64(len(data)) {
			t.Fatalf("headers cover %d of %d bytes", total, len(data))
		}
		c := append([]byte(nil), data...)
		for pos, i := 0, 0; i < len(hs); i++ {
			segment.SetBaseOffset(c[pos:], int64(i)*1000)
			segment.SetPartitionLeaderEpoch(c[pos:], int32(i))
			pos += int(hs[i].Size())
		}
		if _, err := segment.Batches(c, 1<<20, nil); err != nil {
			t.Fatalf("rewrite broke a valid payload: %v", err)
		}
	})
}

// FuzzRecovery damages a segment's .log, .index or .timeindex (overwrite
// or truncate at any place) and reopens it, trusted or recovering. Nothing
// panics; every batch wholly before the first damaged .log byte is kept;
// lookups agree with a linear scan of what remains.
func FuzzRecovery(f *testing.F) {
	f.Add(uint64(1), uint8(20), uint8(0), uint32(500), []byte{0xff}, false, true)
	f.Add(uint64(2), uint8(30), uint8(0), uint32(9999), []byte{}, true, false)
	f.Add(uint64(3), uint8(30), uint8(1), uint32(13), []byte{1, 2, 3, 4}, false, false)
	f.Add(uint64(4), uint8(30), uint8(2), uint32(30), []byte{9, 9, 9, 9, 9, 9}, false, true)
	f.Add(uint64(5), uint8(10), uint8(1), uint32(3), []byte{}, true, true)
	f.Add(uint64(6), uint8(40), uint8(0), uint32(0), []byte{0, 0, 0, 0, 0, 0, 0, 0}, false, false)
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, which uint8, at uint32, val []byte, cut bool, trusted bool) {
		rng := rand.New(rand.NewPCG(seed, seed>>3))
		fsys := segment.NewMemFS()
		fsys.MkdirAll("/d", 0o755)
		cfg := segment.Config{IndexMaxBytes: 4096, IndexIntervalBytes: 1 + rng.IntN(600)}
		s, err := segment.Create(fsys, "/d", 100, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{base: 100}
		appendRandom(t, s, m, rng, int(n%64), 6, 120)
		if seed%2 == 0 {
			s.Close() // trimmed indexes
		} else {
			s.Flush()
			s.CloseNoSeal() // preallocated indexes, as after kill -9
		}
		exts := []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt}
		name := segment.FileName("/d", 100, exts[int(which)%3])
		fl, _ := fsys.OpenFile(name, os.O_RDWR, 0)
		size, _ := fl.Size()
		orig := make([]byte, size)
		fl.ReadAt(orig, 0)
		damage := size // first damaged byte of the .log
		if size > 0 {
			p := int64(at) % (size + 1)
			if cut {
				fl.Truncate(p)
				damage = p
			} else {
				fl.WriteAt(val, p)
				for i := range val {
					if p+int64(i) < size && orig[p+int64(i)] != val[i] {
						damage = min(damage, p+int64(i))
					}
				}
			}
		}
		fl.Close()
		if which%3 != 0 {
			damage = m.size
		}
		from := int64(100)
		if trusted {
			from = -1
		}
		s2, rec, err := segment.Open(fsys, "/d", 100, cfg, from)
		if err != nil {
			if errors.Is(err, segment.ErrStorage) {
				t.Fatalf("open: %v", err)
			}
			t.Fatalf("open failed on damaged input: %v", err)
		}
		defer s2.Close()
		keep := 0
		for keep < len(m.hs) && m.pos[keep]+int64(len(m.batches[keep])) <= damage {
			keep++
		}
		if s2.NextOffset() < m.next() && keep == len(m.hs) {
			t.Fatalf("lost batches before the damage: next %d want %d (%+v)", s2.NextOffset(), m.next(), rec)
		}
		if keep > 0 && s2.Size() < m.pos[keep-1]+int64(len(m.batches[keep-1])) {
			t.Fatalf("kept %d bytes, the first %d batches (%d bytes) were intact (%+v)", s2.Size(), keep, m.pos[keep-1]+int64(len(m.batches[keep-1])), rec)
		}
		if rec.Truncated() && rec.Reason == "" && rec.TruncatedBytes > 0 {
			t.Fatalf("truncation without a reason: %+v", rec)
		}
		if trusted && which%3 == 0 {
			return // damage inside a trusted (flushed, below the recovery point) log is not looked for, as in Kafka
		}
		// Rebuild the model from what the segment now holds.
		got := &model{base: 100}
		lf, _ := fsys.OpenFile(segment.FileName("/d", 100, segment.LogExt), os.O_RDONLY, 0)
		defer lf.Close()
		err = segment.ScanLog(lf, 0, s2.Size(), func(pos int64, h segment.BatchHeader, ok bool) error {
			b := make([]byte, h.Size())
			lf.ReadAt(b, pos)
			got.pos, got.hs, got.batches, got.size = append(got.pos, pos), append(got.hs, h), append(got.batches, b), got.size+h.Size()
			if !ok && !trusted {
				t.Errorf("recovered segment keeps a batch with a bad CRC at %d", pos)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scan of the recovered log: %v", err)
		}
		if trusted && which%3 == 2 {
			return // a trusted time index is not re-verified (as in Kafka)
		}
		checkLookups(t, s2, got)
	})
}

// checkLookups is checkAgainstModel without the exhaustive read checks,
// for models whose records may have been damaged.
func checkLookups(t *testing.T, s *segment.Segment, m *model) {
	t.Helper()
	if s.Size() != m.size || s.NextOffset() != m.next() {
		t.Fatalf("size %d next %d, model %d %d", s.Size(), s.NextOffset(), m.size, m.next())
	}
	offs := []int64{m.base - 1, m.base, m.next()}
	for _, h := range m.hs { // offsets may have gaps (damage outside the CRC): probe the edges
		offs = append(offs, h.BaseOffset-1, h.BaseOffset, h.BaseOffset+1, h.LastOffset(), h.LastOffset()+1)
	}
	for _, off := range offs {
		pos, _, ok, err := s.Translate(off)
		i, mok := m.translate(off)
		if err != nil || ok != mok || (ok && pos != m.pos[i]) {
			t.Fatalf("translate %d = (%d, %v, %v), model (%v, %v)", off, pos, ok, err, i, mok)
		}
	}
	for i := range m.hs {
		r, err := s.Read(m.pos[i], 2000, s.Size(), true)
		if err != nil || r.Len < int64(len(m.batches[i])) {
			t.Fatalf("read batch %d: %+v %v", i, r, err)
		}
		b := make([]byte, r.Len)
		r.File.ReadAt(b, r.Pos)
		if !bytes.HasPrefix(b, m.batches[i]) {
			t.Fatalf("read batch %d: wrong bytes", i)
		}
		r.Release()
	}
	var maxTs int64 = -1
	for _, h := range m.hs {
		maxTs = max(maxTs, h.MaxTimestamp)
	}
	if s.MaxTimestamp() != maxTs {
		t.Fatalf("max timestamp %d, model %d", s.MaxTimestamp(), maxTs)
	}
	_ = io.EOF
}
