package netio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. Field comments give the Kafka config name.
type Config struct {
	// Listeners to bind (listeners); see ParseListeners.
	Listeners []Listener
	// Handler serves every request.
	Handler Handler
	// MaxRequestBytes is socket.request.max.bytes: a larger size prefix
	// closes the connection before anything is allocated for it.
	MaxRequestBytes int32
	// IdleTimeout is connections.max.idle.ms: a connection with no bytes
	// read or written and nothing in flight for this long is closed. It also
	// bounds each write call to a peer that stopped reading. 0 disables.
	IdleTimeout time.Duration
	// MaxInflightPerConn bounds, per connection, the requests read but not
	// yet answered (Later responses waiting, responses queued for writing).
	// When reached, netio stops reading that connection (TCP backpressure).
	MaxInflightPerConn int
	// DisableSendfile forces the copying path for file chunks (benchmarks,
	// comparison tests).
	DisableSendfile bool
	// SendfileChunk is the most bytes per sendfile call.
	SendfileChunk int
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns Kafka's defaults: one PLAINTEXT listener on
// localhost:9092, 100 MiB socket.request.max.bytes, 10-minute
// connections.max.idle.ms, and 256 KiB sendfile calls.
func DefaultConfig() Config {
	return Config{
		Listeners:          []Listener{{Name: "PLAINTEXT", SecurityProtocol: PLAINTEXT, Host: "localhost", Port: 9092}},
		MaxRequestBytes:    DefaultMaxRequestBytes,
		IdleTimeout:        600000 * time.Millisecond,
		MaxInflightPerConn: 32,
		SendfileChunk:      DefaultSendfileChunk,
	}
}

// Validate reports every problem in c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Handler == nil {
		errs = append(errs, errors.New("netio: Handler is nil"))
	}
	if len(c.Listeners) == 0 {
		errs = append(errs, errors.New("netio: no listeners"))
	}
	names := map[string]bool{}
	for _, l := range c.Listeners {
		if l.SecurityProtocol != PLAINTEXT {
			errs = append(errs, fmt.Errorf("netio: listener %s: security protocol %s is not supported yet (only PLAINTEXT)", l, l.SecurityProtocol))
		}
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("netio: listener name %s used twice", l.Name))
		}
		names[l.Name] = true
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("netio: socket.request.max.bytes must be positive, got %d", c.MaxRequestBytes))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("netio: connections.max.idle.ms must not be negative, got %v", c.IdleTimeout))
	}
	if c.MaxInflightPerConn < 1 {
		errs = append(errs, fmt.Errorf("netio: MaxInflightPerConn must be at least 1, got %d", c.MaxInflightPerConn))
	}
	if c.SendfileChunk < 4096 {
		errs = append(errs, fmt.Errorf("netio: SendfileChunk must be at least 4096, got %d", c.SendfileChunk))
	}
	return errors.Join(errs...)
}

// Server accepts Kafka connections on its listeners and runs one reader and
// one writer goroutine per connection; there is no shared run loop, so a
// slow request on one connection never delays another connection.
type Server struct {
	cfg     Config
	log     *slog.Logger
	m       counters
	nextID  atomic.Uint64
	started bool

	mu        sync.Mutex
	lns       []net.Listener
	lnNames   []Listener
	conns     map[*conn]struct{}
	stopping  bool
	acceptWG  sync.WaitGroup
	connWG    sync.WaitGroup
	allClosed chan struct{}
}

// NewServer validates cfg and returns a Server that is not listening yet.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, conns: map[*conn]struct{}{}}, nil
}

// Start binds every listener (all or none) and starts accepting.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("netio: server already started")
	}
	var lns []net.Listener
	for _, l := range s.cfg.Listeners {
		ln, err := net.Listen("tcp", l.Address())
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return fmt.Errorf("netio: listener %s: %w", l, err)
		}
		lns = append(lns, ln)
	}
	s.started = true
	s.lns, s.lnNames = lns, s.cfg.Listeners
	for i, ln := range lns {
		s.log.Info("listening", "listener", s.cfg.Listeners[i].Name, "addr", ln.Addr().String())
		s.acceptWG.Add(1)
		go s.acceptLoop(ln, s.cfg.Listeners[i])
	}
	return nil
}

// Addrs returns the bound address of each listener by name (with the real
// port when the configured port was 0).
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]net.Addr{}
	for i, ln := range s.lns {
		out[s.lnNames[i].Name] = ln.Addr()
	}
	return out
}

// Addr returns the bound address of the named listener, or nil.
func (s *Server) Addr(name string) net.Addr { return s.Addrs()[name] }

// Metrics returns a snapshot of the counters.
func (s *Server) Metrics() Metrics { return s.m.snapshot() }

func (s *Server) acceptLoop(ln net.Listener, l Listener) {
	defer s.acceptWG.Done()
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: log, wait, retry.
			s.log.Warn("accept failed", "listener", l.Name, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.m.connectionsAccepted.Add(1)
		c := s.newConn(nc, l)
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			nc.Close()
			s.m.connectionsClosed.Add(1)
			continue
		}
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go c.readLoop()
		go c.writeLoop()
	}
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	s.stopping = true
	lns := s.lns
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	s.acceptWG.Wait()
}

func (s *Server) connList() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Shutdown stops accepting, stops reading new requests (frames already
// fully received are still served), lets in-flight requests finish and
// their responses go out in order, then closes each connection. If ctx ends
// first, the remaining connections are closed at once (their contexts
// cancelled) and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	for _, c := range s.connList() {
		c.drain()
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, c := range s.connList() {
		c.abort()
	}
	// Aborted connections end as soon as their handlers honour the
	// cancelled context; do not wait for ones that never do.
	select {
	case <-done:
	case <-time.After(time.Second):
		s.log.Warn("connections still open after forced shutdown: a handler ignores its context")
	}
	return ctx.Err()
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
