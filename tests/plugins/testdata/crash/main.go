// Command crash is a fault plugin for tests/plugins: its retention policy
// panics in every Decide and its compaction policy exits in the middle of
// every pass (in Scan), so the process dies on every call the broker makes.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Options{Retention: crash{}, Compaction: crash{}})
}

type crash struct{}

func (crash) Info() plugins.Info { return plugins.Info{Name: "crash"} }

func (crash) Decide(context.Context, plugins.RetentionInput) (plugins.RetentionDecision, error) {
	panic("crash plugin: Decide crashes on purpose")
}

func (crash) Begin(context.Context, plugins.CompactionParams) (plugins.CompactionPass, error) {
	return crash{}, nil
}

func (crash) Scan(context.Context, []plugins.Record) error {
	fmt.Fprintln(os.Stderr, "crash plugin: exiting in Scan on purpose")
	os.Exit(3)
	return nil
}

func (crash) Survivors(_ context.Context, b []plugins.Record) ([]int64, error) {
	os.Exit(3)
	return nil, nil
}

func (crash) Close() error { return nil }
