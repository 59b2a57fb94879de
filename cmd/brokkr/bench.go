package main

// brokkr bench: throughput and latency of any Kafka-protocol broker, measured
// with franz-go, with the machine's own ceilings measured in the same run so
// that ratios, not absolute figures, carry the result on a shared machine.
//
//	brokkr bench produce   franz-go producer, acks/linger/batch flags
//	brokkr bench consume   franz-go consumer; --raw: hand-built Fetch requests
//	                       whose batches are walked by header only
//	brokkr bench e2e       fixed offered load; latency from each record's
//	                       scheduled send time to its consumption
//	brokkr bench ceilings  loopback write, sendfile and pread+write of a cached
//	                       file, and the producer against the sink
//	brokkr bench sink      the acknowledge-and-discard server (bench_sink.go)
//
// Method (every command): one discarded warm-up round, then --runs rounds;
// each figure is the median over the rounds with min and max. With
// --ceilings (or in `bench ceilings`) the reference measurements run in the
// same rounds, interleaved with the broker's, so both meet the same noise.
// With --pid (or --spawn) the broker process's CPU seconds per GB, RSS and,
// when spawned, its Go heap (from GODEBUG=gctrace=1) are reported.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

// benchOpts are the flags of brokkr bench and its subcommands.
type benchOpts struct {
	brokers         []string
	topic           string
	partitions      int32
	recordSize      int
	runs            int
	warmup          bool
	duration        time.Duration
	records         int64
	pid             int
	spawn           bool
	spawnBin        string
	spawnOverrides  []string
	json            bool
	ceilings        bool
	ceilingDuration time.Duration
	timeout         time.Duration

	// Producer (produce, e2e, and consume's fill).
	acks          int
	linger        time.Duration
	batchMaxBytes int32
	maxInflight   int
	compression   string
	idempotent    bool

	// Consumer.
	fetchMaxBytes     int32
	partitionMaxBytes int32

	stdout, stderr io.Writer
	tty            bool
	broker         *spawned // set with --spawn
	payloads       [][]byte
}

func newBenchCmd() *cobra.Command {
	o := &benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark a Kafka-protocol broker (produce, consume, e2e) against this machine's ceilings",
		Long: `Measures a Kafka-protocol broker with franz-go: throughput (MB/s, records/s),
latency (p50/p99/p999/max) and, for a local broker process (--pid, or
--spawn to start this binary's "serve" on a free loopback port), its CPU
seconds per GB, RSS and Go heap.

Method: records of --record-size bytes (half random, half compressible); one
discarded warm-up round, then --runs rounds of --duration or --records each;
the median is reported with min and max. --ceilings measures, in the same
rounds, loopback TCP (write of a 1 MiB buffer), sendfile and pread+write of a
cached file at 256 KiB per call, and the same producer against "bench sink"
(a server that acknowledges and discards): the ratios against them are what
docs/benchmarks.md reports. MB/s is 10^6 bytes per second.`,
		Args: cobra.NoArgs,
		RunE: nounRun,
	}
	f := cmd.PersistentFlags()
	f.StringSliceVar(&o.brokers, "brokers", defaultBrokerList(), "seed brokers host:port,... ($"+brokersEnv+", else "+defaultBrokers+")")
	f.StringVar(&o.topic, "topic", "brokkr-bench", "topic to use (created with --partitions if missing)")
	f.Int32Var(&o.partitions, "partitions", 1, "partitions of the topic when it is created")
	f.IntVar(&o.recordSize, "record-size", 1024, "bytes per record value")
	f.IntVar(&o.runs, "runs", 3, "measured rounds (after one discarded warm-up round)")
	f.BoolVar(&o.warmup, "warmup", true, "run and discard one warm-up round first")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "length of each round (ignored when --records is set)")
	f.Int64Var(&o.records, "records", 0, "records per round instead of --duration")
	f.IntVar(&o.pid, "pid", 0, "PID of the local broker process, for its CPU, RSS")
	f.BoolVar(&o.spawn, "spawn", false, "start `brokkr serve` (--spawn-bin) on a free loopback port with a temporary data dir, measure it, stop it")
	f.StringVar(&o.spawnBin, "spawn-bin", "", "brokkr binary for --spawn and for the sink (default: this executable)")
	f.StringArrayVar(&o.spawnOverrides, "spawn-override", nil, "key=value passed to the spawned broker as --override (repeatable)")
	f.BoolVar(&o.json, "json", false, "print the summary as JSON")
	f.BoolVar(&o.ceilings, "ceilings", false, "measure the machine's ceilings in the same rounds and print the ratios")
	f.DurationVar(&o.ceilingDuration, "ceiling-duration", 2*time.Second, "length of each loopback/sendfile ceiling measurement")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "time-out for reaching the broker and for each request")
	f.IntVar(&o.acks, "acks", 1, "producer acks: 0, 1 or -1 (all)")
	f.DurationVar(&o.linger, "linger", -1, "producer linger (default: franz-go's 10ms; 0 for e2e)")
	f.Int32Var(&o.batchMaxBytes, "batch-max-bytes", 1000012, "producer batch size limit")
	f.IntVar(&o.maxInflight, "max-inflight", 5, "produce requests in flight per broker (without --idempotent)")
	f.StringVar(&o.compression, "compression", "none", "none, gzip, snappy, lz4 or zstd")
	f.BoolVar(&o.idempotent, "idempotent", false, "idempotent producer (needs acks -1)")
	f.Int32Var(&o.fetchMaxBytes, "fetch-max-bytes", 16<<20, "consumer: most bytes per Fetch response")
	f.Int32Var(&o.partitionMaxBytes, "partition-max-bytes", 8<<20, "consumer: most bytes per partition per Fetch")
	cmd.AddCommand(newBenchProduceCmd(o), newBenchConsumeCmd(o), newBenchE2ECmd(o), newBenchCeilingsCmd(o), newBenchSinkCmd())
	return cmd
}

