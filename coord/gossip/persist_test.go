package gossip

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokkr/brokkr/coord"
)

// TestStateFileSurvivesRestart: a single node (the whole cluster) restarted
// with a StateFile keeps its records, its tombstones and its epochs.
func TestStateFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip-state.json")
	open := func() *Backend {
		cfg := TestConfig()
		cfg.Bootstrap = true
		cfg.StateFile = path
		cfg.Logger = testLogger(t)
		b, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	ctx := ctxT(t)
	b := open()
	v, err := b.Create(ctx, "/topics/orders", []byte("3 partitions"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/topics/gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "/topics/gone", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	l, err := b.Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	e1 := l.Epoch()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := open()
	r, err := b2.Get(ctx, "/topics/orders")
	if err != nil || string(r.Value) != "3 partitions" || r.Version != v {
		t.Fatalf("after restart Get = %+v, %v; want the record at version %d", r, err, v)
	}
	if _, err := b2.Get(ctx, "/topics/gone"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("a deleted record came back: %v", err)
	}
	if _, ok := stampOf(b2, "/topics/gone"); !ok {
		t.Fatalf("the tombstone was not kept")
	}
	l2, err := b2.Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Epoch() <= e1 {
		t.Fatalf("epoch after restart %d, want above %d", l2.Epoch(), e1)
	}
	_ = b2.Close()

	// A damaged file stops Open instead of starting empty.
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := TestConfig()
	cfg.Bootstrap = true
	cfg.StateFile = path
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with a damaged state file: %v", err)
	}
}
