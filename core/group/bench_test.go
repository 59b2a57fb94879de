package group

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/core/log"
	"github.com/brokkr/brokkr/segment"
)

// BenchmarkRebalance: n members join an empty group, the join phase
// completes, everyone syncs, and the leader's assignment is stored.
func BenchmarkRebalance(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				seq := 0
				g, _ := New(DefaultConfig(), WithMemberIDs(func(p string) string { seq++; return fmt.Sprintf("%s-%d", p, seq) }))
				t0 := time.Unix(1_000_000, 0)
				for i := range n {
					g.Join(t0, Join{Req: ReqID(i), ClientID: "c", SessionTimeout: 10 * time.Second,
						ProtocolType: "consumer", Protocols: []Protocol{{Name: "range", Metadata: []byte("m")}}, Version: 3})
				}
				now := t0.Add(10 * time.Second)
				r := g.Tick(now)
				if len(r.Joins) != n || g.State() != CompletingRebalance {
					b.Fatalf("%d joins, state %s", len(r.Joins), g.State())
				}
				var asg []Assignment
				for _, m := range r.Joins[0].Members {
					asg = append(asg, Assignment{MemberID: m.MemberID, Assignment: []byte("p")})
				}
				for k, j := range r.Joins[1:] {
					g.Sync(now, Sync{Req: ReqID(n + 1 + k), MemberID: j.MemberID, Generation: 1})
				}
				g.Sync(now, Sync{Req: ReqID(n), MemberID: r.Joins[0].MemberID, Generation: 1, Assignments: asg})
				r = g.Stored(now, 1, 0)
				if len(r.Syncs) != n || g.State() != Stable {
					b.Fatalf("%d syncs, state %s", len(r.Syncs), g.State())
				}
			}
		})
	}
}

// BenchmarkHeartbeatTick: the steady state of a stable group of 1000 —
// one heartbeat and one Tick.
func BenchmarkHeartbeatTick(b *testing.B) {
	g, _ := New(DefaultConfig())
	t0 := time.Unix(1_000_000, 0)
	for i := range 1000 {
		g.Join(t0, Join{Req: ReqID(i), ClientID: "c", SessionTimeout: 20 * time.Minute,
			ProtocolType: "consumer", Protocols: []Protocol{{Name: "range"}}, Version: 3})
	}
	r := g.Tick(t0.Add(time.Minute))
	id := r.Joins[0].MemberID
	now := t0.Add(time.Minute)
	for b.Loop() {
		now = now.Add(time.Millisecond)
		if g.Heartbeat(now, Heartbeat{MemberID: id, Generation: 1}).ErrorCode != 0 {
			b.Fatal("heartbeat refused")
		}
		g.Tick(now)
	}
}

// offsetsLogSpec describes a synthetic __consumer_offsets partition.
type offsetsLogSpec struct {
	Commits, Groups int
	Codec           int // batch compression
	Seed            uint64
}

