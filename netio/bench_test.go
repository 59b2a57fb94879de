package netio

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
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
