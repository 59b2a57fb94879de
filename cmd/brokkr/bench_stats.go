package main

// Measurement helpers of brokkr bench: a lock-free latency histogram, a
// broker process's CPU time and RSS from /proc, and the summary statistics
// (median, min, max over runs).

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// histogram records durations with about 1.6 % relative error: 64 linear
// sub-buckets per power of two nanoseconds. Record is safe for concurrent
// use and does not allocate.
type histogram struct {
	counts [64 * 64]atomic.Uint64
	max    atomic.Int64
	n      atomic.Uint64
}

func histIndex(v uint64) int {
	if v < 64 {
		return int(v)
	}
	e := bits.Len64(v) - 6 // v >> e is in [32, 64)
	return e*64 + int(v>>uint(e))
}

// histLow is the smallest value that falls in bucket i (inverse of histIndex).
func histLow(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	e := i / 64
	return uint64(i%64) << uint(e)
}

func (h *histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// Quantile returns the value at quantile q (0..1): the upper edge of the
// bucket holding it, capped at the maximum seen.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			hi := histLow(i) + 1
			if i >= 64 {
				hi = histLow(i) + 1<<uint(i/64)
			}
			if m := uint64(h.max.Load()); hi > m {
				hi = m
			}
			return time.Duration(hi)
		}
	}
	return time.Duration(h.max.Load())
}

func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }
func (h *histogram) Count() uint64      { return h.n.Load() }

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel's exported
// value is fixed, whatever CONFIG_HZ is).
const clockTicks = 100

// procCPU returns the CPU seconds (user + system) that process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// procRSS returns the resident set size of pid in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, rest)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// spread is the median, min and max of one figure over the measured runs.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(vs []float64) spread {
	if len(vs) == 0 {
		return spread{}
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// fmtSpread prints "median (min–max)" with the given format per value.
func fmtSpread(s spread, f string) string {
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Median, s.Min, s.Max)
}

// gcTrace follows a spawned broker's GODEBUG=gctrace=1 lines on stderr:
// "gc 7 @1.2s 1%: ..., 4->5->2 MB, 5 MB goal, ...". It keeps the number of
// collections, the largest heap at a collection's start and the live heap
// after the latest one: the broker's Go heap, read from outside.
type gcTrace struct {
	count    atomic.Int64
	maxStart atomic.Int64 // MB
	live     atomic.Int64 // MB
}

// reset starts a new measurement window for maxStart.
func (g *gcTrace) reset() { g.maxStart.Store(0) }

// line parses one stderr line; it returns false when it is not a gctrace
// line.
func (g *gcTrace) line(s string) bool {
	if !strings.HasPrefix(s, "gc ") || !strings.Contains(s, " MB goal") {
		return false
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !strings.HasSuffix(f, " MB") || !strings.Contains(f, "->") {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(f, " MB"), "->")
		if len(parts) != 3 {
			continue
		}
		start, err1 := strconv.ParseInt(parts[0], 10, 64)
		live, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		g.count.Add(1)
		g.live.Store(live)
		for {
			m := g.maxStart.Load()
			if start <= m || g.maxStart.CompareAndSwap(m, start) {
				break
			}
		}
		return true
	}
	return false
}