// writeOffsetsLog writes spec's records into a real partition log in dir
// (core/log, Kafka's offsets.topic.segment.bytes of 100 MiB) as the
// coordinator does: each batch is one group committing 1–6 partitions of
// its couple of topics; a group's first commit is preceded by its group
// metadata, and now and then a rebalance stores new metadata, a group is
// deleted (its metadata and offsets tombstoned) or one offset is. It
// returns the model, the last record per key, and the log's size.
func writeOffsetsLog(tb testing.TB, dir string, spec offsetsLogSpec) (want Loaded, size int64) {
	tb.Helper()
	cfg := log.DefaultConfig()
	cfg.SegmentBytes = 100 << 20
	l, err := log.Open(dir, cfg, log.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 17))
	want = Loaded{Groups: map[string]LoadedGroup{}, Offsets: NewOffsets()}
	type groupInfo struct {
		name   string
		topics []string
		parts  int32
		gen    int32
	}
	groups := make([]groupInfo, spec.Groups)
	for i := range groups {
		groups[i] = groupInfo{name: fmt.Sprintf("consumer-group-%05d", i), parts: int32(1 + rng.IntN(12))}
		for range 1 + rng.IntN(2) {
			groups[i].topics = append(groups[i].topics, fmt.Sprintf("topic-%03d", rng.IntN(200)))
		}
	}
	now := int64(1_700_000_000_000)
	var payload []byte
	flush := func() {
		if len(payload) > 0 {
			if _, err := l.Append(payload, 0); err != nil {
				tb.Fatal(err)
			}
			payload = payload[:0]
		}
	}
	var recs []codec.Record
	add := func(key, value []byte) {
		recs = append(recs, codec.Record{OffsetDelta: int32(len(recs)), Key: key, Value: value})
	}
	batch := func() {
		b, err := codec.EncodeBatch(codec.BatchHeader{Attributes: int16(spec.Codec), BaseTimestamp: now,
			ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}, recs)
		if err != nil {
			tb.Fatal(err)
		}
		payload = append(payload, b...)
		recs = recs[:0]
		if len(payload) > 1<<20 {
			flush()
		}
	}
	storeGroup := func(g *groupInfo) {
		g.gen++
		s := &Snapshot{Generation: g.gen, ProtocolType: "consumer", Protocol: "cooperative-sticky", Leader: g.name + "-m0"}
		for m := range 1 + rng.IntN(3) {
			s.Members = append(s.Members, MemberSnapshot{MemberID: fmt.Sprintf("%s-m%d", g.name, m), ClientID: "client",
				ClientHost: "/10.0.0.1", SessionTimeout: 45 * time.Second, RebalanceTimeout: 5 * time.Minute,
				Metadata: make([]byte, 40), Assignment: make([]byte, 30)})
		}
		add(GroupMetadataRecord(g.name, s, now))
		want.Groups[g.name] = LoadedGroup{Snapshot: *s, CurrentStateTimestamp: now}
		batch()
	}
	var inBatch []OffsetKey
	for c := 0; c < spec.Commits; {
		now += int64(rng.IntN(3))
		g := &groups[rng.IntN(len(groups))]
		switch r := rng.IntN(1000); {
		case g.gen == 0 || r < 5:
			storeGroup(g)
			continue
		case r < 6: // the group is deleted
			for _, k := range want.Offsets.DeleteGroup(g.name) {
				add(OffsetCommitRecord(k, nil))
			}
			add(GroupMetadataRecord(g.name, nil, 0))
			delete(want.Groups, g.name)
			g.gen = 0
			batch()
			continue
		case r < 8: // one offset is deleted (OffsetDelete)
			k := OffsetKey{Group: g.name, Topic: g.topics[0], Partition: 0}
			want.Offsets.Delete(k)
			add(OffsetCommitRecord(k, nil))
			batch()
			continue
		}
		n := min(1+rng.IntN(6), spec.Commits-c)
		inBatch = inBatch[:0]
		for i := range n {
			k := OffsetKey{Group: g.name, Topic: g.topics[i%len(g.topics)], Partition: int32(rng.IntN(int(g.parts)))}
			o := Offset{Offset: rng.Int64N(1 << 30), LeaderEpoch: 0, CommitTimestamp: now, ExpireTimestamp: -1}
			if slices.Contains(inBatch, k) {
				continue // one commit per partition per request, as clients send
			}
			inBatch = append(inBatch, k)
			add(OffsetCommitRecord(k, &o))
			want.Offsets.Commit(k, o)
			c++
		}
		if len(recs) > 0 {
			batch()
		}
	}
	flush()
	l.SetHighWatermark(l.LogEndOffset())
	for _, s := range l.Segments() {
		size += s.Size
	}
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return want, size
}

// loadStats counts what loadOffsetsLog read.
type loadStats struct {
	Batches, Records, Bad int
	Bytes                 int64
}

// loadOffsetsLog is what the coordinator does when it takes over a
// __consumer_offsets partition: open the log (after a clean shutdown),
// read it from the log start to the high watermark in 8 MiB reads, walk
// every batch (decompressing compressed ones), and apply each record to a
// Loader. Records that do not decode are counted and skipped.
func loadOffsetsLog(tb testing.TB, dir string) (Loaded, loadStats) {
	return readOffsetsLog(tb, dir, true, math.MaxInt64)
}

// readOffsetsLog is loadOffsetsLog; without apply it only reads and walks
// the batches (the benchmark's split of the cost). Log recovery re-reads
// and CRC-checks the segments holding offsets >= recoveryPoint (0: all,
// as after a kill -9 before any flush).
func readOffsetsLog(tb testing.TB, dir string, applyRecords bool, recoveryPoint int64) (Loaded, loadStats) {
	tb.Helper()
	cfg := log.DefaultConfig()
	cfg.SegmentBytes = 100 << 20
	l, err := log.Open(dir, cfg, log.Options{RecoveryPoint: recoveryPoint})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	l.SetHighWatermark(l.LogEndOffset())
	ld := NewLoader()
	var st loadStats
	apply := func(r segment.Record) error {
		st.Records++
		if applyRecords && ld.Apply(r.Key, r.Value) != nil {
			st.Bad++
		}
		return nil
	}
	buf := make([]byte, 8<<20)
	for off := l.LogStartOffset(); off < l.HighWatermark(); {
		res, err := l.Read(off, log.ReadOptions{MaxBytes: int64(len(buf)), Limit: log.LimitHighWatermark, MinOneBatch: true})
		if err != nil {
			tb.Fatal(err)
		}
		if res.Region.Len == 0 {
			res.Release()
			break
		}
		if res.Region.Len > int64(len(buf)) {
			buf = make([]byte, res.Region.Len)
		}
		b := buf[:res.Region.Len]
		_, err = res.Region.File.ReadAt(b, res.Region.Pos)
		res.Release()
		if err != nil {
			tb.Fatal(err)
		}
		st.Bytes += int64(len(b))
		for len(b) > 0 {
			h, err := segment.ParseHeader(b)
			if err != nil || h.Size() > int64(len(b)) {
				tb.Fatalf("batch at offset %d: %v", off, err)
			}
			batch := b[:h.Size()]
			b = b[h.Size():]
			off = h.NextOffset()
			st.Batches++
			if h.Control() {
				continue
			}
			if h.Codec() != codec.None {
				if batch, err = codec.PlainBatch(batch, 64<<20); err != nil {
					tb.Fatal(err)
				}
			}
			if err := segment.WalkRecords(batch, apply); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return ld.Done(), st
}

// rawReadLog reads every .log file of dir through one reused 8 MiB buffer
// (what cat does, with the loader's read size): the same-run reference for
// BenchmarkLoad.
func rawReadLog(tb testing.TB, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 8<<20)
	var n int64
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".log" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		for {
			m, err := f.Read(buf)
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
		}
		f.Close()
	}
	return n
}

