package netio

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// eventually polls cond every 10 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer starts a Server on 127.0.0.1:0 with h; mod may adjust the
// config first. The server is closed at cleanup.
func startServer(t *testing.T, h Handler, mod func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{Name: "PLAINTEXT", SecurityProtocol: PLAINTEXT, Host: "127.0.0.1", Port: 0}}
	cfg.Handler = h
	cfg.Logger = testLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

func dial(t *testing.T, s *Server) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr("PLAINTEXT").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// frame builds a request frame by hand: size, key, version, correlation
// id, client id, header tags when the version is flexible, body.
func frame(key, version int16, corr int32, clientID string, body []byte) []byte {
	b := make([]byte, 4, 64+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	if RequestHeaderVersion(key, version) != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
		b = append(b, clientID...)
	}
	if flex, _ := IsFlexible(key, version); flex {
		b = append(b, 0)
	}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

type response struct {
	corr int32
	body []byte // after the correlation id (includes a tag byte if any)
}

// readResponse reads one response frame with a deadline.
func readResponse(t *testing.T, c net.Conn, within time.Duration) (response, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		return response{}, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n < 4 || n > 256<<20 {
		t.Fatalf("bad response size %d", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return response{}, err
	}
	return response{corr: int32(binary.BigEndian.Uint32(b)), body: b[4:]}, nil
}

func mustResponse(t *testing.T, c net.Conn) response {
	t.Helper()
	r, err := readResponse(t, c, 10*time.Second)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return r
}

// expectClosed asserts the peer closes c (EOF or reset) within limit,
// without sending anything more.
func expectClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 {
		t.Fatalf("expected the connection to close, got a byte")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	if err == nil {
		t.Fatal("expected the connection to close")
	}
}

// echo answers every request with its body (header v0 keys: key 0 v3).
var echo = HandlerFunc(func(ctx context.Context, req *Request) Response {
	return Bytes(append([]byte(nil), req.Body...))
})

const (
	keyProduce = 0
	keyFetch   = 1
)
