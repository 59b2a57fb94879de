package netio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSendfileChunk is the most bytes one sendfile call is asked to
// send. On this project's machines 256 KiB per call beat read+write, while
// 1 MiB per call lost to it (docs/benchmarks.md, Network).
const DefaultSendfileChunk = 256 << 10

// copyChunk is the buffer size of the copying fallback.
const copyChunk = 256 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// bodyWriter writes response frames to one connection: runs of in-memory
// chunks with writev (net.Buffers), file regions with sendfile on the raw
// socket, or pread+write where sendfile is impossible.
type bodyWriter struct {
	conn     net.Conn
	raw      syscall.RawConn // nil: the socket has no fd (e.g. TLS later, net.Pipe)
	sendfile bool
	chunk    int64
	timeout  time.Duration // per write call; 0 = none
	m        *counters
}

func newBodyWriter(conn net.Conn, sendfile bool, chunk int, timeout time.Duration, m *counters) *bodyWriter {
	w := &bodyWriter{conn: conn, sendfile: sendfile, chunk: int64(chunk), timeout: timeout, m: m}
	if w.chunk <= 0 {
		w.chunk = DefaultSendfileChunk
	}
	if sc, ok := conn.(syscall.Conn); ok && sendfile {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

func (w *bodyWriter) deadline() {
	if w.timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
}

// write sends hdr followed by chunks.
func (w *bodyWriter) write(hdr []byte, chunks []Chunk) error {
	bufs := make(net.Buffers, 0, 1+len(chunks))
	bufs = append(bufs, hdr)
	for _, c := range chunks {
		if c.File == nil {
			if len(c.Bytes) > 0 {
				bufs = append(bufs, c.Bytes)
			}
			continue
		}
		if len(bufs) > 0 {
			w.deadline()
			if _, err := bufs.WriteTo(w.conn); err != nil {
				return err
			}
			bufs = bufs[:0]
		}
		if err := w.writeRegion(c.File, c.Offset, c.Length); err != nil {
			return err
		}
	}
	if len(bufs) > 0 {
		w.deadline()
		if _, err := bufs.WriteTo(w.conn); err != nil {
			return err
		}
	}
	return nil
}

// errShortFile: a file region ran past the end of its file. The frame size
// was already promised, so the connection cannot continue.
var errShortFile = errors.New("file region past end of file")

func (w *bodyWriter) writeRegion(f io.ReaderAt, off, n int64) error {
	if n <= 0 {
		return nil
	}
	if w.raw != nil {
		if sc, ok := f.(syscall.Conn); ok {
			if frc, err := sc.SyscallConn(); err == nil {
				sent, err := w.sendRegion(frc, off, n)
				w.m.sendfileBytes.Add(uint64(sent))
				off, n = off+sent, n-sent
				if err == nil || n == 0 {
					return err
				}
				if !errors.Is(err, errSendfileUnsupported) {
					return err
				}
			}
		}
	}
	return w.copyRegion(f, off, n)
}

var errSendfileUnsupported = errors.New("sendfile not supported for this file")

// sendRegion sends n bytes of the file at off with unix.Sendfile, at most
// w.chunk bytes per call, waiting in the poller (not a thread) when the
// socket buffer is full. It never moves the file's offset, so many
// connections may share one file.
func (w *bodyWriter) sendRegion(frc syscall.RawConn, off, n int64) (int64, error) {
	var sent int64
	var serr error
	cerr := frc.Control(func(ffd uintptr) {
		for sent < n && serr == nil {
			w.deadline()
			// One sendfile call per callback: EAGAIN parks the goroutine in
			// the poller; between chunks the write deadline is renewed.
			werr := w.raw.Write(func(sfd uintptr) bool {
				o := off + sent
				m, err := unix.Sendfile(int(sfd), int(ffd), &o, int(min(n-sent, w.chunk)))
				if m > 0 {
					sent += int64(m)
				}
				switch {
				case err == unix.EAGAIN:
					w.m.sendfileWaits.Add(1)
					return false
				case err == unix.EINTR:
				case err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP:
					if sent == 0 {
						serr = errSendfileUnsupported
					} else {
						serr = fmt.Errorf("sendfile: %w", err)
					}
				case err != nil:
					serr = fmt.Errorf("sendfile: %w", err)
				case m == 0:
					serr = errShortFile
				}
				return true
			})
			if werr != nil && serr == nil {
				serr = werr
			}
		}
	})
	if cerr != nil && serr == nil {
		serr = cerr
	}
	return sent, serr
}

// copyRegion is the fallback: pread into a pooled buffer, then write.
func (w *bodyWriter) copyRegion(f io.ReaderAt, off, n int64) error {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for n > 0 {
		k := min(n, int64(len(buf)))
		r, err := f.ReadAt(buf[:k], off)
		if int64(r) < k {
			if err == nil || err == io.EOF {
				err = errShortFile
			}
			return err
		}
		w.deadline()
		if _, err := w.conn.Write(buf[:k]); err != nil {
			return err
		}
		w.m.copyFallbackBytes.Add(uint64(k))
		off, n = off+k, n-k
	}
	return nil
}
