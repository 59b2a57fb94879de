package netio

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network benchmarks (docs/benchmarks.md, "Network"): one loopback TCP
// stream, 64 MiB per op from a page-cached file, receiver in the same
// process reading into a 1 MiB buffer and discarding. Besides MB/s each
// reports the sender thread's CPU seconds per GB (getrusage RUSAGE_THREAD
// on a goroutine locked to its thread) and the whole process's (sender +
// receiver, RUSAGE_SELF).
//
//	go test -run '^$' -bench 'Network' -benchtime 20x -count 3 ./netio/
//
// On a shared, noisy machine compare variants with
// BenchmarkNetworkInterleaved, which runs them in turn within each round.

const benchFileSize = 64 << 20

func benchFile(b *testing.B) *os.File {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "00000000000000000000.log")
	data := make([]byte, benchFileSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	// Warm the page cache.
	if _, err := io.Copy(io.Discard, io.NewSectionReader(f, 0, benchFileSize)); err != nil {
		b.Fatal(err)
	}
	return f
}

// benchPair returns a connected loopback TCP socket whose peer is drained
// by a goroutine into a 1 MiB buffer.
func benchPair(b *testing.B) *net.TCPConn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { c.Close(); peer.Close() })
	return c.(*net.TCPConn)
}

func rusage(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runLocked runs send b.N times on a goroutine locked to its OS thread and
// reports MB/s (via SetBytes) and CPU seconds per GB.
func runLocked(b *testing.B, perOp int64, send func() error) {
	b.SetBytes(perOp)
	errc := make(chan error, 1)
	var threadCPU, procCPU time.Duration
	b.ResetTimer()
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0, p0 := rusage(unix.RUSAGE_THREAD), rusage(unix.RUSAGE_SELF)
		for i := 0; i < b.N; i++ {
			if err := send(); err != nil {
				errc <- err
				return
			}
		}
		threadCPU, procCPU = rusage(unix.RUSAGE_THREAD)-t0, rusage(unix.RUSAGE_SELF)-p0
		errc <- nil
	}()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	gb := float64(perOp) * float64(b.N) / 1e9
	b.ReportMetric(threadCPU.Seconds()/gb, "sender-cpu-s/GB")
	b.ReportMetric(procCPU.Seconds()/gb, "process-cpu-s/GB")
}

