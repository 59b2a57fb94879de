package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	// DefaultSessionTimeout is brokkr.coordination.session.timeout.ms's
	// default: the lease TTL. A broker that dies disappears 2-3.5 s later.
	DefaultSessionTimeout = 3 * time.Second
	// DefaultDialTimeout bounds how long Open waits for the cluster.
	DefaultDialTimeout = 10 * time.Second
	// DefaultPrefix is the key under which Brokkr keeps everything.
	DefaultPrefix = "/brokkr"
	// DefaultHeartbeat and DefaultElection are etcd's own raft defaults.
	DefaultHeartbeat = 100 * time.Millisecond
	DefaultElection  = 1000 * time.Millisecond
	// DataDirName is the directory an embedded member uses inside the
	// broker's first log dir.
	DataDirName = "__brokkr_etcd"
)

// Config configures an etcd coord.Backend: a client of Endpoints, and,
// when Embed is set, the embedded member this process runs.
type Config struct {
	// Endpoints are the client URLs ("http://host:port" or "host:port") of
	// the etcd cluster. With Embed set and Endpoints empty, the client talks
	// to the embedded member only; in a cluster of embedded members list
	// every member's client URL so that the client fails over.
	Endpoints []string
	// Embed, if set, runs an etcd member in this process (see EmbedConfig).
	Embed *EmbedConfig
	// SessionTimeout is the lease TTL (brokkr.coordination.session.timeout.ms):
	// a broker that dies or is cut off loses its registration and
	// controllership this long after its last keep-alive. etcd counts TTLs
	// in whole seconds: it is rounded up to one, and must be at least the
	// server's minimum lease TTL (1.5 x the election time-out, rounded up).
	SessionTimeout time.Duration
	// DialTimeout bounds Open's wait for a reachable cluster.
	DialTimeout time.Duration
	// Prefix is the key prefix of everything Brokkr stores ("/brokkr").
	Prefix string
	// Logger receives the backend's, the client's and the embedded
	// server's logs (etcd's zap output is routed to it); nil discards them.
	Logger *slog.Logger
	// Metrics, if set, receives the backend's own metrics. The global
	// Prometheus registry is never used by Brokkr's code (etcd's server
	// packages do register their own there when imported; see the docs).
	Metrics prometheus.Registerer
}

// EmbedConfig configures the etcd member run inside the broker.
type EmbedConfig struct {
	// Dir holds the member's data (WAL, snapshots, bbolt) and the record of
	// the ports chosen at start (ports.json). Required.
	Dir string
	// Name of the member ("brokkr" by default); unique within a cluster.
	Name string
	// ClientURL and PeerURL: "http://127.0.0.1:2379"-style URLs to listen
	// on. Empty picks a free port on 127.0.0.1 at start (or the one recorded
	// in Dir by an earlier start, when still free).
	ClientURL, PeerURL string
	// InitialCluster is etcd's --initial-cluster ("a=http://h:2380,b=...").
	// Empty means a single-member cluster of this member alone.
	InitialCluster string
	// ClusterToken is etcd's --initial-cluster-token ("brokkr").
	ClusterToken string
	// Heartbeat and Election are raft's heartbeat interval and election
	// time-out (etcd's defaults: 100 ms and 1 s). An etcd leader that dies
	// is replaced about one election time-out later.
	Heartbeat, Election time.Duration
	// UnsafeNoFsync turns fsync off: for tests only, it loses data on a
	// machine crash.
	UnsafeNoFsync bool
}

// DefaultConfig returns an embedded single member; Embed.Dir must be set.
func DefaultConfig() Config {
	return Config{
		Embed:          &EmbedConfig{Name: "brokkr", ClusterToken: "brokkr", Heartbeat: DefaultHeartbeat, Election: DefaultElection},
		SessionTimeout: DefaultSessionTimeout,
		DialTimeout:    DefaultDialTimeout,
		Prefix:         DefaultPrefix,
	}
}

// ttlSeconds is the lease TTL etcd is asked for.
func (c Config) ttlSeconds() int64 {
	s := int64((c.SessionTimeout + time.Second - 1) / time.Second)
	return max(s, 1)
}

