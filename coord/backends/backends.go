// Package backends opens the coordination backend named by the broker's
// brokkr.coordination setting. It is the one place that imports every
// backend, so that cmd/brokkr (and programs embedding Brokkr) can pick one
// from config while core sees only the coord interface.
//
//	etcd-embedded                    an etcd member inside the broker (default), data in <DataDir>/__brokkr_etcd
//	etcd://host:port[,host:port...]  an external etcd cluster
//	zk://host:port[,host:port...][/chroot]  ZooKeeper (Kafka's zookeeper.connect)
//	gossip://seed:port[,seed:port...]       memberlist gossip, no consensus
package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/etcd"
	"github.com/brokkr/brokkr/coord/gossip"
	"github.com/brokkr/brokkr/coord/zk"
)

// Options are the broker settings a backend may need besides the spec.
// Zero values take each backend's defaults.
type Options struct {
	// DataDir is the broker's first log dir; the embedded etcd member keeps
	// its data in DataDir/__brokkr_etcd. Required for etcd-embedded.
	DataDir string
	// SessionTimeout is brokkr.coordination.session.timeout.ms: the etcd
	// lease TTL (default 3 s). ZooKeeper uses ZKSessionTimeout; gossip has
	// its own failure detector settings.
	SessionTimeout time.Duration
	// ZKSessionTimeout and ZKConnectionTimeout are Kafka's
	// zookeeper.session.timeout.ms and zookeeper.connection.timeout.ms.
	ZKSessionTimeout, ZKConnectionTimeout time.Duration
	// GossipBind is the "ip:port" a gossip node listens on (default
	// 0.0.0.0:7946). GossipBootstrap lets this node start a new gossip
	// cluster alone when no seed answers; it is also set when GossipBind
	// equals the first seed.
	GossipBind      string
	GossipBootstrap bool
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives the backend's metrics where it has any; nil: none.
	Metrics prometheus.Registerer
}

// Kind names the backend a spec selects.
func Kind(spec string) (string, error) {
	switch {
	case spec == "" || spec == "etcd-embedded":
		return "etcd-embedded", nil
	case strings.HasPrefix(spec, "etcd://"):
		return "etcd", nil
	case strings.HasPrefix(spec, "zk://"):
		return "zk", nil
	case strings.HasPrefix(spec, "gossip://"):
		return "gossip", nil
	}
	return "", fmt.Errorf("brokkr.coordination=%q: want etcd-embedded, etcd://host:port,..., zk://host:port,.../chroot or gossip://seed:port,...", spec)
}

// Open parses spec (the brokkr.coordination value) and opens that backend.
// A backend that cannot be reached gives an error wrapping
// coord.ErrUnavailable, whose text is one line fit for the broker to print
// before it exits.
func Open(ctx context.Context, spec string, opts Options) (coord.Backend, error) {
	kind, err := Kind(spec)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "etcd-embedded", "etcd":
		cfg, err := etcd.ParseSpec(spec)
		if err != nil {
			return nil, err
		}
		if cfg.Embed != nil {
			if opts.DataDir == "" {
				return nil, errors.New("brokkr.coordination=etcd-embedded needs a data dir (log.dirs) for the embedded etcd member")
			}
			cfg.Embed.Dir = filepath.Join(opts.DataDir, etcd.DataDirName)
			if cfg.Embed.InitialCluster == "" {
				// A one-member cluster has no peer to time out, so raft's
				// election time-out only delays the first self-election:
				// 1 s of etcd's default is most of the broker's start time.
				cfg.Embed.Heartbeat, cfg.Embed.Election = 20*time.Millisecond, 200*time.Millisecond
			}
		}
		if opts.SessionTimeout > 0 {
			cfg.SessionTimeout = opts.SessionTimeout
		}
		cfg.Logger, cfg.Metrics = opts.Logger, opts.Metrics
		b, err := etcd.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if cfg.Embed != nil && cfg.Embed.InitialCluster == "" && len(cfg.Endpoints) == 0 {
			if err := revokeStaleLeases(ctx, b); err != nil {
				_ = b.Close()
				return nil, err
			}
		}
		return b, nil
	case "zk":
		cfg := zk.DefaultConfig()
		if cfg.Servers, cfg.Chroot, err = zk.ParseConnect(spec); err != nil {
			return nil, err
		}
		if opts.ZKSessionTimeout > 0 {
			cfg.SessionTimeout = opts.ZKSessionTimeout
			cfg.ConnectionTimeout = opts.ZKSessionTimeout // Kafka's default: the session time-out
		}
		if opts.ZKConnectionTimeout > 0 {
			cfg.ConnectionTimeout = opts.ZKConnectionTimeout
		}
		cfg.Logger = opts.Logger
		return zk.Open(ctx, cfg)
	default: // gossip
		cfg := gossip.DefaultConfig()
		if cfg.Seeds, err = gossip.ParseSeeds(spec); err != nil {
			return nil, err
		}
		if opts.GossipBind != "" {
			host, port, err := net.SplitHostPort(opts.GossipBind)
			if err != nil {
				return nil, fmt.Errorf("gossip bind address %q: %v", opts.GossipBind, err)
			}
			p, err := strconv.Atoi(port)
			if err != nil {
				return nil, fmt.Errorf("gossip bind address %q: port: %v", opts.GossipBind, err)
			}
			cfg.BindAddr, cfg.BindPort = host, p
		}
		cfg.Bootstrap = opts.GossipBootstrap || (opts.GossipBind != "" && opts.GossipBind == cfg.Seeds[0])
		if opts.DataDir != "" {
			// Without consensus there is no log to replay: keep this node's
			// replica on disk so a whole-cluster restart keeps the metadata.
			cfg.StateFile = filepath.Join(opts.DataDir, "__brokkr_gossip_state")
		}
		cfg.Logger = opts.Logger
		return gossip.Open(ctx, cfg)
	}
}

// revokeStaleLeases ends every lease a one-member embedded etcd holds when
// it starts. Its data dir belongs to this broker alone (etcd locks it), so
// those leases are the sessions of this broker's previous run, dead after
// a kill -9: its registration and controllership would otherwise outlive
// it by a session time-out and hold up this start.
func revokeStaleLeases(ctx context.Context, b *etcd.Backend) error {
	resp, err := b.Client().Leases(ctx)
	if err != nil {
		return fmt.Errorf("coord/etcd: listing leases left by an earlier run: %w", err)
	}
	for _, l := range resp.Leases {
		if _, err := b.Client().Revoke(ctx, l.ID); err != nil {
			return fmt.Errorf("coord/etcd: revoking lease %x left by an earlier run: %w", l.ID, err)
		}
	}
	return nil
}
