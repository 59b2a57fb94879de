// Command flaky is a fault plugin for tests/plugins that crashes on its
// first K calls and then works. The count survives the crashes in a file:
// topic configs brokkr.plugin.flaky.counter (the file's path) and
// brokkr.plugin.flaky.crashes (K). A call is a retention Decide or a
// compaction Begin.
//
// Once healthy, retention keeps only the active segment (as far as the
// high watermark allows), and compaction keeps the latest record per key
// (and every keyless record).
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Options{Retention: flaky{}, Compaction: flaky{}})
}

type flaky struct{}

func (flaky) Info() plugins.Info { return plugins.Info{Name: "flaky"} }

var mu sync.Mutex

// call counts one call in the counter file and exits the process while the
// count is at most K.
func call(cfg map[string]string) error {
	mu.Lock()
	defer mu.Unlock()
	path := cfg["brokkr.plugin.flaky.counter"]
	k, err := strconv.Atoi(cfg["brokkr.plugin.flaky.crashes"])
	if path == "" || err != nil {
		return fmt.Errorf("flaky: set brokkr.plugin.flaky.counter and brokkr.plugin.flaky.crashes")
	}
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	n++
	// Write and rename, so a reader never sees a half-written count.
	if err := os.WriteFile(path+".tmp", []byte(strconv.Itoa(n)), 0o644); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	if n <= k {
		fmt.Fprintf(os.Stderr, "flaky: call %d of %d crashing on purpose\n", n, k)
		os.Exit(3)
	}
	return nil
}

func (flaky) Decide(_ context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	if err := call(in.Config); err != nil {
		return plugins.RetentionDecision{}, err
	}
	// The last segment whose base is at or below the high watermark.
	off := in.LogStartOffset
	for _, s := range in.Segments {
		if s.BaseOffset <= in.HighWatermark && s.BaseOffset > off {
			off = s.BaseOffset
		}
	}
	return plugins.RetentionDecision{LogStartOffset: off, Reason: "flaky (healthy): keep only the active segment"}, nil
}

func (flaky) Begin(_ context.Context, p plugins.CompactionParams) (plugins.CompactionPass, error) {
	if err := call(p.Config); err != nil {
		return nil, err
	}
	return &latest{last: map[string]int64{}}, nil
}

// latest keeps the latest record per key.
type latest struct{ last map[string]int64 }

func (l *latest) Scan(_ context.Context, batch []plugins.Record) error {
	for _, r := range batch {
		if r.Key != nil {
			l.last[string(r.Key)] = max(l.last[string(r.Key)], r.Offset)
		}
	}
	return nil
}

func (l *latest) Survivors(_ context.Context, batch []plugins.Record) ([]int64, error) {
	var out []int64
	for _, r := range batch {
		if last, ok := l.last[string(r.Key)]; r.Key == nil || !ok || r.Offset >= last {
			out = append(out, r.Offset)
		}
	}
	return out, nil
}

func (l *latest) Close() error { return nil }
