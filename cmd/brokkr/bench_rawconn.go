package main

// The --raw consumer's own connection to a broker: Fetch requests encoded
// with kmsg, framed here, and responses read into one reused buffer, so the
// client neither allocates per response nor decodes records (franz-go's
// connection allocates a fresh buffer for every response, which at 8 MiB
// per Fetch costs the client more than the broker spends sending it).

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is one connection that sends a request and reads its response,
// one at a time.
type rawConn struct {
	c    net.Conn
	r    *bufio.Reader
	corr int32
	buf  []byte // the latest response body; valid until the next call
	wbuf []byte
}

func dialRaw(ctx context.Context, addr string, timeout time.Duration) (*rawConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 1<<20)}, nil
}

func (rc *rawConn) Close() error { return rc.c.Close() }

// request sends req (its version already set) and decodes the response
// into resp. Byte slices in resp point into a buffer that the next request
// reuses.
func (rc *rawConn) request(req kmsg.Request, resp kmsg.Response, timeout time.Duration) error {
	rc.corr++
	w := append(rc.wbuf[:0], 0, 0, 0, 0)
	w = binary.BigEndian.AppendUint16(w, uint16(req.Key()))
	w = binary.BigEndian.AppendUint16(w, uint16(req.GetVersion()))
	w = binary.BigEndian.AppendUint32(w, uint32(rc.corr))
	const client = "brokkr-bench-raw"
	w = binary.BigEndian.AppendUint16(w, uint16(len(client)))
	w = append(w, client...)
	if req.IsFlexible() {
		w = append(w, 0) // no header tagged fields
	}
	w = req.AppendTo(w)
	binary.BigEndian.PutUint32(w, uint32(len(w)-4))
	rc.wbuf = w
	_ = rc.c.SetDeadline(time.Now().Add(timeout))
	if _, err := rc.c.Write(w); err != nil {
		return err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(rc.r, hdr[:]); err != nil {
		return err
	}
	size := int(int32(binary.BigEndian.Uint32(hdr[:4])))
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != rc.corr {
		return fmt.Errorf("response correlation id %d, want %d", corr, rc.corr)
	}
	if size < 4 || size > 1<<30 {
		return fmt.Errorf("response size %d", size)
	}
	size -= 4
	if cap(rc.buf) < size {
		rc.buf = make([]byte, size)
	}
	b := rc.buf[:size]
	if _, err := io.ReadFull(rc.r, b); err != nil {
		return err
	}
	if req.IsFlexible() && req.Key() != 18 {
		// Response header v1: skip its tagged fields.
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return fmt.Errorf("bad response header tags")
		}
		b = b[k:]
		for ; n > 0; n-- {
			_, k1 := binary.Uvarint(b)
			if k1 <= 0 {
				return fmt.Errorf("bad response header tag")
			}
			l, k2 := binary.Uvarint(b[k1:])
			if k2 <= 0 || uint64(len(b)-k1-k2) < l {
				return fmt.Errorf("bad response header tag size")
			}
			b = b[k1+k2+int(l):]
		}
	}
	resp.SetVersion(req.GetVersion())
	return resp.ReadFrom(b)
}
