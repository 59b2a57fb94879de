package brokkr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/backends"
	"github.com/brokkr/brokkr/core/broker"
	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/plugins/host"
)

// Server is a whole Brokkr broker for embedding in a Go program: set
// Config (start from config.DefaultConfig()) and, if wanted, Logger; then
// Start. It opens the coordination backend that Config names (an embedded
// etcd member by default, with its data in the first log dir) and serves
// the Kafka protocol on Config.Listeners until Close.
//
// With brokkr.plugin.dir set, topics may name retention and compaction
// plugins in that directory (brokkr.retention.plugin,
// brokkr.compaction.plugin); they run as go-plugin processes
// (plugins/host), started on first use.
type Server struct {
	Config config.Config
	Logger *slog.Logger

	coord   coord.Backend
	broker  *broker.Broker
	admin   *admin
	plugins *host.Host // nil without brokkr.plugin.dir
}

// Start opens the coordination backend and starts the broker. It returns
// when the broker is ready, or the first error, in one line.
func (s *Server) Start(ctx context.Context) error {
	if err := s.Config.Validate(); err != nil {
		return err
	}
	spec := s.Config.CoordinationSpec()
	c, err := backends.Open(ctx, spec, backends.Options{
		DataDir:             s.Config.LogDirs[0],
		SessionTimeout:      time.Duration(s.Config.CoordinationSessionTimeoutMs) * time.Millisecond,
		ZKSessionTimeout:    time.Duration(s.Config.ZookeeperSessionTimeoutMs) * time.Millisecond,
		ZKConnectionTimeout: zkConnTimeout(s.Config),
		GossipBind:          s.Config.GossipBind,
		Logger:              s.Logger,
	})
	if err != nil {
		return fmt.Errorf("coordination backend %s: %w", spec, err)
	}
	s.coord = c
	var policies broker.PolicySource
	if s.Config.PluginDir != "" {
		logger := s.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
		h, err := host.New(host.Options{
			Dir:         s.Config.PluginDir,
			CallTimeout: ms(s.Config.PluginCallTimeoutMs), StartTimeout: ms(s.Config.PluginStartTimeoutMs),
			HealthInterval: ms(s.Config.PluginHealthIntervalMs),
			MinBackoff:     ms(s.Config.PluginRestartBackoffMs), MaxBackoff: ms(s.Config.PluginRestartBackoffMaxMs),
			Logger: logger.With("component", "plugins"),
		})
		if err != nil {
			_ = c.Close()
			return err
		}
		s.plugins = h
		policies = hostPolicies{h}
	}
	s.broker = &broker.Broker{Config: s.Config, Coord: c, Logger: s.Logger,
		RetentionPolicy: builtin.NewRetention(), CompactionPolicy: builtin.NewCompaction(), Policies: policies}
	if err := s.broker.Start(ctx); err != nil {
		if s.plugins != nil {
			_ = s.plugins.Close()
		}
		_ = c.Close()
		return err
	}
	if s.Config.AdminListen != "" {
		a, err := startAdmin(s.Config.AdminListen, s.broker, s.pluginStatus)
		if err != nil {
			_ = s.Close(ctx)
			return err
		}
		s.admin = a
	}
	return nil
}

// AdminAddr is the bound address of the admin HTTP listener, or nil.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

func zkConnTimeout(c config.Config) time.Duration {
	if c.ZookeeperConnectionTimeoutMs < 0 {
		return time.Duration(c.ZookeeperSessionTimeoutMs) * time.Millisecond
	}
	return time.Duration(c.ZookeeperConnectionTimeoutMs) * time.Millisecond
}

// Addr is the bound address of the named listener ("PLAINTEXT").
func (s *Server) Addr(listener string) net.Addr { return s.broker.Addrs()[listener] }

// Broker is the running core broker (for its metrics and advertised
// endpoints).
func (s *Server) Broker() *broker.Broker { return s.broker }

// Close shuts the broker down cleanly (bounded by ctx), then the
// coordination backend.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.admin != nil {
		errs = append(errs, s.admin.close(ctx))
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Close(ctx))
	}
	if s.plugins != nil {
		errs = append(errs, s.plugins.Close())
	}
	if s.coord != nil {
		errs = append(errs, s.coord.Close())
	}
	return errors.Join(errs...)
}

// PluginStatus is the state of every plugin process named so far (empty
// without brokkr.plugin.dir).
func (s *Server) PluginStatus() []host.Status { return s.pluginStatus() }

func (s *Server) pluginStatus() []host.Status {
	if s.plugins == nil {
		return nil
	}
	return s.plugins.Status()
}

// hostPolicies adapts the plugin host to the broker's PolicySource: the
// host's plugin directory is the allow-list.
type hostPolicies struct{ h *host.Host }

func (p hostPolicies) Check(_ broker.PolicyKind, name string) error {
	_, err := p.h.Resolve(name)
	return err
}

func (p hostPolicies) Retention(name string) (plugins.RetentionPolicy, error) {
	return p.h.Retention(name)
}

func (p hostPolicies) Compaction(name string) (plugins.CompactionPolicy, error) {
	return p.h.Compaction(name)
}
