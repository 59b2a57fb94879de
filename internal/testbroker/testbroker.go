// Package testbroker runs the real brokkr binary for tests: it builds it
// once per test binary, starts `brokkr serve` on a loopback port with a
// temporary data directory, waits until it is ready, and stops it (SIGTERM,
// or SIGKILL for crash tests) when the test ends.
package testbroker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a brokkr binary built from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "brokkr-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "brokkr")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/brokkr")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/brokkr: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Broker is one running brokkr serve process.
type Broker struct {
	t       testing.TB
	DataDir string
	Addr    string // host:port of the PLAINTEXT listener
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}

	outMu  sync.Mutex // guards output, written by the process's pipes
	output *strings.Builder
}

var listenRE = regexp.MustCompile(`listening on PLAINTEXT://([^ ,]+)`)

// Start runs `brokkr serve` with a fresh data directory, listening on
// 127.0.0.1 with a port chosen by the kernel, plus the given overrides
// ("key=value"). It waits up to 30 s for the broker to say it is ready.
func Start(t testing.TB, overrides ...string) *Broker {
	t.Helper()
	b := &Broker{t: t, DataDir: t.TempDir()}
	b.args = []string{"serve",
		"--override", "listeners=PLAINTEXT://127.0.0.1:0",
		"--override", "log.dirs=" + filepath.Join(b.DataDir, "logs"),
	}
	for _, o := range overrides {
		b.args = append(b.args, "--override", o)
	}
	b.start(t)
	t.Cleanup(func() { b.Stop() })
	return b
}

func (b *Broker) start(t testing.TB) {
	t.Helper()
	args := b.args
	if b.Addr != "" {
		// A restart keeps the same port, as clients and tests expect.
		args = append(append([]string(nil), args...), "--override", "listeners=PLAINTEXT://"+b.Addr)
	}
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = b.DataDir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &strings.Builder{}
	b.outMu.Lock()
	b.output = out
	b.outMu.Unlock()
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		b.outMu.Lock()
		defer b.outMu.Unlock()
		return out.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			b.outMu.Lock()
			out.WriteString(line + "\n")
			b.outMu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil && addr == "" {
				addr = m[1]
			}
			if strings.Contains(line, "ready in") {
				select {
				case ready <- addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	select {
	case addr := <-ready:
		if addr == "" {
			t.Fatalf("brokkr said it was ready without a PLAINTEXT listener:\n%s", b.Output())
		}
		b.Addr = addr
	case <-done:
		t.Fatalf("brokkr serve exited before it was ready:\n%s", b.Output())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("brokkr serve was not ready within 30 s:\n%s", b.Output())
	}
}

// Output is everything the broker printed so far.
func (b *Broker) Output() string {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	if b.output == nil {
		return ""
	}
	return b.output.String()
}

// PID of the running process.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd.Process.Pid
}

// Kill9 kills the broker with SIGKILL and waits for it to be gone.
func (b *Broker) Kill9() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and waits up to 20 s for a clean exit (then SIGKILL).
// It returns the time the shutdown took and whether it exited by itself.
func (b *Broker) Stop() (time.Duration, bool) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return 0, true
	}
	select {
	case <-done:
		return 0, cmd.ProcessState != nil && cmd.ProcessState.Success()
	default:
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return time.Since(start), cmd.ProcessState.Success()
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return time.Since(start), false
	}
}

// Restart starts the broker again on the same port and data directory
// (after Stop or Kill9).
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.start(t)
}

// Eventually polls cond every 20 ms until it is true or limit passes.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %s", limit, what)
		case <-tick.C:
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
