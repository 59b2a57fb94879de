package netio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Pipelined requests whose handlers finish in random order are answered in
// request order; NoResponse requests in the middle take no place on the
// wire; handler calls themselves happen in request order.
func TestPipelineOrderRandomLatency(t *testing.T) {
	var mu sync.Mutex
	var served []int32
	var concurrent, maxConcurrent atomic.Int32
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		mu.Lock()
		served = append(served, req.CorrelationID)
		mu.Unlock()
		if req.APIKey == keyProduce && bytes.Equal(req.Body, []byte("acks=0")) {
			return NoResponse()
		}
		body := append([]byte(nil), req.Body...)
		delay := time.Duration(rand.IntN(20)) * time.Millisecond
		return Later(func(ctx context.Context) Response {
			n := concurrent.Add(1)
			for {
				m := maxConcurrent.Load()
				if n <= m || maxConcurrent.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(delay)
			concurrent.Add(-1)
			return Bytes(body)
		})
	})
	s := startServer(t, h, func(c *Config) { c.MaxInflightPerConn = 16 })
	c := dial(t, s)
	const n = 300
	var want []int32
	var out []byte
	for i := int32(0); i < n; i++ {
		body := []byte(fmt.Sprintf("req-%d", i))
		if i%7 == 3 {
			body = []byte("acks=0")
		} else {
			want = append(want, i)
		}
		out = append(out, frame(keyProduce, 3, i, "c", body)...)
	}
	go c.Write(out) // all at once; the server reads as its in-flight bound allows
	for _, corr := range want {
		r := mustResponse(t, c)
		if r.corr != corr || string(r.body) != fmt.Sprintf("req-%d", corr) {
			t.Fatalf("got response %d %q, want %d", r.corr, r.body, corr)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, corr := range served {
		if corr != int32(i) {
			t.Fatalf("handler call %d was for request %d: calls must follow request order", i, corr)
		}
	}
	if m := maxConcurrent.Load(); m < 2 || m > 16 {
		t.Fatalf("max concurrent Later handlers %d, want 2..16 (MaxInflightPerConn)", m)
	}
	// Counted just after the write returns: the client may be faster.
	eventually(t, 5*time.Second, "ResponsesSent counts every answer", func() bool {
		return s.Metrics().ResponsesSent == uint64(len(want))
	})
}

// Frames written one byte at a time (and split at every boundary) decode.
func TestByteAtATimeWrites(t *testing.T) {
	s := startServer(t, echo, nil)
	c := dial(t, s)
	c.SetNoDelay(true)
	var out []byte
	for i := int32(0); i < 5; i++ {
		out = append(out, frame(keyProduce, 3, i, "slow", bytes.Repeat([]byte{byte('a' + i)}, int(i)*3))...)
	}
	go func() {
		for _, b := range out {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for i := int32(0); i < 5; i++ {
		r := mustResponse(t, c)
		if r.corr != i || !bytes.Equal(r.body, bytes.Repeat([]byte{byte('a' + i)}, int(i)*3)) {
			t.Fatalf("response %d: %d %q", i, r.corr, r.body)
		}
	}
}

// A long-poll on one connection delays neither other connections nor the
// serving of later requests on its own connection; its answer still comes
// first on its connection.
func TestLongPollIsolation(t *testing.T) {
	release := make(chan struct{})
	var quickServed atomic.Int32
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		if req.APIKey == keyFetch {
			return Later(func(ctx context.Context) Response {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return Bytes([]byte("fetched"))
			})
		}
		quickServed.Add(1)
		return Bytes([]byte("quick"))
	})
	s := startServer(t, h, nil)
	a, b := dial(t, s), dial(t, s)
	a.Write(append(frame(keyFetch, 4, 1, "a", nil), frame(keyProduce, 3, 2, "a", nil)...))
	eventually(t, 5*time.Second, "request after the long-poll served", func() bool { return quickServed.Load() == 1 })
	start := time.Now()
	for i := int32(0); i < 50; i++ {
		b.Write(frame(keyProduce, 3, i, "b", nil))
		if r := mustResponse(t, b); r.corr != i || string(r.body) != "quick" {
			t.Fatalf("b: %d %q", r.corr, r.body)
		}
	}
	t.Logf("50 round trips on b while a long-polls: %v", time.Since(start))
	// a has nothing yet: its first response is the pending fetch.
	if _, err := readResponse(t, a, 200*time.Millisecond); err == nil {
		t.Fatal("a got a response before its long-poll finished")
	}
	close(release)
	if r := mustResponse(t, a); r.corr != 1 || string(r.body) != "fetched" {
		t.Fatalf("a first: %d %q", r.corr, r.body)
	}
	if r := mustResponse(t, a); r.corr != 2 || string(r.body) != "quick" {
		t.Fatalf("a second: %d %q", r.corr, r.body)
	}
}

// An unknown key pipelined after valid requests: the valid ones are
// answered, then only that connection closes; another connection keeps
// working; nothing after the unknown key is served.
func TestUnknownKeyClosesOnlyItsConnection(t *testing.T) {
	var served atomic.Int32
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		served.Add(1)
		return Later(func(ctx context.Context) Response {
			time.Sleep(20 * time.Millisecond)
			return Bytes([]byte{byte(req.CorrelationID)})
		})
	})
	s := startServer(t, h, nil)
	a, b := dial(t, s), dial(t, s)
	var out []byte
	for i := int32(1); i <= 3; i++ {
		out = append(out, frame(keyProduce, 3, i, "a", nil)...)
	}
	bad := frame(keyProduce, 3, 4, "a", nil)
	binary.BigEndian.PutUint16(bad[4:], 999)
	out = append(out, bad...)
	out = append(out, frame(keyProduce, 3, 5, "a", nil)...)
	a.Write(out)
	for i := int32(1); i <= 3; i++ {
		if r := mustResponse(t, a); r.corr != i {
			t.Fatalf("a: response %d, want %d", r.corr, i)
		}
	}
	expectClosed(t, a, 5*time.Second)
	if served.Load() != 3 {
		t.Fatalf("handler served %d requests, want 3 (none after the unknown key)", served.Load())
	}
	b.Write(frame(keyProduce, 3, 77, "b", nil))
	if r := mustResponse(t, b); r.corr != 77 {
		t.Fatalf("b: %d", r.corr)
	}
	eventually(t, 5*time.Second, "one unknown key, one closed connection", func() bool {
		m := s.Metrics()
		return m.UnknownAPIKeys == 1 && m.ConnectionsClosed == 1
	})
}

