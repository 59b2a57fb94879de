// Package policytest is the conformance suite for retention and compaction
// policies with Kafka's built-in semantics. The same suite runs against the
// in-process built-ins and (later) against the same policies served as a
// go-plugin binary; both must give the same answers.
//
// Every case is checked two ways: against table expectations, and for random
// inputs against a deliberately dumb model. Every retention decision must
// also pass plugins.Validate, and every compaction answer
// plugins.ValidateSurvivors.
package policytest

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins"
)

// RandomCases is how many random inputs each suite checks.
const RandomCases = 400

// RunRetention checks a retention policy against Kafka's time and size
// retention. newPolicy is called once per subtest.
func RunRetention(t *testing.T, newPolicy func(t *testing.T) plugins.RetentionPolicy) {
	t.Run("Table", func(t *testing.T) {
		for _, c := range retentionTable() {
			t.Run(c.name, func(t *testing.T) {
				p := newPolicy(t)
				d := decide(t, p, c.in)
				if d.LogStartOffset != c.want {
					t.Fatalf("log start offset = %d, want %d (reason %q)", d.LogStartOffset, c.want, d.Reason)
				}
				if m := RetentionModel(c.in); m != c.want {
					t.Fatalf("model says %d, table says %d: fix the table or the model", m, c.want)
				}
			})
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		p := newPolicy(t)
		for _, cfg := range []map[string]string{
			{"retention.ms": "soon"},
			{"retention.ms": "-2"},
			{"retention.bytes": "-5"},
			{"cleanup.policy": "shred"},
		} {
			in := baseInput(cfg)
			d, err := p.Decide(context.Background(), in)
			if err == nil {
				t.Errorf("config %v: no error, decision %+v", cfg, d)
			}
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		p := newPolicy(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		// Any error will do: over gRPC it is a status, not context.Canceled.
		if d, err := p.Decide(ctx, baseInput(nil)); err == nil {
			t.Fatalf("cancelled context: no error, decision %+v", d)
		}
	})
	t.Run("Random", func(t *testing.T) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		r := rand.New(rand.NewPCG(seed, 5))
		p := newPolicy(t)
		for i := range RandomCases {
			in := RandomRetentionInput(r)
			d := decide(t, p, in)
			if again := decide(t, p, in); again.LogStartOffset != d.LogStartOffset {
				t.Fatalf("case %d (seed %d): same input, answers %d then %d", i, seed, d.LogStartOffset, again.LogStartOffset)
			}
			if want := RetentionModel(in); d.LogStartOffset != want {
				t.Fatalf("case %d (seed %d): log start = %d, model %d\ninput %+v\nreason %q", i, seed, d.LogStartOffset, want, in, d.Reason)
			}
		}
	})
}

func decide(t *testing.T, p plugins.RetentionPolicy, in plugins.RetentionInput) plugins.RetentionDecision {
	t.Helper()
	d, err := p.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	v, err := plugins.Validate(in, d)
	if err != nil {
		t.Fatalf("decision %+v refused by Validate: %v", d, err)
	}
	if v.RoundedDown && v.LogStartOffset != in.LogStartOffset {
		t.Fatalf("decision %d is not on a segment boundary", d.LogStartOffset)
	}
	if d.Reason == "" {
		t.Fatalf("decision %d without a reason", d.LogStartOffset)
	}
	return d
}

// RetentionModel is the dumb model of Kafka's retention: the largest k such
// that deleting the first k segments is allowed by time or by size, with every
// deleted offset below the high watermark and the active segment kept.
func RetentionModel(in plugins.RetentionInput) int64 {
	if !hasDelete(in.Config["cleanup.policy"]) {
		return in.LogStartOffset
	}
	rms := intOr(in.Config, "retention.ms", 7*24*3600*1000)
	rb := intOr(in.Config, "retention.bytes", -1)
	segs := in.Segments
	best := 0
	for k := 1; k < len(segs); k++ { // delete segs[0:k]; segs[k] exists so the active is kept
		if segs[k].BaseOffset > in.HighWatermark {
			continue
		}
		allOld := rms >= 0
		for j := 0; j < k; j++ {
			ts := segs[j].MaxTimestampMs
			if ts < 0 {
				ts = segs[j].CreatedMs
			}
			if !(in.NowMs-ts > rms) {
				allOld = false
			}
		}
		var kept int64
		for _, s := range segs[k:] {
			kept += s.SizeBytes
		}
		bigEnough := rb >= 0 && kept >= rb
		if allOld || bigEnough {
			best = k
		}
	}
	if best == 0 || segs[best].BaseOffset < in.LogStartOffset {
		return in.LogStartOffset
	}
	return segs[best].BaseOffset
}

func hasDelete(s string) bool {
	if s == "" {
		return true
	}
	for _, f := range splitComma(s) {
		if f == "delete" {
			return true
		}
	}
	return false
}

func splitComma(s string) []string {
	var out []string
	cur := ""
	for _, c := range s {
		switch c {
		case ',':
			out = append(out, cur)
			cur = ""
		case ' ':
		default:
			cur += string(c)
		}
	}
	return append(out, cur)
}

func intOr(cfg map[string]string, k string, def int64) int64 {
	if s, ok := cfg[k]; ok {
		v, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			return v
		}
	}
	return def
}

const nowMs = 1_700_000_000_000

// baseInput is five 100-byte segments of 10 offsets each, [0,50), segment i
// having max timestamp now - (5-i) hours, HW at the log end.
func baseInput(cfg map[string]string) plugins.RetentionInput {
	var segs []plugins.Segment
	for i := range int64(5) {
		segs = append(segs, plugins.Segment{
			BaseOffset: i * 10, LastOffset: i*10 + 9, SizeBytes: 100,
			MaxTimestampMs: nowMs - (5-i)*3600_000, CreatedMs: nowMs - (6-i)*3600_000,
			Active: i == 4,
		})
	}
	if cfg == nil {
		cfg = map[string]string{}
	}
	return plugins.RetentionInput{Topic: "t", Segments: segs, Config: cfg, NowMs: nowMs,
		HighWatermark: 50, LogStartOffset: 0, MinCommittedOffset: -1}
}

type retentionCase struct {
	name string
	in   plugins.RetentionInput
	want int64
}

func retentionTable() []retentionCase {
	with := func(cfg map[string]string, f func(*plugins.RetentionInput)) plugins.RetentionInput {
		in := baseInput(cfg)
		if f != nil {
			f(&in)
		}
		return in
	}
	h := int64(3600_000)
	return []retentionCase{
		{"DefaultsKeepRecent", with(nil, nil), 0},
		{"ForeverAndUnlimited", with(map[string]string{"retention.ms": "-1", "retention.bytes": "-1"}, nil), 0},
		{"TimeDropsOlderThan3h30", with(map[string]string{"retention.ms": strconv.FormatInt(3*h+h/2, 10)}, nil), 20},
		{"TimeExactlyAtLimitKept", with(map[string]string{"retention.ms": strconv.FormatInt(4*h, 10)}, nil), 10},
		{"TimeNeverActive", with(map[string]string{"retention.ms": "0"}, nil), 40},
		{"TimeOnlyPrefix", with(map[string]string{"retention.ms": strconv.FormatInt(2*h+h/2, 10)}, func(in *plugins.RetentionInput) {
			in.Segments[1].MaxTimestampMs = nowMs // a young segment stops the prefix
		}), 10},
		{"TimeStopsAtHighWatermark", with(map[string]string{"retention.ms": "0"}, func(in *plugins.RetentionInput) {
			in.HighWatermark = 25
		}), 20},
		{"SizeKeepsAtLeastLimit", with(map[string]string{"retention.bytes": "250"}, nil), 20},
		{"SizeExact", with(map[string]string{"retention.bytes": "300"}, nil), 20},
		{"SizeZeroKeepsActive", with(map[string]string{"retention.bytes": "0"}, nil), 40},
		{"TimeAndSizeTakeLarger", with(map[string]string{"retention.bytes": "350", "retention.ms": strconv.FormatInt(3*h+h/2, 10)}, nil), 20},
		{"SizeLargerThanTime", with(map[string]string{"retention.bytes": "100", "retention.ms": strconv.FormatInt(3*h+h/2, 10)}, nil), 40},
		{"CompactOnlyKeepsAll", with(map[string]string{"cleanup.policy": "compact", "retention.ms": "0", "retention.bytes": "0"}, nil), 0},
		{"CompactDeleteDeletes", with(map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "0"}, nil), 40},
		{"MidSegmentStartKept", with(map[string]string{"retention.ms": strconv.FormatInt(3*h+h/2, 10)}, func(in *plugins.RetentionInput) {
			in.LogStartOffset = 25 // after DeleteRecords: deciding 20 would move backwards
		}), 25},
		{"EmptyActiveSegment", with(map[string]string{"retention.ms": "0"}, func(in *plugins.RetentionInput) {
			in.Segments[4].LastOffset = 39
			in.Segments[4].SizeBytes = 0
			in.Segments[4].MaxTimestampMs = -1
			in.HighWatermark = 40
		}), 40},
	}
}

