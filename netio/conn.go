package netio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection: readLoop decodes frames and calls the
// handler in request order; writeLoop writes responses in the same order.
// They talk through slots, a FIFO channel; sem bounds the slots in flight.
type conn struct {
	s      *Server
	nc     net.Conn
	info   *Conn
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	fr     *frameReader
	w      *bodyWriter

	slots chan *slot
	sem   chan struct{}

	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex // guards draining and read-deadline changes
	draining  bool
	lastWrite atomic.Int64 // unix nanos of the last response written
}

// slot is one request's place in the response order.
type slot struct {
	key, version int16
	corr         int32
	done         chan struct{} // closed when resp is final
	resp         Response
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *Server) newConn(nc net.Conn, l Listener) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	info := &Conn{ID: s.nextID.Add(1), Listener: l.Name, Protocol: l.SecurityProtocol, Remote: nc.RemoteAddr(), Local: nc.LocalAddr()}
	n := s.cfg.MaxInflightPerConn
	c := &conn{
		s: s, nc: nc, info: info, ctx: ctx, cancel: cancel,
		log:    s.log.With("conn", info.ID, "remote", nc.RemoteAddr().String(), "listener", l.Name),
		fr:     newFrameReader(nc, s.cfg.MaxRequestBytes),
		w:      newBodyWriter(nc, !s.cfg.DisableSendfile, s.cfg.SendfileChunk, s.cfg.IdleTimeout, &s.m),
		slots:  make(chan *slot, n),
		sem:    make(chan struct{}, n),
		closed: make(chan struct{}),
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return c
}

// close closes the socket once (unblocking the reader) and cancels the
// connection's context.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.nc.Close()
		close(c.closed)
	})
}

// drain stops reading new requests (graceful shutdown).
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.mu.Unlock()
}

// abort ends the connection now (forced shutdown).
func (c *conn) abort() { c.close() }

var (
	errDraining = errors.New("server shutting down")
	errIdle     = errors.New("connections.max.idle.ms expired")
)

// readFrame reads the next frame, applying the idle time-out: the read
// deadline is renewed while requests are in flight or bytes keep arriving.
func (c *conn) readFrame() ([]byte, error) {
	idle := c.s.cfg.IdleTimeout
	lastRead := time.Now()
	seen := c.fr.total
	for {
		c.mu.Lock()
		if c.draining {
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		} else if idle > 0 {
			base := lastRead
			if lw := time.Unix(0, c.lastWrite.Load()); lw.After(base) {
				base = lw
			}
			if len(c.sem) > 1 { // responses pending besides this read's token
				base = time.Now()
			}
			_ = c.nc.SetReadDeadline(base.Add(idle))
		}
		c.mu.Unlock()
		frame, err := c.fr.next()
		if err == nil {
			return frame, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return nil, err
		}
		c.mu.Lock()
		draining := c.draining
		c.mu.Unlock()
		if draining {
			return nil, errDraining
		}
		now := time.Now()
		if c.fr.total != seen {
			seen, lastRead = c.fr.total, now
			continue
		}
		lw := time.Unix(0, c.lastWrite.Load())
		if len(c.sem) > 1 || now.Sub(lastRead) < idle || now.Sub(lw) < idle {
			continue
		}
		return nil, errIdle
	}
}

func (c *conn) readLoop() {
	defer close(c.slots) // last: tells writeLoop no more slots follow
	for {
		select {
		case c.sem <- struct{}{}:
		case <-c.closed:
			return
		}
		frame, err := c.readFrame()
		if err != nil {
			c.readFailed(err)
			return
		}
		h, body, err := ParseRequestHeader(frame)
		if err != nil {
			if errors.Is(err, ErrUnknownAPIKey) {
				c.s.m.unknownAPIKeys.Add(1)
			} else {
				c.s.m.malformedHeaders.Add(1)
			}
			c.log.Warn("closing connection: bad request header", "err", err)
			c.slots <- &slot{done: closedChan, resp: CloseConnection()}
			return
		}
		c.s.m.requestsReceived.Add(1)
		sl := &slot{key: h.APIKey, version: h.APIVersion, corr: h.CorrelationID}
		req := &Request{RequestHeader: h, Body: body, Conn: c.info, Received: time.Now()}
		resp := c.serve(req)
		if resp.kind == kindLater {
			sl.done = make(chan struct{})
			go c.runLater(sl, resp.later)
		} else {
			sl.done, sl.resp = closedChan, resp
		}
		c.slots <- sl // never blocks: one sem token per queued slot
		if resp.kind == kindClose {
			return
		}
	}
}

