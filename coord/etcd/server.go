package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/brokkr/brokkr/coord"
)

// portsFile, inside the member's data dir, records the URLs chosen at start
// so that operators (and `brokkr` tools) can find the member, and so that a
// restart reuses them when they are still free.
const portsFile = "ports.json"

type portsRecord struct {
	Name      string `json:"name"`
	ClientURL string `json:"client_url"`
	PeerURL   string `json:"peer_url"`
	PID       int    `json:"pid"`
	Started   string `json:"started"`
}

// Server is an etcd member running in this process.
type Server struct {
	e         *embed.Etcd
	name      string
	dir       string
	clientURL string
	peerURL   string
	stopOnce  sync.Once
}

// StartServer starts an embedded etcd member and waits until it serves
// clients (for a cluster: until a quorum of members has started) or ctx
// ends. Logs go to log (nil discards them).
func StartServer(ctx context.Context, ec EmbedConfig, log *slog.Logger) (*Server, error) {
	if ec.Name == "" {
		ec.Name = "brokkr"
	}
	if ec.ClusterToken == "" {
		ec.ClusterToken = "brokkr"
	}
	if ec.Heartbeat == 0 {
		ec.Heartbeat = DefaultHeartbeat
	}
	if ec.Election == 0 {
		ec.Election = DefaultElection
	}
	if ec.Dir == "" {
		return nil, errors.New("etcd: embedded member needs a data dir")
	}
	if err := os.MkdirAll(ec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd: data dir: %w", err)
	}
	var rec portsRecord
	if b, err := os.ReadFile(filepath.Join(ec.Dir, portsFile)); err == nil {
		_ = json.Unmarshal(b, &rec)
	}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		clientURL, peerURL := ec.ClientURL, ec.PeerURL
		var err error
		if clientURL == "" {
			if clientURL, err = pickURL(rec.ClientURL, attempt); err != nil {
				return nil, err
			}
		}
		if peerURL == "" {
			if peerURL, err = pickURL(rec.PeerURL, attempt); err != nil {
				return nil, err
			}
		}
		s, err := start(ctx, ec, clientURL, peerURL, log)
		if err == nil {
			return s, nil
		}
		lastErr = err
		// Only a port taken between our pick and etcd's bind is worth
		// another try with other ports.
		if !errors.Is(err, syscall.EADDRINUSE) || (ec.ClientURL != "" && ec.PeerURL != "") {
			break
		}
	}
	return nil, lastErr
}

// pickURL returns the recorded URL while its port is free, else a free
// 127.0.0.1 port (etcd's URLs cannot say "port 0").
func pickURL(recorded string, attempt int) (string, error) {
	if recorded != "" && attempt == 0 {
		if u, err := url.Parse(recorded); err == nil {
			if l, err := net.Listen("tcp", u.Host); err == nil {
				l.Close()
				return recorded, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcd: pick a free port: %w", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

func start(ctx context.Context, ec EmbedConfig, clientURL, peerURL string, log *slog.Logger) (*Server, error) {
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: client URL %q: %w", clientURL, err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: peer URL %q: %w", peerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = ec.Name
	cfg.Dir = ec.Dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = ec.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = ec.Name + "=" + peerURL
	}
	cfg.InitialClusterToken = ec.ClusterToken
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.TickMs = uint(ec.Heartbeat / time.Millisecond)
	cfg.ElectionMs = uint(ec.Election / time.Millisecond)
	cfg.UnsafeNoFsync = ec.UnsafeNoFsync
	cfg.Logger = "zap"
	cfg.LogLevel = "info"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(log, "etcd-server"))
	cfg.EnableGRPCGateway = false
	cfg.Metrics = "basic"
	// Metadata is small; keep an hour of history for watchers that fall
	// behind, then compact so the store does not grow without end.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: start member %s (client %s, peer %s): %w", ec.Name, clientURL, peerURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: member %s failed while starting: %w", ec.Name, err)
	case <-ctx.Done():
		e.Server.HardStop()
		e.Close()
		return nil, fmt.Errorf("%w: etcd member %s not ready (no quorum of %s?): %w", coord.ErrUnavailable, ec.Name, cfg.InitialCluster, ctx.Err())
	}
	s := &Server{e: e, name: ec.Name, dir: ec.Dir, clientURL: clientURL, peerURL: peerURL}
	rec := portsRecord{Name: ec.Name, ClientURL: clientURL, PeerURL: peerURL, PID: os.Getpid(), Started: time.Now().UTC().Format(time.RFC3339)}
	b, _ := json.MarshalIndent(rec, "", "  ")
	tmp := filepath.Join(ec.Dir, portsFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err == nil {
		_ = os.Rename(tmp, filepath.Join(ec.Dir, portsFile))
	}
	return s, nil
}

// ClientURL is the URL clients reach this member on.
func (s *Server) ClientURL() string { return s.clientURL }

// PeerURL is the URL other members reach this member on.
func (s *Server) PeerURL() string { return s.peerURL }

// Name is the member's name.
func (s *Server) Name() string { return s.name }

// IsLeader reports whether this member is the raft leader now.
func (s *Server) IsLeader() bool {
	return s.e.Server.Leader() == s.e.Server.MemberID()
}

// Leader is the raft leader's member ID as this member sees it (0: none).
func (s *Server) Leader() uint64 { return uint64(s.e.Server.Leader()) }

// ID is this member's raft ID.
func (s *Server) ID() uint64 { return uint64(s.e.Server.MemberID()) }

// Stop shuts the member down politely: client connections are closed and a
// leader hands leadership to a peer first. Idempotent.
func (s *Server) Stop() {
	s.stopOnce.Do(s.e.Close)
}

// Crash stops the member the way a crash looks to its peers: raft stops at
// once, without a leadership transfer, then the listeners close.
func (s *Server) Crash() {
	s.stopOnce.Do(func() {
		s.e.Server.HardStop()
		s.e.Close()
	})
}

// ReadPorts returns the URLs an embedded member in dir recorded at its last
// start.
func ReadPorts(dir string) (clientURL, peerURL string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, portsFile))
	if err != nil {
		return "", "", err
	}
	var rec portsRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", "", fmt.Errorf("etcd: %s: %w", filepath.Join(dir, portsFile), err)
	}
	if !strings.HasPrefix(rec.ClientURL, "http") {
		return "", "", fmt.Errorf("etcd: %s has no client URL", filepath.Join(dir, portsFile))
	}
	return rec.ClientURL, rec.PeerURL, nil
}
