package netio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func randomFile(t testing.TB, size int) (*os.File, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, uint64(size)))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "00000000000000000000.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data
}

// readFull reads a response frame slowly enough (at first) that the
// server's socket buffer fills and sendfile meets EAGAIN.
func readSlowResponse(t *testing.T, c net.Conn) response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(sz[:]))
	for got, i := 0, 0; got < len(b); i++ {
		end := min(len(b), got+16<<10)
		n, err := c.Read(b[got:end])
		got += n
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, len(b), err)
		}
		if i < 20 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return response{corr: int32(binary.BigEndian.Uint32(b)), body: b[4:]}
}

// Bytes received equal the file regions (and the in-memory chunks around
// them), with sendfile on and off; each path is counted in its metric.
func TestZeroCopyCorrectness(t *testing.T) {
	f, data := randomFile(t, 3<<20+12345)
	regions := [][2]int64{{0, 1 << 20}, {777, 2<<20 + 5}, {int64(len(data)) - 1000, 1000}, {5, 0}}
	for _, sendfile := range []bool{true, false} {
		t.Run(map[bool]string{true: "sendfile", false: "copy"}[sendfile], func(t *testing.T) {
			var released atomic.Int32
			h := HandlerFunc(func(ctx context.Context, req *Request) Response {
				reg := regions[req.CorrelationID]
				return Chunks(BytesChunk([]byte("hdr")), FileChunk(f, reg[0], reg[1]), BytesChunk([]byte("mid")),
					FileChunk(f, 0, 10), BytesChunk(nil)).WithRelease(func() { released.Add(1) })
			})
			s := startServer(t, h, func(c *Config) { c.DisableSendfile = !sendfile })
			// Two connections at once over the same *os.File: the file
			// offset is never used, so they cannot disturb each other.
			var wg sync.WaitGroup
			var total int64
			for conn := 0; conn < 2; conn++ {
				c := dial(t, s)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i, reg := range regions {
						c.Write(frame(keyFetch, 4, int32(i), "c", nil))
						r := readSlowResponse(t, c)
						want := append(append(append([]byte("hdr"), data[reg[0]:reg[0]+reg[1]]...), "mid"...), data[:10]...)
						if r.corr != int32(i) || !bytes.Equal(r.body, want) {
							t.Errorf("region %v: corr %d, %d bytes, equal %v", reg, r.corr, len(r.body), bytes.Equal(r.body, want))
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, reg := range regions {
				total += 2 * (reg[1] + 10)
			}
			// Counters are added just after the bytes leave, so the client
			// may finish reading first.
			eventually(t, 5*time.Second, "byte counters", func() bool {
				m := s.Metrics()
				if sendfile {
					return m.SendfileBytes == uint64(total) && m.CopyFallbackBytes == 0
				}
				return m.CopyFallbackBytes == uint64(total) && m.SendfileBytes == 0
			})
			eventually(t, 5*time.Second, "every response released", func() bool { return released.Load() == int32(2*len(regions)) })
		})
	}
}

// A reader with a small receive buffer makes sendfile meet EAGAIN and wait
// in the poller; the bytes still arrive intact.
func TestSendfileWaitsForSlowReader(t *testing.T) {
	f, data := randomFile(t, 8<<20)
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		return Chunks(FileChunk(f, 0, int64(len(data))))
	})
	s := startServer(t, h, nil)
	c := dial(t, s)
	c.SetReadBuffer(16 << 10)
	c.Write(frame(keyFetch, 4, 1, "c", nil))
	time.Sleep(100 * time.Millisecond) // let the socket buffers fill
	if r := readSlowResponse(t, c); !bytes.Equal(r.body, data) {
		t.Fatalf("body differs (%d bytes)", len(r.body))
	}
	if s.m.sendfileWaits.Load() == 0 {
		t.Fatal("sendfile never met EAGAIN: the poller path is untested")
	}
	t.Logf("sendfile waited for the poller %d times", s.m.sendfileWaits.Load())
}

// A file without a descriptor (an in-memory io.ReaderAt) takes the
// counted copying path even with sendfile on.
func TestZeroCopyFallbackForReaderAt(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100000)
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		return Chunks(FileChunk(bytes.NewReader(data), 3, int64(len(data))-3))
	})
	s := startServer(t, h, nil)
	c := dial(t, s)
	c.Write(frame(keyFetch, 4, 1, "c", nil))
	if r := mustResponse(t, c); !bytes.Equal(r.body, data[3:]) {
		t.Fatalf("body differs (%d bytes)", len(r.body))
	}
	eventually(t, 5*time.Second, "copy counted", func() bool {
		m := s.Metrics()
		return m.CopyFallbackBytes == uint64(len(data)-3) && m.SendfileBytes == 0
	})
}

// A region past the end of its file (a truncated segment) cannot complete
// the promised frame: that connection closes, counted; release still runs.
func TestZeroCopyShortFileClosesConnection(t *testing.T) {
	f, data := randomFile(t, 100000)
	for _, sendfile := range []bool{true, false} {
		var released atomic.Int32
		h := HandlerFunc(func(ctx context.Context, req *Request) Response {
			return Chunks(FileChunk(f, int64(len(data))-10, 20)).WithRelease(func() { released.Add(1) })
		})
		s := startServer(t, h, func(c *Config) { c.DisableSendfile = !sendfile })
		c := dial(t, s)
		c.Write(frame(keyFetch, 4, 1, "c", nil))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("sendfile=%v: %v", sendfile, err)
		}
		// The client sees a truncated frame (the header, perhaps the 10
		// bytes that exist), then the close: never a complete frame.
		want := append([]byte{0, 0, 0, 24, 0, 0, 0, 1}, data[len(data)-10:]...)
		if len(got) < 8 || len(got) >= 28 || !bytes.Equal(got, want[:len(got)]) {
			t.Fatalf("sendfile=%v: got %x", sendfile, got)
		}
		eventually(t, 5*time.Second, "write error counted and released", func() bool {
			return s.Metrics().WriteErrors == 1 && released.Load() == 1
		})
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// Serving 256 MiB of file regions allocates almost nothing on the Go heap:
// the record bytes go from the page cache to the socket (sendfile), never
// through a Go buffer.
func TestSendfileKeepsBytesOutOfTheHeap(t *testing.T) {
	f, data := randomFile(t, 8<<20)
	h := HandlerFunc(func(ctx context.Context, req *Request) Response {
		return Chunks(BytesChunk([]byte("header")), FileChunk(f, 0, int64(len(data))))
	})
	s := startServer(t, h, nil)
	c := dial(t, s)
	buf := make([]byte, 4+4+6+len(data))
	req := frame(keyFetch, 4, 1, "c", nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const rounds = 32
	for i := 0; i < rounds; i++ {
		c.Write(req)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if !bytes.Equal(buf[14:], data) {
		t.Fatal("body differs from the file")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d MiB served, %d KiB allocated in the whole process", rounds*len(data)>>20, alloc>>10)
	if alloc > 4<<20 {
		t.Fatalf("allocated %d bytes while serving %d: record bytes pass through the heap", alloc, rounds*len(data))
	}
	eventually(t, 5*time.Second, "every byte counted as sendfile", func() bool {
		return s.Metrics().SendfileBytes == uint64(rounds*len(data))
	})
}
