package main

// Child processes of brokkr bench: `brokkr serve` for --spawn and
// `brokkr bench sink` for the client ceiling, each on a free loopback port,
// stopped by their own PID.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// spawned is one child process.
type spawned struct {
	cmd  *exec.Cmd
	pid  int
	addr string
	dir  string // temporary directory removed on stop ("" for none)
	gc   gcTrace
	done chan struct{}
	// stopping silences the child's output: shutdown chatter is not news.
	stopping atomic.Bool

	mu   sync.Mutex
	tail []string // last lines of output, for errors
}

func (s *spawned) keep(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail = append(s.tail, line)
	if len(s.tail) > 30 {
		s.tail = s.tail[len(s.tail)-30:]
	}
}

func (s *spawned) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

var (
	serveListenRE = regexp.MustCompile(`listening on PLAINTEXT://([^ ,]+)`)
	sinkListenRE  = regexp.MustCompile(`brokkr bench sink: listening on (\S+)`)
)

// spawnBroker starts `bin serve` on 127.0.0.1 port 0 with a temporary data
// dir and GODEBUG=gctrace=1 (its Go heap is then read from its stderr), and
// waits until it says it is ready.
func spawnBroker(ctx context.Context, bin string, overrides []string, logw io.Writer) (*spawned, error) {
	dir, err := os.MkdirTemp("", "brokkr-bench-")
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--log-level", "warn",
		"--override", "listeners=PLAINTEXT://127.0.0.1:0",
		"--override", "log.dirs=" + filepath.Join(dir, "logs")}
	for _, o := range overrides {
		args = append(args, "--override", o)
	}
	s, err := startChild(ctx, bin, args, dir, serveListenRE, "ready in", logw)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.dir = dir
	return s, nil
}

// spawnSink starts `bin bench sink` on 127.0.0.1 port 0.
func spawnSink(ctx context.Context, bin string, partitions int32, logw io.Writer) (*spawned, error) {
	args := []string{"bench", "sink", "--listen", "127.0.0.1:0", "--partitions", fmt.Sprint(partitions)}
	return startChild(ctx, bin, args, "", sinkListenRE, "listening on", logw)
}

func startChild(ctx context.Context, bin string, args []string, dir string, addrRE *regexp.Regexp, readyWord string, logw io.Writer) (*spawned, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	s := &spawned{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	ready := make(chan string, 1)
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stdout)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			s.keep(line)
			if m := addrRE.FindStringSubmatch(line); m != nil && addr == "" {
				addr = m[1]
			}
			if strings.Contains(line, readyWord) && addr != "" {
				select {
				case ready <- addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if s.gc.line(line) {
				continue
			}
			s.keep(line)
			if logw != nil && !s.stopping.Load() {
				fmt.Fprintf(logw, "bench: [pid %d] %s\n", s.pid, line)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		pipes.Wait()
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case addr := <-ready:
		s.addr = addr
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s %s exited before it was ready:\n%s", bin, args[0], s.output())
	case <-ctx.Done():
		_ = s.stop()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		_ = s.stop()
		return nil, fmt.Errorf("%s %s was not ready within 60 s:\n%s", bin, args[0], s.output())
	}
}

// stop sends SIGTERM, waits up to 20 s, then SIGKILL; it removes the
// temporary directory.
func (s *spawned) stop() error {
	var err error
	s.stopping.Store(true)
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			err = errors.New("did not stop within 20 s of SIGTERM; killed")
		}
	}
	if s.dir != "" {
		if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
