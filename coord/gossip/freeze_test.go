package gossip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// The freeze child: this test binary run again with envFreezeSpec set. It
// joins the cluster, registers broker envFreezeID, campaigns, prints
// "READY <epoch>", then answers one line per command read from stdin:
//
//	put KEY VALUE   plain write (Create, or CAS on the local version) -> "PUT ok <epoch> <hlc> <node>" or "PUT err ..."
//	fput KEY VALUE  the same through the leadership's fenced Store     -> "FPUT ok ..." or "FPUT err <error>"
//	get KEY                                                             -> "GET <value> <version>" or "GET err ..."
//	lost                                                                -> "LOST yes|no"
const (
	envFreezeSpec = "BROKKR_GOSSIP_FREEZE_SPEC"
	envFreezeID   = "BROKKR_GOSSIP_FREEZE_ID"
)

func maybeFreezeChild() {
	spec, ok := os.LookupEnv(envFreezeSpec)
	if !ok {
		return
	}
	os.Exit(runFreezeChild(spec))
}

func runFreezeChild(spec string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "freeze child: "+format+"\n", args...)
		return 2
	}
	id, err := strconv.Atoi(os.Getenv(envFreezeID))
	if err != nil {
		return fail("bad id: %v", err)
	}
	cfg, err := specConfig(spec)
	if err != nil {
		return fail("%v", err)
	}
	cfg.BindAddr = "127.0.0.5"
	b, err := Open(context.Background(), cfg)
	if err != nil {
		return fail("open: %v", err)
	}
	ctx := context.Background()
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: int32(id), Endpoints: []string{"PLAINTEXT://127.0.0.5:9092"}}); err != nil {
		return fail("register: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	l, err := b.Campaign(cctx, int32(id))
	cancel()
	if err != nil {
		return fail("campaign: %v", err)
	}
	fmt.Printf("READY %d\n", l.Epoch())
	write := func(st coord.Store, key, val string) string {
		var err error
		r, gerr := b.Get(ctx, key)
		switch {
		case errors.Is(gerr, coord.ErrNotFound):
			_, err = st.Create(ctx, key, []byte(val))
		case gerr != nil:
			err = gerr
		default:
			_, err = st.CompareAndSet(ctx, key, []byte(val), r.Version)
		}
		if err != nil {
			return "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		s, _ := stampOf(b, key)
		return fmt.Sprintf("ok %d %d %d %s", s.Epoch, s.Ctl, s.HLC, s.Node)
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "put":
			fmt.Println("PUT", write(b, f[1], f[2]))
		case len(f) == 3 && f[0] == "fput":
			fmt.Println("FPUT", write(l.Store(), f[1], f[2]))
		case len(f) == 2 && f[0] == "get":
			if r, err := b.Get(ctx, f[1]); err != nil {
				fmt.Println("GET err", err)
			} else {
				fmt.Println("GET", string(r.Value), r.Version)
			}
		case len(f) == 1 && f[0] == "lost":
			select {
			case <-l.Lost():
				fmt.Println("LOST yes")
			default:
				fmt.Println("LOST no")
			}
		default:
			fmt.Println("ERR unknown command", sc.Text())
		}
	}
	return 0 // stdin closed: the parent is gone
}

// freezeChild is the parent's handle on a freeze child.
type freezeChild struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	exit  chan struct{}
}

func startFreezeChild(t testing.TB, spec string, id int) *freezeChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFreezeSpec+"="+spec, envFreezeID+"="+strconv.Itoa(id))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var quiet atomic.Bool
	cmd.Stderr = tWriter{t, &quiet}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	c := &freezeChild{cmd: cmd, in: in, lines: make(chan string, 100), exit: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	go func() { _ = cmd.Wait(); close(c.exit) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		in.Close()
		select {
		case <-c.exit:
		case <-time.After(10 * time.Second):
			t.Errorf("child pid %d did not exit", cmd.Process.Pid)
		}
	})
	t.Cleanup(func() { quiet.Store(true) }) // runs first: no t.Log after the test
	return c
}

// next returns the child's next output line.
func (c *freezeChild) next(t testing.TB, limit time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("child exited")
		}
		return l
	case <-time.After(limit):
		t.Fatalf("no line from the child within %v", limit)
	}
	return ""
}

func (c *freezeChild) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		t.Fatalf("write to child: %v", err)
	}
}

func (c *freezeChild) ask(t *testing.T, cmd string) string {
	c.send(t, cmd)
	return c.next(t, 30*time.Second)
}

func parseStamp(t testing.TB, line string) stamp {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 6 || f[1] != "ok" {
		t.Fatalf("child write: %q", line)
	}
	e, _ := strconv.ParseInt(f[2], 10, 64)
	c, _ := strconv.ParseInt(f[3], 10, 32)
	h, _ := strconv.ParseUint(f[4], 10, 64)
	return stamp{Epoch: e, Ctl: int32(c), HLC: h, Node: f[5]}
}

