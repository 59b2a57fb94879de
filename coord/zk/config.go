package zk

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults, as Kafka's.
const (
	// DefaultSessionTimeout is Kafka's zookeeper.session.timeout.ms (18000).
	DefaultSessionTimeout = 18 * time.Second
	// DefaultConnectionTimeout: Kafka's zookeeper.connection.timeout.ms
	// defaults to the session time-out.
	DefaultConnectionTimeout = DefaultSessionTimeout
)

// Config configures a ZooKeeper client. Field comments give the Kafka
// property each field mirrors.
type Config struct {
	// Servers are "host:port" ensemble members (zookeeper.connect before the
	// chroot). Required.
	Servers []string
	// Chroot is the znode under which Brokkr keeps everything, e.g.
	// "/brokkr" (zookeeper.connect after the first "/"); "" is the root.
	// Open creates it when missing.
	Chroot string
	// SessionTimeout is zookeeper.session.timeout.ms: a broker that dies or
	// is cut off disappears after this long. The server clamps it to
	// [2, 20] x its tickTime (4 s .. 40 s with the default tickTime=2000).
	SessionTimeout time.Duration
	// ConnectionTimeout is zookeeper.connection.timeout.ms: how long Open
	// waits for a session before it gives up.
	ConnectionTimeout time.Duration
	// TombstoneTTL is how long a deleted record's znode stays as a tombstone
	// (null data) before the controller's sweeper removes it; a
	// CompareAndSet that read the record before its deletion and writes
	// later than this could in theory hit a re-created record of the same
	// zkVersion. Brokkr's own setting: coord.zk.tombstone.ttl.ms.
	TombstoneTTL time.Duration
	// Logger receives the backend's and the ZooKeeper client's messages;
	// nil discards them.
	Logger *slog.Logger
}

// DefaultTombstoneTTL is the default Config.TombstoneTTL.
const DefaultTombstoneTTL = 10 * time.Minute

// DefaultConfig returns Kafka's defaults; Servers must still be set.
func DefaultConfig() Config {
	return Config{
		SessionTimeout:    DefaultSessionTimeout,
		ConnectionTimeout: DefaultConnectionTimeout,
		TombstoneTTL:      DefaultTombstoneTTL,
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("zookeeper.connect: no servers given (want host:port[,host:port...][/chroot])"))
	}
	for _, s := range c.Servers {
		if err := checkServer(s); err != nil {
			errs = append(errs, fmt.Errorf("zookeeper.connect: %w", err))
		}
	}
	if c.Chroot != "" {
		if err := checkPath(c.Chroot); err != nil {
			errs = append(errs, fmt.Errorf("zookeeper.connect: chroot %q: %w", c.Chroot, err))
		}
	}
	if c.SessionTimeout < 100*time.Millisecond || c.SessionTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("zookeeper.session.timeout.ms: %d is outside [100, 600000]", c.SessionTimeout.Milliseconds()))
	}
	if c.ConnectionTimeout <= 0 {
		errs = append(errs, fmt.Errorf("zookeeper.connection.timeout.ms: %d must be positive", c.ConnectionTimeout.Milliseconds()))
	}
	if c.TombstoneTTL < c.SessionTimeout {
		errs = append(errs, fmt.Errorf("coord.zk.tombstone.ttl.ms: %d must be at least zookeeper.session.timeout.ms (%d)",
			c.TombstoneTTL.Milliseconds(), c.SessionTimeout.Milliseconds()))
	}
	return errors.Join(errs...)
}

// ParseConnect parses Kafka's zookeeper.connect value
// "host:port[,host:port...][/chroot]" (a leading "zk://" is accepted, as in
// Brokkr's coordination=zk://... setting).
func ParseConnect(s string) (servers []string, chroot string, err error) {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "zk://"))
	if s == "" {
		return nil, "", errors.New("zookeeper.connect: empty (want host:port[,host:port...][/chroot])")
	}
	hosts := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hosts, chroot = s[:i], s[i:]
		if chroot == "/" {
			chroot = ""
		} else if err := checkPath(chroot); err != nil {
			return nil, "", fmt.Errorf("zookeeper.connect %q: chroot %q: %w", s, chroot, err)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if err := checkServer(h); err != nil {
			return nil, "", fmt.Errorf("zookeeper.connect %q: %w", s, err)
		}
		servers = append(servers, h)
	}
	return servers, chroot, nil
}

func checkServer(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("server %q: want host:port", s)
	}
	if host == "" {
		return fmt.Errorf("server %q: empty host", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("server %q: port must be 1..65535", s)
	}
	return nil
}

// checkPath checks a slash-separated absolute path as ZooKeeper accepts it
// (no empty, "." or ".." segment, no trailing slash, no control characters).
func checkPath(p string) error {
	if p == "" || p[0] != '/' {
		return errors.New("must start with /")
	}
	if p == "/" {
		return nil
	}
	if strings.HasSuffix(p, "/") {
		return errors.New("must not end with /")
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return errors.New("empty path segment")
		case ".", "..":
			return fmt.Errorf("segment %q is not allowed", seg)
		}
	}
	for _, r := range p {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0xd800 && r <= 0xf8ff) || r >= 0xfff0 || r == 0xfffd {
			return fmt.Errorf("character %U is not allowed", r)
		}
	}
	return nil
}