func BenchmarkNetwork(b *testing.B) {
	f := benchFile(b)
	var m counters

	b.Run("write-1MiB-buffer", func(b *testing.B) {
		c := benchPair(b)
		buf := make([]byte, 1<<20)
		runLocked(b, benchFileSize, func() error {
			for i := 0; i < benchFileSize/len(buf); i++ {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
			return nil
		})
	})
	for _, chunk := range []int{256 << 10, 1 << 20} {
		name := map[int]string{256 << 10: "sendfile-256KiB", 1 << 20: "sendfile-1MiB"}[chunk]
		b.Run(name, func(b *testing.B) {
			c := benchPair(b)
			w := newBodyWriter(c, true, chunk, 0, &m)
			runLocked(b, benchFileSize, func() error { return w.writeRegion(f, 0, benchFileSize) })
		})
	}
	b.Run("pread+write-256KiB", func(b *testing.B) {
		c := benchPair(b)
		w := newBodyWriter(c, false, DefaultSendfileChunk, 0, &m)
		runLocked(b, benchFileSize, func() error { return w.writeRegion(f, 0, benchFileSize) })
	})
}

// BenchmarkServerFetch measures the whole netio path: a client sends a
// request, the handler answers with a 1 MiB file region after a small
// header chunk, the client reads the frame. Sendfile on vs off.
func BenchmarkServerFetch(b *testing.B) {
	f := benchFile(b)
	const region = 1 << 20
	for _, sendfile := range []bool{true, false} {
		b.Run(map[bool]string{true: "sendfile", false: "copy"}[sendfile], func(b *testing.B) {
			h := HandlerFunc(func(ctx context.Context, req *Request) Response {
				off := int64(req.CorrelationID%64) * region
				return Chunks(BytesChunk(make([]byte, 60)), FileChunk(f, off, region))
			})
			cfg := DefaultConfig()
			cfg.Listeners = []Listener{{Name: "PLAINTEXT", SecurityProtocol: PLAINTEXT, Host: "127.0.0.1"}}
			cfg.Handler, cfg.DisableSendfile = h, !sendfile
			s, err := NewServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c, err := net.Dial("tcp", s.Addr("PLAINTEXT").String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 4+4+60+region) // size, correlation id (header v0), body
			b.SetBytes(region)
			b.ResetTimer()
			p0 := rusage(unix.RUSAGE_SELF)
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(frame(keyFetch, 4, int32(i), "bench", nil)); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((rusage(unix.RUSAGE_SELF)-p0).Seconds()/(float64(region)*float64(b.N)/1e9), "process-cpu-s/GB")
		})
	}
}

// receiverPair is benchPair whose receiver counts bytes, so a sender can
// wait until the peer has really received what it sent.
func receiverPair(b *testing.B) (*net.TCPConn, func(total int64)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64
	wake := make(chan struct{}, 1)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		buf := make([]byte, 1<<20)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			select {
			case wake <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { c.Close(); peer.Close() })
	return c.(*net.TCPConn), func(total int64) {
		for got.Load() < total {
			<-wake
		}
	}
}

// BenchmarkNetworkInterleaved runs every variant once per round (64 MiB
// each, timed until the receiver has it all), so machine noise hits them
// alike, and reports each variant's median MB/s and CPU per GB over the
// rounds, plus ratios to the 1 MiB write reference.
//
//	go test -run '^$' -bench 'NetworkInterleaved' -benchtime 15x ./netio/
func BenchmarkNetworkInterleaved(b *testing.B) {
	f := benchFile(b)
	var m counters
	type variant struct {
		name                 string
		send                 func() error
		wait                 func(int64)
		sent                 int64
		mbs, sender, process []float64
	}
	mk := func(name string, send func(c *net.TCPConn) func() error) *variant {
		c, wait := receiverPair(b)
		return &variant{name: name, send: send(c), wait: wait}
	}
	buf := make([]byte, 1<<20)
	vs := []*variant{
		mk("write1MiB", func(c *net.TCPConn) func() error {
			return func() error {
				for i := 0; i < benchFileSize/len(buf); i++ {
					if _, err := c.Write(buf); err != nil {
						return err
					}
				}
				return nil
			}
		}),
		mk("sendfile256KiB", func(c *net.TCPConn) func() error {
			w := newBodyWriter(c, true, 256<<10, 0, &m)
			return func() error { return w.writeRegion(f, 0, benchFileSize) }
		}),
		mk("sendfile1MiB", func(c *net.TCPConn) func() error {
			w := newBodyWriter(c, true, 1<<20, 0, &m)
			return func() error { return w.writeRegion(f, 0, benchFileSize) }
		}),
		mk("pread+write", func(c *net.TCPConn) func() error {
			w := newBodyWriter(c, false, 0, 0, &m)
			return func() error { return w.writeRegion(f, 0, benchFileSize) }
		}),
	}
	b.SetBytes(int64(len(vs)) * benchFileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range vs {
			errc := make(chan error, 1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				t0, p0, w0 := rusage(unix.RUSAGE_THREAD), rusage(unix.RUSAGE_SELF), time.Now()
				if err := v.send(); err != nil {
					errc <- err
					return
				}
				v.sent += benchFileSize
				v.wait(v.sent)
				gb := float64(benchFileSize) / 1e9
				v.mbs = append(v.mbs, float64(benchFileSize)/1e6/time.Since(w0).Seconds())
				v.sender = append(v.sender, (rusage(unix.RUSAGE_THREAD)-t0).Seconds()/gb)
				v.process = append(v.process, (rusage(unix.RUSAGE_SELF)-p0).Seconds()/gb)
				errc <- nil
			}()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	median := func(x []float64) float64 { y := slices.Clone(x); slices.Sort(y); return y[len(y)/2] }
	ref := median(vs[0].mbs)
	for _, v := range vs {
		b.ReportMetric(median(v.mbs), v.name+"-MB/s")
		b.ReportMetric(median(v.sender), v.name+"-sender-cpu-s/GB")
		b.ReportMetric(median(v.process), v.name+"-process-cpu-s/GB")
		if v != vs[0] {
			b.ReportMetric(median(v.mbs)/ref, v.name+"/write1MiB")
		}
		b.Logf("%-15s MB/s min %.0f median %.0f max %.0f", v.name, slices.Min(v.mbs), median(v.mbs), slices.Max(v.mbs))
	}
}

// BenchmarkManyPartitionResponse writes Fetch-like responses of 100
// partitions, each a 40-byte metadata chunk and a 10 KiB file region: 200
// system calls per response, with sendfile and with the copying path.
// (TCP_CORK around such a response was tried and cost more sender CPU:
// 1.1-1.5 against 0.7-0.8 s/GB, so netio does not cork.)
func BenchmarkManyPartitionResponse(b *testing.B) {
	f := benchFile(b)
	var m counters
	var chunks []Chunk
	var total int64
	for p := 0; p < 100; p++ {
		chunks = append(chunks, BytesChunk(make([]byte, 40)), FileChunk(f, int64(p)*(512<<10), 10<<10))
		total += 40 + 10<<10
	}
	for _, sendfile := range []bool{true, false} {
		b.Run(map[bool]string{true: "sendfile", false: "pread+write"}[sendfile], func(b *testing.B) {
			c, wait := receiverPair(b)
			w := newBodyWriter(c, sendfile, DefaultSendfileChunk, 0, &m)
			hdr := AppendResponseHeader(nil, 1, 11, 1, total)
			var sent int64
			runLocked(b, total+int64(len(hdr)), func() error {
				if err := w.write(hdr, chunks); err != nil {
					return err
				}
				sent += total + int64(len(hdr))
				wait(sent)
				return nil
			})
		})
	}
}