// TestFreezeAndResume stops a gossip node (a child process holding the
// controllership) with SIGSTOP: the others must declare it dead within the
// documented failure-detection time and elect a new controller with a
// higher epoch. Both sides then write the same key, the child with the
// write queued while it was stopped. After SIGCONT the child's fenced write
// is refused, it rejoins, and every replica converges on the write with the
// higher stamp (the higher epoch wins even if it is older in wall time).
func TestFreezeAndResume(t *testing.T) {
	c := newCluster(t, TestConfig)
	n1 := c.add(nil)
	n2 := c.add(nil)
	n3 := c.add(nil)
	waitMembers(t, 15*time.Second, n1, n2, n3)
	cfg := TestConfig()
	typical, worst := cfg.FailureDetection(4)
	limit := worst + 3*time.Second // margin for a loaded machine
	ctx := ctxT(t)
	bw, err := n1.WatchBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var live []coord.BrokerInfo
	hasBroker := func(id int32) bool {
		for {
			select {
			case l := <-bw:
				live = l
				continue
			default:
			}
			break
		}
		for _, b := range live {
			if b.ID == id {
				return true
			}
		}
		return false
	}

	child := startFreezeChild(t, "test;"+n1.Addr(), 1)
	ready := child.next(t, 60*time.Second)
	e1, err := strconv.ParseInt(strings.TrimPrefix(ready, "READY "), 10, 64)
	if err != nil {
		t.Fatalf("child: %q", ready)
	}
	eventually(t, 15*time.Second, "child is controller and registered", func() error {
		id, ep, err := n2.Controller(ctx)
		if err != nil || id != 1 || ep != e1 {
			return fmt.Errorf("Controller() = %d, %d, %v", id, ep, err)
		}
		if !hasBroker(1) {
			return fmt.Errorf("broker 1 not live")
		}
		return nil
	})
	before := parseStamp(t, child.ask(t, "put /freeze/k child-before"))
	r0 := sameRecord(t, 15*time.Second, "/freeze/k", n1, n2, n3)
	if string(r0.Value) != "child-before" {
		t.Fatalf("replicas hold %q", r0.Value)
	}

	won := make(chan coord.Leadership, 1)
	go func() {
		l, err := n2.Campaign(ctx, 2)
		if err != nil {
			t.Errorf("Campaign: %v", err)
			close(won)
			return
		}
		won <- l
	}()

	if err := child.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	eventually(t, limit, "the stopped node leaves the live set", func() error {
		if hasBroker(1) {
			return fmt.Errorf("broker 1 still live %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))
		}
		return nil
	})
	dead := time.Since(stopped)
	var l2 coord.Leadership
	select {
	case l2 = <-won:
	case <-time.After(limit + cfg.ElectionSettle*4):
		t.Fatalf("no new controller %v after SIGSTOP", time.Since(stopped))
	}
	if l2 == nil {
		t.FailNow()
	}
	elected := time.Since(stopped)
	t.Logf("SIGSTOP: dead after %v, new controller (epoch %d -> %d) after %v; documented typical %v, worst %v",
		dead.Round(time.Millisecond), e1, l2.Epoch(), elected.Round(time.Millisecond), typical, worst)
	if l2.Epoch() <= e1 {
		t.Fatalf("new epoch %d not above %d", l2.Epoch(), e1)
	}

	// The majority side writes the key through the new controller.
	cur, err := n2.Get(ctx, "/freeze/k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Store().CompareAndSet(ctx, "/freeze/k", []byte("parent-during"), cur.Version); err != nil {
		t.Fatalf("CAS through the new controller: %v", err)
	}
	during, _ := stampOf(n2, "/freeze/k")
	sameRecord(t, 15*time.Second, "/freeze/k", n1, n2, n3)

	// Queue the child's writes while it is stopped, then resume it.
	child.send(t, "fput /freeze/k2 stale-controller")
	child.send(t, "put /freeze/k child-after")
	if err := child.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	fput := child.next(t, 30*time.Second)
	if !strings.HasPrefix(fput, "FPUT err") || !strings.Contains(fput, coord.ErrFenced.Error()) {
		t.Fatalf("the stale controller's fenced write after SIGCONT: %q, want ErrFenced", fput)
	}
	after := parseStamp(t, child.next(t, 30*time.Second))
	if lost := child.ask(t, "lost"); lost != "LOST yes" {
		t.Fatalf("the stale controller's leadership: %q, want lost", lost)
	}

	// It rejoins and everything converges on the higher stamp.
	eventually(t, limit+10*time.Second, "the resumed node is live again", func() error {
		if !hasBroker(1) {
			return fmt.Errorf("broker 1 not live %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
		}
		return nil
	})
	t.Logf("SIGCONT: live again after %v", time.Since(resumed).Round(time.Millisecond))
	want, wantVal := during, "parent-during"
	if during.less(after) {
		want, wantVal = after, "child-after"
	}
	t.Logf("stamps: child before %+v, majority during %+v, child after %+v -> winner %q", before, during, after, wantVal)
	final := coord.Record{Key: "/freeze/k", Value: []byte(wantVal), Version: want.version()}
	eventually(t, 30*time.Second, "every replica holds the higher stamp's write", func() error {
		for i, n := range []*Backend{n1, n2, n3} {
			r, err := n.Get(ctx, "/freeze/k")
			if err != nil || string(r.Value) != wantVal || r.Version != final.Version {
				return fmt.Errorf("node %d: %q@%d, %v; want %q@%d", i, r.Value, r.Version, err, wantVal, final.Version)
			}
		}
		return nil
	})
	eventually(t, 30*time.Second, "the child converges too", func() error {
		got := child.ask(t, "get /freeze/k")
		if exp := fmt.Sprintf("GET %s %d", wantVal, final.Version); got != exp {
			return fmt.Errorf("child: %q, want %q", got, exp)
		}
		return nil
	})
	if after.Epoch < l2.Epoch() && wantVal != "parent-during" {
		t.Fatalf("a write at the stale epoch %d beat the new controller's epoch %d", after.Epoch, l2.Epoch())
	}
	if _, err := n2.Get(ctx, "/freeze/k2"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("the refused fenced write exists: %v", err)
	}
	if id, ep, err := n1.Controller(ctx); err != nil || id != 2 || ep != l2.Epoch() {
		t.Fatalf("after the heal Controller() = %d, %d, %v; want 2, %d", id, ep, err, l2.Epoch())
	}
	select {
	case <-l2.Lost():
		t.Fatalf("the new controller lost its leadership when the old one came back")
	default:
	}
}