// readFailed ends reading after a framing or I/O error; a close slot makes
// the writer finish the earlier responses and then close.
func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		c.s.m.framesTooLarge.Add(1)
		c.log.Warn("closing connection: request too large", "err", err)
	case errors.Is(err, ErrNegativeSize):
		c.s.m.malformedHeaders.Add(1)
		c.log.Warn("closing connection: bad size prefix", "err", err)
	case errors.Is(err, errIdle):
		c.s.m.idleCloses.Add(1)
		c.log.Debug("closing idle connection")
	case errors.Is(err, errDraining):
		c.log.Debug("stopped reading for shutdown")
		<-c.sem
		return // writer drains the queue, then closes
	default:
		// EOF or a reset: the client is gone; end its long-polls.
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.log.Debug("read failed", "err", err)
		}
		c.cancel()
		<-c.sem
		return
	}
	c.slots <- &slot{done: closedChan, resp: CloseConnection()}
}

// serve calls the handler, turning a panic into CloseConnection.
func (c *conn) serve(req *Request) (resp Response) {
	defer func() {
		if r := recover(); r != nil {
			c.panicked(r, req.APIKey, req.APIVersion)
			resp = CloseConnection()
		}
	}()
	return c.s.cfg.Handler.Serve(c.ctx, req)
}

func (c *conn) panicked(r any, key, version int16) {
	c.s.m.panicsRecovered.Add(1)
	c.log.Error("handler panic; closing connection", "api_key", key, "api_version", version,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// runLater runs a Later function (and any Later it returns in turn).
func (c *conn) runLater(sl *slot, f func(context.Context) Response) {
	defer close(sl.done)
	defer func() {
		if r := recover(); r != nil {
			c.panicked(r, sl.key, sl.version)
			sl.resp = CloseConnection()
		}
	}()
	for {
		r := f(c.ctx)
		if r.kind != kindLater {
			sl.resp = r
			return
		}
		f = r.later
	}
}

func (c *conn) writeLoop() {
	defer c.finish()
	broken := false
	var hdr [16]byte
	for sl := range c.slots {
		<-sl.done
		r := sl.resp
		switch {
		case broken:
		case r.kind == kindClose:
			broken = true
			c.close()
		case r.kind == kindNone:
		default:
			if err := c.writeResponse(hdr[:0], sl, r.chunks); err != nil {
				c.s.m.writeErrors.Add(1)
				c.log.Debug("write failed; closing connection", "err", err)
				broken = true
				c.close()
			}
		}
		r.doRelease()
		<-c.sem
	}
}

func (c *conn) writeResponse(hdr []byte, sl *slot, chunks []Chunk) error {
	var n int64
	for _, ch := range chunks {
		if ch.len() < 0 {
			return fmt.Errorf("response to api key %d: negative chunk length %d", sl.key, ch.len())
		}
		n += ch.len()
	}
	if n > maxResponseBodyLen {
		return fmt.Errorf("response to api key %d: body of %d bytes does not fit a Kafka frame", sl.key, n)
	}
	hdr = AppendResponseHeader(hdr, sl.key, sl.version, sl.corr, n)
	err := c.w.write(hdr, chunks)
	c.lastWrite.Store(time.Now().UnixNano())
	if err == nil {
		c.s.m.responsesSent.Add(1)
	}
	return err
}

func (c *conn) finish() {
	c.close()
	c.s.m.connectionsClosed.Add(1)
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.s.connWG.Done()
}
