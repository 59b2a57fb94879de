package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/plugins/policytest"
)

const now = 1_700_000_000_000

// TestConformanceN1: with the default N=1 the policy passes the conformance
// suite of Kafka's keep-latest-per-key compaction (table, bad configs,
// random inputs against policytest.CompactionModel).
func TestConformanceN1(t *testing.T) {
	policytest.RunCompaction(t, func(*testing.T) plugins.CompactionPolicy { return Policy{} })
}

// run does one pass (Scan every batch, then Survivors per batch), validating
// every answer, and returns all survivors ascending.
func run(t *testing.T, cfg map[string]string, nowMs int64, batches [][]plugins.Record) []int64 {
	t.Helper()
	return run2(t, cfg, nowMs, batches, batches)
}

// run2 is run with other batches for Survivors than for Scan (Brokkr's
// cleaner batches the two phases differently; Scan may see only a suffix).
func run2(t *testing.T, cfg map[string]string, nowMs int64, scan, survive [][]plugins.Record) []int64 {
	t.Helper()
	ctx := context.Background()
	pass, err := Policy{}.Begin(ctx, plugins.CompactionParams{Topic: "c", Config: cfg, NowMs: nowMs})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer func() {
		if err := pass.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	for _, b := range scan {
		if err := pass.Scan(ctx, b); err != nil {
			t.Fatalf("Scan: %v", err)
		}
	}
	var all []int64
	for _, b := range survive {
		s, err := pass.Survivors(ctx, b)
		if err != nil {
			t.Fatalf("Survivors: %v", err)
		}
		v, err := plugins.ValidateSurvivors(b, s)
		if err != nil {
			t.Fatalf("answer refused: %v", err)
		}
		all = append(all, v...)
	}
	return all
}

type rec struct {
	key  string // "" = no key
	ago  int64  // ms before now
	tomb bool
}

func records(rs ...rec) []plugins.Record {
	out := make([]plugins.Record, len(rs))
	for i, r := range rs {
		out[i] = plugins.Record{Offset: int64(i), TimestampMs: now - r.ago, Tombstone: r.tomb}
		if r.key != "" {
			out[i].Key = []byte(r.key)
		}
	}
	return out
}

func TestTable(t *testing.T) {
	cfg := func(n int, extra ...string) map[string]string {
		c := map[string]string{NKey: strconv.Itoa(n), "delete.retention.ms": "1000"}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i]] = extra[i+1]
		}
		return c
	}
	old := int64(5000)
	for _, c := range []struct {
		name string
		cfg  map[string]string
		recs []plugins.Record
		want []int64
	}{
		{"KeepsLatestTwo", cfg(2), records(rec{"a", old, false}, rec{"a", old, false}, rec{"b", old, false}, rec{"a", old, false}, rec{"b", old, false}, rec{"a", old, false}),
			[]int64{2, 3, 4, 5}},
		{"FewerThanNKeptAll", cfg(3), records(rec{"a", old, false}, rec{"b", old, false}, rec{"a", old, false}),
			[]int64{0, 1, 2}},
		{"NOneIsKafka", cfg(1), records(rec{"a", old, false}, rec{"a", old, false}, rec{"b", old, false}),
			[]int64{1, 2}},
		{"TombstoneDeletesAllOlder", cfg(3), records(rec{"a", old, false}, rec{"a", old, false}, rec{"a", 10, true}, rec{"a", old, false}),
			[]int64{2, 3}},
		{"ExpiredTombstoneGoesToo", cfg(3), records(rec{"a", old, false}, rec{"a", old, false}, rec{"a", 1001, true}, rec{"b", old, false}),
			[]int64{3}},
		{"TombstoneExactlyAtRetentionKept", cfg(2), records(rec{"a", old, false}, rec{"a", 1000, true}),
			[]int64{1}},
		{"OlderTombstoneSupersededByLater", cfg(5), records(rec{"a", 10, true}, rec{"a", old, false}, rec{"a", 10, true}, rec{"a", old, false}),
			[]int64{2, 3}},
		{"TombstoneCountsAsOneOfN", cfg(2), records(rec{"a", 10, true}, rec{"a", old, false}, rec{"a", old, false}),
			[]int64{1, 2}},
		{"KeylessKept", cfg(1), records(rec{"", old, false}, rec{"", old, false}, rec{"a", old, false}, rec{"a", old, false}),
			[]int64{0, 1, 3}},
		{"YoungKeptAndCounted", cfg(1, "min.compaction.lag.ms", "100"), records(rec{"a", old, false}, rec{"a", 50, false}, rec{"a", 10, false}),
			[]int64{1, 2}},
		{"DefaultNIsOne", map[string]string{}, records(rec{"a", old, false}, rec{"a", old, false}),
			[]int64{1}},
		{"DefaultDeleteRetentionIsADay", map[string]string{}, records(rec{"a", 24*3600_000 - 1, true}, rec{"b", 24*3600_000 + 1, true}),
			[]int64{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// One record per batch and all in one batch must agree.
			var single [][]plugins.Record
			for i := range c.recs {
				single = append(single, c.recs[i:i+1])
			}
			for _, batches := range [][][]plugins.Record{{c.recs}, single} {
				if got := run(t, c.cfg, now, batches); !slices.Equal(got, c.want) {
					t.Fatalf("%d batches: survivors %v, want %v", len(batches), got, c.want)
				}
			}
			if m := model(t, c.cfg, now, c.recs); !slices.Equal(m, c.want) {
				t.Fatalf("model %v, table %v: fix one", m, c.want)
			}
		})
	}
}