// RandomRetentionInput builds a well-formed random partition and config.
func RandomRetentionInput(r *rand.Rand) plugins.RetentionInput {
	n := 1 + r.IntN(8)
	var segs []plugins.Segment
	next := int64(r.IntN(1000))
	for i := range n {
		count := int64(r.IntN(20)) // 0 = empty segment
		if i < n-1 && count == 0 {
			count = 1
		}
		s := plugins.Segment{BaseOffset: next, LastOffset: next + count - 1, SizeBytes: count * int64(1+r.IntN(100)),
			MaxTimestampMs: nowMs - int64(r.IntN(10_000)), CreatedMs: nowMs - 20_000, Active: i == n-1}
		if count == 0 || r.IntN(10) == 0 {
			s.MaxTimestampMs = -1 // empty, or no timestamp known: CreatedMs counts
			s.CreatedMs = nowMs - int64(r.IntN(10_000))
		}
		segs = append(segs, s)
		next += count + int64(r.IntN(3)) // gaps, as after compaction
	}
	leo := plugins.LogEndOffset(segs)
	first := segs[0].BaseOffset
	lso := first + r.Int64N(leo-first+1)
	if r.IntN(2) == 0 {
		lso = first
	}
	hw := lso + r.Int64N(leo-lso+1)
	if r.IntN(2) == 0 {
		hw = leo
	}
	cfg := map[string]string{}
	switch r.IntN(4) {
	case 0:
		cfg["retention.ms"] = "-1"
	case 1:
		cfg["retention.ms"] = strconv.Itoa(r.IntN(11_000))
	}
	switch r.IntN(3) {
	case 0:
		cfg["retention.bytes"] = "-1"
	case 1:
		cfg["retention.bytes"] = strconv.Itoa(r.IntN(5000))
	}
	cfg["cleanup.policy"] = []string{"delete", "compact", "compact,delete", "delete,compact", ""}[r.IntN(5)]
	return plugins.RetentionInput{Topic: "r", Segments: segs, Config: cfg, NowMs: nowMs,
		HighWatermark: hw, LogStartOffset: lso, MinCommittedOffset: -1}
}

