package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runBench runs `brokkr <args>` in process through the real command tree.
func runBench(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// benchJSON runs a bench command with --json and decodes its report.
func benchJSON(t *testing.T, args ...string) report {
	t.Helper()
	out, errOut, err := runBench(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("brokkr %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("brokkr %s: bad JSON %v:\n%s", strings.Join(args, " "), err, out)
	}
	if len(rep.Series) == 0 {
		t.Fatalf("brokkr %s: no series in %s", strings.Join(args, " "), out)
	}
	return rep
}

func TestBenchSinkAnswersKgoProducer(t *testing.T) {
	srv, s, err := startSink("127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addr := srv.Addr("PLAINTEXT").String()
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"acks=1", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}},
		{"idempotent acks=all", nil}, // franz-go's default: InitProducerId first
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "sink-" + strings.NewReplacer("=", "", " ", "-").Replace(tc.name)
			cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			before := s.records.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var recs []*kgo.Record
			for i := 0; i < 900; i++ {
				recs = append(recs, &kgo.Record{Value: []byte{byte(i)}})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatalf("produce to the sink: %v", err)
			}
			offs := map[int32][]int64{}
			for _, r := range recs {
				if r.Partition < 0 || r.Partition > 2 {
					t.Fatalf("record went to partition %d of a 3-partition topic", r.Partition)
				}
				offs[r.Partition] = append(offs[r.Partition], r.Offset)
			}
			if len(offs) != 3 {
				t.Fatalf("round-robin over the sink's 3 partitions used %d", len(offs))
			}
			for p, os := range offs {
				sort.Slice(os, func(i, j int) bool { return os[i] < os[j] })
				for i, o := range os {
					if o != int64(i) {
						t.Fatalf("partition %d: offsets %v..., want 0, 1, 2, ...", p, os[:min(len(os), 10)])
					}
				}
			}
			if got := s.records.Load() - before; got != 900 {
				t.Fatalf("sink counted %d records, want 900", got)
			}
		})
	}
}

func TestBenchProduceSpawn(t *testing.T) {
	bin := testbroker.Binary(t)
	rep := benchJSON(t, "bench", "produce", "--spawn", "--spawn-bin", bin, "--records", "20000", "--runs", "1")
	s := rep.Series[0]
	if len(s.Runs) != 2 || !s.Runs[0].Warmup || s.Runs[1].Warmup {
		t.Fatalf("want a warm-up and one measured run, got %+v", s.Runs)
	}
	for _, r := range s.Runs {
		if r.Records != 20000 || r.Bytes != 20000*1024 {
			t.Fatalf("run %d: %d records, %d bytes acknowledged; want 20000 and %d", r.Round, r.Records, r.Bytes, 20000*1024)
		}
		if r.MBps <= 0 || r.RecordsPerSec <= 0 || r.P99ms <= 0 || r.MaxMs < r.P99ms {
			t.Fatalf("run %d: implausible figures %+v", r.Round, r)
		}
		if r.BrokerRSSMaxMB < 1 || r.BrokerRSSMaxMB > 4000 {
			t.Fatalf("run %d: spawned broker RSS %.1f MB", r.Round, r.BrokerRSSMaxMB)
		}
	}
	if s.MBps.Median != s.Runs[1].MBps {
		t.Fatalf("median of one measured run is %.1f, the run says %.1f", s.MBps.Median, s.Runs[1].MBps)
	}
}