// BenchmarkLoad: loading a __consumer_offsets partition of 1,000,000
// offset commits for 10,000 groups (issue 6: under 2 s), and the raw read
// of the same files in the same run.
func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "__consumer_offsets-0")
	want, size := writeOffsetsLog(b, dir, offsetsLogSpec{Commits: 1_000_000, Groups: 10_000, Codec: codec.None, Seed: 1})
	b.Run("load", func(b *testing.B) {
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			got, st := loadOffsetsLog(b, dir)
			if st.Bad != 0 || got.Offsets.Len() != want.Offsets.Len() || len(got.Groups) != len(want.Groups) {
				b.Fatalf("loaded %d offsets, %d groups (%d bad); want %d, %d", got.Offsets.Len(), len(got.Groups), st.Bad,
					want.Offsets.Len(), len(want.Groups))
			}
			b.ReportMetric(float64(st.Records), "records")
			b.ReportMetric(float64(st.Batches), "batches")
			b.ReportMetric(float64(got.Offsets.Len()), "offsets")
			b.ReportMetric(float64(len(got.Groups)), "groups")
			b.ReportMetric(float64(size)/1e6, "log-MB")
		}
		b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
	})
	b.Run("load-recovering", func(b *testing.B) { // Open re-reads every segment first
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			got, st := readOffsetsLog(b, dir, true, 0)
			if st.Bad != 0 || got.Offsets.Len() != want.Offsets.Len() {
				b.Fatalf("loaded %d offsets (%d bad); want %d", got.Offsets.Len(), st.Bad, want.Offsets.Len())
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
	})
	b.Run("read-walk", func(b *testing.B) { // load without Loader.Apply
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			if _, st := readOffsetsLog(b, dir, false, math.MaxInt64); st.Bytes != size {
				b.Fatalf("read %d bytes, want %d", st.Bytes, size)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
	})
	b.Run("raw-read", func(b *testing.B) {
		b.SetBytes(size)
		cpu := cpuTime()
		for b.Loop() {
			if n := rawReadLog(b, dir); n != size {
				b.Fatalf("read %d bytes, want %d", n, size)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
	})
}

// cpuTime is the process's user + system CPU time in ns: on a shared
// machine it tells the work done from the time spent waiting for a core.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkLoaderApply: Loader.Apply of the BenchmarkLoad records, already
// in memory (no log, no batch walk), and Done.
func BenchmarkLoaderApply(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "__consumer_offsets-0")
	want, _ := writeOffsetsLog(b, dir, offsetsLogSpec{Commits: 1_000_000, Groups: 10_000, Codec: codec.None, Seed: 1})
	var keys, values [][]byte
	l, err := log.Open(dir, log.DefaultConfig(), log.Options{RecoveryPoint: math.MaxInt64})
	if err != nil {
		b.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
	res, err := l.Read(0, log.ReadOptions{MaxBytes: 1 << 30, Limit: log.LimitHighWatermark, MinOneBatch: true})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, res.Region.Len)
	if _, err := res.Region.File.ReadAt(buf, res.Region.Pos); err != nil {
		b.Fatal(err)
	}
	res.Release()
	l.Close()
	for len(buf) > 0 {
		h, _ := segment.ParseHeader(buf)
		if err := segment.WalkRecords(buf[:h.Size()], func(r segment.Record) error {
			keys, values = append(keys, r.Key), append(values, r.Value)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		buf = buf[h.Size():]
	}
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		ld := NewLoader()
		for i := range keys {
			if err := ld.Apply(keys[i], values[i]); err != nil {
				b.Fatal(err)
			}
		}
		if got := ld.Done(); got.Offsets.Len() != want.Offsets.Len() {
			b.Fatalf("%d offsets, want %d", got.Offsets.Len(), want.Offsets.Len())
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(keys)), "records")
}