// RunCompaction checks a compaction policy against keep-latest-per-key with
// tombstone expiry (delete.retention.ms) and min.compaction.lag.ms.
func RunCompaction(t *testing.T, newPolicy func(t *testing.T) plugins.CompactionPolicy) {
	t.Run("Table", func(t *testing.T) {
		k := func(s string) []byte { return []byte(s) }
		cfg := map[string]string{"delete.retention.ms": "1000", "min.compaction.lag.ms": "100"}
		recs := []plugins.Record{
			{Offset: 0, Key: k("a"), TimestampMs: nowMs - 5000},
			{Offset: 1, Key: k("b"), TimestampMs: nowMs - 5000},
			{Offset: 2, Key: k("a"), TimestampMs: nowMs - 4000},                  // latest a
			{Offset: 3, Key: k("b"), TimestampMs: nowMs - 3000, Tombstone: true}, // expired tombstone
			{Offset: 4, Key: k("c"), TimestampMs: nowMs - 900, Tombstone: true},  // live tombstone
			{Offset: 5, Key: nil, TimestampMs: nowMs - 9000},                     // no key: kept
			{Offset: 6, Key: k("d"), TimestampMs: nowMs - 50},                    // young
			{Offset: 7, Key: k("d"), TimestampMs: nowMs - 10},                    // young, latest
			{Offset: 8, Key: k("e"), TimestampMs: nowMs - 1000, Tombstone: true}, // exactly delete.retention.ms old: kept
			{Offset: 9, Key: k("f"), TimestampMs: nowMs - 100},                   // exactly the lag old: compactable
			{Offset: 10, Key: k("f"), TimestampMs: nowMs - 100},
		}
		got := compact(t, newPolicy(t), cfg, [][]plugins.Record{recs[:3], recs[3:5], recs[5:]})
		want := []int64{2, 4, 5, 6, 7, 8, 10}
		if !slices.Equal(got, want) {
			t.Fatalf("survivors %v, want %v", got, want)
		}
		if m := CompactionModel(cfg, nowMs, recs); !slices.Equal(m, want) {
			t.Fatalf("model %v, table %v", m, want)
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		for _, cfg := range []map[string]string{{"delete.retention.ms": "x"}, {"min.compaction.lag.ms": "-1"}} {
			if _, err := newPolicy(t).Begin(context.Background(), plugins.CompactionParams{Config: cfg, NowMs: nowMs}); err == nil {
				t.Errorf("config %v accepted", cfg)
			}
		}
	})
	t.Run("Random", func(t *testing.T) {
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		r := rand.New(rand.NewPCG(seed, 7))
		for i := range RandomCases {
			cfg := map[string]string{}
			if r.IntN(4) > 0 {
				cfg["delete.retention.ms"] = strconv.Itoa(r.IntN(2000))
			}
			if r.IntN(3) > 0 {
				cfg["min.compaction.lag.ms"] = strconv.Itoa(r.IntN(2000))
			}
			recs := RandomRecords(r, 1+r.IntN(200))
			var batches [][]plugins.Record
			for rest := recs; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(40))
				batches, rest = append(batches, rest[:n]), rest[n:]
			}
			got := compact(t, newPolicy(t), cfg, batches)
			if want := CompactionModel(cfg, nowMs, recs); !slices.Equal(got, want) {
				t.Fatalf("case %d (seed %d) cfg %v: survivors %v, model %v", i, seed, cfg, got, want)
			}
		}
	})
}

