package etcd

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"go.uber.org/zap"
)

type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
	lvl  slog.Level
}

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.lvl }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// etcd's zap logs reach the slog.Logger with their fields; info becomes
// debug (etcd is chatty at info), warnings stay warnings; nil discards.
func TestZapToSlog(t *testing.T) {
	h := &captureHandler{lvl: slog.LevelWarn}
	z := zapToSlog(slog.New(h), "etcd-server").With(zap.String("member", "m0"))
	z.Info("raft step", zap.Int("term", 3))
	z.Warn("slow fdatasync", zap.Duration("took", 1500_000_000))
	if len(h.recs) != 1 {
		t.Fatalf("%d records at warn level, want 1 (info is debug)", len(h.recs))
	}
	r := h.recs[0]
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if r.Level != slog.LevelWarn || r.Message != "slow fdatasync" || attrs["member"] != "m0" || attrs["took"] == "" {
		t.Fatalf("got %v %q %v", r.Level, r.Message, attrs)
	}
	h.lvl = slog.LevelDebug
	z.Info("raft step", zap.Int("term", 3))
	if len(h.recs) != 2 || h.recs[1].Level != slog.LevelDebug {
		t.Fatalf("info not delivered as debug: %d records", len(h.recs))
	}
	zapToSlog(nil, "x").Error("dropped") // must not panic or print
}
