package segment_test

import (
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// BenchmarkValidate: the CPU cost of validating a 1 MiB batch of 1,000
// 1 KiB records (CRC-32C plus the record walk), the part of an append that
// a raw write does not do.
func BenchmarkValidate(b *testing.B) {
	p := segmenttest.Batch(segmenttest.Spec{Records: 1000, ValueSize: 1024})
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		if _, err := segment.Batches(p, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCRC is the CRC-32C alone, for reference.
func BenchmarkCRC(b *testing.B) {
	p := segmenttest.Batch(segmenttest.Spec{Records: 1000, ValueSize: 1024})
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		segment.ComputeCRC(p)
	}
}