// prepare validates the flags, fills the payloads, and starts the broker
// with --spawn. The returned function stops what was started.
func (o *benchOpts) prepare(cmd *cobra.Command, needBroker bool) (func(), error) {
	o.stdout = cmd.OutOrStdout()
	// The progress line, the run summaries and a child's forwarded output
	// come from different goroutines.
	o.stderr = &lockedWriter{w: cmd.ErrOrStderr()}
	if f, ok := cmd.ErrOrStderr().(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.tty = true
		}
	}
	var errs []error
	if o.recordSize < 16 || o.recordSize > 16<<20 {
		errs = append(errs, fmt.Errorf("--record-size: want 16 B to 16 MiB, got %d", o.recordSize))
	}
	if o.runs < 1 {
		errs = append(errs, fmt.Errorf("--runs: want at least 1, got %d", o.runs))
	}
	if o.records < 0 {
		errs = append(errs, fmt.Errorf("--records: must not be negative, got %d", o.records))
	}
	if o.records == 0 && o.duration <= 0 {
		errs = append(errs, errors.New("--duration: must be positive when --records is not set"))
	}
	if o.partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions: want at least 1, got %d", o.partitions))
	}
	if o.acks != 0 && o.acks != 1 && o.acks != -1 {
		errs = append(errs, fmt.Errorf("--acks: want 0, 1 or -1, got %d", o.acks))
	}
	if o.idempotent && o.acks != -1 {
		errs = append(errs, errors.New("--idempotent needs --acks -1"))
	}
	if o.maxInflight < 1 {
		errs = append(errs, fmt.Errorf("--max-inflight: want at least 1, got %d", o.maxInflight))
	}
	if _, err := compressionCodec(o.compression); err != nil {
		errs = append(errs, err)
	}
	if o.fetchMaxBytes < 1024 || o.partitionMaxBytes < 1024 {
		errs = append(errs, errors.New("--fetch-max-bytes and --partition-max-bytes: want at least 1024"))
	}
	if o.ceilingDuration <= 0 {
		errs = append(errs, errors.New("--ceiling-duration: must be positive"))
	}
	if o.timeout <= 0 {
		errs = append(errs, errors.New("--timeout: must be positive"))
	}
	if o.spawn && o.pid != 0 {
		errs = append(errs, errors.New("--spawn and --pid: give one (--spawn measures the broker it starts)"))
	}
	if o.pid < 0 {
		errs = append(errs, fmt.Errorf("--pid: %d is not a process id", o.pid))
	} else if o.pid > 0 {
		if _, err := procCPU(o.pid); err != nil {
			errs = append(errs, fmt.Errorf("--pid %d: %v (a local process is needed)", o.pid, err))
		}
	}
	var bs []string
	for _, b := range o.brokers {
		bs = append(bs, splitList(b)...)
	}
	if len(bs) == 0 && !o.spawn && needBroker {
		errs = append(errs, errors.New("--brokers: no broker address given"))
	}
	for _, b := range bs {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("--brokers: %q has no port (want host:port)", b))
		}
	}
	o.brokers = bs
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.payloads = makePayloads(o.recordSize)
	if o.spawnBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("--spawn-bin: cannot find this executable: %v", err)
		}
		o.spawnBin = exe
	}
	stop := func() {}
	if o.spawn && needBroker {
		b, err := spawnBroker(cmd.Context(), o.spawnBin, o.spawnOverrides, o.stderr)
		if err != nil {
			return nil, err
		}
		o.broker = b
		o.brokers = []string{b.addr}
		o.pid = b.pid
		o.progressf("spawned brokkr serve (pid %d) on %s, data in %s", b.pid, b.addr, b.dir)
		stop = func() {
			if err := b.stop(); err != nil {
				o.progressf("stopping the spawned broker: %v", err)
			}
		}
	}
	return stop, nil
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// makePayloads returns 4096 distinct record values (4 MiB of 1 KiB records,
// more than a batch, so no batch repeats itself): the first half of each is
// random, the second half a repeated phrase that compresses well.
func makePayloads(size int) [][]byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'b', 'r', 'o', 'k', 'k', 'r'}))
	const phrase = "brokkr bench: the second half of every record compresses well. "
	out := make([][]byte, 4096)
	for i := range out {
		p := make([]byte, size)
		half := size / 2
		for j := 0; j < half; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < half; k++ {
				p[j+k] = byte(v >> (8 * k))
			}
		}
		for j := half; j < size; j++ {
			p[j] = phrase[(j-half+i)%len(phrase)]
		}
		out[i] = p
	}
	return out
}