func TestBadSettings(t *testing.T) {
	for _, cfg := range []map[string]string{{NKey: "0"}, {NKey: "-3"}, {NKey: "two"}, {"delete.retention.ms": "x"}, {"min.compaction.lag.ms": "-1"}} {
		if _, err := (Policy{}).Begin(context.Background(), plugins.CompactionParams{Config: cfg, NowMs: now}); err == nil {
			t.Errorf("config %v accepted", cfg)
		}
	}
}

// TestContract: a pass driven against the contract (offsets going
// backwards in either phase, a record Survivors shows that Scan did not see
// inside the scanned section, Scan after Survivors, calls after Close)
// answers an error, never a guess.
func TestContract(t *testing.T) {
	ctx := context.Background()
	recs := records(rec{"a", 5000, false}, rec{"a", 5000, false}, rec{"b", 5000, false}, rec{"a", 5000, false})
	begin := func() plugins.CompactionPass {
		p, err := Policy{}.Begin(ctx, plugins.CompactionParams{Config: map[string]string{}, NowMs: now})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := begin()
	if err := p.Scan(ctx, recs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := p.Scan(ctx, recs[:1]); err == nil {
		t.Error("Scan with offsets going backwards: no error")
	}
	p = begin()
	_ = p.Scan(ctx, recs)
	if _, err := p.Survivors(ctx, recs[2:]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Survivors(ctx, recs[:2]); err == nil {
		t.Error("Survivors with offsets going backwards: no error")
	}
	p = begin()
	_ = p.Scan(ctx, []plugins.Record{recs[0], recs[3]})
	if _, err := p.Survivors(ctx, recs); err == nil {
		t.Error("Survivors shows offsets 1 and 2, inside the scanned section but never scanned: no error")
	}
	p = begin()
	_ = p.Scan(ctx, recs)
	if _, err := p.Survivors(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := p.Scan(ctx, recs); err == nil {
		t.Error("Scan after Survivors: no error")
	}
	_ = p.Close()
	if err := p.Scan(ctx, recs); err == nil {
		t.Error("Scan after Close: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (Policy{}).Begin(cctx, plugins.CompactionParams{Config: map[string]string{}}); err == nil {
		t.Error("Begin with a cancelled context: no error")
	}
	var _ plugins.FullScanner = Policy{}
	if !(Policy{}).FullScan() {
		t.Error("the policy must ask for a full scan")
	}
}

// model is the dumb version of the rule, by brute force per record.
func model(t *testing.T, cfg map[string]string, nowMs int64, recs []plugins.Record) []int64 {
	s, err := ParseSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for i, r := range recs {
		if r.Key == nil || nowMs-r.TimestampMs < s.MinCompactionLag {
			out = append(out, r.Offset)
			continue
		}
		newer, laterTombstone := int64(0), false
		for _, l := range recs[i+1:] {
			if string(l.Key) == string(r.Key) && l.Key != nil {
				newer++
				laterTombstone = laterTombstone || l.Tombstone
			}
		}
		expired := r.Tombstone && nowMs-r.TimestampMs > s.DeleteRetentionMs
		if newer < s.N && !laterTombstone && !expired {
			out = append(out, r.Offset)
		}
	}
	return out
}

// TestRandomAgainstModel: random records (gaps, keyless, tombstones, headers)
// over small key spaces, random N, lag and delete.retention.ms, random batch
// splits; survivors equal the model.
func TestRandomAgainstModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 17))
	for i := range 1000 {
		cfg := map[string]string{}
		if r.IntN(5) > 0 {
			cfg[NKey] = strconv.Itoa(1 + r.IntN(5))
		}
		if r.IntN(4) > 0 {
			cfg["delete.retention.ms"] = strconv.Itoa(r.IntN(2000))
		}
		if r.IntN(3) > 0 {
			cfg["min.compaction.lag.ms"] = strconv.Itoa(r.IntN(2000))
		}
		recs := policytest.RandomRecords(r, 1+r.IntN(200))
		var batches [][]plugins.Record
		for rest := recs; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(40))
			batches, rest = append(batches, rest[:n]), rest[n:]
		}
		got := run2(t, cfg, now, batches, split(r, recs))
		if want := model(t, cfg, now, recs); !slices.Equal(got, want) {
			t.Fatalf("case %d (seed %d) cfg %v: survivors %v, model %v", i, seed, cfg, got, want)
		}
	}
}

