package host

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/core/log"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
)

// The benchmarks compare each built-in policy in process with the same
// policy served by the test plugin (docs/benchmarks.md, "Policies: plugin
// overhead"):
//
//	go test -run '^$' -bench . -benchtime 2s ./plugins/host/

func benchPolicies(b *testing.B) (h testHost, inProc map[string]any, plugin map[string]any) {
	h = newHost(b, nil)
	r, c := retentionFor(b, h), compactionFor(b, h)
	c.Info() // start the process outside the timings
	return h, map[string]any{"retention": builtin.NewRetention(), "compaction": builtin.NewCompaction()},
		map[string]any{"retention": r, "compaction": c}
}

// BenchmarkRetentionDecide: one Decide on a partition of 50 segments.
func BenchmarkRetentionDecide(b *testing.B) {
	_, inProc, plug := benchPolicies(b)
	now := int64(1 << 40)
	in := plugins.RetentionInput{Topic: "t", Config: map[string]string{"retention.ms": "3600000"}, NowMs: now, MinCommittedOffset: -1}
	for i := range 50 {
		in.Segments = append(in.Segments, plugins.Segment{BaseOffset: int64(i) * 1000, LastOffset: int64(i)*1000 + 999,
			SizeBytes: 1 << 20, MaxTimestampMs: now - int64(50-i)*600_000, CreatedMs: now - int64(51-i)*600_000, Active: i == 49})
	}
	in.HighWatermark = 49_500
	for _, kind := range []string{"in-process", "plugin"} {
		p := map[string]map[string]any{"in-process": inProc, "plugin": plug}[kind]["retention"].(plugins.RetentionPolicy)
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := plugins.DecideChecked(context.Background(), p, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompactionRoundTrip: one Scan and one Survivors of 1,000 records
// with 1 KiB keys (keys only: the built-in does not ask for values).
func BenchmarkCompactionRoundTrip(b *testing.B) {
	_, inProc, plug := benchPolicies(b)
	batch := make([]plugins.Record, 1000)
	for i := range batch {
		k := make([]byte, 1024)
		copy(k, fmt.Sprintf("key-%d", i%100))
		batch[i] = plugins.Record{Offset: int64(i), Key: k, TimestampMs: int64(i)}
	}
	for _, kind := range []string{"in-process", "plugin"} {
		p := map[string]map[string]any{"in-process": inProc, "plugin": plug}[kind]["compaction"].(plugins.CompactionPolicy)
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			pass, err := p.Begin(ctx, plugins.CompactionParams{Topic: "t", NowMs: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			defer pass.Close()
			b.SetBytes(int64(len(batch)) * 1024)
			for b.Loop() {
				if err := pass.Scan(ctx, batch); err != nil {
					b.Fatal(err)
				}
				s, err := pass.Survivors(ctx, batch)
				if err != nil || len(s) != 100 {
					b.Fatalf("survivors %d, err %v", len(s), err)
				}
			}
		})
	}
}

// BenchmarkCompactionClean: a whole core/log Clean of a log on disk
// (49,152 records of 1 KiB in batches of 16, keys 10% unique, 8 MiB
// segments: the setting of core/log's BenchmarkClean) with the built-in
// compaction in process and as a plugin, alternating on identical fresh
// logs so that both see the same machine load. Reported: wall ms and MB/s
// of log cleaned for each, CPU ms (the test process plus the plugin
// process), and the plugin/in-process ratios.
func BenchmarkCompactionClean(b *testing.B) {
	h, inProc, plug := benchPolicies(b)
	pid := pidOf(b, h, "testplugin")
	const (
		records   = 49_152
		perBatch  = 16
		valueSize = 1000
		uniqueKey = records / 10
	)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	build := func(b *testing.B) *log.Log {
		cfg := log.DefaultConfig()
		cfg.SegmentBytes = 8 << 20
		l, err := log.Open(filepath.Join(b.TempDir(), "t-0"), cfg, log.Options{})
		if err != nil {
			b.Fatal(err)
		}
		val := make([]byte, valueSize)
		for n := 0; n < records; n += perBatch {
			recs := make([]codec.Record, perBatch)
			for i := range recs {
				recs[i] = codec.Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "key-%08d", (n+i)*7919%uniqueKey), Value: val}
			}
			batch, err := codec.EncodeBatch(codec.BatchHeader{BaseTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}, recs)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := l.Append(batch, 0); err != nil {
				b.Fatal(err)
			}
		}
		l.SetHighWatermark(l.LogEndOffset())
		return l
	}
	policies := []plugins.CompactionPolicy{inProc["compaction"].(plugins.CompactionPolicy), plug["compaction"].(plugins.CompactionPolicy)}
	var wall, cpu [2]time.Duration
	var cleaned [2]int64
	var kept [2]int64
	b.StopTimer()
	for range b.N {
		for k, p := range policies {
			l := build(b)
			cpu0 := cpuTime(b, os.Getpid()) + cpuTime(b, pid)
			t0 := time.Now()
			b.StartTimer()
			res, err := l.Clean(context.Background(), log.CleanOptions{Policy: p, NowMs: time.Now().UnixMilli()})
			b.StopTimer()
			wall[k] += time.Since(t0)
			cpu[k] += cpuTime(b, os.Getpid()) + cpuTime(b, pid) - cpu0
			if err != nil {
				b.Fatal(err)
			}
			if res.RecordsRemoved == 0 || res.RecordsKept > uniqueKey {
				b.Fatalf("clean kept %d, removed %d", res.RecordsKept, res.RecordsRemoved)
			}
			cleaned[k] += res.BytesRead / 2 // both passes read the dirty section
			kept[k] += res.RecordsKept
			l.Close()
		}
	}
	if kept[0] != kept[1] {
		b.Fatalf("in process kept %d records, the plugin %d", kept[0], kept[1])
	}
	n := float64(b.N)
	for k, name := range []string{"inproc", "plugin"} {
		b.ReportMetric(float64(wall[k].Milliseconds())/n, name+"-ms")
		b.ReportMetric(float64(cpu[k].Milliseconds())/n, name+"-cpu-ms")
		b.ReportMetric(float64(cleaned[k])/wall[k].Seconds()/1e6, name+"-MB/s")
	}
	b.ReportMetric(wall[1].Seconds()/wall[0].Seconds(), "wall-ratio")
	b.ReportMetric(cpu[1].Seconds()/cpu[0].Seconds(), "cpu-ratio")
}

// cpuTime is the user+system CPU time of process pid (all threads), from
// /proc/<pid>/stat, in clock ticks of 10 ms.
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