// progressf prints one line on stderr (not in --json mode's stdout).
func (o *benchOpts) progressf(format string, args ...any) {
	if o.tty {
		fmt.Fprint(o.stderr, "\r\033[K")
	}
	fmt.Fprintf(o.stderr, "bench: "+format+"\n", args...)
}

// meter is what a run updates while it runs: the progress line reads it
// once a second.
type meter struct {
	records atomic.Int64
	bytes   atomic.Int64
	hist    histogram
}

// outcome is what a run function returns: the measured time, and for the
// socket ceilings the sending thread's CPU seconds (else negative).
type outcome struct {
	elapsed   time.Duration
	senderCPU float64
	ackP99    time.Duration // e2e: p99 from scheduled send time to the producer's ack
}

// bench is one named measurement: run is called once per round.
type bench struct {
	name    string
	broker  bool // measures the broker process (its CPU, RSS, heap)
	latency bool // its histogram means something
	run     func(ctx context.Context, m *meter) (outcome, error)
	results []runStats
}

// runStats are one run's figures.
type runStats struct {
	Round          int     `json:"round"`
	Warmup         bool    `json:"warmup,omitempty"`
	Seconds        float64 `json:"seconds"`
	Records        int64   `json:"records"`
	Bytes          int64   `json:"bytes"`
	MBps           float64 `json:"mb_per_s"`
	RecordsPerSec  float64 `json:"records_per_s"`
	P50ms          float64 `json:"p50_ms,omitempty"`
	P99ms          float64 `json:"p99_ms,omitempty"`
	P999ms         float64 `json:"p999_ms,omitempty"`
	MaxMs          float64 `json:"max_ms,omitempty"`
	AckP99ms       float64 `json:"ack_p99_ms,omitempty"`
	SenderCPUPerGB float64 `json:"sender_cpu_s_per_gb,omitempty"`
	BrokerCPUSec   float64 `json:"broker_cpu_s,omitempty"`
	BrokerCPUPerGB float64 `json:"broker_cpu_s_per_gb,omitempty"`
	BrokerRSSMB    float64 `json:"broker_rss_mb,omitempty"`
	BrokerRSSMaxMB float64 `json:"broker_rss_max_mb,omitempty"`
	BrokerGCs      int64   `json:"broker_gcs,omitempty"`
	BrokerHeapMB   int64   `json:"broker_heap_max_mb,omitempty"`
	BrokerLiveMB   int64   `json:"broker_heap_live_mb,omitempty"`
}