// compact runs one pass (Scan every batch, then Survivors per batch) and
// returns all survivors, ascending, after ValidateSurvivors.
func compact(t *testing.T, p plugins.CompactionPolicy, cfg map[string]string, batches [][]plugins.Record) []int64 {
	t.Helper()
	ctx := context.Background()
	pass, err := p.Begin(ctx, plugins.CompactionParams{Topic: "c", Config: cfg, NowMs: nowMs})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	defer func() {
		if err := pass.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	for _, b := range batches {
		if err := pass.Scan(ctx, b); err != nil {
			t.Fatalf("Scan: %v", err)
		}
	}
	var all []int64
	for _, b := range batches {
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

// RandomRecords returns n records at ascending offsets (with gaps) over a
// small key space, some without key, some tombstones, timestamps within the
// last 3 s.
func RandomRecords(r *rand.Rand, n int) []plugins.Record {
	out := make([]plugins.Record, 0, n)
	off := int64(r.IntN(100))
	keys := 1 + r.IntN(12)
	for range n {
		rec := plugins.Record{Offset: off, TimestampMs: nowMs - int64(r.IntN(3000)), Tombstone: r.IntN(5) == 0}
		if r.IntN(20) > 0 {
			rec.Key = []byte("k" + strconv.Itoa(r.IntN(keys)))
		}
		if r.IntN(4) == 0 {
			rec.Headers = []plugins.Header{{Key: "h", Value: []byte("v")}}
		}
		out = append(out, rec)
		off += 1 + int64(r.IntN(2))
	}
	return out
}

// CompactionModel is the dumb model: the last record per key, minus
// tombstones older than delete.retention.ms, plus every record younger than
// min.compaction.lag.ms, plus records without a key. Ascending offsets.
func CompactionModel(cfg map[string]string, now int64, recs []plugins.Record) []int64 {
	del := intOr(cfg, "delete.retention.ms", 24*3600*1000)
	lag := intOr(cfg, "min.compaction.lag.ms", 0)
	var out []int64
	for i, r := range recs {
		last := true
		for _, later := range recs[i+1:] {
			if r.Key != nil && later.Key != nil && string(later.Key) == string(r.Key) {
				last = false
			}
		}
		switch {
		case r.Key == nil, now-r.TimestampMs < lag:
			out = append(out, r.Offset)
		case last && !(r.Tombstone && now-r.TimestampMs > del):
			out = append(out, r.Offset)
		}
	}
	return out
}
