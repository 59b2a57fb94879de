// Command hang is a fault plugin for tests/plugins: every Decide and every
// compaction Scan blocks for an hour, ignoring its context, so only the
// broker's per-call time-out ends it.
package main

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Options{Retention: hang{}, Compaction: hang{}})
}

type hang struct{}

func (hang) Info() plugins.Info { return plugins.Info{Name: "hang"} }

func (hang) Decide(context.Context, plugins.RetentionInput) (plugins.RetentionDecision, error) {
	time.Sleep(time.Hour)
	return plugins.RetentionDecision{}, nil
}

func (hang) Begin(context.Context, plugins.CompactionParams) (plugins.CompactionPass, error) {
	return hang{}, nil
}

func (hang) Scan(context.Context, []plugins.Record) error {
	time.Sleep(time.Hour)
	return nil
}

func (hang) Survivors(context.Context, []plugins.Record) ([]int64, error) {
	time.Sleep(time.Hour)
	return nil, nil
}

func (hang) Close() error { return nil }
