package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/policytest"
)

const now = 1_700_000_000_000

// base is five 100-byte segments of 10 offsets each, [0,50); segment i's
// newest record is (5-i) hours old; the high watermark is the log end; no
// committed offset known.
func base(cfg map[string]string, f func(in *plugins.RetentionInput)) plugins.RetentionInput {
	var segs []plugins.Segment
	for i := range int64(5) {
		segs = append(segs, plugins.Segment{BaseOffset: i * 10, LastOffset: i*10 + 9, SizeBytes: 100,
			MaxTimestampMs: now - (5-i)*3600_000, CreatedMs: now - (6-i)*3600_000, Active: i == 4})
	}
	if cfg == nil {
		cfg = map[string]string{}
	}
	in := plugins.RetentionInput{Topic: "t", Segments: segs, Config: cfg, NowMs: now,
		HighWatermark: 50, MinCommittedOffset: -1}
	if f != nil {
		f(&in)
	}
	return in
}

func committed(c int64) func(*plugins.RetentionInput) {
	return func(in *plugins.RetentionInput) { in.MinCommittedOffset = c }
}

func decide(t *testing.T, in plugins.RetentionInput) plugins.RetentionDecision {
	t.Helper()
	d, err := Policy{}.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	v, err := plugins.Validate(in, d)
	if err != nil {
		t.Fatalf("decision %+v refused: %v", d, err)
	}
	if v.RoundedDown && v.LogStartOffset != in.LogStartOffset {
		t.Fatalf("decision %d is not on a segment boundary", d.LogStartOffset)
	}
	if d.Reason == "" {
		t.Fatalf("decision %d has no reason", d.LogStartOffset)
	}
	return d
}

func TestDecideTable(t *testing.T) {
	h := int64(3600_000)
	age := func(ms int64) map[string]string { return map[string]string{MaxAgeKey: strconv.FormatInt(ms, 10)} }
	for _, c := range []struct {
		name   string
		in     plugins.RetentionInput
		want   int64
		reason string // a substring the reason must hold
	}{
		{"UnknownCommitKeepsAll", base(nil, nil), 0, "no committed offset known"},
		{"UnknownCommitAgeStillApplies", base(age(3*h+h/2), nil), 20, "older than " + MaxAgeKey},
		{"CommitMidSegmentKeepsThatSegment", base(nil, committed(25)), 20, "below the lowest committed offset 25"},
		{"CommitOnBoundary", base(nil, committed(30)), 30, "3 segment(s) wholly below"},
		{"CommitAtLastOffsetKeepsSegment", base(nil, committed(29)), 20, "2 segment(s) wholly below"},
		{"CommitZeroKeepsAll", base(nil, committed(0)), 0, "holds offsets at or above the lowest committed offset 0"},
		{"CommitEverythingKeepsActive", base(nil, committed(50)), 40, "4 segment(s)"},
		{"CommitNeverAboveHighWatermark", base(nil, func(in *plugins.RetentionInput) {
			in.MinCommittedOffset = 50
			in.HighWatermark = 25
		}), 20, "below 20"},
		{"AgeBeatsCommit", base(age(2*h+h/2), committed(5)), 30, "older than"},
		{"CommitBeatsAge", base(age(4*h+h/2), committed(40)), 40, "wholly below"},
		{"AgeExactlyAtLimitKept", base(age(4*h), nil), 10, "1 segment(s) older"},
		{"AgeOnlyPrefix", base(age(2*h+h/2), func(in *plugins.RetentionInput) {
			in.Segments[1].MaxTimestampMs = now // a young segment stops the age prefix
		}), 10, "older than"},
		{"AgeZeroNeverActive", base(age(0), nil), 40, "4 segment(s) older"},
		{"NoCapMeansCommitOnly", base(map[string]string{MaxAgeKey: "-1", "retention.ms": "0"}, committed(15)), 10, "wholly below"},
		{"DefaultCapIsRetentionMs", base(map[string]string{"retention.ms": strconv.FormatInt(3*h+h/2, 10)}, nil), 20, "older than retention.ms="},
		{"SettingBeatsRetentionMs", base(map[string]string{"retention.ms": "0", MaxAgeKey: strconv.FormatInt(10*h, 10)}, nil), 0, "within " + MaxAgeKey},
		{"SevenDayDefault", base(nil, func(in *plugins.RetentionInput) {
			in.NowMs += 7 * 24 * h
		}), 40, "older than default retention.ms=604800000"},
		{"CompactOnlyKeepsAll", base(map[string]string{"cleanup.policy": "compact", MaxAgeKey: "0"}, committed(50)), 0, "no delete"},
		{"CompactDeleteDeletes", base(map[string]string{"cleanup.policy": "compact,delete"}, committed(50)), 40, "wholly below"},
		{"MidSegmentLogStartNeverBackwards", base(nil, func(in *plugins.RetentionInput) {
			in.LogStartOffset = 25
			in.MinCommittedOffset = 28
		}), 25, "below the log start offset 25"},
		{"EmptySegmentsDoNotStopCommit", base(nil, func(in *plugins.RetentionInput) {
			// Segment 2 is empty (after compaction): [20, 19], and segment 3 starts at 30.
			in.Segments[2].LastOffset = 19
			in.Segments[2].SizeBytes = 0
			in.MinCommittedOffset = 30
		}), 30, "3 segment(s)"},
		{"OnlyActiveSegment", plugins.RetentionInput{Segments: []plugins.Segment{{BaseOffset: 0, LastOffset: 9, Active: true, MaxTimestampMs: 0}},
			Config: map[string]string{MaxAgeKey: "0"}, NowMs: now, HighWatermark: 10, MinCommittedOffset: 10}, 0, "only the active segment"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := decide(t, c.in)
			if d.LogStartOffset != c.want {
				t.Fatalf("log start = %d, want %d (reason %q)", d.LogStartOffset, c.want, d.Reason)
			}
			if m := model(t, c.in); m != c.want {
				t.Fatalf("model says %d, table %d: fix one", m, c.want)
			}
			if !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("reason %q does not say %q", d.Reason, c.reason)
			}
		})
	}
}

