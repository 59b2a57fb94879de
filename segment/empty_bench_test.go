package segment_test

import (
	"testing"

	"github.com/brokkr/brokkr/segment"
)

// BenchmarkOpenEmptyAfterCrash: recovery of an empty active segment whose
// indexes were preallocated (10 MiB each) and never trimmed, as every
// partition of a fresh __consumer_offsets is after kill -9.
func BenchmarkOpenEmptyAfterCrash(b *testing.B) {
	dir := b.TempDir()
	cfg := segment.Config{IndexMaxBytes: 10 << 20, IndexIntervalBytes: 4096}
	s, err := segment.Create(segment.OSFS{}, dir, 0, cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.CloseNoSeal()
	for b.Loop() {
		s, rec, err := segment.Open(segment.OSFS{}, dir, 0, cfg, 0)
		if err != nil || rec.Truncated() {
			b.Fatal(err, rec)
		}
		s.CloseNoSeal()
	}
}