func TestOversizedAndMalformedFrames(t *testing.T) {
	s := startServer(t, echo, func(c *Config) { c.MaxRequestBytes = 1024 })
	good := dial(t, s)

	a := dial(t, s)
	a.Write(frame(keyProduce, 3, 1, "a", make([]byte, 1000)))
	if r := mustResponse(t, a); r.corr != 1 || len(r.body) != 1000 {
		t.Fatalf("frame under the limit: %d %d", r.corr, len(r.body))
	}
	a.Write([]byte{0, 0, 4, 1}) // 1025
	expectClosed(t, a, 5*time.Second)

	// The biggest size prefix with the default limit would be refused too;
	// here 2 GiB-1 against 1 KiB.
	b := dial(t, s)
	b.Write([]byte{0x7f, 0xff, 0xff, 0xff, 1, 2, 3})
	expectClosed(t, b, 5*time.Second)

	c := dial(t, s)
	c.Write([]byte{0xff, 0, 0, 0})
	expectClosed(t, c, 5*time.Second)

	d := dial(t, s) // client id longer than the frame
	d.Write([]byte{0, 0, 0, 12, 0, 0, 0, 3, 0, 0, 0, 1, 0, 200, 'x', 'y'})
	expectClosed(t, d, 5*time.Second)

	e := dial(t, s) // empty frame
	e.Write([]byte{0, 0, 0, 0})
	expectClosed(t, e, 5*time.Second)

	good.Write(frame(keyProduce, 3, 9, "g", []byte("ok")))
	if r := mustResponse(t, good); r.corr != 9 || string(r.body) != "ok" {
		t.Fatalf("good connection: %d %q", r.corr, r.body)
	}
	eventually(t, 5*time.Second, "metrics", func() bool {
		m := s.Metrics()
		return m.FramesTooLarge == 2 && m.MalformedHeaders == 3 && m.ConnectionsClosed == 5
	})
}