// minLeaseTTL is the smallest TTL an etcd server with this election
// time-out grants (etcd raises smaller requests to it).
func minLeaseTTL(election time.Duration) int64 {
	return int64((3*election/2 + time.Second - 1) / time.Second)
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Embed == nil && len(c.Endpoints) == 0 {
		bad("etcd: no endpoints and no embedded member: nothing to connect to")
	}
	for _, e := range c.Endpoints {
		if _, err := normalizeURL(e); err != nil {
			bad("etcd: endpoint %q: %v", e, err)
		}
	}
	if c.SessionTimeout < time.Second || c.SessionTimeout > 10*time.Minute {
		bad("etcd: session time-out %v out of range [1s, 10m] (etcd lease TTLs are whole seconds)", c.SessionTimeout)
	}
	if c.DialTimeout <= 0 {
		bad("etcd: dial time-out %v must be > 0", c.DialTimeout)
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") {
		bad("etcd: prefix %q must start with / and not end with one", c.Prefix)
	}
	if e := c.Embed; e != nil {
		if e.Dir == "" {
			bad("etcd: embedded member needs a data dir")
		}
		if e.Name == "" || strings.ContainsAny(e.Name, "=, ") {
			bad("etcd: member name %q must be non-empty without '=', ',' or spaces", e.Name)
		}
		for _, u := range []string{e.ClientURL, e.PeerURL} {
			if u == "" {
				continue
			}
			if _, err := normalizeURL(u); err != nil {
				bad("etcd: listen URL %q: %v", u, err)
			}
		}
		if e.Heartbeat <= 0 || e.Election < 5*e.Heartbeat || e.Election > 50*time.Second {
			bad("etcd: election time-out %v must be >= 5 x heartbeat %v and <= 50 s", e.Election, e.Heartbeat)
		}
		if m := minLeaseTTL(e.Election); c.ttlSeconds() < m {
			bad("etcd: session time-out %v is below the embedded member's minimum lease TTL %d s (1.5 x election time-out %v): lower the election time-out or raise the session time-out", c.SessionTimeout, m, e.Election)
		}
		if e.InitialCluster != "" {
			if _, err := parseInitialCluster(e.InitialCluster); err != nil {
				bad("etcd: initial cluster: %v", err)
			} else if e.PeerURL == "" {
				bad("etcd: a member of initial cluster %q needs its PeerURL set", e.InitialCluster)
			}
		}
	}
	return errors.Join(errs...)
}

// normalizeURL turns "host:port" into "http://host:port" and checks it.
func normalizeURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" || port == "0" {
		return "", fmt.Errorf("want host:port with a fixed port, got %q", u.Host)
	}
	if u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("unexpected path %q", u.Path)
	}
	return u.Scheme + "://" + u.Host, nil
}

// parseInitialCluster checks "name=url,name=url".
func parseInitialCluster(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want name=url", part)
		}
		if _, err := normalizeURL(u); err != nil {
			return nil, fmt.Errorf("%q: %v", part, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("member %q named twice", name)
		}
		out[name] = u
	}
	return out, nil
}

// ParseSpec reads the etcd forms of brokkr.coordination: "etcd-embedded"
// (an embedded single member; the caller sets Embed.Dir) or
// "etcd://host:port,host:port" (an external cluster). It returns
// DefaultConfig() adjusted accordingly.
func ParseSpec(spec string) (Config, error) {
	c := DefaultConfig()
	switch {
	case spec == "etcd-embedded" || spec == "":
		return c, nil
	case strings.HasPrefix(spec, "etcd://"):
		rest := strings.TrimPrefix(spec, "etcd://")
		rest = strings.TrimSuffix(rest, "/")
		if rest == "" {
			return c, fmt.Errorf("etcd: %q names no endpoints (want etcd://host:port[,host:port...])", spec)
		}
		c.Embed = nil
		for _, ep := range strings.Split(rest, ",") {
			u, err := normalizeURL(ep)
			if err != nil {
				return c, fmt.Errorf("etcd: %q: endpoint %q: %v", spec, ep, err)
			}
			c.Endpoints = append(c.Endpoints, u)
		}
		return c, nil
	}
	return c, fmt.Errorf("etcd: %q is neither etcd-embedded nor etcd://host:port,...", spec)
}
