package plugins_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/policytest"
)

// input: segments [0,10) [10,20) [20,30) [30,40) active [40,45), HW 35, LSO 0.
func input() plugins.RetentionInput {
	segs := []plugins.Segment{
		{BaseOffset: 0, LastOffset: 9, SizeBytes: 10},
		{BaseOffset: 10, LastOffset: 19, SizeBytes: 10},
		{BaseOffset: 20, LastOffset: 29, SizeBytes: 10},
		{BaseOffset: 30, LastOffset: 39, SizeBytes: 10},
		{BaseOffset: 40, LastOffset: 44, SizeBytes: 5, Active: true},
	}
	return plugins.RetentionInput{Segments: segs, HighWatermark: 35, LogStartOffset: 0, MinCommittedOffset: -1}
}

func TestValidateRefusesHostileDecisions(t *testing.T) {
	hwAtEnd := input()
	hwAtEnd.HighWatermark = 45
	started := input()
	started.LogStartOffset = 15
	for _, c := range []struct {
		name string
		in   plugins.RetentionInput
		off  int64
	}{
		{"Negative", input(), -1},
		{"VeryNegative", input(), -1 << 62},
		{"AboveHighWatermark", input(), 36},
		{"AboveHighWatermarkOnBoundary", input(), 40},
		{"IntoActiveSegment", hwAtEnd, 41},
		{"AtLogEndPastActiveBase", hwAtEnd, 45},
		{"BeyondLogEnd", hwAtEnd, 46},
		{"Huge", hwAtEnd, 1 << 62},
		{"BelowLogStart", started, 10},
		{"BelowLogStartToZero", started, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := plugins.Validate(c.in, plugins.RetentionDecision{LogStartOffset: c.off})
			if !errors.Is(err, plugins.ErrRefused) {
				t.Fatalf("decision %d: err = %v, want ErrRefused", c.off, err)
			}
			if len(v.Delete) != 0 || v.LogStartOffset != 0 {
				t.Fatalf("refused decision still yields %+v", v)
			}
		})
	}
}

func TestValidateRoundsDownMidSegment(t *testing.T) {
	for _, c := range []struct {
		name       string
		in         plugins.RetentionInput
		off, want  int64
		deleted    int
		roundedown bool
	}{
		{"OnBoundary", input(), 20, 20, 2, false},
		{"MidSegment", input(), 25, 20, 2, true},
		{"AtHighWatermarkMidSegment", input(), 35, 30, 3, true},
		{"InFirstSegment", input(), 5, 0, 0, true},
		{"NoChange", input(), 0, 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := plugins.Validate(c.in, plugins.RetentionDecision{LogStartOffset: c.off})
			if err != nil {
				t.Fatal(err)
			}
			if v.LogStartOffset != c.want || len(v.Delete) != c.deleted || v.RoundedDown != c.roundedown {
				t.Fatalf("decision %d: verdict %+v, want start %d, %d deleted, rounded %v", c.off, v, c.want, c.deleted, c.roundedown)
			}
		})
	}
	// A current start mid-segment: a rounded-down answer at or below it deletes nothing.
	in := input()
	in.LogStartOffset = 25
	v, err := plugins.Validate(in, plugins.RetentionDecision{LogStartOffset: 27})
	if err != nil || v.LogStartOffset != 25 || len(v.Delete) != 0 {
		t.Fatalf("mid-segment start 25, decision 27: %+v %v, want start 25 and nothing deleted", v, err)
	}
}

func TestValidateRefusesMalformedInput(t *testing.T) {
	bad := []func(*plugins.RetentionInput){
		func(in *plugins.RetentionInput) { in.Segments = nil },
		func(in *plugins.RetentionInput) { in.Segments[4].Active = false },
		func(in *plugins.RetentionInput) { in.Segments[1].Active = true },
		func(in *plugins.RetentionInput) { in.Segments[2].BaseOffset = 15 }, // overlaps
		func(in *plugins.RetentionInput) { in.HighWatermark = 46 },
		func(in *plugins.RetentionInput) { in.LogStartOffset = 36 }, // above HW
		func(in *plugins.RetentionInput) { in.Segments[0].SizeBytes = -1 },
	}
	for i, f := range bad {
		in := input()
		f(&in)
		if _, err := plugins.Validate(in, plugins.RetentionDecision{LogStartOffset: in.LogStartOffset}); !errors.Is(err, plugins.ErrInvalidInput) {
			t.Errorf("case %d: err = %v, want ErrInvalidInput", i, err)
		}
	}
}

// checkVerdict asserts what the host relies on for any accepted verdict.
func checkVerdict(t *testing.T, in plugins.RetentionInput, off int64, v plugins.Verdict) {
	t.Helper()
	if v.LogStartOffset < in.LogStartOffset || v.LogStartOffset > in.HighWatermark && v.LogStartOffset != in.LogStartOffset {
		t.Fatalf("decision %d: verdict start %d outside [%d, HW %d]", off, v.LogStartOffset, in.LogStartOffset, in.HighWatermark)
	}
	if v.LogStartOffset > off {
		t.Fatalf("decision %d: verdict start %d is above the decision", off, v.LogStartOffset)
	}
	for _, s := range v.Delete {
		if s.Active || s.LastOffset >= in.HighWatermark || s.LastOffset >= v.LogStartOffset {
			t.Fatalf("decision %d: deletes %+v (HW %d, new start %d)", off, s, in.HighWatermark, v.LogStartOffset)
		}
	}
}

func TestValidateRandomDecisions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		in := policytest.RandomRetentionInput(r)
		off := r.Int64N(plugins.LogEndOffset(in.Segments)+10) - 5
		v, err := plugins.Validate(in, plugins.RetentionDecision{LogStartOffset: off})
		if err != nil {
			if !errors.Is(err, plugins.ErrRefused) {
				t.Fatalf("well-formed input refused as %v", err)
			}
			continue
		}
		checkVerdict(t, in, off, v)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(uint64(1), int64(20))
	f.Add(uint64(2), int64(-1))
	f.Add(uint64(3), int64(1<<40))
	f.Fuzz(func(t *testing.T, seed uint64, off int64) {
		in := policytest.RandomRetentionInput(rand.New(rand.NewPCG(seed, 0)))
		v, err := plugins.Validate(in, plugins.RetentionDecision{LogStartOffset: off})
		if err != nil {
			if len(v.Delete) != 0 {
				t.Fatalf("error %v with deletions %+v", err, v.Delete)
			}
			return
		}
		checkVerdict(t, in, off, v)
	})
}

func TestValidateSurvivors(t *testing.T) {
	batch := []plugins.Record{{Offset: 3}, {Offset: 5}, {Offset: 9}}
	got, err := plugins.ValidateSurvivors(batch, []int64{9, 3})
	if err != nil || len(got) != 2 || got[0] != 3 || got[1] != 9 {
		t.Fatalf("got %v %v, want [3 9]", got, err)
	}
	for _, s := range [][]int64{{4}, {3, 3}, {-1}, {10}} {
		if _, err := plugins.ValidateSurvivors(batch, s); !errors.Is(err, plugins.ErrRefused) {
			t.Errorf("survivors %v: err = %v, want ErrRefused", s, err)
		}
	}
}