// seriesSummary is one bench's medians over the measured rounds.
type seriesSummary struct {
	Name           string     `json:"name"`
	MBps           spread     `json:"mb_per_s"`
	RecordsPerSec  spread     `json:"records_per_s"`
	P50ms          *spread    `json:"p50_ms,omitempty"`
	P99ms          *spread    `json:"p99_ms,omitempty"`
	P999ms         *spread    `json:"p999_ms,omitempty"`
	MaxMs          *spread    `json:"max_ms,omitempty"`
	SenderCPUPerGB *spread    `json:"sender_cpu_s_per_gb,omitempty"`
	BrokerCPUPerGB *spread    `json:"broker_cpu_s_per_gb,omitempty"`
	BrokerRSSMaxMB *spread    `json:"broker_rss_max_mb,omitempty"`
	Runs           []runStats `json:"runs"`
}

// report is the whole --json output.
type report struct {
	Command    string            `json:"command"`
	Brokers    []string          `json:"brokers,omitempty"`
	Topic      string            `json:"topic,omitempty"`
	Partitions int32             `json:"partitions,omitempty"`
	RecordSize int               `json:"record_size"`
	Rounds     int               `json:"rounds"`
	Started    time.Time         `json:"started"`
	Series     []seriesSummary   `json:"series"`
	Ratios     map[string]ratio  `json:"ratios,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
	Extra      map[string]string `json:"extra,omitempty"`
}

// ratio compares one figure of the broker with a ceiling's.
type ratio struct {
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
	Of     string  `json:"of"`
}

// runRounds runs every bench once per round: one warm-up round (unless
// disabled) and o.runs measured rounds, all benches in each round so they
// share the machine's noise. A live line on stderr shows each run.
func (o *benchOpts) runRounds(ctx context.Context, benches []*bench) error {
	rounds := o.runs
	first := 1
	if o.warmup {
		first = 0
	}
	for r := first; r <= rounds; r++ {
		for _, b := range benches {
			label := fmt.Sprintf("%s round %d/%d", b.name, r, rounds)
			if r == 0 {
				label = b.name + " warm-up"
			}
			st, err := o.runOne(ctx, b, label)
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			st.Round, st.Warmup = r, r == 0
			b.results = append(b.results, st)
		}
	}
	return nil
}

func (o *benchOpts) runOne(ctx context.Context, b *bench, label string) (runStats, error) {
	m := &meter{}
	pid := 0
	if b.broker {
		pid = o.pid
	}
	var cpu0 float64
	if pid > 0 {
		c, err := procCPU(pid)
		if err != nil {
			return runStats{}, fmt.Errorf("broker process %d: %v", pid, err)
		}
		cpu0 = c
		if o.broker != nil {
			o.broker.gc.reset()
		}
	}
	gcs0 := int64(0)
	if o.broker != nil {
		gcs0 = o.broker.gc.count.Load()
	}
	var rssMax atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastB, lastR int64
		last := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				bs, rs := m.bytes.Load(), m.records.Load()
				dt := now.Sub(last).Seconds()
				line := fmt.Sprintf("%s  %4.0fs  %8.1f MB/s  %10.0f rec/s", label, now.Sub(start).Seconds(),
					float64(bs-lastB)/dt/1e6, float64(rs-lastR)/dt)
				if b.latency && m.hist.Count() > 0 {
					line += fmt.Sprintf("  p99 %s", fmtDur(m.hist.Quantile(0.99)))
				}
				if pid > 0 {
					if c, err := procCPU(pid); err == nil {
						line += fmt.Sprintf("  broker CPU %.1fs", c-cpu0)
					}
					if rss, err := procRSS(pid); err == nil {
						if rss > rssMax.Load() {
							rssMax.Store(rss)
						}
						line += fmt.Sprintf("  RSS %.0f MB", float64(rss)/1e6)
					}
				}
				if o.tty {
					fmt.Fprint(o.stderr, "\r\033[K"+line)
				} else {
					fmt.Fprintln(o.stderr, "bench: "+line)
				}
				lastB, lastR, last = bs, rs, now
			}
		}
	}()
	out, err := b.run(ctx, m)
	close(done)
	wg.Wait()
	if o.tty {
		fmt.Fprint(o.stderr, "\r\033[K")
	}
	if err != nil {
		return runStats{}, err
	}
	el := out.elapsed
	if el <= 0 {
		el = time.Since(start)
	}
	st := runStats{
		Seconds: el.Seconds(),
		Records: m.records.Load(),
		Bytes:   m.bytes.Load(),
	}
	st.MBps = float64(st.Bytes) / el.Seconds() / 1e6
	st.RecordsPerSec = float64(st.Records) / el.Seconds()
	if b.latency && m.hist.Count() > 0 {
		st.P50ms = ms(m.hist.Quantile(0.50))
		st.P99ms = ms(m.hist.Quantile(0.99))
		st.P999ms = ms(m.hist.Quantile(0.999))
		st.MaxMs = ms(m.hist.Max())
	}
	st.AckP99ms = ms(out.ackP99)
	if out.senderCPU >= 0 && st.Bytes > 0 {
		st.SenderCPUPerGB = out.senderCPU / (float64(st.Bytes) / 1e9)
	}
	if pid > 0 {
		c, err := procCPU(pid)
		if err != nil {
			return runStats{}, fmt.Errorf("broker process %d: %v", pid, err)
		}
		st.BrokerCPUSec = c - cpu0
		if st.Bytes > 0 {
			st.BrokerCPUPerGB = st.BrokerCPUSec / (float64(st.Bytes) / 1e9)
		}
		if rss, err := procRSS(pid); err == nil {
			st.BrokerRSSMB = float64(rss) / 1e6
			if rss > rssMax.Load() {
				rssMax.Store(rss)
			}
		}
		st.BrokerRSSMaxMB = float64(rssMax.Load()) / 1e6
		if o.broker != nil {
			st.BrokerGCs = o.broker.gc.count.Load() - gcs0
			st.BrokerHeapMB = o.broker.gc.maxStart.Load()
			st.BrokerLiveMB = o.broker.gc.live.Load()
		}
	}
	o.progressf("%s: %.1f MB/s, %.0f records/s over %.2fs%s", label, st.MBps, st.RecordsPerSec, st.Seconds, runTail(st))
	return st, nil
}

func runTail(st runStats) string {
	s := ""
	if st.P99ms > 0 {
		s += fmt.Sprintf(", p50 %.2f p99 %.2f p999 %.2f max %.2f ms", st.P50ms, st.P99ms, st.P999ms, st.MaxMs)
	}
	if st.AckP99ms > 0 {
		s += fmt.Sprintf(" (producer ack p99 %.2f ms)", st.AckP99ms)
	}
	if st.SenderCPUPerGB > 0 {
		s += fmt.Sprintf(", sender CPU %.2f s/GB", st.SenderCPUPerGB)
	}
	if st.BrokerCPUSec > 0 {
		s += fmt.Sprintf(", broker CPU %.2f s/GB, RSS %.0f MB (max %.0f)", st.BrokerCPUPerGB, st.BrokerRSSMB, st.BrokerRSSMaxMB)
	}
	if st.BrokerGCs > 0 {
		s += fmt.Sprintf(", broker GCs %d, heap max %d MB, live %d MB", st.BrokerGCs, st.BrokerHeapMB, st.BrokerLiveMB)
	} else if st.BrokerLiveMB > 0 {
		s += fmt.Sprintf(", no broker GC (live %d MB at the last)", st.BrokerLiveMB)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.2fms", ms(d))
	}
}

// summarize computes a bench's medians over its measured (non-warm-up) runs.
func summarize(b *bench) seriesSummary {
	s := seriesSummary{Name: b.name, Runs: b.results}
	var mbps, rps, p50, p99, p999, mx, scpu, bcpu, rss []float64
	for _, r := range b.results {
		if r.Warmup {
			continue
		}
		mbps = append(mbps, r.MBps)
		rps = append(rps, r.RecordsPerSec)
		if b.latency {
			p50, p99, p999, mx = append(p50, r.P50ms), append(p99, r.P99ms), append(p999, r.P999ms), append(mx, r.MaxMs)
		}
		if r.SenderCPUPerGB > 0 {
			scpu = append(scpu, r.SenderCPUPerGB)
		}
		if r.BrokerCPUSec > 0 {
			bcpu = append(bcpu, r.BrokerCPUPerGB)
			rss = append(rss, r.BrokerRSSMaxMB)
		}
	}
	s.MBps, s.RecordsPerSec = spreadOf(mbps), spreadOf(rps)
	ptr := func(v []float64) *spread {
		if len(v) == 0 {
			return nil
		}
		sp := spreadOf(v)
		return &sp
	}
	s.P50ms, s.P99ms, s.P999ms, s.MaxMs = ptr(p50), ptr(p99), ptr(p999), ptr(mx)
	s.SenderCPUPerGB, s.BrokerCPUPerGB, s.BrokerRSSMaxMB = ptr(scpu), ptr(bcpu), ptr(rss)
	return s
}

// finish prints the summary (a table, or JSON with --json).
func (o *benchOpts) finish(rep *report, benches []*bench) error {
	for _, b := range benches {
		rep.Series = append(rep.Series, summarize(b))
	}
	rep.RecordSize, rep.Rounds = o.recordSize, o.runs
	if o.json {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	w := o.stdout
	fmt.Fprintf(w, "brokkr bench %s: %d-byte records, %d rounds after a warm-up; median (min–max)\n", rep.Command, o.recordSize, o.runs)
	if len(rep.Brokers) > 0 {
		fmt.Fprintf(w, "brokers %s, topic %s (%d partitions)\n", strings.Join(rep.Brokers, ","), rep.Topic, rep.Partitions)
	}
	for _, s := range rep.Series {
		fmt.Fprintf(w, "\n%s\n", s.Name)
		if s.RecordsPerSec.Max > 0 {
			fmt.Fprintf(w, "  throughput   %s MB/s   %s records/s\n", fmtSpread(s.MBps, "%.1f"), fmtSpread(s.RecordsPerSec, "%.0f"))
		} else {
			fmt.Fprintf(w, "  throughput   %s MB/s\n", fmtSpread(s.MBps, "%.1f"))
		}
		if s.P99ms != nil {
			fmt.Fprintf(w, "  latency ms   p50 %s  p99 %s  p999 %s  max %s\n",
				fmtSpread(*s.P50ms, "%.2f"), fmtSpread(*s.P99ms, "%.2f"), fmtSpread(*s.P999ms, "%.2f"), fmtSpread(*s.MaxMs, "%.2f"))
		}
		if s.SenderCPUPerGB != nil {
			fmt.Fprintf(w, "  sender CPU   %s s/GB\n", fmtSpread(*s.SenderCPUPerGB, "%.3f"))
		}
		if s.BrokerCPUPerGB != nil {
			fmt.Fprintf(w, "  broker CPU   %s s/GB   RSS max %s MB\n", fmtSpread(*s.BrokerCPUPerGB, "%.3f"), fmtSpread(*s.BrokerRSSMaxMB, "%.0f"))
			var gcs []string
			for _, r := range s.Runs {
				switch {
				case r.Warmup || (r.BrokerGCs == 0 && r.BrokerLiveMB == 0):
				case r.BrokerGCs == 0:
					gcs = append(gcs, fmt.Sprintf("no GC (live %d MB at the last)", r.BrokerLiveMB))
				default:
					gcs = append(gcs, fmt.Sprintf("%d GCs, heap ≤ %d MB, live %d MB", r.BrokerGCs, r.BrokerHeapMB, r.BrokerLiveMB))
				}
			}
			if len(gcs) > 0 {
				fmt.Fprintf(w, "  broker heap  %s\n", strings.Join(gcs, "; "))
			}
		}
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintf(w, "\nratios (medians)\n")
		for _, k := range sortedKeys(rep.Ratios) {
			r := rep.Ratios[k]
			met := "not met"
			if r.Met {
				met = "met"
			}
			fmt.Fprintf(w, "  %-34s %6.2f  target %s: %s  (%s)\n", k, r.Value, r.Target, met, r.Of)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func sortedKeys(m map[string]ratio) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// newRatio compares num/den with a target "≥ x" or "≤ x".
func newRatio(num, den float64, atLeast bool, target float64, of string) ratio {
	r := ratio{Of: of}
	if den > 0 {
		r.Value = num / den
	}
	if atLeast {
		r.Target = fmt.Sprintf("≥ %.2f", target)
		r.Met = den > 0 && r.Value >= target
	} else {
		r.Target = fmt.Sprintf("≤ %.2f", target)
		r.Met = den > 0 && r.Value <= target
	}
	return r
}
