package main

// The machine's ceilings, measured in the same rounds as the broker: one
// loopback TCP stream fed by write(2) of a 1 MiB buffer, by sendfile(2) of
// a cached file at 256 KiB per call, and by pread+write at 256 KiB (the
// copying path, "sendfile off"), each to a receiver goroutine reading into
// a 1 MiB buffer; and the same franz-go producer against `bench sink` (a
// child process, like the broker). Sender CPU is getrusage(RUSAGE_THREAD)
// of the sending goroutine locked to its thread: what a broker's sending
// thread pays per GB.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// ceilingChunk is the bytes per sendfile or pread+write call (netio's
// default, and the measured best).
const ceilingChunk = 256 << 10

// ceilingSet holds the ceiling benches of one command.
type ceilingSet struct {
	benches                       []*bench
	write, sendfile, copy, client *bench
	closers                       []func()
}

func (c *ceilingSet) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// ceilingBenches prepares every ceiling: a 64 MiB cached file, a loopback
// listener, and a sink child process with the producer pointed at it.
func (o *benchOpts) ceilingBenches(ctx context.Context) (*ceilingSet, error) {
	cs := &ceilingSet{}
	fail := func(err error) (*ceilingSet, error) { cs.close(); return nil, err }
	f, err := cachedFile(64 << 20)
	if err != nil {
		return fail(err)
	}
	cs.closers = append(cs.closers, func() { f.Close(); os.Remove(f.Name()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	cs.closers = append(cs.closers, func() { ln.Close() })
	d := o.ceilingDuration
	cs.write = &bench{name: "ceiling: loopback TCP, write of a 1 MiB buffer", run: func(ctx context.Context, m *meter) (outcome, error) {
		buf := make([]byte, 1<<20)
		return streamOnce(ctx, ln, m, d, func(c *net.TCPConn, deadline time.Time) (int64, error) {
			var n int64
			for time.Now().Before(deadline) {
				k, err := c.Write(buf)
				n += int64(k)
				if err != nil {
					return n, err
				}
			}
			return n, nil
		})
	}}
	cs.sendfile = &bench{name: "ceiling: sendfile of a cached file, 256 KiB per call", run: func(ctx context.Context, m *meter) (outcome, error) {
		return streamOnce(ctx, ln, m, d, func(c *net.TCPConn, deadline time.Time) (int64, error) {
			return sendfileLoop(c, f, ceilingChunk, deadline)
		})
	}}
	cs.copy = &bench{name: "ceiling: pread+write of a cached file, 256 KiB (sendfile off)", run: func(ctx context.Context, m *meter) (outcome, error) {
		buf := make([]byte, ceilingChunk)
		size := fileSize(f)
		return streamOnce(ctx, ln, m, d, func(c *net.TCPConn, deadline time.Time) (int64, error) {
			var n, off int64
			for time.Now().Before(deadline) {
				k, err := f.ReadAt(buf, off)
				if err != nil && !errors.Is(err, io.EOF) {
					return n, err
				}
				w, err := c.Write(buf[:k])
				n += int64(w)
				if err != nil {
					return n, err
				}
				if off += int64(k); off >= size {
					off = 0
				}
			}
			return n, nil
		})
	}}
	sink, err := spawnSink(ctx, o.spawnBin, o.partitions, o.stderr)
	if err != nil {
		return fail(fmt.Errorf("client ceiling: %v", err))
	}
	cs.closers = append(cs.closers, func() { _ = sink.stop() })
	client, closeCl, err := o.produceBench(ctx, fmt.Sprintf("ceiling: the same producer (acks=%d) against bench sink", o.acks), []string{sink.addr}, false)
	if err != nil {
		return fail(fmt.Errorf("client ceiling: %v", err))
	}
	cs.closers = append(cs.closers, closeCl)
	cs.client = client
	cs.benches = []*bench{cs.write, cs.sendfile, cs.copy, cs.client}
	return cs, nil
}

// cachedFile writes a temporary file of size bytes (random, so nothing
// below could shortcut it) and reads it once, so it is in the page cache.
func cachedFile(size int64) (*os.File, error) {
	f, err := os.CreateTemp("", "brokkr-bench-*.dat")
	if err != nil {
		return nil, err
	}
	p := make([]byte, 1<<20)
	rng := rand.New(rand.NewChaCha8([32]byte{'c', 'e', 'i', 'l'}))
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
	}
	for w := int64(0); w < size; w += int64(len(p)) {
		if _, err := f.Write(p); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	if _, err := io.Copy(io.Discard, io.NewSectionReader(f, 0, size)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

func fileSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// streamOnce connects to ln, runs send on a goroutine locked to its thread
// until deadline, and times the stream until the receiver (reading into a
// 1 MiB buffer) has every byte. The sender's thread CPU is in the outcome.
func streamOnce(ctx context.Context, ln net.Listener, m *meter, d time.Duration, send func(*net.TCPConn, time.Time) (int64, error)) (outcome, error) {
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	dialer := net.Dialer{Timeout: 5 * time.Second}
	cc, err := dialer.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return outcome{}, err
	}
	var rc net.Conn
	select {
	case rc = <-accepted:
	case err := <-acceptErr:
		cc.Close()
		return outcome{}, err
	case <-time.After(5 * time.Second):
		cc.Close()
		return outcome{}, errors.New("loopback accept timed out")
	}
	recvDone := make(chan error, 1)
	go func() {
		defer rc.Close()
		buf := make([]byte, 1<<20)
		for {
			n, err := rc.Read(buf)
			m.bytes.Add(int64(n))
			if errors.Is(err, io.EOF) {
				recvDone <- nil
				return
			}
			if err != nil {
				recvDone <- err
				return
			}
		}
	}()
	type sent struct {
		n   int64
		cpu float64
		err error
	}
	sendDone := make(chan sent, 1)
	start := time.Now()
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0 := threadCPU()
		n, err := send(cc.(*net.TCPConn), start.Add(d))
		cpu := threadCPU() - c0
		_ = cc.(*net.TCPConn).CloseWrite()
		sendDone <- sent{n, cpu, err}
	}()
	s := <-sendDone
	rerr := <-recvDone
	el := time.Since(start)
	cc.Close()
	if s.err != nil {
		return outcome{}, s.err
	}
	if rerr != nil {
		return outcome{}, rerr
	}
	if got := m.bytes.Load(); got != s.n {
		return outcome{}, fmt.Errorf("receiver got %d bytes, sender sent %d", got, s.n)
	}
	return outcome{elapsed: el, senderCPU: s.cpu}, nil
}

// threadCPU is the calling thread's user + system CPU seconds.
func threadCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// sendfileLoop sends f over c with sendfile(2), chunk bytes per call, from
// the start of the file again at its end, until deadline.
func sendfileLoop(c *net.TCPConn, f *os.File, chunk int, deadline time.Time) (int64, error) {
	size := fileSize(f)
	sc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ffd int
	if err := fc.Control(func(fd uintptr) { ffd = int(fd) }); err != nil {
		return 0, err
	}
	var total, off int64
	var serr error
	for serr == nil && time.Now().Before(deadline) {
		werr := sc.Write(func(sfd uintptr) bool {
			for {
				if off >= size {
					off = 0
				}
				n, err := unix.Sendfile(int(sfd), ffd, &off, int(min(int64(chunk), size-off)))
				if n > 0 {
					total += int64(n)
				}
				switch {
				case errors.Is(err, unix.EAGAIN):
					return false
				case errors.Is(err, unix.EINTR):
					continue
				case err != nil:
					serr = err
					return true
				case n == 0:
					serr = io.ErrUnexpectedEOF
					return true
				}
				if !time.Now().Before(deadline) {
					return true
				}
			}
		})
		if werr != nil && serr == nil {
			serr = werr
		}
	}
	runtime.KeepAlive(f)
	return total, serr
}

// finishWithRatios fills the ratios (when ceilings ran) and prints.
func (o *benchOpts) finishWithRatios(rep *report, benches []*bench, ceil *ceilingSet, fill func(map[string]ratio, func(*bench) seriesSummary)) error {
	if ceil != nil {
		rep.Ratios = map[string]ratio{}
		fill(rep.Ratios, summarize)
	}
	return o.finish(rep, benches)
}

func newBenchCeilingsCmd(o *benchOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "ceilings",
		Short: "This machine's ceilings: loopback write, sendfile, pread+write, producer against the sink",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stop, err := o.prepare(cmd, false)
			if err != nil {
				return err
			}
			defer stop()
			ctx := cmd.Context()
			ceil, err := o.ceilingBenches(ctx)
			if err != nil {
				return err
			}
			defer ceil.close()
			if err := o.runRounds(ctx, ceil.benches); err != nil {
				return err
			}
			rep := &report{Command: "ceilings", Topic: o.topic, Partitions: o.partitions, Started: time.Now()}
			return o.finishWithRatios(rep, ceil.benches, ceil, func(r map[string]ratio, get func(*bench) seriesSummary) {
				s, c := get(ceil.sendfile), get(ceil.copy)
				r["sendfile on / off (MB/s)"] = newRatio(s.MBps.Median, c.MBps.Median, true, 1, fmt.Sprintf("%.0f / %.0f MB/s", s.MBps.Median, c.MBps.Median))
				if s.SenderCPUPerGB != nil && c.SenderCPUPerGB != nil {
					r["sendfile on / off (sender CPU/GB)"] = newRatio(s.SenderCPUPerGB.Median, c.SenderCPUPerGB.Median, false, 1,
						fmt.Sprintf("%.3f / %.3f s/GB", s.SenderCPUPerGB.Median, c.SenderCPUPerGB.Median))
				}
			})
		},
	}
}
