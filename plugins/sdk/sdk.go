// Package sdk is what a Brokkr policy plugin imports. A plugin is a small Go
// program whose main calls Serve with a retention policy, a compaction
// policy, or both (the plugins.RetentionPolicy and plugins.CompactionPolicy
// interfaces); the broker starts it as a child process from
// brokkr.plugin.dir and talks to it over gRPC (hashicorp/go-plugin). See
// README.md in this directory for writing, building, installing and
// configuring a plugin, and for the contract.
//
//	func main() {
//		sdk.Serve(sdk.Options{Compaction: &keepLatestN{}})
//	}
package sdk

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
)

// Options names the policies a plugin serves; at least one must be set.
type Options struct {
	Retention  plugins.RetentionPolicy
	Compaction plugins.CompactionPolicy
}

// ProtocolVersion is the plugin protocol version this SDK speaks; a broker
// speaking another version refuses the plugin at start.
const ProtocolVersion = pluginpb.ProtocolVersion

// Serve serves the policies to the broker and blocks until the broker stops
// the plugin. Call it from main. Run by hand (not by the broker), the binary
// prints a short message and exits with status 1.
//
// The plugin exits by itself within about a second when the broker process
// that started it dies.
//
// Log to stderr: the broker forwards each line to its own log (hclog's JSON
// lines keep their level; other lines arrive at debug level). Never write
// to stdout: go-plugin uses it for the handshake.
func Serve(o Options) {
	set := plugin.PluginSet{}
	if o.Retention != nil {
		set[pluginpb.NameRetention] = &pluginpb.Plugin{Kind: pluginpb.NameRetention, Retention: o.Retention}
	}
	if o.Compaction != nil {
		set[pluginpb.NameCompaction] = &pluginpb.Plugin{Kind: pluginpb.NameCompaction, Compaction: o.Compaction}
	}
	if len(set) == 0 {
		fmt.Fprintln(os.Stderr, "brokkr plugin: sdk.Serve needs a Retention or a Compaction policy")
		os.Exit(1)
	}
	go exitWithParent(os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         set,
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, pluginpb.GRPCServerOptions()...)...)
		},
	})
}

// exitWithParent ends the plugin when the broker that started it is gone
// (killed with -9, say): the plugin is then re-parented, and nothing would
// ever stop it.
func exitWithParent(ppid int) {
	for {
		time.Sleep(time.Second)
		if os.Getppid() != ppid {
			fmt.Fprintln(os.Stderr, "brokkr plugin: the broker is gone; exiting")
			os.Exit(2)
		}
	}
}