// split cuts recs into random batches.
func split(r *rand.Rand, recs []plugins.Record) [][]plugins.Record {
	var out [][]plugins.Record
	for rest := recs; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(40))
		out, rest = append(out, rest[:n]), rest[n:]
	}
	return out
}

// TestDirtyOnlyScan: driven as Kafka's cleaner drives a policy (Scan sees
// only a suffix, the dirty section; Survivors sees everything), N=1 answers
// exactly as the built-in, and any N never removes a record that exact
// latest-N keeps.
func TestDirtyOnlyScan(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 19))
	for i := range 500 {
		cfg := map[string]string{"delete.retention.ms": strconv.Itoa(r.IntN(2000))}
		if r.IntN(2) == 0 {
			cfg["min.compaction.lag.ms"] = strconv.Itoa(r.IntN(2000))
		}
		recs := policytest.RandomRecords(r, 1+r.IntN(200))
		dirty := recs[r.IntN(len(recs)):]
		got := run2(t, cfg, now, split(r, dirty), split(r, recs))
		want := builtinSurvivors(t, cfg, dirty, recs)
		if !slices.Equal(got, want) {
			t.Fatalf("case %d (seed %d) N=1: survivors %v, built-in %v", i, seed, got, want)
		}
		cfg[NKey] = strconv.Itoa(2 + r.IntN(4))
		got = run2(t, cfg, now, split(r, dirty), split(r, recs))
		for _, o := range model(t, cfg, now, recs) {
			if _, found := slices.BinarySearch(got, o); !found {
				t.Fatalf("case %d (seed %d) cfg %v: offset %d removed, exact latest-N keeps it", i, seed, cfg, o)
			}
		}
	}
}

// builtinSurvivors runs the built-in compaction with Scan on scan and
// Survivors on all, in one batch each.
func builtinSurvivors(t *testing.T, cfg map[string]string, scan, all []plugins.Record) []int64 {
	t.Helper()
	ctx := context.Background()
	p, err := builtin.NewCompaction().Begin(ctx, plugins.CompactionParams{Config: cfg, NowMs: now})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Scan(ctx, scan); err != nil {
		t.Fatal(err)
	}
	s, err := p.Survivors(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(s)
	return s
}

// BenchmarkPass: one pass over 100k records, 10% distinct keys, N=3, in
// batches of 1000 (the policy's own cost, without the host or gRPC).
func BenchmarkPass(b *testing.B) {
	const total, batch = 100_000, 1000
	recs := make([]plugins.Record, total)
	for i := range recs {
		recs[i] = plugins.Record{Offset: int64(i), Key: []byte("key-" + strconv.Itoa(i%(total/10))), TimestampMs: now - 10_000}
	}
	cfg := map[string]string{NKey: "3"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, _ := Policy{}.Begin(ctx, plugins.CompactionParams{Config: cfg, NowMs: now})
		for i := 0; i < total; i += batch {
			_ = p.Scan(ctx, recs[i:i+batch])
		}
		kept := 0
		for i := 0; i < total; i += batch {
			s, _ := p.Survivors(ctx, recs[i:i+batch])
			kept += len(s)
		}
		_ = p.Close()
		if kept != 3*total/10 {
			b.Fatalf("kept %d, want %d", kept, 3*total/10)
		}
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mrecords/s")
}
