package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
)

// oldLog is a partition whose first two segments are past retention.ms:
// the built-in answers log start 200.
func oldLog(cfg map[string]string) plugins.RetentionInput {
	now := int64(10_000_000)
	c := map[string]string{"retention.ms": "1000"}
	for k, v := range cfg {
		c[k] = v
	}
	return plugins.RetentionInput{
		Topic: "t",
		Segments: []plugins.Segment{
			{BaseOffset: 0, LastOffset: 99, SizeBytes: 100, MaxTimestampMs: now - 5000, CreatedMs: now - 9000},
			{BaseOffset: 100, LastOffset: 199, SizeBytes: 100, MaxTimestampMs: now - 4000, CreatedMs: now - 5000},
			{BaseOffset: 200, LastOffset: 299, SizeBytes: 100, MaxTimestampMs: now - 10, CreatedMs: now - 4000},
			{BaseOffset: 300, LastOffset: 349, SizeBytes: 50, MaxTimestampMs: now - 1, CreatedMs: now - 10, Active: true},
		},
		Config: c, NowMs: now, HighWatermark: 340, LogStartOffset: 0, MinCommittedOffset: -1,
	}
}

func pidOf(t testing.TB, h testHost, name string) int {
	t.Helper()
	h.mu.Lock()
	p := h.procs[name]
	h.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		t.Fatalf("plugin %s has no process", name)
	}
	return p.cur.client.ReattachConfig().Pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// checkHealthy waits out the back-off and asserts the plugin answers the
// built-in's decision again.
func checkRecovers(t *testing.T, h testHost, p plugins.RetentionPolicy) {
	t.Helper()
	var v plugins.Verdict
	var err error
	eventually(t, 30*time.Second, "the plugin did not come back", func() bool {
		v, _, err = plugins.DecideChecked(context.Background(), p, oldLog(nil))
		return err == nil
	})
	if v.LogStartOffset != 200 || len(v.Delete) != 2 {
		t.Fatalf("after restart: verdict %+v, want log start 200 and two segments", v)
	}
}

