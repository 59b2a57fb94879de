package etcd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
)

// The default single-node setup: one embedded member in a dir inside the
// broker's data dir, ports chosen at start and recorded there, reused on
// restart; two such brokers side by side do not collide.
func TestEmbeddedDefault(t *testing.T) {
	open := func(dir string) *Backend {
		t.Helper()
		cfg := DefaultConfig()
		cfg.Embed.Dir = dir
		cfg.Embed.UnsafeNoFsync = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	dirA := filepath.Join(t.TempDir(), DataDirName)
	dirB := filepath.Join(t.TempDir(), DataDirName)
	a, b := open(dirA), open(dirB)
	if a.Server() == nil || a.Server().ClientURL() == b.Server().ClientURL() {
		t.Fatalf("two embedded brokers share client URL %s", a.Server().ClientURL())
	}
	cu, pu, err := ReadPorts(dirA)
	if err != nil || cu != a.Server().ClientURL() || pu != a.Server().PeerURL() {
		t.Fatalf("ReadPorts = %s, %s, %v; want %s, %s", cu, pu, err, a.Server().ClientURL(), a.Server().PeerURL())
	}
	ctx := context.Background()
	v, err := a.Create(ctx, "/brokers/topics/t", []byte("A"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := b.Get(ctx, "/brokers/topics/t"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("broker B sees broker A's record: err %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := a.Get(ctx, "/brokers/topics/t"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	a2 := open(dirA)
	if a2.Server().ClientURL() != cu {
		t.Errorf("restart chose %s although the recorded %s was free", a2.Server().ClientURL(), cu)
	}
	r, err := a2.Get(ctx, "/brokers/topics/t")
	if err != nil || string(r.Value) != "A" || r.Version != v {
		t.Fatalf("after restart Get = %+v, %v; want A@%d", r, err, v)
	}
}

// An unreachable cluster fails Open with one line wrapping ErrUnavailable,
// within the dial time-out.
func TestOpenUnreachable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Embed = nil
	cfg.Endpoints = []string{freeURL(t)} // nothing listens there
	cfg.DialTimeout = 2 * time.Second
	start := time.Now()
	_, err := Open(context.Background(), cfg)
	took := time.Since(start)
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("Open of a dead endpoint: err %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "cannot reach etcd") {
		t.Errorf("error is not one clear line: %q", err)
	}
	if took > cfg.DialTimeout+3*time.Second {
		t.Errorf("Open took %v with a %v dial time-out", took, cfg.DialTimeout)
	}
	t.Logf("Open of a dead endpoint failed after %v: %v", took.Round(time.Millisecond), err)
}

func TestValidateAndParseSpec(t *testing.T) {
	good := DefaultConfig()
	good.Embed.Dir = t.TempDir()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config with a dir: %v", err)
	}
	bad := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no dir", func(c *Config) { c.Embed.Dir = "" }, "data dir"},
		{"nothing to reach", func(c *Config) { c.Embed = nil }, "no endpoints"},
		{"sub-second session", func(c *Config) { c.SessionTimeout = 500 * time.Millisecond }, "session time-out"},
		{"session below min lease TTL", func(c *Config) { c.SessionTimeout = time.Second }, "minimum lease TTL"},
		{"port 0", func(c *Config) { c.Embed.ClientURL = "http://127.0.0.1:0" }, "fixed port"},
		{"bad endpoint", func(c *Config) { c.Endpoints = []string{"ftp://x:1"} }, "scheme"},
		{"prefix", func(c *Config) { c.Prefix = "brokkr/" }, "prefix"},
		{"election", func(c *Config) { c.Embed.Election = c.Embed.Heartbeat }, "election time-out"},
		{"cluster without peer URL", func(c *Config) { c.Embed.InitialCluster = "a=http://127.0.0.1:2380" }, "PeerURL"},
		{"cluster syntax", func(c *Config) { c.Embed.InitialCluster = "a" }, "name=url"},
	}
	for _, c := range bad {
		cfg := good
		e := *good.Embed
		cfg.Embed = &e
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	// Every problem at once.
	cfg := Config{Embed: &EmbedConfig{}, Prefix: "x"}
	if err := cfg.Validate(); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Errorf("Validate of an empty config reports %v, want every problem", err)
	}

	c, err := ParseSpec("etcd://10.0.0.1:2379,10.0.0.2:2379")
	if err != nil || c.Embed != nil || fmt.Sprint(c.Endpoints) != "[http://10.0.0.1:2379 http://10.0.0.2:2379]" {
		t.Errorf("ParseSpec external = %+v, %v", c, err)
	}
	if c, err := ParseSpec("etcd-embedded"); err != nil || c.Embed == nil {
		t.Errorf("ParseSpec etcd-embedded = %+v, %v", c, err)
	}
	for _, s := range []string{"etcd://", "etcd://host", "etcd://h:0", "etcd-external", "zk://h:1"} {
		if _, err := ParseSpec(s); err == nil {
			t.Errorf("ParseSpec(%q) accepted", s)
		}
	}
}

// writeEventually retries a compare-and-set on key until it succeeds and
// returns how long that took.
func writeEventually(t *testing.T, b coord.Store, key string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, limit, "a write succeeds", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := b.Get(ctx, key)
		if errors.Is(err, coord.ErrNotFound) {
			_, err = b.Create(ctx, key, []byte("0"))
			return err
		}
		if err != nil {
			return err
		}
		_, err = b.CompareAndSet(ctx, key, []byte(fmt.Sprint(time.Now().UnixNano())), r.Version)
		return err
	})
	return time.Since(start)
}