func TestBenchConsumeAndE2EAgainstBroker(t *testing.T) {
	b := testbroker.Start(t)
	brokers := "--brokers=" + b.Addr
	prod := benchJSON(t, "bench", "produce", brokers, "--topic", "bt", "--partitions", "2", "--records", "20000", "--runs", "1")
	var produced int64
	for _, r := range prod.Series[0].Runs {
		produced += r.Records
	}
	if produced != 40000 {
		t.Fatalf("produce acknowledged %d records over warm-up and run, want 40000", produced)
	}
	for _, mode := range []string{"--raw", "--raw=false"} {
		rep := benchJSON(t, "bench", "consume", mode, "--to-end", brokers, "--topic", "bt", "--fill-bytes", "0", "--runs", "2")
		s := rep.Series[0]
		if len(s.Runs) != 3 {
			t.Fatalf("%s: %d runs, want 3", mode, len(s.Runs))
		}
		for _, r := range s.Runs {
			if r.Records != produced {
				t.Fatalf("consume %s run %d: counted %d records, produced %d", mode, r.Round, r.Records, produced)
			}
			if r.Bytes < produced*1024 || r.Bytes > produced*1200 {
				t.Fatalf("consume %s run %d: %d bytes for %d records of 1 KiB", mode, r.Round, r.Bytes, produced)
			}
			if r.MBps <= 0 || r.P50ms <= 0 {
				t.Fatalf("consume %s run %d: implausible %+v", mode, r.Round, r)
			}
		}
	}
	rep := benchJSON(t, "bench", "e2e", brokers, "--topic", "be", "--rate", "2000", "--duration", "1s", "--runs", "1")
	for _, r := range rep.Series[0].Runs {
		if r.Records != 2000 {
			t.Fatalf("e2e run %d: consumed %d of 2000 records", r.Round, r.Records)
		}
		if r.P50ms <= 0 || r.P99ms < r.P50ms || r.MaxMs > 30000 {
			t.Fatalf("e2e run %d: implausible latency %+v", r.Round, r)
		}
	}
	if _, ok := rep.Ratios["e2e p99 ms / 5 ms"]; !ok {
		t.Fatalf("e2e report has no p99 target: %+v", rep.Ratios)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"bench produce --acks 2 --brokers 127.0.0.1:1", "--acks"},
		{"bench produce --runs 0 --brokers 127.0.0.1:1", "--runs"},
		{"bench produce --brokers nohost", "has no port"},
		{"bench produce --compression brotli --brokers 127.0.0.1:1", "--compression"},
		{"bench e2e --rate -5 --brokers 127.0.0.1:1", "--rate"},
		{"bench produce --pid 999999999 --brokers 127.0.0.1:1", "--pid"},
	} {
		_, _, err := runBench(t, strings.Fields(tc.args)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("brokkr %s: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// The histogram against a dumb model: sorted samples.
func TestBenchHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var vs []time.Duration
	for i := 0; i < 100000; i++ {
		v := time.Duration(rng.ExpFloat64() * float64(rng.IntN(5)+1) * float64(time.Millisecond))
		vs = append(vs, v)
		h.Record(v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := vs[int(q*float64(len(vs)))-1]
		got := h.Quantile(q)
		if d := float64(got-want) / float64(want); d < -0.02 || d > 0.02 {
			t.Errorf("q%.3f = %v, model says %v (off by %.1f%%)", q, got, want, 100*d)
		}
	}
	if h.Max() != vs[len(vs)-1] {
		t.Errorf("max %v, want %v", h.Max(), vs[len(vs)-1])
	}
}

// batchWalk on v2 batch headers: counts only records in [pos, end) and
// stops at a cut batch.
func TestBenchBatchWalk(t *testing.T) {
	batch := func(base int64, count int32, size int) []byte {
		b := make([]byte, size)
		binary.BigEndian.PutUint64(b[0:], uint64(base))
		binary.BigEndian.PutUint32(b[8:], uint32(size-12))
		b[16] = 2
		binary.BigEndian.PutUint32(b[23:], uint32(count-1))
		binary.BigEndian.PutUint32(b[57:], uint32(count))
		return b
	}
	var buf []byte
	buf = append(buf, batch(0, 10, 100)...)
	buf = append(buf, batch(10, 5, 80)...)
	buf = append(buf, batch(15, 5, 90)[:50]...) // cut by max bytes
	n, nb, next, err := batchWalk(buf, 3, 100)
	if err != nil || n != 12 || nb != 180 || next != 15 {
		t.Fatalf("batchWalk = %d records, %d bytes, next %d, %v; want 12, 180, 15", n, nb, next, err)
	}
	if n, _, _, _ := batchWalk(buf, 0, 12); n != 12 {
		t.Fatalf("records below end 12: %d, want 12", n)
	}
	if r, by := batchRecords(buf); r != 15 || by != 180 {
		t.Fatalf("sink batchRecords = %d, %d; want 15, 180", r, by)
	}
	bad := batch(0, 1, 70)
	bad[16] = 1
	if _, _, _, err := batchWalk(bad, 0, 10); err == nil {
		t.Fatal("magic 1 batch walked without error")
	}
}

func TestBenchGCTraceLine(t *testing.T) {
	var g gcTrace
	if g.line("time=... level=WARN msg=x") {
		t.Fatal("a log line taken for a gctrace line")
	}
	if !g.line("gc 7 @1.234s 1%: 0.012+1.1+0.004 ms clock, 0.025+0.4/0.9/0+0.009 ms cpu, 12->14->5 MB, 13 MB goal, 0 MB stacks, 0 MB globals, 2 P") {
		t.Fatal("gctrace line not recognised")
	}
	if g.count.Load() != 1 || g.maxStart.Load() != 12 || g.live.Load() != 5 {
		t.Fatalf("count %d, heap at start %d, live %d; want 1, 12, 5", g.count.Load(), g.maxStart.Load(), g.live.Load())
	}
}

func TestBenchCeilings(t *testing.T) {
	bin := testbroker.Binary(t)
	rep := benchJSON(t, "bench", "ceilings", "--spawn-bin", bin, "--runs", "1", "--warmup=false",
		"--ceiling-duration", "300ms", "--duration", "500ms")
	if len(rep.Series) != 4 {
		t.Fatalf("want 4 ceilings (write, sendfile, pread+write, sink), got %d", len(rep.Series))
	}
	for _, s := range rep.Series[:3] {
		r := s.Runs[0]
		if r.Bytes < 1<<20 || r.MBps <= 0 || r.SenderCPUPerGB <= 0 || r.SenderCPUPerGB > 100 {
			t.Errorf("%s: implausible %+v", s.Name, r)
		}
	}
	sink := rep.Series[3].Runs[0]
	if sink.Records < 1000 || sink.Bytes != sink.Records*1024 || sink.P99ms <= 0 {
		t.Errorf("client ceiling: implausible %+v", sink)
	}
	if _, ok := rep.Ratios["sendfile on / off (MB/s)"]; !ok {
		t.Errorf("no sendfile on/off ratio: %+v", rep.Ratios)
	}
}