func TestHandlerPanicIsContained(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		switch string(req.Body) {
		case "panic":
			var m map[string]int
			m["boom"]++ // a real runtime panic
		case "panic-later":
			return Later(func(ctx context.Context) Response { panic("later boom") })
		}
		return Bytes(req.Body)
	})
	s := startServer(t, h, nil)
	other := dial(t, s)
	for i, kind := range []string{"panic", "panic-later"} {
		c := dial(t, s)
		c.Write(append(append(frame(keyProduce, 3, 1, "c", []byte("fine")), frame(keyProduce, 3, 2, "c", []byte(kind))...),
			frame(keyProduce, 3, 3, "c", []byte("after"))...))
		if r := mustResponse(t, c); r.corr != 1 || string(r.body) != "fine" {
			t.Fatalf("%s: first response %d %q", kind, r.corr, r.body)
		}
		expectClosed(t, c, 5*time.Second)
		if got := s.Metrics().PanicsRecovered; got != uint64(i+1) {
			t.Fatalf("%s: PanicsRecovered %d", kind, got)
		}
		other.Write(frame(keyProduce, 3, int32(10+i), "o", []byte("alive")))
		if r := mustResponse(t, other); r.corr != int32(10+i) {
			t.Fatalf("other connection: %d", r.corr)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = time.Second // generous: the busy client must never look idle on a loaded machine
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		if req.APIKey == keyFetch {
			return Later(func(ctx context.Context) Response {
				select {
				case <-time.After(3 * idle):
				case <-ctx.Done():
				}
				return Bytes([]byte("late"))
			})
		}
		return Bytes([]byte("ok"))
	})
	s := startServer(t, h, func(c *Config) { c.IdleTimeout = idle })
	quiet := dial(t, s)
	busy := dial(t, s)
	polling := dial(t, s)

	start := time.Now()
	polling.Write(frame(keyFetch, 4, 1, "p", nil))
	for i := int32(0); time.Since(start) < 3*idle; i++ {
		busy.Write(frame(keyProduce, 3, i, "b", nil))
		mustResponse(t, busy)
		time.Sleep(idle / 10)
	}
	// quiet was closed; busy and polling were not.
	expectClosed(t, quiet, time.Second)
	if r := mustResponse(t, polling); string(r.body) != "late" {
		t.Fatalf("long-poll answer %q", r.body)
	}
	busy.Write(frame(keyProduce, 3, 100, "b", nil))
	if r := mustResponse(t, busy); r.corr != 100 {
		t.Fatalf("busy: %d", r.corr)
	}
	if m := s.Metrics(); m.IdleCloses != 1 {
		t.Fatalf("IdleCloses %d, want 1", m.IdleCloses)
	}
	// Once answered and quiet, the polling connection also idles out.
	expectClosed(t, polling, 3*idle)
}

func TestGracefulShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		if req.APIKey == keyFetch {
			started <- struct{}{}
			return Later(func(ctx context.Context) Response {
				time.Sleep(300 * time.Millisecond)
				if ctx.Err() != nil {
					return Bytes([]byte("cancelled"))
				}
				return Bytes([]byte("finished"))
			})
		}
		return Bytes([]byte("ok"))
	})
	s := startServer(t, h, nil)
	addr := s.Addr("PLAINTEXT").String()
	c := dial(t, s)
	c.Write(frame(keyFetch, 4, 1, "c", nil))
	<-started
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	if r := mustResponse(t, c); r.corr != 1 || string(r.body) != "finished" {
		t.Fatalf("in-flight response %d %q", r.corr, r.body)
	}
	expectClosed(t, c, 5*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Fatal("still accepting after Shutdown")
	}
	if m := s.Metrics(); m.ConnectionsAccepted != m.ConnectionsClosed {
		t.Fatalf("accepted %d closed %d", m.ConnectionsAccepted, m.ConnectionsClosed)
	}
}

// When the shutdown context ends first, in-flight handlers see their
// context cancelled and Shutdown returns the context's error.
func TestForcedShutdown(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		return Later(func(ctx context.Context) Response {
			close(started)
			<-ctx.Done()
			close(cancelled)
			return Bytes(nil)
		})
	})
	s := startServer(t, h, nil)
	c := dial(t, s)
	c.Write(frame(keyFetch, 4, 1, "c", nil))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("handler context not cancelled")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("forced shutdown took %v", d)
	}
	expectClosed(t, c, 5*time.Second)
}

