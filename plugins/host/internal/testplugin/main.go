// Command testplugin is the plugin binary of plugins/host's tests: it serves
// the built-in retention and compaction policies through plugins/sdk, and
// misbehaves on request. The topic config key brokkr.plugin.test.fault picks
// the misbehaviour for that one call (retention) or pass (compaction):
//
//	crash           os.Exit in the middle of Decide / Survivors
//	hang            never answer Decide / Survivors
//	crash-scan      os.Exit in the middle of Scan
//	hang-scan       never return from Scan
//	panic           panic inside Decide / Survivors
//	above-hw        Decide: a start offset above the high watermark
//	active          Decide: a start offset inside the active segment
//	unknown         Decide: an offset beyond the log end
//	foreign         Survivors: an offset not in the batch
//	twice           Survivors: an offset listed twice
//
// BROKKR_TESTPLUGIN_SERVES=retention|compaction serves only that kind;
// BROKKR_TESTPLUGIN_CPUPROFILE=<file> writes a CPU profile (benchmarks);
// BROKKR_TESTPLUGIN_PROTOCOL=2 speaks protocol version 2.
//
// It is built into a temporary directory by the tests; it is not a product.
package main

import (
	"context"
	"os"
	"runtime/pprof"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
	"github.com/brokkr/brokkr/plugins/sdk"
)

// FaultKey is the config key naming the misbehaviour.
const FaultKey = "brokkr.plugin.test.fault"

func misbehave(fault string) {
	switch fault {
	case "crash":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	case "panic":
		panic("testplugin: asked to panic")
	}
}

type retention struct{ b *builtin.Retention }

func (r retention) Info() plugins.Info { return plugins.Info{Name: "testplugin"} }

func (r retention) Decide(ctx context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	f := in.Config[FaultKey]
	misbehave(f)
	switch f {
	case "above-hw":
		return plugins.RetentionDecision{LogStartOffset: in.HighWatermark + 1, Reason: "garbage"}, nil
	case "active":
		a := in.Segments[len(in.Segments)-1]
		return plugins.RetentionDecision{LogStartOffset: a.BaseOffset + 1, Reason: "garbage"}, nil
	case "unknown":
		return plugins.RetentionDecision{LogStartOffset: plugins.LogEndOffset(in.Segments) + 1000, Reason: "garbage"}, nil
	}
	return r.b.Decide(ctx, in)
}

type compaction struct{ b *builtin.Compaction }

func (c compaction) Info() plugins.Info { return plugins.Info{Name: "testplugin"} }

func (c compaction) Begin(ctx context.Context, p plugins.CompactionParams) (plugins.CompactionPass, error) {
	pass, err := c.b.Begin(ctx, p)
	if err != nil {
		return nil, err
	}
	return &faultyPass{CompactionPass: pass, fault: p.Config[FaultKey]}, nil
}

type faultyPass struct {
	plugins.CompactionPass
	fault string
}

func (f *faultyPass) Scan(ctx context.Context, batch []plugins.Record) error {
	switch f.fault {
	case "crash-scan":
		misbehave("crash")
	case "hang-scan":
		misbehave("hang")
	}
	return f.CompactionPass.Scan(ctx, batch)
}

func (f *faultyPass) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	misbehave(f.fault)
	s, err := f.CompactionPass.Survivors(ctx, batch)
	switch f.fault {
	case "foreign":
		s = append(s, batch[len(batch)-1].Offset+1)
	case "twice":
		if len(s) > 0 {
			s = append(s, s[0])
		}
	}
	return s, err
}

func main() {
	o := sdk.Options{Retention: retention{builtin.NewRetention()}, Compaction: compaction{builtin.NewCompaction()}}
	switch os.Getenv("BROKKR_TESTPLUGIN_SERVES") { // inherited from the host's environment
	case "retention":
		o.Compaction = nil
	case "compaction":
		o.Retention = nil
	}
	if path := os.Getenv("BROKKR_TESTPLUGIN_CPUPROFILE"); path != "" { // for benchmarks
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	if os.Getenv("BROKKR_TESTPLUGIN_PROTOCOL") == "2" { // a plugin of a future protocol
		hs := pluginpb.Handshake
		hs.ProtocolVersion = 2
		plugin.Serve(&plugin.ServeConfig{HandshakeConfig: hs, Plugins: plugin.PluginSet{
			pluginpb.NameRetention: &pluginpb.Plugin{Kind: pluginpb.NameRetention, Retention: o.Retention}}})
		return
	}
	sdk.Serve(o)
}
