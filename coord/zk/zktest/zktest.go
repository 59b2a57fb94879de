// Package zktest starts a real ZooKeeper server (Debian's `zookeeper`
// package, run with the system Java) for tests: standalone, on a free
// 127.0.0.1 port, with its data in a temporary directory. It can kill the
// server with SIGKILL and start it again on the same port and data, and it
// offers a TCP Proxy that cuts clients off from the server, which is how a
// test makes a ZooKeeper session expire.
//
// Every process and directory it creates is removed with t.Cleanup; nothing
// is ever killed by name, only by the PID this package started.
package zktest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Classpath and main class of Debian's ZooKeeper 3.8 package; the jar's
// manifest pulls in its dependencies.
const (
	classpath = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
	mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
)

// TickTime is the server's tick. ZooKeeper accepts session time-outs from
// 2 ticks (MinSessionTimeout) to the configured maximum, so tests may use
// short sessions.
const (
	TickTime          = 250 * time.Millisecond
	MinSessionTimeout = 2 * TickTime
	MaxSessionTimeout = 60 * time.Second
)

// StartTimeout bounds how long Start and Restart wait for `ruok` -> `imok`.
const StartTimeout = 60 * time.Second

// Server is one standalone ZooKeeper server process.
type Server struct {
	t    testing.TB
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// Start starts a ZooKeeper server and waits until it answers `ruok`. The
// server is killed (SIGKILL by PID) and its directory removed at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		t.Fatalf("zktest: ZooKeeper is not installed (apt-get install -y zookeeper; scripts/test.sh does it): %v", err)
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, port: freePort(t)}
	cfg := fmt.Sprintf(`tickTime=%d
minSessionTimeout=%d
maxSessionTimeout=%d
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat
maxClientCnxns=0
`, TickTime.Milliseconds(), MinSessionTimeout.Milliseconds(), MaxSessionTimeout.Milliseconds(),
		filepath.Join(dir, "data"), s.port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	t.Cleanup(s.stop)
	s.start()
	return s
}

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// PID is the server process's id, or 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill9 kills the server with SIGKILL and waits for it to exit.
func (s *Server) Kill9() {
	s.t.Helper()
	s.stop()
}

// StartAgain starts a killed server again on the same port and data dir.
func (s *Server) StartAgain() {
	s.t.Helper()
	s.start()
}

// Restart is Kill9 followed by StartAgain.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill9()
	s.StartAgain()
}

// LogTail returns the last n bytes of the server's log, for failure messages.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "zk.log"))
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatalf("zktest: server already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "zk.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("zktest: %v", err)
	}
	cmd := exec.Command("java",
		"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
		"-cp", classpath, mainClass, filepath.Join(s.dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		s.t.Fatalf("zktest: start java: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	for {
		if ok, _ := FourLetter(s.Addr(), "ruok"); ok == "imok" {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("zktest: ZooKeeper exited during start; log tail:\n%s", s.LogTail(3000))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			s.t.Fatalf("zktest: ZooKeeper did not answer ruok within %v; log tail:\n%s", StartTimeout, s.LogTail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.t.Errorf("zktest: ZooKeeper pid %d did not exit 30s after SIGKILL", cmd.Process.Pid)
	}
}

// FourLetter sends a ZooKeeper four-letter command ("ruok", "srvr") and
// returns the answer, with a 2 s bound on the whole exchange.
func FourLetter(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	return string(bytes.TrimSpace(b)), err
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("zktest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proxy forwards TCP connections from its own loopback port to a server.
// Cut closes every open connection and refuses new ones until Heal: to the
// clients behind it the server is gone, while the server sees the clients'
// connections end and, after their session time-out, expires their sessions.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// NewProxy starts a proxy to target on 127.0.0.1 port 0; it stops at cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("zktest: proxy listen: %v", err)
	}
	p := &Proxy{t: t, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
	})
	return p
}

// Addr is the proxy's "127.0.0.1:port": give it to clients instead of the server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every forwarded connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Heal lets connections through again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *Proxy) forward(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}
	go pipe(u, c)
	go pipe(c, u)
}