// Several listeners, all bound, each request tagged with its listener.
func TestListenersAndConnInfo(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		if time.Since(req.Received) > time.Minute || req.Conn.Remote == nil {
			return CloseConnection()
		}
		n, _ := req.Conn.Value().(int)
		req.Conn.SetValue(n + 1)
		return Bytes([]byte(fmt.Sprintf("%s/%d/%s", req.Conn.Listener, n+1, *req.ClientID)))
	})
	ls, err := ParseListeners("PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0", map[string]SecurityProtocol{"PLAINTEXT": PLAINTEXT, "INTERNAL": PLAINTEXT})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, h, func(c *Config) { c.Listeners = ls })
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs["INTERNAL"].(*net.TCPAddr).Port == 0 {
		t.Fatalf("addrs %v", addrs)
	}
	for _, name := range []string{"PLAINTEXT", "INTERNAL"} {
		nc, err := net.Dial("tcp", addrs[name].String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for i := 1; i <= 2; i++ {
			nc.Write(frame(keyProduce, 3, int32(i), "cid", nil))
			if r := mustResponse(t, nc); string(r.body) != fmt.Sprintf("%s/%d/cid", name, i) {
				t.Fatalf("%s: %q", name, r.body)
			}
		}
	}
}

// Requests with flexible versions get a response header with a tag byte,
// except ApiVersions; a CloseConnection answer ends the connection after
// earlier answers.
func TestResponseHeadersOnTheWire(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		if req.APIKey == 3 && req.APIVersion == 99 {
			return CloseConnection()
		}
		return Bytes([]byte{0xEE})
	})
	s := startServer(t, h, nil)
	c := dial(t, s)
	c.Write(frame(18, 4, 1, "c", []byte{0, 0, 0}))
	c.Write(frame(3, 12, 2, "c", []byte{0, 0, 0}))
	c.Write(frame(3, 8, 3, "c", nil))
	c.Write(frame(3, 99, 4, "c", nil))
	for _, want := range []struct {
		corr int32
		body []byte
	}{{1, []byte{0xEE}}, {2, []byte{0, 0xEE}}, {3, []byte{0xEE}}} {
		if r := mustResponse(t, c); r.corr != want.corr || !bytes.Equal(r.body, want.body) {
			t.Fatalf("corr %d: body %x, want %x", r.corr, r.body, want.body)
		}
	}
	expectClosed(t, c, 5*time.Second)
}

// Many connections announcing the largest allowed frame but sending only a
// little of it cost the server about what they sent, not what they
// announced (100 × 100 MiB would be 10 GB).
func TestMemoryBoundedBySizePrefix(t *testing.T) {
	s := startServer(t, echo, nil)
	const conns = 100
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < conns; i++ {
		c := dial(t, s)
		b := binary.BigEndian.AppendUint32(nil, DefaultMaxRequestBytes)
		c.Write(append(b, make([]byte, 1000)...))
	}
	eventually(t, 10*time.Second, "all connections accepted", func() bool { return s.Metrics().ConnectionsAccepted == conns })
	time.Sleep(300 * time.Millisecond) // let every reader take its bytes
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d KiB for %d connections with 100 MiB size prefixes", grew>>10, conns)
	if limit := int64(conns * 200 << 10); grew > limit {
		t.Fatalf("heap grew %d bytes, limit %d", grew, limit)
	}
	if m := s.Metrics(); m.FramesTooLarge != 0 || m.RequestsReceived != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

// A client that sends requests but never reads cannot pin a writer
// forever: the write deadline (connections.max.idle.ms) closes it.
func TestStalledReaderIsClosed(t *testing.T) {
	big := make([]byte, 64<<20) // more than the socket buffers can hold
	h := HandlerFunc(func(ctx context.Context, req *Request) Response { return Bytes(big) })
	s := startServer(t, h, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := dial(t, s)
	c.SetReadBuffer(16 << 10)
	c.Write(frame(keyFetch, 4, 1, "c", nil))
	eventually(t, 10*time.Second, "stalled connection closed", func() bool {
		m := s.Metrics()
		return m.WriteErrors == 1 && m.ConnectionsClosed == 1
	})
}

// Several connections pipelining at once, each with its own order.
func TestManyConnectionsPipelining(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		body := append([]byte(nil), req.Body...)
		if req.CorrelationID%2 == 0 {
			return Bytes(body)
		}
		d := time.Duration(rand.IntN(3)) * time.Millisecond
		return Later(func(ctx context.Context) Response { time.Sleep(d); return Bytes(body) })
	})
	s := startServer(t, h, nil)
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		c := dial(t, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []byte
			for i := int32(0); i < 100; i++ {
				out = append(out, frame(keyProduce, 3, i, "c", []byte(fmt.Sprintf("%d/%d", k, i)))...)
			}
			go c.Write(out)
			for i := int32(0); i < 100; i++ {
				r, err := readResponse(t, c, 10*time.Second)
				if err != nil || r.corr != i || string(r.body) != fmt.Sprintf("%d/%d", k, i) {
					t.Errorf("conn %d: response %d: %d %q %v", k, i, r.corr, r.body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
