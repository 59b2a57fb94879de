package log

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/segment"
)

const crashEnv = "BROKKR_LOG_CRASH_CHILD"

func crashConfig(flushMessages int64) ManagerConfig {
	c := DefaultConfig()
	c.SegmentBytes = 256 << 10
	c.SegmentIndexBytes = 64 << 10
	c.IndexIntervalBytes = 1024
	c.FlushMessages = flushMessages
	c.FlushMs = 50
	return ManagerConfig{Default: c, CheckpointMs: 100, SchedulerMs: 20}
}

// TestCrashChild is the child of TestKill9: it appends forever to two
// partitions and prints "ok <partition> <base> <last>" after each append
// returns. It does nothing unless started by TestKill9.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return
	}
	fm, _ := strconv.ParseInt(os.Getenv(crashEnv+"_FLUSH"), 10, 64)
	cfg := crashConfig(fm)
	cfg.LogDirs = []string{dir}
	m, err := OpenManager(cfg, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	var logs [2]*Log
	for p := range logs {
		if logs[p], err = m.Create("t", int32(p), nil); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
	}
	w := bufio.NewWriterSize(os.Stdout, 0)
	for i := 0; ; i++ {
		p := i % 2
		l := logs[p]
		res, err := l.Append(batchFor(l.LogEndOffset()), 7)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Fprintf(w, "ok %d %d %d\n", p, res.BaseOffset, res.LastOffset)
	}
}

// TestKill9 re-executes the test binary as TestCrashChild, kills it with
// SIGKILL at random moments, and checks after each kill that every append
// the child reported complete is in the log, byte for byte, with
// consecutive offsets and valid CRCs. kill -9 keeps the page cache, so
// this holds for every flush setting; both are run.
func TestKill9(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		return
	}
	for _, fm := range []int64{math.MaxInt64, 1} {
		t.Run(fmt.Sprintf("flush.messages=%d", fm), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(fm)))
			acked := map[int32]int64{} // partition -> highest acked last offset
			for round := 0; round < 6; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_FLUSH="+strconv.FormatInt(fm, 10))
				lines := startChild(t, cmd)
				// Let it append for a random while after its first ack.
				deadline := time.After(30 * time.Second)
				var killAt <-chan time.Time
				count := 0
			read:
				for {
					select {
					case line, ok := <-lines:
						if !ok {
							t.Fatalf("round %d: child exited before the kill", round)
						}
						f := strings.Fields(line)
						if len(f) != 4 || f[0] != "ok" {
							t.Fatalf("round %d: child said %q", round, line)
						}
						p, _ := strconv.Atoi(f[1])
						last, _ := strconv.ParseInt(f[3], 10, 64)
						acked[int32(p)] = max(acked[int32(p)], last)
						if count++; count == 1 {
							killAt = time.After(time.Duration(20+rng.IntN(400)) * time.Millisecond)
						}
					case <-killAt:
						cmd.Process.Signal(syscall.SIGKILL)
						break read
					case <-deadline:
						t.Fatalf("round %d: child made no progress", round)
					}
				}
				for line := range lines { // acks written before the kill
					f := strings.Fields(line)
					if len(f) == 4 {
						p, _ := strconv.Atoi(f[1])
						last, _ := strconv.ParseInt(f[3], 10, 64)
						acked[int32(p)] = max(acked[int32(p)], last)
					}
				}
				cmd.Wait()

				// Reopen (recovery from the checkpoint) and check.
				var truncated []segment.Recovery
				cfg := crashConfig(fm)
				cfg.LogDirs = []string{dir}
				cfg.SchedulerMs = -1
				m, err := OpenManager(cfg, Options{Events: Events{RecoveryTruncated: func(_ string, r segment.Recovery) { truncated = append(truncated, r) }}})
				if err != nil {
					t.Fatalf("round %d: reopen: %v", round, err)
				}
				for p := int32(0); p < 2; p++ {
					l, ok := m.Get("t", p)
					if !ok {
						t.Fatalf("round %d: partition %d missing", round, p)
					}
					leo := l.LogEndOffset()
					if leo <= acked[p] {
						t.Fatalf("round %d partition %d: LEO %d, but offset %d was acked (recovery %+v)", round, p, leo, acked[p], truncated)
					}
					l.SetHighWatermark(leo)
					off := int64(0)
					for _, b := range readAll(t, l, 0, LimitHighWatermark) {
						checkBatch(t, b, batchFor(off), off, 7)
						h, _ := segment.ParseHeader(b)
						off = h.NextOffset()
					}
					if off != leo {
						t.Fatalf("round %d partition %d: read to %d, LEO %d", round, p, off, leo)
					}
				}
				t.Logf("round %d: %d acks, highest acked offsets %v, recovery cut %d tails", round, count, acked, len(truncated))
				if round%2 == 0 {
					if err := m.Close(); err != nil { // clean: next child trusts it
						t.Fatal(err)
					}
				} else {
					m.stopAndAbandon() // as if the checker crashed too
				}
			}
		})
	}
}

// stopAndAbandon drops the manager without flushing or a marker.
func (m *Manager) stopAndAbandon() {
	if m.stop != nil {
		close(m.stop)
		<-m.done
	}
	m.abandonAll()
}

// startChild starts a child test process, killed at the end of the test,
// and returns the lines of its stdout (closed when it ends).
func startChild(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines
}