// Three members with etcd's default raft timing (100 ms heartbeat, 1 s
// election) and the default 3 s session: a crashed follower costs nothing;
// after a crashed leader the others elect a new one and clients continue,
// keeping their leases, registrations and controllership; with two of three
// down calls fail with ErrUnavailable instead of hanging.
func TestClusterFaults(t *testing.T) {
	c := startCluster(t, 3, DefaultHeartbeat, DefaultElection, false)
	eps := c.endpoints()
	ctl := client(t, eps, DefaultSessionTimeout)
	obs := client(t, eps, DefaultSessionTimeout)
	wr := client(t, eps, DefaultSessionTimeout)
	ctx := context.Background()

	reg, err := ctl.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://127.0.0.1:9092"}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lead, err := ctl.Campaign(cctx, 1)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	wch, err := obs.Watch(ctx, "/f/")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	view := map[string]string{}
	drain := func() {
		for {
			select {
			case ev := <-wch:
				switch ev.Kind {
				case coord.EventResync:
					clear(view)
					for _, r := range ev.Snapshot {
						view[r.Key] = string(r.Value)
					}
				case coord.EventPut:
					view[ev.Key] = string(ev.Value)
				case coord.EventDelete:
					delete(view, ev.Key)
				}
			default:
				return
			}
		}
	}
	converged := func() {
		t.Helper()
		eventually(t, 20*time.Second, "watch converges", func() error {
			drain()
			recs, err := wr.List(ctx, "/f/")
			if err != nil {
				return err
			}
			for _, r := range recs {
				if view[r.Key] != string(r.Value) {
					return fmt.Errorf("%s: watch has %q, store %q", r.Key, view[r.Key], r.Value)
				}
			}
			if len(recs) != len(view) {
				return fmt.Errorf("watch has %d records, store %d", len(view), len(recs))
			}
			return nil
		})
	}
	stillLeading := func(when string) {
		t.Helper()
		if isClosedChan(lead.Lost()) || isClosedChan(reg.Lost()) {
			t.Fatalf("%s: controllership or registration lost (lease should survive)", when)
		}
		if _, err := lead.Store().Create(ctx, fmt.Sprintf("/f/ctl-%d", time.Now().UnixNano()), []byte(when)); err != nil {
			t.Fatalf("%s: fenced write by the controller: %v", when, err)
		}
		id, ep, err := obs.Controller(ctx)
		if err != nil || id != 1 || ep != lead.Epoch() {
			t.Fatalf("%s: Controller() = %d, %d, %v; want 1, %d", when, id, ep, err, lead.Epoch())
		}
	}
	writeEventually(t, wr, "/f/k", 10*time.Second)

	// 1. Crash a follower.
	old := c.leader()
	f := (old + 1) % 3
	start := time.Now()
	c.crash(f)
	took := writeEventually(t, wr, "/f/k", 10*time.Second)
	t.Logf("follower m%d crashed: first write after %v (leader m%d unchanged: %v)", f, took.Round(time.Millisecond), old, c.leader() == old)
	if took > 3*time.Second {
		t.Errorf("a follower crash stalled writes for %v", took)
	}
	for i := 0; i < 20; i++ {
		writeEventually(t, wr, fmt.Sprintf("/f/k%d", i%5), 5*time.Second)
	}
	stillLeading("after a follower crash")
	converged()
	t.Logf("follower m%d restarted in %v", f, c.restart(f).Round(time.Millisecond))
	eventually(t, 20*time.Second, "restarted follower sees a leader", func() error {
		if c.member(f).Leader() == 0 {
			return errors.New("no leader yet")
		}
		return nil
	})

	// 2. Crash the leader.
	old = c.leader()
	if old < 0 {
		t.Fatal("no raft leader")
	}
	start = time.Now()
	c.crash(old)
	var elected time.Duration
	eventually(t, 15*time.Second, "a new raft leader", func() error {
		if l := c.leader(); l < 0 || l == old {
			return fmt.Errorf("leader %d", l)
		}
		elected = time.Since(start)
		return nil
	})
	took = writeEventually(t, wr, "/f/k", 15*time.Second) + elected
	t.Logf("leader m%d crashed: new raft leader m%d after %v, first client write after %v", old, c.leader(), elected.Round(time.Millisecond), took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("clients stalled %v after the leader crashed", took)
	}
	for i := 0; i < 20; i++ {
		writeEventually(t, wr, fmt.Sprintf("/f/k%d", i%5), 5*time.Second)
	}
	stillLeading("after the leader crashed")
	converged()

	// 3. Two of three down: no quorum. Calls fail with ErrUnavailable in
	// bounded time; the controller's lease cannot be renewed, so it loses
	// controllership within about the session time-out.
	other := -1
	for i := range 3 {
		if i != old && c.member(i) != nil && c.member(i).IsLeader() == false {
			other = i
		}
	}
	if other < 0 {
		for i := range 3 {
			if i != old {
				other = i
				break
			}
		}
	}
	lostAt := make(chan time.Time, 1)
	go func() {
		select {
		case <-lead.Lost():
			lostAt <- time.Now()
		case <-time.After(time.Minute):
			close(lostAt)
		}
	}()
	lostStart := time.Now()
	c.crash(other)
	crashed := time.Now()
	gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
	defer gcancel()
	_, err = wr.Get(gctx, "/f/k")
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("Get without quorum: %v, want ErrUnavailable", err)
	}
	t.Logf("without quorum (second member's crash took %v) a Get failed %v after the crash: %v", crashed.Sub(lostStart).Round(time.Millisecond), time.Since(crashed).Round(time.Millisecond), err)
	select {
	case at, ok := <-lostAt:
		if !ok {
			t.Fatalf("controller still believes it leads a minute after quorum was lost")
		}
		t.Logf("without quorum the controller's Lost closed %v after the crash began (%v after it returned)", at.Sub(lostStart).Round(time.Millisecond), at.Sub(crashed).Round(time.Millisecond))
		if at.Sub(lostStart) > DefaultSessionTimeout+10*time.Second {
			t.Errorf("Lost closed %v after quorum was lost; session time-out %v", at.Sub(lostStart), DefaultSessionTimeout)
		}
	case <-time.After(DefaultSessionTimeout + 10*time.Second):
		t.Fatalf("controller still believes it leads %v after quorum was lost", DefaultSessionTimeout+10*time.Second)
	}
	if _, err := lead.Store().Create(ctx, "/f/stale", nil); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("write through a lost leadership: %v, want ErrFenced", err)
	}
	// Quorum back: everything works again, the watch converges.
	c.restart(old)
	writeEventually(t, wr, "/f/k", 30*time.Second)
	converged()
	cctx2, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	lead2, err := ctl.Campaign(cctx2, 1)
	if err != nil {
		t.Fatalf("Campaign after quorum returned: %v", err)
	}
	if lead2.Epoch() <= lead.Epoch() {
		t.Fatalf("epoch after re-election %d not above %d", lead2.Epoch(), lead.Epoch())
	}
}

// Porcupine over concurrent get/create/CAS/delete on one key while the
// raft leader crashes and comes back: calls that time out are ambiguous,
// and the model allows them either way.
func TestLinearizableAcrossLeaderCrash(t *testing.T) {
	c := startCluster(t, 3, testHeart, testElection, false)
	stores := make([]coord.Store, 5)
	for i := range stores {
		stores[i] = client(t, c.endpoints(), testSession)
	}
	res := coordtest.CheckLinearizable(t, stores, "/lin/register", coordtest.LinearizableOptions{
		OpsPerClient: 400,
		MaxDuration:  8 * time.Second,
		Pace:         5 * time.Millisecond,
		DuringHistory: func() {
			l := c.leader()
			if l < 0 {
				t.Errorf("no raft leader to crash")
				return
			}
			c.crash(l)
			time.Sleep(1500 * time.Millisecond)
			t.Logf("crashed leader m%d, restarted in %v", l, c.restart(l).Round(time.Millisecond))
		},
	})
	if res.Ops < 500 {
		t.Fatalf("only %d calls recorded", res.Ops)
	}
}
