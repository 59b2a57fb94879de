package log

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
)

// scanRecorder wraps the built-in compaction and records the offsets its
// passes' Scan sees; full says whether it asks for a full scan
// (plugins.FullScanner).
type scanRecorder struct {
	full    bool
	scanned []int64
}

func (r *scanRecorder) Info() plugins.Info { return plugins.Info{Name: "scan-recorder"} }
func (r *scanRecorder) FullScan() bool     { return r.full }
func (r *scanRecorder) Begin(ctx context.Context, p plugins.CompactionParams) (plugins.CompactionPass, error) {
	r.scanned = nil
	inner, err := builtin.NewCompaction().Begin(ctx, p)
	return &recordingPass{CompactionPass: inner, r: r}, err
}

type recordingPass struct {
	plugins.CompactionPass
	r *scanRecorder
}

func (p *recordingPass) Scan(ctx context.Context, batch []plugins.Record) error {
	for _, x := range batch {
		p.r.scanned = append(p.r.scanned, x.Offset)
	}
	return p.CompactionPass.Scan(ctx, batch)
}

// TestCleanFullScan: on a second clean, Scan sees only the dirty section
// (from the cleaner checkpoint) unless the policy is a FullScanner that
// asks for more, which then sees every cleanable record from the log start.
func TestCleanFullScan(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprint("full=", full), func(t *testing.T) {
			c := newClock()
			_, l := memLog(t, cleanerConfig(), c)
			p := &scanRecorder{full: full}
			fill := func(n int) {
				for i := 0; i < n; i++ {
					appendRecords(t, l, codec.None, []mrec{{Key: []byte(fmt.Sprint("k", i%7)), Val: bytes.Repeat([]byte("x"), 100), Ts: c.Now().UnixMilli()}})
				}
				l.SetHighWatermark(l.LogEndOffset())
			}
			fill(200)
			first, err := l.Clean(context.Background(), CleanOptions{Policy: p, NowMs: c.Now().UnixMilli()})
			if err != nil || first.CleanedTo == 0 {
				t.Fatalf("first clean: %+v %v", first, err)
			}
			if p.scanned[0] != 0 {
				t.Fatalf("first clean scanned from %d, want 0", p.scanned[0])
			}
			fill(200)
			second, err := l.Clean(context.Background(), CleanOptions{Policy: p, NowMs: c.Now().UnixMilli()})
			if err != nil || second.FirstDirty != first.CleanedTo || second.CleanedTo <= first.CleanedTo {
				t.Fatalf("second clean: %+v %v (first cleaned to %d)", second, err, first.CleanedTo)
			}
			// The dirty section starts at a segment base no clean has touched,
			// so its first record is at FirstDirty; the cleaned section below
			// it still holds records (the latest of each key).
			switch got := p.scanned[0]; {
			case !full && got != second.FirstDirty:
				t.Fatalf("second clean scanned from %d, want the dirty section's start %d", got, second.FirstDirty)
			case full && got >= second.FirstDirty:
				t.Fatalf("full scan: second clean scanned from %d, want below the dirty section (%d)", got, second.FirstDirty)
			}
			if last := p.scanned[len(p.scanned)-1]; last >= second.CleanedTo {
				t.Fatalf("Scan saw offset %d, at or past the cleanable end %d", last, second.CleanedTo)
			}
		})
	}
}
