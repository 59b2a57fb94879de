package coordtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// Environment of a child process: the suite runs the test binary again with
// these set; MaybeChild sees them and becomes a registrant.
const (
	envSpec     = "BROKKR_COORDTEST_CHILD_SPEC"
	envBroker   = "BROKKR_COORDTEST_CHILD_BROKER"
	envCampaign = "BROKKR_COORDTEST_CHILD_CAMPAIGN"
	readyPrefix = "COORDTEST-CHILD-READY"
)

// MaybeChild must be the first thing a backend's TestMain does:
//
//	func TestMain(m *testing.M) {
//		coordtest.MaybeChild(func(spec string) (coord.Backend, error) { return open(spec) })
//		os.Exit(m.Run())
//	}
//
// In the test process it returns at once. In a child started by the suite
// (the test binary run again with the suite's environment) it opens a backend
// with open(Harness.ChildSpec), registers the broker whose ID the suite chose,
// campaigns for controller if asked, prints one ready line to stdout and
// blocks until it is killed (or its stdin closes, so that a child never
// outlives a crashed test process); it never returns.
func MaybeChild(open func(spec string) (coord.Backend, error)) {
	spec, ok := os.LookupEnv(envSpec)
	if !ok {
		return
	}
	os.Exit(runChild(open, spec))
}

func runChild(open func(spec string) (coord.Backend, error), spec string) int {
	id, err := strconv.ParseInt(os.Getenv(envBroker), 10, 32)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coordtest child: bad %s: %v\n", envBroker, err)
		return 2
	}
	b, err := open(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coordtest child: open %q: %v\n", spec, err)
		return 2
	}
	ctx := context.Background()
	if _, err := b.Register(ctx, childInfo(int32(id))); err != nil {
		fmt.Fprintf(os.Stderr, "coordtest child: register %d: %v\n", id, err)
		return 2
	}
	var epoch int64
	if os.Getenv(envCampaign) == "1" {
		l, err := b.Campaign(ctx, int32(id))
		if err != nil {
			fmt.Fprintf(os.Stderr, "coordtest child: campaign %d: %v\n", id, err)
			return 2
		}
		epoch = l.Epoch()
	}
	fmt.Printf("%s broker=%d epoch=%d\n", readyPrefix, id, epoch)
	// Block until killed, or until the parent goes away (stdin EOF). No Close:
	// leaving without one is what a crash looks like.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// childInfo is what a child registers, so the parent can check it field by field.
func childInfo(id int32) coord.BrokerInfo {
	return coord.BrokerInfo{
		ID:        id,
		Rack:      "rack-child",
		Endpoints: []string{fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", 20000+id%10000)},
		Meta:      map[string]string{"role": "child"},
	}
}

// Child is a registrant process started by the suite (or by a backend's
// benchmarks through StartChild).
type Child struct {
	id      int32
	cmd     *exec.Cmd
	stdin   *os.File
	ready   chan string
	exited  chan struct{}
	stderr  *lockedBuffer
	epoch   int64
	killed  time.Time
	waitErr error
}

// StartChild runs the test binary again (its TestMain must call MaybeChild)
// as a registrant of broker id, opened from spec, that also campaigns for
// controller when campaign is set, and waits up to limit for it to be ready.
// t.Cleanup kills it.
func StartChild(t testing.TB, spec string, id int32, campaign bool, limit time.Duration) *Child {
	t.Helper()
	if spec == "" {
		t.Fatalf("coordtest: empty child spec: cannot start a registrant process")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	c := &Child{id: id, stdin: w, ready: make(chan string, 1), exited: make(chan struct{}), stderr: &lockedBuffer{}}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	camp := "0"
	if campaign {
		camp = "1"
	}
	c.cmd.Env = append(os.Environ(), envSpec+"="+spec, envBroker+"="+strconv.Itoa(int(id)), envCampaign+"="+camp)
	c.cmd.Stdin = r
	c.cmd.Stdout = &lineWriter{fn: func(line string) {
		if strings.HasPrefix(line, readyPrefix) {
			select {
			case c.ready <- line:
			default:
			}
		} else {
			c.stderr.Write([]byte("stdout: " + line + "\n"))
		}
	}}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start child: %v", err)
	}
	r.Close()
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill()
		w.Close()
		select {
		case <-c.exited:
		case <-time.After(opTimeout):
			t.Errorf("child %d (pid %d) did not exit after SIGKILL", id, c.cmd.Process.Pid)
		}
	})
	select {
	case line := <-c.ready:
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "epoch="); ok {
				c.epoch, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		t.Logf("child broker %d ready (pid %d): %s", id, c.cmd.Process.Pid, line)
	case <-c.exited:
		t.Fatalf("child broker %d exited before it was ready (%v); its output:\n%s", id, c.waitErr, c.stderr.String())
	case <-time.After(limit):
		t.Fatalf("child broker %d not ready within %v; its output:\n%s", id, limit, c.stderr.String())
	}
	return c
}

// Epoch is the controller epoch the child won (0 if it did not campaign).
func (c *Child) Epoch() int64 { return c.epoch }

// PID is the child's process ID.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Kill sends SIGKILL to the child (by its PID) and returns when it was sent.
func (c *Child) Kill() time.Time {
	c.kill()
	return c.killed
}

func (c *Child) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	if c.killed.IsZero() {
		c.killed = time.Now()
	}
	_ = c.cmd.Process.Kill()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep at most ~1 MiB of a noisy child's output
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lineWriter calls fn for every complete line written to it.
type lineWriter struct {
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.fn(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}