func TestBadSettings(t *testing.T) {
	for _, cfg := range []map[string]string{
		{MaxAgeKey: "a week"},
		{MaxAgeKey: "-2"},
		{"retention.ms": "soon"},
		{"cleanup.policy": "shred"},
	} {
		if d, err := (Policy{}).Decide(context.Background(), base(cfg, committed(50))); err == nil {
			t.Errorf("config %v: no error, decision %+v", cfg, d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Policy{}).Decide(ctx, base(nil, committed(50))); err == nil {
		t.Error("cancelled context: no error")
	}
	in := base(nil, committed(50))
	in.Segments[4].Active = false
	if _, err := (Policy{}).Decide(context.Background(), in); err == nil {
		t.Error("input without an active segment: no error")
	}
}

// model is the dumb version of the rule: the largest k such that deleting the
// first k segments is allowed, either because every one of them lies wholly
// below the lowest committed offset or because every one is older than the
// age cap; the active segment stays and no offset at or above the high
// watermark goes; never backwards.
func model(t *testing.T, in plugins.RetentionInput) int64 {
	s, err := ParseSettings(in.Config)
	if err != nil {
		t.Fatal(err)
	}
	segs := in.Segments
	best := 0
	for k := 1; s.Delete && k < len(segs); k++ {
		if segs[k].BaseOffset > in.HighWatermark {
			continue
		}
		allCommitted, allOld := in.MinCommittedOffset >= 0, s.MaxAgeMs >= 0
		for _, g := range segs[:k] {
			for o := g.BaseOffset; o <= g.LastOffset; o++ {
				if o >= in.MinCommittedOffset {
					allCommitted = false
				}
			}
			ts := g.MaxTimestampMs
			if ts < 0 {
				ts = g.CreatedMs
			}
			if in.NowMs-ts <= s.MaxAgeMs {
				allOld = false
			}
		}
		if allCommitted || allOld {
			best = k
		}
	}
	if best == 0 || segs[best].BaseOffset < in.LogStartOffset {
		return in.LogStartOffset
	}
	return segs[best].BaseOffset
}

// TestRandomAgainstModel: random partitions (gaps, empty segments, mid-segment
// log starts, high watermarks below the end), random committed offsets and
// caps; every answer equals the model and passes Validate.
func TestRandomAgainstModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	for i := range 2000 {
		in := policytest.RandomRetentionInput(r)
		delete(in.Config, "retention.bytes")
		switch r.IntN(3) {
		case 0:
			in.Config[MaxAgeKey] = strconv.Itoa(r.IntN(11_000))
		case 1:
			in.Config[MaxAgeKey] = "-1"
		}
		leo := plugins.LogEndOffset(in.Segments)
		switch r.IntN(4) {
		case 0:
			in.MinCommittedOffset = -1
		default:
			in.MinCommittedOffset = in.Segments[0].BaseOffset + r.Int64N(leo-in.Segments[0].BaseOffset+3)
		}
		d := decide(t, in)
		if want := model(t, in); d.LogStartOffset != want {
			t.Fatalf("case %d (seed %d): log start %d, model %d\ninput %+v\nreason %q", i, seed, d.LogStartOffset, want, in, d.Reason)
		}
	}
}

// TestNoCommitsIsKafkaTimeRetention: with no committed offset known and no
// setting, the policy is Kafka's time retention: it equals policytest's
// model of the built-in (retention.bytes left out) on random inputs.
func TestNoCommitsIsKafkaTimeRetention(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 13))
	for i := range policytest.RandomCases {
		in := policytest.RandomRetentionInput(r)
		delete(in.Config, "retention.bytes")
		d := decide(t, in)
		if want := policytest.RetentionModel(in); d.LogStartOffset != want {
			t.Fatalf("case %d (seed %d): log start %d, built-in model %d (input %+v)", i, seed, d.LogStartOffset, want, in)
		}
	}
}
