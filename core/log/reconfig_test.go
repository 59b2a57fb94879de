package log

import (
	"errors"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// TestSetConfigTakesEffect: a raised max.message.bytes admits a batch the
// old limit refused, and a lowered segment.bytes rolls at the next append.
func TestSetConfigTakesEffect(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 1000
	l, err := Open(t.TempDir(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	big := segmenttest.Batch(segmenttest.Spec{Records: 4, ValueSize: 500})
	if _, err := l.Append(big, 0); !errors.Is(err, segment.ErrMessageTooLarge) {
		t.Fatalf("append above max.message.bytes: %v", err)
	}
	cfg.MaxMessageBytes = 1 << 20
	cfg.SegmentBytes = int64(len(big)) + 1
	if err := l.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if l.Config().MaxMessageBytes != 1<<20 {
		t.Fatalf("Config() = %+v", l.Config())
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Append(segmenttest.Batch(segmenttest.Spec{Records: 4, ValueSize: 500}), 0); err != nil {
			t.Fatalf("append %d after raising the limit: %v", i, err)
		}
	}
	if n := len(l.Segments()); n < 3 {
		t.Errorf("%d segments after lowering segment.bytes below two batches, want 3", n)
	}
	bad := cfg
	bad.SegmentBytes = 1
	if err := l.SetConfig(bad); err == nil {
		t.Error("an invalid config was applied")
	}
}
