package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/config"
	plog "github.com/brokkr/brokkr/core/log"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// policyFunc is a retention policy made of a function, to misbehave with.
type policyFunc func(plugins.RetentionInput) (plugins.RetentionDecision, error)

func (f policyFunc) Info() plugins.Info { return plugins.Info{Name: "test"} }
func (f policyFunc) Decide(_ context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	return f(in)
}

// retentionFixture is a broker with one partition of 20 two-hour-old
// 1 KiB records in 4 KiB segments (7 segments) and retention.ms of 1 hour.
func retentionFixture(t *testing.T, p plugins.RetentionPolicy) (*Broker, *plog.Log) {
	t.Helper()
	cfg := config.DefaultConfig()
	overrides := map[string]string{"segment.bytes": "4096", "retention.ms": "3600000"}
	tc, err := cfg.Topic(overrides)
	if err != nil {
		t.Fatal(err)
	}
	l, err := plog.Open(t.TempDir(), logConfig(tc), plog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := 0; i < 20; i++ {
		if _, err := l.Append(segmenttest.Batch(segmenttest.Spec{Records: 1, ValueSize: 1024, BaseTimestamp: old}), 0); err != nil {
			t.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	b := &Broker{Config: cfg, RetentionPolicy: p, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.parts = map[tp]*partition{{"t", 0}: {topic: "t", log: &logAdapter{l: l}, cfg: tc, overrides: overrides}}
	return b, l
}

func TestEnforceRetention(t *testing.T) {
	b, l := retentionFixture(t, builtin.NewRetention())
	segs := len(l.Segments())
	if segs < 3 {
		t.Fatalf("fixture has %d segments", segs)
	}
	if n := b.enforceRetention(context.Background(), time.Now()); n != segs-1 {
		t.Errorf("deleted %d segments, want all but the active one (%d)", n, segs-1)
	}
	if l.LogStartOffset() == 0 || len(l.Segments()) != 1 || l.LogEndOffset() != 20 {
		t.Errorf("after retention: start %d, %d segments, end %d", l.LogStartOffset(), len(l.Segments()), l.LogEndOffset())
	}
	if b.stats.RetentionSegmentsDeleted.Load() != int64(segs-1) {
		t.Errorf("counted %d deletions", b.stats.RetentionSegmentsDeleted.Load())
	}
}

// TestBrokenPolicyDeletesNothing: a policy that panics, fails, or answers
// beyond the high watermark or into the active segment deletes nothing,
// and each failure is counted.
func TestBrokenPolicyDeletesNothing(t *testing.T) {
	for name, p := range map[string]policyFunc{
		"panics": func(plugins.RetentionInput) (plugins.RetentionDecision, error) { panic("boom") },
		"fails": func(plugins.RetentionInput) (plugins.RetentionDecision, error) {
			return plugins.RetentionDecision{}, io.ErrUnexpectedEOF
		},
		"beyond the high watermark": func(in plugins.RetentionInput) (plugins.RetentionDecision, error) {
			return plugins.RetentionDecision{LogStartOffset: in.HighWatermark + 100}, nil
		},
		"into the active segment": func(in plugins.RetentionInput) (plugins.RetentionDecision, error) {
			return plugins.RetentionDecision{LogStartOffset: in.Segments[len(in.Segments)-1].LastOffset}, nil
		},
		"negative": func(plugins.RetentionInput) (plugins.RetentionDecision, error) {
			return plugins.RetentionDecision{LogStartOffset: -5}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, l := retentionFixture(t, p)
			before := len(l.Segments())
			if n := b.enforceRetention(context.Background(), time.Now()); n != 0 {
				t.Errorf("deleted %d segments", n)
			}
			if len(l.Segments()) != before || l.LogStartOffset() != 0 {
				t.Errorf("segments %d -> %d, start %d", before, len(l.Segments()), l.LogStartOffset())
			}
			if b.stats.RetentionFailures.Load() != 1 {
				t.Errorf("failures counted: %d", b.stats.RetentionFailures.Load())
			}
		})
	}
}
