package segment_test

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/brokkr/brokkr/segment"
)

// writeSparseSegment writes a .log of size bytes made of batches of
// batchSize bytes with recs records each: valid headers and CRCs, record
// bytes left as holes (zeros), so a 1 GiB segment costs a few MB of disk.
func writeSparseSegment(tb testing.TB, dir string, base int64, size, batchSize int64, recs int) int64 {
	tb.Helper()
	f, err := os.Create(segment.FileName(dir, base, segment.LogExt))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zeros := make([]byte, batchSize-segment.HeaderSize)
	tab := crc32.MakeTable(crc32.Castagnoli)
	zcrc := func(h []byte) uint32 { return crc32.Update(crc32.Update(0, tab, h[21:]), tab, zeros) }
	var h [segment.HeaderSize]byte
	be := binary.BigEndian
	off := base
	n := size / batchSize
	for i := int64(0); i < n; i++ {
		be.PutUint64(h[0:], uint64(off))
		be.PutUint32(h[8:], uint32(batchSize-segment.LogOverhead))
		h[16] = 2
		be.PutUint32(h[23:], uint32(recs-1))
		be.PutUint64(h[27:], uint64(1_700_000_000_000+i))
		be.PutUint64(h[35:], uint64(1_700_000_000_000+i))
		be.PutUint32(h[57:], uint32(recs))
		be.PutUint32(h[17:], zcrc(h[:]))
		if _, err := f.WriteAt(h[:], i*batchSize); err != nil {
			tb.Fatal(err)
		}
		off += int64(recs)
	}
	if err := f.Truncate(n * batchSize); err != nil {
		tb.Fatal(err)
	}
	return off
}

// BenchmarkLookupFullSegment: offset -> position in a full 1 GiB segment
// (4,160-byte batches of 4 records: 258,111 batches, one index entry each),
// random offsets, sealed (its .log mapped for header reads). Reports the
// median and p99 of single lookups once the map's pages are resident, the
// median of the first (page-faulting) lookups, and a bare 61-byte pread.
func BenchmarkLookupFullSegment(b *testing.B) {
	dir := b.TempDir()
	next := writeSparseSegment(b, dir, 0, 1<<30, 4160, 4)
	t0 := time.Now()
	s, rec, err := segment.Open(segment.OSFS{}, dir, 0, segment.DefaultConfig(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if s.NextOffset() != next || rec.Truncated() || s.Size() < 1<<30-4160 {
		b.Fatalf("built segment: next %d want %d, %+v", s.NextOffset(), next, rec)
	}
	b.Logf("index rebuild of 1 GiB (CRC-checked): %v, %d entries", time.Since(t0), len(s.IndexEntries()))
	if err := s.Seal(); err != nil { // a full segment is sealed (rolled)
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Cold: the first lookups touching each page of the map take a page
	// fault. Measure 20,000 of those, then touch every header once.
	cold := make([]time.Duration, 0, 20000)
	for i := 0; i < cap(cold); i++ {
		off := rng.Int64N(next)
		st := time.Now()
		s.Translate(off)
		cold = append(cold, time.Since(st))
	}
	slices.Sort(cold)
	for off := int64(0); off < next; off += 4 {
		s.Translate(off)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := rng.Int64N(next)
		st := time.Now()
		pos, h, ok, err := s.Translate(off)
		lat = append(lat, time.Since(st))
		if err != nil || !ok || h.BaseOffset > off || h.LastOffset() < off || pos != h.BaseOffset/4*4160 {
			b.Fatalf("lookup %d: pos %d %+v %v %v", off, pos, h, ok, err)
		}
	}
	b.StopTimer()
	// Same-run reference: one bare 61-byte pread at a random batch header,
	// the floor under any lookup that must read the header it returns.
	f, err := os.Open(segment.FileName(dir, 0, segment.LogExt))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ref := make([]time.Duration, 0, 20000)
	var hb [segment.HeaderSize]byte
	for i := 0; i < cap(ref); i++ {
		p := rng.Int64N(next/4) * 4160
		st := time.Now()
		f.ReadAt(hb[:], p)
		ref = append(ref, time.Since(st))
	}
	slices.Sort(ref)
	b.ReportMetric(float64(ref[len(ref)/2].Nanoseconds()), "pread-p50-ns")
	b.ReportMetric(float64(cold[len(cold)/2].Nanoseconds()), "cold-p50-ns")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkRecoverSmallBatches: full recovery (CRC checked) of a 64 MiB
// segment of 256-byte batches, the shape of an offsets topic, with no
// index to start from. Recovery reads the file through a 1 MiB window;
// reported with the raw read of the same file in the same run.
func BenchmarkRecoverSmallBatches(b *testing.B) {
	dir := b.TempDir()
	writeSparseSegment(b, dir, 0, 64<<20, 256, 1)
	cfg := segment.Config{IndexMaxBytes: 10 << 20, IndexIntervalBytes: 4096}
	name := segment.FileName(dir, 0, segment.LogExt)
	var raw time.Duration
	for b.Loop() {
		for _, ext := range []string{segment.IndexExt, segment.TimeIndexExt} {
			os.Remove(segment.FileName(dir, 0, ext))
		}
		t0 := time.Now()
		data, err := os.ReadFile(name)
		if err != nil || len(data) != 64<<20 {
			b.Fatal(err)
		}
		raw += time.Since(t0)
		s, rec, err := segment.Open(segment.OSFS{}, dir, 0, cfg, 0)
		if err != nil {
			b.Fatal(err)
		}
		if rec.Batches != (64<<20)/256 || rec.Truncated() {
			b.Fatalf("recovery %+v", rec)
		}
		s.CloseNoSeal()
	}
	b.ReportMetric(float64(raw.Microseconds())/float64(b.N)/1000, "raw-read-ms/op")
}
