// Command garbage is a fault plugin for tests/plugins: it answers promptly
// and without error, but nonsense. Retention answers a log start offset the
// broker must refuse, chosen by the topic config brokkr.plugin.garbage.mode:
// "beyond" (default: far past the log end), "active" (inside the active
// segment), "negative". Compaction names survivors that are not in the
// batch, each twice. Were the broker to clamp instead of refuse, retention
// would delete every closed segment and compaction every record.
package main

import (
	"context"
	"fmt"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Options{Retention: garbage{}, Compaction: garbage{}})
}

type garbage struct{}

func (garbage) Info() plugins.Info { return plugins.Info{Name: "garbage"} }

func (garbage) Decide(_ context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	active := in.Segments[len(in.Segments)-1]
	var off int64
	switch mode := in.Config["brokkr.plugin.garbage.mode"]; mode {
	case "", "beyond":
		off = plugins.LogEndOffset(in.Segments) + 1_000_000
	case "active":
		off = active.BaseOffset + 1
	case "negative":
		off = -5
	default:
		return plugins.RetentionDecision{}, fmt.Errorf("brokkr.plugin.garbage.mode: unknown mode %q", mode)
	}
	return plugins.RetentionDecision{LogStartOffset: off, Reason: fmt.Sprintf("garbage: %d", off)}, nil
}

func (garbage) Begin(context.Context, plugins.CompactionParams) (plugins.CompactionPass, error) {
	return garbage{}, nil
}

func (garbage) Scan(context.Context, []plugins.Record) error { return nil }

func (garbage) Survivors(_ context.Context, batch []plugins.Record) ([]int64, error) {
	out := make([]int64, 0, 2*len(batch))
	for _, r := range batch {
		out = append(out, r.Offset+1_000_000_000, r.Offset+1_000_000_000)
	}
	return out, nil
}

func (garbage) Close() error { return nil }
