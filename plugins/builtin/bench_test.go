package builtin_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
)

// BenchmarkRetentionCheck10kPartitions is one retention check interval over
// 10,000 partitions of 20 segments each: Decide plus Validate per partition.
func BenchmarkRetentionCheck10kPartitions(b *testing.B) {
	const parts, segsPer = 10_000, 20
	now := int64(1_700_000_000_000)
	ins := make([]plugins.RetentionInput, parts)
	for p := range ins {
		segs := make([]plugins.Segment, segsPer)
		for i := range segs {
			segs[i] = plugins.Segment{BaseOffset: int64(i) * 1000, LastOffset: int64(i)*1000 + 999, SizeBytes: 1 << 20,
				MaxTimestampMs: now - int64(segsPer-i)*3600_000, Active: i == segsPer-1}
		}
		ins[p] = plugins.RetentionInput{Segments: segs, NowMs: now, HighWatermark: segsPer * 1000, MinCommittedOffset: -1,
			Config: map[string]string{"retention.ms": strconv.Itoa(10 * 3600_000), "retention.bytes": strconv.Itoa(15 << 20)}}
	}
	pol := builtin.NewRetention()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			d, err := pol.Decide(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			if v, err := plugins.Validate(in, d); err != nil || v.LogStartOffset != 10_000 {
				b.Fatalf("verdict %+v %v, want start 10000", v, err)
			}
		}
	}
}

// BenchmarkCompactionPass is one pass (Scan + Survivors) over 100,000 record
// metadata entries with 10% unique keys, in batches of 1,000.
func BenchmarkCompactionPass(b *testing.B) {
	const n, batch = 100_000, 1000
	now := int64(1_700_000_000_000)
	recs := make([]plugins.Record, n)
	for i := range recs {
		recs[i] = plugins.Record{Offset: int64(i), Key: []byte("key-" + strconv.Itoa(i%(n/10))), TimestampMs: now - 10_000}
	}
	pol := builtin.NewCompaction()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		pass, err := pol.Begin(ctx, plugins.CompactionParams{NowMs: now, Config: map[string]string{}})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += batch {
			if err := pass.Scan(ctx, recs[i:i+batch]); err != nil {
				b.Fatal(err)
			}
		}
		kept := 0
		for i := 0; i < n; i += batch {
			s, err := pass.Survivors(ctx, recs[i:i+batch])
			if err != nil {
				b.Fatal(err)
			}
			kept += len(s)
		}
		if kept != n/10 {
			b.Fatalf("kept %d, want %d", kept, n/10)
		}
		pass.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
