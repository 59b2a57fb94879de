package log

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/segment"
)

// cleanBenchTemplate writes a log of n 1 KiB records (batches of 16,
// uncompressed) whose keys are 10% unique, in 8 MiB segments, and returns
// the bytes of its cleanable (non-active) segments.
func cleanBenchTemplate(b *testing.B, dir string, n int) int64 {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 8 << 20
	l, err := Open(dir, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 1000))
	keys := n / 10
	for i := 0; i < n; i += 16 {
		recs := make([]codec.Record, 16)
		for j := range recs {
			recs[j] = codec.Record{OffsetDelta: int32(j), Key: fmt.Appendf(nil, "key-%08d", (i+j)*7919%keys), Value: val}
		}
		batch, err := codec.EncodeBatch(codec.BatchHeader{BaseTimestamp: 1000, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}, recs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Append(batch, 0); err != nil {
			b.Fatal(err)
		}
	}
	var size int64
	segs := l.Segments()
	for _, s := range segs[:len(segs)-1] {
		size += s.Size
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return size
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClean: MB/s of log cleaned (bytes of the segments cleaned per
// second) with 1 KiB records and 10% unique keys, the built-in policy in
// process, on the OS file system; "raw-read-write" reads the same segment
// files and writes as many bytes to new files with an fdatasync each, the
// I/O floor of the same run.
func BenchmarkClean(b *testing.B) {
	root := b.TempDir()
	tmpl := filepath.Join(root, "tmpl", "t-0")
	size := cleanBenchTemplate(b, tmpl, 48<<10) // 48 Ki records, ~48 MiB
	b.Run("builtin", func(b *testing.B) {
		b.SetBytes(size)
		var cpu, swap time.Duration
		defer func() {
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(swap.Microseconds())/1000/float64(b.N), "lock-ms/op")
		}()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := filepath.Join(root, fmt.Sprint("c", i), "t-0")
			copyDir(b, tmpl, dir)
			l, err := Open(dir, DefaultConfig(), Options{RecoveryPoint: 1 << 62})
			if err != nil {
				b.Fatal(err)
			}
			l.SetHighWatermark(l.LogEndOffset())
			b.StartTimer()
			c0 := cpuTime()
			res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
			swap += res.SwapTook
			b.StopTimer()
			if res.RecordsRemoved == 0 || res.RecordsKept == 0 || res.RecordsKept > (48<<10)/10 { // at most one per key
				b.Fatalf("clean %+v", res)
			}
			l.Close()
			os.RemoveAll(filepath.Dir(dir))
			b.StartTimer()
		}
	})
	b.Run("raw-read-write", func(b *testing.B) {
		b.SetBytes(size)
		ents, _ := os.ReadDir(tmpl)
		buf := make([]byte, 1<<20)
		var cpu time.Duration
		defer func() { b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op") }()
		for i := 0; i < b.N; i++ {
			c0 := cpuTime()
			out := filepath.Join(root, fmt.Sprint("raw", i))
			os.MkdirAll(out, 0o755)
			var left = size
			for _, e := range ents {
				if !strings.HasSuffix(e.Name(), segment.LogExt) || left <= 0 {
					continue
				}
				in, err := os.Open(filepath.Join(tmpl, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				f, err := os.Create(filepath.Join(out, e.Name()))
				if err != nil {
					b.Fatal(err)
				}
				for left > 0 {
					n, err := in.Read(buf[:min(int64(len(buf)), left)])
					if n > 0 {
						if _, err := f.Write(buf[:n]); err != nil {
							b.Fatal(err)
						}
						left -= int64(n)
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				in.Close()
				f.Close()
			}
			cpu += cpuTime() - c0
			b.StopTimer()
			os.RemoveAll(out)
			b.StartTimer()
		}
	})
}
