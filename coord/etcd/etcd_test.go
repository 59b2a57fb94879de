package etcd

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
)

// Test timing: a fast raft (50 ms heartbeat, 500 ms election) lets the
// lease TTL go down to 1 s; the suite uses 2 s.
const (
	testSession  = 2 * time.Second
	testHeart    = 50 * time.Millisecond
	testElection = 500 * time.Millisecond
)

func TestMain(m *testing.M) {
	coordtest.MaybeChild(openChild)
	os.Exit(m.Run())
}

// childSpec is "etcd://h:p,h:p|session-ms".
func childSpec(endpoints []string, session time.Duration) string {
	hosts := make([]string, len(endpoints))
	for i, e := range endpoints {
		hosts[i] = strings.TrimPrefix(e, "http://")
	}
	return "etcd://" + strings.Join(hosts, ",") + "|" + strconv.FormatInt(session.Milliseconds(), 10)
}

func openChild(spec string) (coord.Backend, error) {
	s, ms, ok := strings.Cut(spec, "|")
	if !ok {
		return nil, fmt.Errorf("bad child spec %q", spec)
	}
	cfg, err := ParseSpec(s)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(ms)
	if err != nil {
		return nil, err
	}
	cfg.SessionTimeout = time.Duration(n) * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Open(ctx, cfg)
}

// freeURL returns http://127.0.0.1:<free port>.
func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// cluster is a set of embedded members started by a test.
type cluster struct {
	t       testing.TB
	members []*Server
	cfgs    []EmbedConfig
	mu      sync.Mutex
}

// startCluster starts n members on distinct free 127.0.0.1 ports, fsync off.
func startCluster(t testing.TB, n int, heartbeat, election time.Duration, fsync bool) *cluster {
	t.Helper()
	c := &cluster{t: t, members: make([]*Server, n), cfgs: make([]EmbedConfig, n)}
	var parts []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		c.cfgs[i] = EmbedConfig{
			Dir: t.TempDir(), Name: name, ClientURL: freeURL(t), PeerURL: freeURL(t),
			ClusterToken: "brokkr-test", Heartbeat: heartbeat, Election: election, UnsafeNoFsync: !fsync,
		}
		parts = append(parts, name+"="+c.cfgs[i].PeerURL)
	}
	if n > 1 {
		for i := range c.cfgs {
			c.cfgs[i].InitialCluster = strings.Join(parts, ",")
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c.members[i], errs[i] = StartServer(ctx, c.cfgs[i], nil)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range n {
			if m := c.member(i); m != nil {
				m.Stop()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start member %d: %v", i, err)
		}
	}
	return c
}

func (c *cluster) member(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.ClientURL)
	}
	return out
}

// restart starts member i again from its data dir on the same URLs.
func (c *cluster) restart(i int) time.Duration {
	c.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var s *Server
	err := poll(30*time.Second, func() error { // the old listeners may take a moment to go
		var err error
		s, err = StartServer(ctx, c.cfgs[i], nil)
		return err
	})
	if err != nil {
		c.t.Fatalf("restart member %d: %v", i, err)
	}
	c.mu.Lock()
	c.members[i] = s
	c.mu.Unlock()
	return time.Since(start)
}

// crash crashes member i (Server.Crash) and forgets it until restart.
func (c *cluster) crash(i int) {
	c.mu.Lock()
	m := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if m != nil {
		m.Crash()
	}
}

// leader returns the index of the member that is raft leader, or -1.
func (c *cluster) leader() int {
	for i := range c.members {
		if m := c.member(i); m != nil && m.IsLeader() {
			return i
		}
	}
	return -1
}

func poll(limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eventually(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(limit, cond); err != nil {
		t.Fatalf("%s: not true within %v: %v", what, limit, err)
	}
}

// client opens a Backend of endpoints; the test closes it.
func client(t testing.TB, endpoints []string, session time.Duration) *Backend {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Embed = nil
	cfg.Endpoints = endpoints
	cfg.SessionTimeout = session
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open client: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func harness(name string, c *cluster, restart func(t *testing.T)) coordtest.Harness {
	return coordtest.Harness{
		Name:           name,
		New:            func(t *testing.T) coord.Backend { return client(t, c.endpoints(), testSession) },
		ChildSpec:      childSpec(c.endpoints(), testSession),
		SessionTimeout: testSession,
		Restart:        restart,
	}
}

// The conformance suite against one embedded member; Restart crashes the
// member and starts it again on the same data dir and ports.
func TestConformanceSingleMember(t *testing.T) {
	c := startCluster(t, 1, testHeart, testElection, false)
	coordtest.Run(t, harness("etcd-1", c, func(t *testing.T) {
		c.crash(0)
		t.Logf("member restarted in %v", c.restart(0))
	}))
}

// The conformance suite against three embedded members; Restart crashes
// the raft leader and starts it again.
func TestConformanceThreeMembers(t *testing.T) {
	c := startCluster(t, 3, testHeart, testElection, false)
	coordtest.Run(t, harness("etcd-3", c, func(t *testing.T) {
		i := c.leader()
		if i < 0 {
			t.Fatalf("no raft leader")
		}
		c.crash(i)
		t.Logf("crashed leader member m%d; restarted in %v", i, c.restart(i))
	}))
}