// TestCrashMidCall: a plugin that exits inside Decide. The call fails,
// nothing would be deleted, the fault is visible, calls fail fast with
// ErrUnavailable during the back-off, and the plugin comes back.
func TestCrashMidCall(t *testing.T) {
	h := newHost(t, func(o *Options) { o.MinBackoff = time.Second })
	p := retentionFor(t, h)
	checkRecovers(t, h, p) // started and healthy
	pid := pidOf(t, h, "testplugin")

	v, _, err := plugins.DecideChecked(context.Background(), p, oldLog(map[string]string{faultKey: "crash"}))
	if err == nil || len(v.Delete) != 0 || v.LogStartOffset != 0 {
		t.Fatalf("crashing plugin: verdict %+v, err %v; want an error and nothing deleted", v, err)
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, plugins.ErrPolicyFailed) {
		t.Fatalf("crash error %v does not wrap ErrUnavailable and ErrPolicyFailed", err)
	}
	s := h.status(t, "testplugin")
	if s.Faults != 1 || s.Running || s.LastError == "" || s.LastFault.IsZero() || !s.BackoffUntil.After(time.Now()) {
		t.Fatalf("status after crash: %+v", s)
	}
	eventually(t, 10*time.Second, "crashed process still alive", func() bool { return !alive(pid) })

	start := time.Now()
	if _, err := p.Decide(context.Background(), oldLog(nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("during back-off: err %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("call during back-off took %v; it must fail at once", d)
	}
	checkRecovers(t, h, p)
	s = h.status(t, "testplugin")
	if s.Restarts != 1 || s.Faults != 1 || !s.Running {
		t.Fatalf("status after recovery: %+v", s)
	}
	if n := strings.Count(h.log.String(), "policy plugin fault"); n != 1 {
		t.Fatalf("fault logged %d times, want once:\n%s", n, h.log.String())
	}
}

// TestHangPastTimeout: a plugin that never answers is cut off at
// CallTimeout, killed, and restarted after the back-off.
func TestHangPastTimeout(t *testing.T) {
	h := newHost(t, func(o *Options) { o.CallTimeout = 700 * time.Millisecond })
	p := retentionFor(t, h)
	checkRecovers(t, h, p)
	pid := pidOf(t, h, "testplugin")

	start := time.Now()
	v, _, err := plugins.DecideChecked(context.Background(), p, oldLog(map[string]string{faultKey: "hang"}))
	took := time.Since(start)
	if err == nil || len(v.Delete) != 0 {
		t.Fatalf("hanging plugin: verdict %+v, err %v", v, err)
	}
	if took < 600*time.Millisecond || took > 10*time.Second {
		t.Fatalf("hung call returned after %v; want about the 700ms time-out", took)
	}
	s := h.status(t, "testplugin")
	if s.Faults != 1 || !strings.Contains(s.LastError, "no answer within") {
		t.Fatalf("status after hang: %+v", s)
	}
	eventually(t, 10*time.Second, "hung process not killed", func() bool { return !alive(pid) })
	checkRecovers(t, h, p)
	if s := h.status(t, "testplugin"); s.Restarts != 1 {
		t.Fatalf("status after recovery: %+v", s)
	}
}

// TestPanicInPolicy: a panic inside the plugin's policy is a fault; the
// plugin is restarted.
func TestPanicInPolicy(t *testing.T) {
	h := newHost(t, nil)
	p := retentionFor(t, h)
	v, _, err := plugins.DecideChecked(context.Background(), p, oldLog(map[string]string{faultKey: "panic"}))
	if err == nil || len(v.Delete) != 0 {
		t.Fatalf("panicking plugin: verdict %+v, err %v", v, err)
	}
	if s := h.status(t, "testplugin"); s.Faults != 1 || !strings.Contains(s.LastError, "panicked") {
		t.Fatalf("status: %+v", s)
	}
	checkRecovers(t, h, p)
}

// TestGarbageDecisions: answers above the high watermark, inside the active
// segment, or beyond the log end are refused (nothing deleted) and counted;
// the plugin keeps running and later valid answers go through.
func TestGarbageDecisions(t *testing.T) {
	h := newHost(t, nil)
	p := retentionFor(t, h)
	for i, fault := range []string{"above-hw", "active", "unknown"} {
		v, d, err := plugins.DecideChecked(context.Background(), p, oldLog(map[string]string{faultKey: fault}))
		if !errors.Is(err, plugins.ErrRefused) || len(v.Delete) != 0 || v.LogStartOffset != 0 {
			t.Fatalf("%s: verdict %+v, decision %+v, err %v; want ErrRefused and nothing deleted", fault, v, d, err)
		}
		if d.Reason != "garbage" {
			t.Fatalf("%s: the decision is not returned for the audit log: %+v", fault, d)
		}
		s := h.status(t, "testplugin")
		if s.Faults != int64(i+1) || !s.Running || s.Restarts != 0 || !strings.Contains(s.LastError, "refused") {
			t.Fatalf("%s: status %+v", fault, s)
		}
	}
	checkRecovers(t, h, p)
}

// TestGarbageSurvivors: survivors not in the batch, or listed twice, are
// refused and counted.
func TestGarbageSurvivors(t *testing.T) {
	h := newHost(t, nil)
	c := compactionFor(t, h)
	batch := []plugins.Record{
		{Offset: 10, Key: []byte("a"), TimestampMs: 1}, {Offset: 11, Key: []byte("a"), TimestampMs: 2},
		{Offset: 12, Key: []byte("b"), TimestampMs: 3},
	}
	for i, fault := range []string{"foreign", "twice"} {
		pass, err := c.Begin(context.Background(), plugins.CompactionParams{Topic: "t", Config: map[string]string{faultKey: fault}, NowMs: 100})
		if err != nil {
			t.Fatal(err)
		}
		if err := pass.Scan(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		s, err := pass.Survivors(context.Background(), batch)
		if !errors.Is(err, plugins.ErrRefused) || s != nil {
			t.Fatalf("%s: survivors %v, err %v; want ErrRefused", fault, s, err)
		}
		if err := pass.Close(); err != nil {
			t.Fatal(err)
		}
		if st := h.status(t, "testplugin"); st.Faults != int64(i+1) || !st.Running {
			t.Fatalf("%s: status %+v", fault, st)
		}
	}
	got := compactOnce(t, c, nil, [][]plugins.Record{batch})
	if !slices.Equal(got, []int64{11, 12}) {
		t.Fatalf("after garbage: survivors %v, want [11 12]", got)
	}
}

// TestCompactionCrashMidPass: a crash inside Survivors fails the pass; the
// pass cannot continue on the restarted process (its state is gone); a new
// pass after the back-off works.
func TestCompactionCrashMidPass(t *testing.T) {
	h := newHost(t, nil)
	c := compactionFor(t, h)
	ctx := context.Background()
	batch := []plugins.Record{{Offset: 0, Key: []byte("a")}, {Offset: 1, Key: []byte("a")}}
	pass, err := c.Begin(ctx, plugins.CompactionParams{Config: map[string]string{faultKey: "crash"}, NowMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := pass.Scan(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if s, err := pass.Survivors(ctx, batch); err == nil {
		t.Fatalf("crash mid-pass: survivors %v, no error", s)
	}
	if s := h.status(t, "testplugin"); s.Faults != 1 || s.Running {
		t.Fatalf("status: %+v", s)
	}
	if got := passAfterBackoff(t, c, batch); !slices.Equal(got, []int64{1}) {
		t.Fatalf("survivors %v, want [1]", got)
	}
	if _, err := pass.Survivors(ctx, batch); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("old pass on the new process: err %v, want ErrUnavailable", err)
	}
	if err := pass.Close(); err != nil {
		t.Fatalf("closing a pass of a dead process: %v", err)
	}
}

// TestHealthCheckFindsDeadPlugin: a plugin killed between calls is noticed
// by the health check (not only by the next call), counted, and restarted.
func TestHealthCheckFindsDeadPlugin(t *testing.T) {
	h := newHost(t, func(o *Options) { o.HealthInterval = 200 * time.Millisecond })
	p := retentionFor(t, h)
	checkRecovers(t, h, p)
	pid := pidOf(t, h, "testplugin")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "health check did not notice the dead plugin", func() bool {
		s := h.status(t, "testplugin")
		return s.Faults == 1 && !s.Running
	})
	if s := h.status(t, "testplugin"); !strings.Contains(s.LastError, "health check") && !strings.Contains(s.LastError, "exited") {
		t.Fatalf("LastError %q", s.LastError)
	}
	checkRecovers(t, h, p)
}

// TestBackoffGrows: a plugin that does not start (not a plugin at all) is
// retried with a growing wait, and every call in between fails at once.
func TestBackoffGrows(t *testing.T) {
	h := newHost(t, func(o *Options) { o.MinBackoff, o.MaxBackoff = 200*time.Millisecond, 800*time.Millisecond })
	script := filepath.Join(h.o.Dir, "notaplugin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho not a plugin\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := h.Retention("notaplugin")
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for len(waits) < 4 && time.Now().Before(deadline) {
		_, err := p.Decide(context.Background(), oldLog(nil))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("not a plugin: err %v, want ErrUnavailable", err)
		}
		s := h.status(t, "notaplugin")
		if int(s.Faults) > len(waits) {
			waits = append(waits, s.BackoffUntil.Sub(s.LastFault))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Waits double from 200ms and stop at 800ms.
	if !slices.Equal(waits, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 800 * time.Millisecond}) {
		t.Fatalf("back-off waits %v, want about [200ms 400ms 800ms 800ms]", waits)
	}
}

// TestPolicyErrorIsNoFault: a policy's own error (bad config) is
// ErrPolicyFailed, shown as LastError, but neither a fault nor a restart.
func TestPolicyErrorIsNoFault(t *testing.T) {
	h := newHost(t, nil)
	p := retentionFor(t, h)
	_, _, err := plugins.DecideChecked(context.Background(), p, oldLog(map[string]string{"retention.ms": "soon"}))
	if !errors.Is(err, plugins.ErrPolicyFailed) || !strings.Contains(err.Error(), "retention.ms") {
		t.Fatalf("bad config: err %v", err)
	}
	s := h.status(t, "testplugin")
	if s.Faults != 0 || !s.Running || !strings.Contains(s.LastError, "retention.ms") {
		t.Fatalf("status: %+v", s)
	}
}

// TestAllowList: only regular executables directly inside Dir.
func TestAllowList(t *testing.T) {
	h := newHost(t, nil)
	dir := h.o.Dir
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "evil"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("testplugin", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", "../testplugin", "a/b", "/bin/true", filepath.Join(outside, "evil"),
		`..\evil`, "missing", "noexec", "subdir", "escape", "dangling", "test\x00plugin"} {
		if _, err := h.Retention(name); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Retention(%q): err %v, want ErrNotAllowed", name, err)
		}
		if _, err := h.Compaction(name); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Compaction(%q): err %v, want ErrNotAllowed", name, err)
		}
	}
	// A symlink to a binary inside the directory is fine, and runs it.
	p, err := h.Retention("alias")
	if err != nil {
		t.Fatalf("alias: %v", err)
	}
	if d, err := p.Decide(context.Background(), oldLog(nil)); err != nil || d.LogStartOffset != 200 {
		t.Fatalf("alias: %+v, %v", d, err)
	}
	// No directory configured: nothing is allowed.
	none, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.Retention("testplugin"); !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "brokkr.plugin.dir") {
		t.Fatalf("no plugin dir: err %v", err)
	}
	// A plugin dir that is a file is refused at New.
	if _, err := New(Options{Dir: filepath.Join(dir, "noexec")}); err == nil {
		t.Fatal("New accepted a file as plugin dir")
	}
	if _, err := New(Options{Dir: dir, MinBackoff: time.Minute, MaxBackoff: time.Second}); err == nil {
		t.Fatal("New accepted MinBackoff > MaxBackoff")
	}
}

// TestCloseKillsPlugins: Close ends every process; later calls fail with
// ErrUnavailable.
func TestCloseKillsPlugins(t *testing.T) {
	h := newHost(t, nil)
	p := retentionFor(t, h)
	checkRecovers(t, h, p)
	pid := pidOf(t, h, "testplugin")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "plugin alive after Close", func() bool { return !alive(pid) })
	if _, err := p.Decide(context.Background(), oldLog(nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: err %v", err)
	}
	if _, err := h.Retention("testplugin"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Retention after Close: err %v", err)
	}
}

// TestLargeBatchIsChunked: a batch of 5,000 records with 1 KiB keys (over
// gRPC's 4 MiB default) goes through in chunks and gives the in-process
// answer.
func TestLargeBatchIsChunked(t *testing.T) {
	h := newHost(t, nil)
	batch := make([]plugins.Record, 5000)
	for i := range batch {
		k := make([]byte, 1024)
		copy(k, []byte{byte(i % 700), byte(i % 700 >> 8)})
		batch[i] = plugins.Record{Offset: int64(i), Key: k, TimestampMs: int64(i)}
	}
	want := compactOnce(t, builtin.NewCompaction(), nil, [][]plugins.Record{batch})
	callsBefore := int64(0)
	c := compactionFor(t, h)
	c.Info() // start it
	callsBefore = h.status(t, "testplugin").Calls
	got := compactOnce(t, c, nil, [][]plugins.Record{batch})
	if !slices.Equal(got, want) || len(want) != 700 {
		t.Fatalf("plugin survivors (%d) differ from in process (%d)", len(got), len(want))
	}
	// Begin + 2 chunks Scan + 2 chunks Survivors + Close at least.
	if calls := h.status(t, "testplugin").Calls - callsBefore; calls < 6 {
		t.Fatalf("%d calls: the 5 MiB batch was not chunked", calls)
	}
}

// TestNullsSurviveTheWire: nil and empty keys, values and header values stay
// distinct across the wire.
func TestNullsSurviveTheWire(t *testing.T) {
	recs := []plugins.Record{
		{Offset: 1, Key: nil, Headers: []plugins.Header{{Key: "n", Value: nil}, {Key: "e", Value: []byte{}}}},
		{Offset: 2, Key: []byte{}, Value: []byte{}},
		{Offset: 3, Key: []byte("k"), Value: []byte("v"), Tombstone: false},
		{Offset: 4, Key: []byte("k"), Tombstone: true},
	}
	back := recordsRoundTrip(recs, true)
	for i := range recs {
		a, b := recs[i], back[i]
		if (a.Key == nil) != (b.Key == nil) || string(a.Key) != string(b.Key) || (a.Value == nil) != (b.Value == nil) ||
			a.Tombstone != b.Tombstone || len(a.Headers) != len(b.Headers) {
			t.Fatalf("record %d: %+v came back as %+v", i, a, b)
		}
		for j := range a.Headers {
			if (a.Headers[j].Value == nil) != (b.Headers[j].Value == nil) {
				t.Fatalf("record %d header %d: %+v came back as %+v", i, j, a.Headers[j], b.Headers[j])
			}
		}
	}
	if v := recordsRoundTrip(recs[2:3], false)[0].Value; v != nil {
		t.Fatalf("value shipped to a policy that did not ask: %q", v)
	}
}

// TestPluginLogsReachSlog: go-plugin's and the plugin's log lines arrive in
// the host's slog logger, named after the plugin.
func TestPluginLogsReachSlog(t *testing.T) {
	h := newHost(t, nil)
	checkRecovers(t, h, retentionFor(t, h))
	// Lines of the plugin process's own (hclog JSON) stderr are named
	// plugin.<name>.<binary> by go-plugin.
	var found bool
	for _, line := range strings.Split(h.log.String(), "\n") {
		if strings.Contains(line, "logger=plugin.testplugin.testplugin") {
			t.Log(line)
			found = true
		}
	}
	if !found {
		t.Fatalf("no log line from the plugin process:\n%s", h.log.String())
	}
}

func compactOnce(t testing.TB, c plugins.CompactionPolicy, cfg map[string]string, batches [][]plugins.Record) []int64 {
	t.Helper()
	ctx := context.Background()
	pass, err := c.Begin(ctx, plugins.CompactionParams{Topic: "t", Config: cfg, NowMs: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	for _, b := range batches {
		if err := pass.Scan(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var all []int64
	for _, b := range batches {
		s, err := pass.Survivors(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		v, err := plugins.ValidateSurvivors(b, s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v...)
	}
	return all
}

// TestScanFaults: a plugin that crashes or hangs inside Scan (a stream:
// the host does not wait for each batch) fails the pass by the first
// Survivors at the latest, within the call time-out; the fault is counted,
// the pass stays failed, and a new pass works after the back-off.
func TestScanFaults(t *testing.T) {
	for _, fault := range []string{"crash-scan", "hang-scan"} {
		t.Run(fault, func(t *testing.T) {
			h := newHost(t, func(o *Options) { o.CallTimeout = time.Second })
			c := compactionFor(t, h)
			ctx := context.Background()
			batch := []plugins.Record{{Offset: 0, Key: []byte("a")}, {Offset: 1, Key: []byte("a")}}
			pass, err := c.Begin(ctx, plugins.CompactionParams{Config: map[string]string{faultKey: fault}, NowMs: 10})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var failed error
			for range 3 {
				if failed = pass.Scan(ctx, batch); failed != nil {
					break
				}
			}
			if failed == nil {
				var s []int64
				s, failed = pass.Survivors(ctx, batch)
				if failed == nil {
					t.Fatalf("%s: survivors %v, no error", fault, s)
				}
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("%s: the failure took %v", fault, took)
			}
			if s := h.status(t, "testplugin"); s.Faults != 1 || s.Running {
				t.Fatalf("%s: status %+v (err %v)", fault, s, failed)
			}
			if _, err := pass.Survivors(ctx, batch); err == nil {
				t.Fatalf("%s: the failed pass answered", fault)
			}
			if err := pass.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := passAfterBackoff(t, c, batch); !slices.Equal(got, []int64{1}) {
				t.Fatalf("survivors %v, want [1]", got)
			}
		})
	}
}

// passAfterBackoff waits (up to 30 s) until a new pass can Begin after a
// fault's back-off, and returns its survivors of batch (Scan, then
// Survivors, in one batch).
func passAfterBackoff(t *testing.T, c plugins.CompactionPolicy, batch []plugins.Record) []int64 {
	t.Helper()
	ctx := context.Background()
	var got []int64
	eventually(t, 30*time.Second, "no new pass after the back-off", func() bool {
		p2, err := c.Begin(ctx, plugins.CompactionParams{NowMs: 10})
		if err != nil {
			return false
		}
		defer p2.Close()
		if err := p2.Scan(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if got, err = p2.Survivors(ctx, batch); err != nil {
			t.Fatal(err)
		}
		return true
	})
	return got
}

// TestWrongKind: a plugin serving only retention, named as a compaction
// policy, fails every call with a clear error; the retention side works.
func TestWrongKind(t *testing.T) {
	t.Setenv("BROKKR_TESTPLUGIN_SERVES", "retention")
	h := newHost(t, nil)
	c := compactionFor(t, h)
	if _, err := c.Begin(context.Background(), plugins.CompactionParams{NowMs: 1}); err == nil || !strings.Contains(err.Error(), "does not serve") {
		t.Fatalf("Begin on a retention-only plugin: err %v", err)
	}
	if s := h.status(t, "testplugin"); s.Faults != 1 || !s.Running {
		t.Fatalf("status %+v", s)
	}
	checkRecovers(t, h, retentionFor(t, h))
}

// TestConcurrentCallsAndCrash: calls from many goroutines while one of them
// crashes the plugin: every answer is either the built-in's or an error,
// the crash is counted once, and the plugin comes back.
func TestConcurrentCallsAndCrash(t *testing.T) {
	h := newHost(t, nil)
	p := retentionFor(t, h)
	checkRecovers(t, h, p)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 40 {
				cfg := map[string]string(nil)
				if g == 3 && i == 20 {
					cfg = map[string]string{faultKey: "crash"}
				}
				v, _, err := plugins.DecideChecked(context.Background(), p, oldLog(cfg))
				if err == nil && (v.LogStartOffset != 200 || len(v.Delete) != 2) {
					errs <- fmt.Errorf("goroutine %d call %d: wrong verdict %+v", g, i, v)
					return
				}
				if err != nil && len(v.Delete) != 0 {
					errs <- fmt.Errorf("goroutine %d call %d: error %v with deletions %+v", g, i, err, v)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if s := h.status(t, "testplugin"); s.Faults != 1 {
		t.Fatalf("one crash, status %+v", s)
	}
	checkRecovers(t, h, p)
}

// childHost is a broker stand-in run as a child process: it starts the
// test plugin in dir, prints the plugin's pid, and waits to be killed.
func childHost(dir string) {
	h, err := New(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	p, _ := h.Retention("testplugin")
	p.Info()
	h.mu.Lock()
	pr := h.procs["testplugin"]
	h.mu.Unlock()
	pr.mu.Lock()
	fmt.Println("pid", pr.cur.client.ReattachConfig().Pid)
	pr.mu.Unlock()
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestPluginDiesWithBroker: when the broker is killed with -9, its plugin
// processes exit by themselves (they are not left running forever).
func TestPluginDiesWithBroker(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BROKKR_HOST_TEST_CHILD="+pluginDir(t))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	if _, serr := fmt.Sscanf(line, "pid %d", &pid); err != nil || serr != nil {
		t.Fatalf("child host said %q (%v, %v)", line, err, serr)
	}
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 15*time.Second, "plugin still running after its broker was killed", func() bool { return !alive(pid) })
}

// TestOtherProtocolVersion: a plugin speaking another protocol version is
// never used: the start fails, a fault names the versions, nothing is
// decided.
func TestOtherProtocolVersion(t *testing.T) {
	t.Setenv("BROKKR_TESTPLUGIN_PROTOCOL", "2")
	h := newHost(t, nil)
	v, _, err := plugins.DecideChecked(context.Background(), retentionFor(t, h), oldLog(nil))
	if !errors.Is(err, ErrUnavailable) || len(v.Delete) != 0 {
		t.Fatalf("protocol 2 plugin: verdict %+v, err %v", v, err)
	}
	s := h.status(t, "testplugin")
	if s.Faults != 1 || s.Running || !strings.Contains(strings.ToLower(s.LastError), "version") {
		t.Fatalf("status %+v", s)
	}
}

// TestFrozenPlugin: a plugin process that stops answering altogether
// (SIGSTOP: even its health service is silent) is found by the health
// check, killed and restarted.
func TestFrozenPlugin(t *testing.T) {
	h := newHost(t, func(o *Options) { o.HealthInterval, o.CallTimeout = 200*time.Millisecond, 500*time.Millisecond })
	p := retentionFor(t, h)
	checkRecovers(t, h, p)
	pid := pidOf(t, h, "testplugin")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	eventually(t, 10*time.Second, "frozen plugin not noticed", func() bool { return h.status(t, "testplugin").Faults == 1 })
	if s := h.status(t, "testplugin"); !strings.Contains(s.LastError, "health check") {
		t.Fatalf("status %+v", s)
	}
	eventually(t, 10*time.Second, "frozen plugin not killed", func() bool { return !alive(pid) })
	checkRecovers(t, h, p)
}
