package zk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

// childEnv, when set, makes the test binary a registrant child (see
// startChild): "spec|brokerID|campaign".
const childEnv = "BROKKR_ZK_CHILD"

func TestMain(m *testing.M) {
	coordtest.MaybeChild(func(spec string) (coord.Backend, error) { return openSpec(spec) })
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	os.Exit(m.Run())
}

// childSpec is "addr|chroot|session-ms".
func childSpec(addr, chroot string, session time.Duration) string {
	return fmt.Sprintf("%s|%s|%d", addr, chroot, session.Milliseconds())
}

func openSpec(spec string) (*Backend, error) {
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		return nil, fmt.Errorf("bad child spec %q", spec)
	}
	ms, err := strconv.Atoi(parts[2])
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.Servers, cfg.Chroot = []string{parts[0]}, parts[1]
	cfg.SessionTimeout = time.Duration(ms) * time.Millisecond
	cfg.ConnectionTimeout = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Open(ctx, cfg)
}

func runChild(v string) int {
	i := strings.LastIndexByte(v, '|')
	j := strings.LastIndexByte(v[:i], '|')
	spec, id, campaign := v[:j], v[j+1:i], v[i+1:] == "campaign"
	b, err := openSpec(spec)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	n, _ := strconv.Atoi(id)
	ctx := context.Background()
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: int32(n), Endpoints: []string{"PLAINTEXT://127.0.0.1:9092"}}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if campaign {
		if _, err := b.Campaign(ctx, int32(n)); err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

// startChild runs this test binary as a process that registers broker id
// (and campaigns when asked), and returns it once it said "ready".
func startChild(t testing.TB, spec string, id int32, campaign bool) *exec.Cmd {
	t.Helper()
	mode := "register"
	if campaign {
		mode = "campaign"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%s", childEnv, spec, id, mode))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
		for s.Scan() {
		}
	}()
	select {
	case l := <-line:
		if l != "ready" {
			t.Fatalf("child: %s", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("child not ready in 60s")
	}
	return cmd
}

func brokerIDs(bs []coord.BrokerInfo) []int32 {
	ids := []int32{}
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	return ids
}

// nextBrokers waits for a live set equal to want.
func waitBrokers(t testing.TB, ch <-chan []coord.BrokerInfo, limit time.Duration, want ...int32) []coord.BrokerInfo {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case bs, ok := <-ch:
			if !ok {
				t.Fatalf("broker watch closed")
			}
			if fmt.Sprint(brokerIDs(bs)) == fmt.Sprint(append([]int32{}, want...)) {
				return bs
			}
		case <-deadline:
			t.Fatalf("live brokers never became %v within %v", want, limit)
		}
	}
}

func TestRegisterAndWatchBrokers(t *testing.T) {
	srv := zktest.Start(t)
	a := open(t, srv.Addr(), "/kafka", testSession)
	bb := open(t, srv.Addr(), "/kafka", testSession)
	ctx := ctxT(t)
	ch, err := a.WatchBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, ch, 10*time.Second)
	r1, err := a.Register(ctx, coord.BrokerInfo{ID: 1, Rack: "r1", Endpoints: []string{"PLAINTEXT://h1:9092", "EXTERNAL://e1:19092"}, Meta: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bb.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://h9:9092"}}); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("duplicate id from another session = %v, want ErrConflict", err)
	}
	if _, err := bb.Register(ctx, coord.BrokerInfo{ID: 2, Endpoints: []string{"PLAINTEXT://h2:9092"}}); err != nil {
		t.Fatal(err)
	}
	bs := waitBrokers(t, ch, 10*time.Second, 1, 2)
	if bs[0].Rack != "r1" || len(bs[0].Endpoints) != 2 || bs[0].Endpoints[1] != "EXTERNAL://e1:19092" || bs[0].Meta["k"] != "v" {
		t.Fatalf("broker 1 = %+v", bs[0])
	}
	// Kafka's JSON at Kafka's path.
	raw, st, err := a.conn.Get("/kafka/brokers/ids/1")
	if err != nil || st.EphemeralOwner != a.conn.SessionID() {
		t.Fatalf("znode: %v, owner %x", err, st.EphemeralOwner)
	}
	for _, want := range []string{`"host":"h1"`, `"port":9092`, `"version":5`, `"rack":"r1"`, `"jmx_port":-1`, `"EXTERNAL":"PLAINTEXT"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("broker JSON %s lacks %s", raw, want)
		}
	}
	if err := r1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, ch, 10*time.Second, 2)
	bb.Close() // closing the session removes its ephemerals at once
	waitBrokers(t, ch, 10*time.Second)
}

func TestCampaignFencing(t *testing.T) {
	srv := zktest.Start(t)
	a := open(t, srv.Addr(), "/c", testSession)
	bb := open(t, srv.Addr(), "/c", testSession)
	ctx := ctxT(t)
	if _, _, err := a.Controller(ctx); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Controller before any = %v", err)
	}
	la, err := a.Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if id, ep, err := bb.Controller(ctx); err != nil || id != 1 || ep != la.Epoch() {
		t.Fatalf("Controller = %d %d %v, want 1 %d", id, ep, err, la.Epoch())
	}
	// The controller znodes are the backend's, not Store records.
	if recs, err := bb.List(ctx, "/"); err != nil || len(recs) != 0 {
		t.Fatalf("List(/) = %+v %v, want no records", recs, err)
	}
	if _, err := bb.Get(ctx, "/controller"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Get(/controller) = %v, want ErrInvalidKey", err)
	}
	v, err := la.Store().Create(ctx, "/brokers/topics/t/partitions/0/state", []byte("e1"))
	if err != nil {
		t.Fatalf("fenced create: %v", err)
	}
	// b's campaign blocks while a leads.
	won := make(chan coord.Leadership, 1)
	go func() {
		l, err := bb.Campaign(ctx, 2)
		if err != nil {
			t.Errorf("campaign 2: %v", err)
		}
		won <- l
	}()
	select {
	case <-won:
		t.Fatalf("two controllers at once")
	case <-time.After(time.Second):
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := a.Campaign(short, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign past its deadline = %v", err)
	}
	stale := la.Store()
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	var lb coord.Leadership
	select {
	case lb = <-won:
	case <-time.After(20 * time.Second):
		t.Fatalf("no new controller after resign")
	}
	if lb.Epoch() <= la.Epoch() {
		t.Fatalf("epoch %d after %d", lb.Epoch(), la.Epoch())
	}
	select {
	case <-la.Lost():
	default:
		t.Fatalf("resigned leadership not lost")
	}
	if _, err := stale.CompareAndSet(ctx, "/brokers/topics/t/partitions/0/state", []byte("old"), v); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("write of a resigned leader = %v, want ErrFenced", err)
	}
	// A leadership that does not know it was superseded: the epoch check
	// in the transaction refuses the write.
	zombie := &leadership{b: a, brokerID: 1, epoch: la.Epoch(), epochZkVersion: la.(*leadership).epochZkVersion, lost: make(chan struct{})}
	if _, err := zombie.Store().CompareAndSet(ctx, "/brokers/topics/t/partitions/0/state", []byte("old"), v); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("zombie write = %v, want ErrFenced", err)
	}
	select {
	case <-zombie.Lost():
	default:
		t.Fatalf("a fenced leadership should end")
	}
	if _, err := zombie.Store().Create(ctx, "/x", nil); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("zombie create = %v", err)
	}
	if err := zombie.Store().Delete(ctx, "/brokers/topics/t/partitions/0/state", coord.NoVersion); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("zombie delete = %v", err)
	}
	// The current leader writes; a conflict is a conflict, not a fence.
	v2, err := lb.Store().CompareAndSet(ctx, "/brokers/topics/t/partitions/0/state", []byte("e2"), v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Store().CompareAndSet(ctx, "/brokers/topics/t/partitions/0/state", []byte("e2"), v); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("stale CAS by the leader = %v, want ErrConflict", err)
	}
	if err := lb.Store().Delete(ctx, "/brokers/topics/t/partitions/0/state", v2); err != nil {
		t.Fatal(err)
	}
	raw, _, err := a.conn.Get("/c/controller_epoch")
	if err != nil || string(raw) != strconv.FormatInt(lb.Epoch(), 10) {
		t.Fatalf("/controller_epoch = %q %v", raw, err)
	}
	// Closing the winner's session hands over.
	won2 := make(chan coord.Leadership, 1)
	go func() {
		l, _ := a.Campaign(ctx, 1)
		won2 <- l
	}()
	bb.Close()
	select {
	case <-lb.Lost():
	case <-time.After(10 * time.Second):
		t.Fatalf("Lost not closed on Close")
	}
	select {
	case l := <-won2:
		if l == nil || l.Epoch() <= lb.Epoch() {
			t.Fatalf("leadership %v after epoch %d", l, lb.Epoch())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no controller after the leader closed")
	}
}

// TestSessionExpiry cuts one client off (a proxy closes its connections)
// for longer than its session time-out: ZooKeeper expires the session, its
// broker znode goes and another broker becomes controller. The cut-off
// client gives controllership up at once, and when it can reach ZooKeeper
// again it has a new session on which it registers its broker again; its
// watch resyncs and sees what changed meanwhile; its old leadership's writes
// are fenced.
func TestSessionExpiry(t *testing.T) {
	srv := zktest.Start(t)
	proxy := zktest.NewProxy(t, srv.Addr())
	const session = 2 * time.Second
	a := open(t, proxy.Addr(), "/s", session)
	obs := open(t, srv.Addr(), "/s", testSession)
	ctx := ctxT(t)

	reg, err := a.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://h1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Store().Create(ctx, "/data/k", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	watch, err := a.Watch(ctx, "/data/")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, watch, 10*time.Second); ev.Kind != coord.EventResync || len(ev.Snapshot) != 1 {
		t.Fatalf("first = %+v", ev)
	}
	brokers, err := obs.WatchBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, brokers, 10*time.Second, 1)
	oldSession := a.conn.SessionID()

	cutAt := time.Now()
	proxy.Cut()
	select {
	case <-la.Lost():
		t.Logf("leadership lost %v after the cut", time.Since(cutAt))
	case <-time.After(session * 3):
		t.Fatalf("leadership not given up within %v of the cut", session*3)
	}
	waitBrokers(t, brokers, 4*session+5*time.Second)
	t.Logf("broker 1 gone %v after the cut (session %v)", time.Since(cutAt), session)
	lo, err := obs.Campaign(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	if lo.Epoch() <= la.Epoch() {
		t.Fatalf("epoch %d after %d", lo.Epoch(), la.Epoch())
	}
	if _, err := obs.Create(ctx, "/data/new", []byte("made while cut off")); err != nil {
		t.Fatal(err)
	}

	proxy.Heal()
	waitBrokers(t, brokers, 20*time.Second, 1)
	if a.conn.SessionID() == oldSession {
		t.Fatalf("session id unchanged after expiry")
	}
	select {
	case <-reg.Lost():
		t.Fatalf("registration lost although it was re-created")
	default:
	}
	// The watch resyncs with what changed while cut off.
	deadline := time.After(20 * time.Second)
	for resynced := false; !resynced; {
		select {
		case ev := <-watch:
			if ev.Kind == coord.EventResync {
				resynced = len(ev.Snapshot) == 2 && ev.Snapshot[0].Key == "/data/k" && ev.Snapshot[1].Key == "/data/new"
				if !resynced {
					t.Logf("resync without the new record yet: %+v", ev.Snapshot)
				}
			} else if ev.Key == "/data/new" {
				resynced = true
			}
		case <-deadline:
			t.Fatalf("watch never caught up after the expiry")
		}
	}
	rec, err := obs.Get(ctx, "/data/k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Store().CompareAndSet(ctx, "/data/k", []byte("zombie"), rec.Version); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("old leader's write = %v, want ErrFenced", err)
	}
	if id, ep, err := a.Controller(ctx); err != nil || id != 9 || ep != lo.Epoch() {
		t.Fatalf("Controller = %d %d %v", id, ep, err)
	}
	// And it still works normally.
	if _, err := a.CompareAndSet(ctx, "/data/k", []byte("v1"), rec.Version); err != nil {
		t.Fatal(err)
	}
}

// TestServerRestart: kill -9 the ZooKeeper server and start it again. The
// sessions survive (ZooKeeper restores them from its log), registrations
// stay, a watch resyncs and sees changes made after the restart, data
// written before the crash is there.
func TestServerRestart(t *testing.T) {
	srv := zktest.Start(t)
	a := open(t, srv.Addr(), "/r", testSession)
	ctx := ctxT(t)
	if _, err := a.Register(ctx, coord.BrokerInfo{ID: 3, Endpoints: []string{"PLAINTEXT://h3:9092"}}); err != nil {
		t.Fatal(err)
	}
	v, err := a.Create(ctx, "/d/k", []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	watch, err := a.Watch(ctx, "/d/")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, watch, 10*time.Second)
	srv.Kill9()
	// While the server is down calls fail fast and say so.
	getCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := a.Get(getCtx, "/d/k"); !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("Get with the server down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Get with the server down took %v", d)
	}
	srv.StartAgain()
	var v2 coord.Version
	eventually(t, 30*time.Second, "CAS after restart", func() bool {
		v2, err = a.CompareAndSet(ctx, "/d/k", []byte("after"), v)
		return err == nil
	})
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-watch:
			switch ev.Kind {
			case coord.EventPut:
				done = ev.Version == v2
			case coord.EventResync:
				done = len(ev.Snapshot) == 1 && ev.Snapshot[0].Version == v2
			}
		case <-deadline:
			t.Fatalf("watch did not see the write after the restart")
		}
	}
	obs := open(t, srv.Addr(), "/r", testSession)
	ids, _, err := obs.conn.Children("/r/brokers/ids")
	if err != nil || len(ids) != 1 || ids[0] != "3" {
		t.Fatalf("registrations after restart = %v %v", ids, err)
	}
}

// TestKilledRegistrant: a child process registers and becomes controller,
// then dies by SIGKILL; its broker znode and /controller go within the
// session time-out and another broker is elected with a higher epoch.
func TestKilledRegistrant(t *testing.T) {
	srv := zktest.Start(t)
	obs := open(t, srv.Addr(), "/k", testSession)
	ctx := ctxT(t)
	brokers, err := obs.WatchBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, childSpec(srv.Addr(), "/k", testSession), 5, true)
	waitBrokers(t, brokers, 10*time.Second, 5)
	id, epoch, err := obs.Controller(ctx)
	if err != nil || id != 5 {
		t.Fatalf("controller = %d %v", id, err)
	}
	killed := time.Now()
	if err := syscall.Kill(child.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, brokers, 2*testSession+5*time.Second)
	gone := time.Since(killed)
	l, err := obs.Campaign(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(killed)
	t.Logf("session %v: broker gone after %v, new controller after %v", testSession, gone, elected)
	if gone > 2*testSession || l.Epoch() <= epoch {
		t.Fatalf("gone after %v (limit %v), epoch %d after %d", gone, 2*testSession, l.Epoch(), epoch)
	}
}

// TestConcurrentCAS: many clients race one CAS; exactly one wins each round.
func TestConcurrentCAS(t *testing.T) {
	srv := zktest.Start(t)
	ctx := ctxT(t)
	const clients = 6
	bs := make([]*Backend, clients)
	for i := range bs {
		bs[i] = open(t, srv.Addr(), "", testSession)
	}
	v, err := bs[0].Create(ctx, "/race", []byte("start"))
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		var next coord.Version
		for i, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nv, err := b.CompareAndSet(ctx, "/race", []byte(fmt.Sprintf("%d/%d", round, i)), v)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners++
					next = nv
				case !errors.Is(err, coord.ErrConflict):
					t.Errorf("CAS: %v", err)
				}
			}()
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("round %d: %d winners", round, winners)
		}
		v = next
	}
}
