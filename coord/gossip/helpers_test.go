package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
)

func TestMain(m *testing.M) {
	coordtest.MaybeChild(openSpec)
	maybeFreezeChild()
	os.Exit(m.Run())
}

// openSpec opens a node for a child process: spec is "profile;seed,seed"
// with profile "test" or "default".
func openSpec(spec string) (coord.Backend, error) {
	cfg, err := specConfig(spec)
	if err != nil {
		return nil, err
	}
	return Open(context.Background(), cfg)
}

func specConfig(spec string) (Config, error) {
	profile, seeds, ok := strings.Cut(spec, ";")
	if !ok {
		return Config{}, fmt.Errorf("spec %q: want profile;seeds", spec)
	}
	cfg := TestConfig()
	if profile == "default" {
		cfg = DefaultConfig()
		cfg.BindAddr, cfg.BindPort = "127.0.0.1", 0
	}
	s, err := ParseSeeds(seeds)
	if err != nil {
		return Config{}, err
	}
	cfg.Seeds = s
	return cfg, nil
}

// eventually polls cond (every 20-200 ms) until it returns nil or limit
// passes; the only way these tests wait.
func eventually(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	wait := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, limit, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs through t.Log at Warn and above (Info with -v and
// BROKKR_GOSSIP_DEBUG=1).
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("BROKKR_GOSSIP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(tWriter{t, &done}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func (w tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// faultNet cuts gossip traffic between groups of nodes: every node's
// transport drops packets and refuses connections to a node in another
// group (both ends are wrapped, so blocking outgoing traffic cuts both
// directions).
type faultNet struct {
	mu       sync.Mutex
	group    map[string]int // node address -> group
	isolated bool           // every node alone
}

func newFaultNet() *faultNet { return &faultNet{group: map[string]int{}} }

func (f *faultNet) blocked(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if from == to {
		return false
	}
	if f.isolated {
		return true
	}
	gf, ok1 := f.group[from]
	gt, ok2 := f.group[to]
	return ok1 && ok2 && gf != gt
}

// split puts each listed node set in its own group; heal joins them again.
func (f *faultNet) split(groups ...[]*Backend) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.group)
	for g, nodes := range groups {
		for _, n := range nodes {
			f.group[n.Addr()] = g
		}
	}
}

func (f *faultNet) isolate(on bool) {
	f.mu.Lock()
	f.isolated = on
	f.mu.Unlock()
}

func (f *faultNet) heal() {
	f.mu.Lock()
	clear(f.group)
	f.isolated = false
	f.mu.Unlock()
}

func (f *faultNet) wrap(inner memberlist.Transport) memberlist.Transport {
	return &faultTransport{Transport: inner, f: f}
}

type faultTransport struct {
	memberlist.Transport
	f    *faultNet
	self atomic.Value // string
}

func (t *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	a, p, err := t.Transport.FinalAdvertiseAddr(ip, port)
	if err == nil {
		t.self.Store(net.JoinHostPort(a.String(), fmt.Sprint(p)))
	}
	return a, p, err
}

func (t *faultTransport) me() string { s, _ := t.self.Load().(string); return s }

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.f.blocked(t.me(), addr) {
		return time.Now(), nil // lost on the way
	}
	return t.Transport.WriteTo(b, addr)
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.f.blocked(t.me(), addr) {
		return nil, errors.New("faultNet: partitioned")
	}
	return t.Transport.DialTimeout(addr, timeout)
}

// cluster is a set of in-process nodes on 127.0.0.x sharing one faultNet.
type cluster struct {
	t     testing.TB
	f     *faultNet
	seeds []string
	n     int
	nodes []*Backend
	mu    sync.Mutex
	cfg   func() Config
}

func newCluster(t testing.TB, profile func() Config) *cluster {
	return &cluster{t: t, f: newFaultNet(), cfg: profile}
}

// add opens one more node (the first one bootstraps the cluster) on
// 127.0.0.(1 + i%5), port 0, and closes it at the end of the test.
func (c *cluster) add(mod func(*Config)) *Backend {
	c.t.Helper()
	c.mu.Lock()
	i := c.n
	c.n++
	seeds := append([]string(nil), c.seeds...)
	c.mu.Unlock()
	cfg := c.cfg()
	cfg.BindAddr = fmt.Sprintf("127.0.0.%d", 1+i%5)
	cfg.BindPort = 0
	cfg.NodeName = fmt.Sprintf("n%d-%08x", i, random64()&0xffffffff)
	cfg.Seeds = seeds
	cfg.Bootstrap = len(seeds) == 0
	cfg.Logger = testLogger(c.t)
	cfg.transport = c.f.wrap
	// Nodes in one test process stall together when the shared machine
	// starves the process (2 s seen under -race), so none of them can be
	// replaced meanwhile: a longer pause limit avoids needless step-downs.
	// The pause check itself is tested on a child process (TestFreezeAndResume).
	cfg.PauseLimit = max(cfg.PauseLimit, 5*time.Second)
	if mod != nil {
		mod(&cfg)
	}
	b, err := Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("Open node %d: %v", i, err)
	}
	c.t.Cleanup(func() { _ = b.Close() })
	c.mu.Lock()
	c.nodes = append(c.nodes, b)
	if len(c.seeds) < 3 {
		c.seeds = append(c.seeds, b.Addr())
	}
	c.mu.Unlock()
	return b
}

// open is the nodes of c not closed yet.
func (c *cluster) open() []*Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Backend
	for _, b := range c.nodes {
		b.mu.Lock()
		if !b.closed {
			out = append(out, b)
		}
		b.mu.Unlock()
	}
	return out
}

// memberNames is what b sees as alive or suspect members (itself excluded).
func memberNames(b *Backend) map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]bool{}
	for n := range b.members {
		out[n] = true
	}
	return out
}

// waitMembers waits until every node sees exactly the others.
func waitMembers(t testing.TB, limit time.Duration, nodes ...*Backend) {
	t.Helper()
	eventually(t, limit, "every node sees every other", func() error {
		for _, a := range nodes {
			m := memberNames(a)
			for _, b := range nodes {
				if a != b && !m[b.Name()] {
					return fmt.Errorf("%s does not see %s (sees %v)", a.Name(), b.Name(), m)
				}
			}
		}
		return nil
	})
}

// stampOf is the stamp of key's entry on b (tombstones included).
func stampOf(b *Backend, key string) (stamp, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.st.entries[key]
	if e == nil {
		return stamp{}, false
	}
	return e.Stamp, true
}

// sameRecord waits until every node holds the same value and version of key.
func sameRecord(t testing.TB, limit time.Duration, key string, nodes ...coord.Store) coord.Record {
	t.Helper()
	var out coord.Record
	eventually(t, limit, "all nodes agree on "+key, func() error {
		var first coord.Record
		for i, n := range nodes {
			r, err := n.Get(context.Background(), key)
			if err != nil {
				return fmt.Errorf("node %d: %v", i, err)
			}
			if i == 0 {
				first = r
			} else if r.Version != first.Version || string(r.Value) != string(first.Value) {
				return fmt.Errorf("node %d has %q@%d, node 0 %q@%d", i, r.Value, r.Version, first.Value, first.Version)
			}
		}
		out = first
		return nil
	})
	return out
}
