package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/twmb/franz-go/pkg/kerr"
)

// fakeSource is a PolicySource over fixed maps; a name not in them is not
// allowed, and unavailable[name] makes resolution fail as a crashed plugin.
type fakeSource struct {
	mu          sync.Mutex
	retention   map[string]plugins.RetentionPolicy
	compaction  map[string]plugins.CompactionPolicy
	unavailable map[string]bool
}

var errNotAllowed = errors.New("not in brokkr.plugin.dir")

func (f *fakeSource) Check(kind PolicyKind, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == KindRetention && f.retention[name] != nil || kind == KindCompaction && f.compaction[name] != nil {
		return nil
	}
	return errNotAllowed
}

func (f *fakeSource) Retention(name string) (plugins.RetentionPolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unavailable[name] {
		return nil, errors.New("plugin unavailable: restarting")
	}
	if p := f.retention[name]; p != nil {
		return p, nil
	}
	return nil, errNotAllowed
}

func (f *fakeSource) Compaction(name string) (plugins.CompactionPolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unavailable[name] {
		return nil, errors.New("plugin unavailable: restarting")
	}
	if p := f.compaction[name]; p != nil {
		return p, nil
	}
	return nil, errNotAllowed
}

// switchPolicy answers through whatever function is current.
type switchPolicy struct {
	mu sync.Mutex
	f  policyFunc
}

func (s *switchPolicy) set(f policyFunc) { s.mu.Lock(); s.f = f; s.mu.Unlock() }
func (s *switchPolicy) Info() plugins.Info {
	return plugins.Info{Name: "switch"}
}
func (s *switchPolicy) Decide(ctx context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	return f.Decide(ctx, in)
}

// TestPluginRetentionFaultThenRecovery: a topic naming a plugin policy;
// the plugin errors, then answers garbage, then is unavailable — nothing is
// deleted, each fault is in the partition's status and counted under the
// topic and plugin name — then it answers sensibly, the fault clears and
// the old segments go.
func TestPluginRetentionFaultThenRecovery(t *testing.T) {
	b, l := retentionFixture(t, builtin.NewRetention())
	sw := &switchPolicy{}
	src := &fakeSource{retention: map[string]plugins.RetentionPolicy{"keeper": sw}, unavailable: map[string]bool{}}
	b.Policies = src
	p := b.parts[tp{"t", 0}]
	p.overrides = map[string]string{"segment.bytes": "4096", "retention.ms": "3600000", config.RetentionPluginKey: "keeper"}
	before := len(l.Segments())

	status := func() RetentionStatus {
		t.Helper()
		st := b.partitionStatus(p)
		if st.Retention == nil {
			t.Fatal("no retention status for a delete topic")
		}
		return *st.Retention
	}
	faults := []struct {
		name  string
		setup func()
		want  string
	}{
		{"error", func() {
			sw.set(func(plugins.RetentionInput) (plugins.RetentionDecision, error) {
				return plugins.RetentionDecision{}, io.ErrUnexpectedEOF
			})
		}, "unexpected EOF"},
		{"garbage", func() {
			sw.set(func(in plugins.RetentionInput) (plugins.RetentionDecision, error) {
				return plugins.RetentionDecision{LogStartOffset: in.HighWatermark + 1000, Reason: "lies"}, nil
			})
		}, "beyond the log end"},
		{"unavailable", func() { src.mu.Lock(); src.unavailable["keeper"] = true; src.mu.Unlock() }, "plugin unavailable"},
	}
	for i, f := range faults {
		f.setup()
		if n := b.enforceRetention(context.Background(), time.Now()); n != 0 {
			t.Fatalf("%s: deleted %d segments", f.name, n)
		}
		if len(l.Segments()) != before || l.LogStartOffset() != 0 {
			t.Fatalf("%s: log changed: %d -> %d segments, start %d", f.name, before, len(l.Segments()), l.LogStartOffset())
		}
		st := status()
		if !strings.Contains(st.Fault, f.want) || st.Policy != "keeper" || st.Faults != int64(i+1) || st.FaultMs == 0 {
			t.Fatalf("%s: status %+v, want fault containing %q, %d faults", f.name, st, f.want, i+1)
		}
	}
	// The same fault again is counted, not a new status.
	b.enforceRetention(context.Background(), time.Now())
	if st := status(); st.Faults != 4 {
		t.Fatalf("repeated fault: %+v", st)
	}
	pf := b.PolicyFaults()
	if len(pf) != 1 || pf[0] != (PolicyFault{Topic: "t", Policy: "keeper", Kind: KindRetention, Count: 4}) {
		t.Fatalf("PolicyFaults = %+v", pf)
	}

	// Healthy again: delete everything the built-in would.
	src.mu.Lock()
	src.unavailable["keeper"] = false
	src.mu.Unlock()
	sw.set(func(in plugins.RetentionInput) (plugins.RetentionDecision, error) {
		return builtin.NewRetention().Decide(context.Background(), in)
	})
	if n := b.enforceRetention(context.Background(), time.Now()); n != before-1 {
		t.Fatalf("after recovery deleted %d, want %d", n, before-1)
	}
	st := status()
	if st.Fault != "" || st.LastDeleted != before-1 || !strings.Contains(st.LastDecision, "older than retention.ms") {
		t.Fatalf("after recovery: %+v", st)
	}
	if st.Faults != 4 {
		t.Fatalf("fault count reset: %+v", st)
	}
}

// TestRetentionPlanIsDryRun: the plan lists the segments the policy would
// delete and deletes none of them; a compact-only topic's plan says
// retention does not run.
func TestRetentionPlanIsDryRun(t *testing.T) {
	b, l := retentionFixture(t, builtin.NewRetention())
	p := b.parts[tp{"t", 0}]
	segs := l.Segments()
	plan := b.planRetention(context.Background(), p, time.Now(), nil)
	if plan.Refused != "" || !plan.Runs || len(plan.Delete) != len(segs)-1 || plan.NewLogStartOffset != segs[len(segs)-1].Base {
		t.Fatalf("plan %+v (segments %d)", plan, len(segs))
	}
	for i, s := range plan.Delete {
		if s.BaseOffset != segs[i].Base || s.LastOffset != segs[i].LastOffset || s.SizeBytes != segs[i].Size {
			t.Fatalf("plan segment %d = %+v, log has %+v", i, s, segs[i])
		}
	}
	if len(l.Segments()) != len(segs) || l.LogStartOffset() != 0 {
		t.Fatal("planning deleted something")
	}
	v, ok := b.statusEntry(context.Background(), "t", p.overrides, "brokkr.status.retention.plan")
	var plans []RetentionPlan
	if !ok || json.Unmarshal([]byte(v), &plans) != nil || len(plans) != 1 || len(plans[0].Delete) != len(segs)-1 {
		t.Fatalf("status entry %q %v", v, ok)
	}
	p.overrides = map[string]string{"cleanup.policy": "compact"}
	plan = b.planRetention(context.Background(), p, time.Now(), nil)
	if plan.Runs || len(plan.Delete) != 0 || !strings.Contains(plan.Reason, "does not run") {
		t.Fatalf("compact plan %+v", plan)
	}
}

// TestCheckPolicyConfigs: configs naming a plugin are refused with
// INVALID_CONFIG unless the source allows it; paths and brokkr.status.*
// names are always refused; no source means plugins are disabled.
func TestCheckPolicyConfigs(t *testing.T) {
	b := &Broker{}
	code := func(cfgs map[string]string) (int16, string) {
		err := b.checkPolicyConfigs(cfgs)
		if err == nil {
			return 0, ""
		}
		var ce *controller.Error
		if !errors.As(err, &ce) {
			t.Fatalf("not a controller error: %v", err)
		}
		return ce.Err.Code, ce.Message
	}
	if c, msg := code(map[string]string{config.RetentionPluginKey: "keeper"}); c != kerr.InvalidConfig.Code || !strings.Contains(msg, "brokkr.plugin.dir is not set") {
		t.Fatalf("no source: %d %q", c, msg)
	}
	b.Policies = &fakeSource{retention: map[string]plugins.RetentionPolicy{"keeper": builtin.NewRetention()}}
	for cfgs, want := range map[*map[string]string]string{
		{config.RetentionPluginKey: "keeper"}:              "",
		{config.RetentionPluginKey: ""}:                    "",
		{config.RetentionPluginKey: "other"}:               "not in brokkr.plugin.dir",
		{config.CompactionPluginKey: "keeper"}:             "not in brokkr.plugin.dir",
		{config.RetentionPluginKey: "../../bin/rm"}:        "not by a path",
		{config.RetentionPluginKey: "/usr/bin/true"}:       "not by a path",
		{"brokkr.status.policy": "x"}:                      "read-only status",
		{"brokkr.plugin.keeper.max.age.ms": "5", "a": "b"}: "",
	} {
		c, msg := code(*cfgs)
		if want == "" && c != 0 || want != "" && (c != kerr.InvalidConfig.Code || !strings.Contains(msg, want)) {
			t.Errorf("%v: code %d %q, want %q", *cfgs, c, msg, want)
		}
	}
}

// fakeCleanLog is a partition log the cleaner can clean: a fixed state and
// a Clean that does what the test says.
type fakeCleanLog struct {
	partLog
	mu    sync.Mutex
	state cleanState
	clean func(req cleanRequest) (cleanResult, error)
	calls atomic.Int64
}

func (f *fakeCleanLog) CleanState(nowMs, lagMs int64) cleanState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeCleanLog) Clean(_ context.Context, req cleanRequest) (cleanResult, error) {
	f.calls.Add(1)
	f.mu.Lock()
	fn := f.clean
	f.mu.Unlock()
	res, err := fn(req)
	if err == nil && !res.NoProgress {
		f.mu.Lock()
		f.state.CleanBytes += f.state.DirtyBytes
		f.state.DirtyBytes = 0
		f.mu.Unlock()
	}
	return res, err
}

func cleanerBroker(t *testing.T, logs map[string]*fakeCleanLog, overrides map[string]string) *Broker {
	t.Helper()
	cfg := config.DefaultConfig()
	cfg.LogCleanerBackoffMs = 20
	b := &Broker{Config: cfg, CompactionPolicy: builtin.NewCompaction(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), parts: map[tp]*partition{}}
	for name, l := range logs {
		b.parts[tp{name, 0}] = &partition{topic: name, log: l, overrides: overrides}
	}
	return b
}

// TestCleanerPicksDirtiestAndRecordsOutcome: the dirtiest eligible
// partition is cleaned first; one below min.cleanable.dirty.ratio is not;
// a failing cleaning is recorded with its error, backs off, counts as a
// fault and uncleanable; a panicking one is a failure, not a dead thread;
// success clears the failure count.
func TestCleanerPicksDirtiestAndRecordsOutcome(t *testing.T) {
	ok := func(cleanRequest) (cleanResult, error) { return cleanResult{Summary: "ok"}, nil }
	logs := map[string]*fakeCleanLog{
		"dirty":  {state: cleanState{CleanBytes: 100, DirtyBytes: 900, OldestDirtyMs: -1}, clean: ok},
		"medium": {state: cleanState{CleanBytes: 400, DirtyBytes: 600, OldestDirtyMs: -1}, clean: ok},
		"clean":  {state: cleanState{CleanBytes: 900, DirtyBytes: 100, OldestDirtyMs: -1}, clean: ok},
	}
	b := cleanerBroker(t, logs, map[string]string{"cleanup.policy": "compact"})
	now := time.Now()
	if !b.cleanOnce(context.Background(), now) || logs["dirty"].calls.Load() != 1 || logs["medium"].calls.Load() != 0 {
		t.Fatalf("first pass: dirty %d medium %d", logs["dirty"].calls.Load(), logs["medium"].calls.Load())
	}
	if m := b.CleanerMetrics(); m.MaxDirtyPercent != 90 {
		t.Fatalf("max dirty percent %v", m.MaxDirtyPercent)
	}
	if !b.cleanOnce(context.Background(), now) || logs["medium"].calls.Load() != 1 {
		t.Fatal("second pass did not clean medium")
	}
	if b.cleanOnce(context.Background(), now) || logs["clean"].calls.Load() != 0 {
		t.Fatal("cleaned a partition below min.cleanable.dirty.ratio")
	}
	st := b.PartitionStatuses("dirty")["dirty"][0].Cleaner
	if st == nil || st.LastCleanMs == 0 || st.LastCleanResult != "ok" || st.Policy != "builtin.compaction" || st.DirtyBytes != 0 || st.CleanBytes != 1000 {
		t.Fatalf("status after clean %+v", st)
	}

	// Failures: an error, then a panic.
	f := logs["clean"]
	f.mu.Lock()
	f.state.DirtyBytes = 5000
	f.clean = func(cleanRequest) (cleanResult, error) { return cleanResult{}, errors.New("disk on fire") }
	f.mu.Unlock()
	if !b.cleanOnce(context.Background(), now) {
		t.Fatal("did not try the dirty partition")
	}
	st = b.PartitionStatuses("clean")["clean"][0].Cleaner
	if st.LastError != "disk on fire" || st.ConsecutiveFailures != 1 || st.NextAttemptMs <= now.UnixMilli() {
		t.Fatalf("status after failure %+v", st)
	}
	if b.cleanOnce(context.Background(), now) || f.calls.Load() != 1 {
		t.Fatal("retried before the back-off")
	}
	if m := b.CleanerMetrics(); m.UncleanablePartitions != 1 || m.Failures != 1 {
		t.Fatalf("metrics after failure %+v", m)
	}
	f.mu.Lock()
	f.clean = func(cleanRequest) (cleanResult, error) { panic("policy bug") }
	f.mu.Unlock()
	later := time.UnixMilli(st.NextAttemptMs + 1)
	if !b.cleanOnce(context.Background(), later) {
		t.Fatal("did not retry after the back-off")
	}
	st = b.PartitionStatuses("clean")["clean"][0].Cleaner
	if !strings.Contains(st.LastError, "panicked: policy bug") || st.ConsecutiveFailures != 2 {
		t.Fatalf("status after panic %+v", st)
	}
	if m := b.CleanerMetrics(); m.Panics != 1 || m.DeadThreads != 0 {
		t.Fatalf("metrics after panic %+v", m)
	}
	f.mu.Lock()
	f.clean = ok
	f.mu.Unlock()
	if !b.cleanOnce(context.Background(), time.UnixMilli(st.NextAttemptMs+1)) {
		t.Fatal("no retry")
	}
	st = b.PartitionStatuses("clean")["clean"][0].Cleaner
	if st.ConsecutiveFailures != 0 || st.LastCleanResult != "ok" || !strings.Contains(st.LastError, "panicked") {
		t.Fatalf("status after recovery %+v", st)
	}
	if m := b.CleanerMetrics(); m.UncleanablePartitions != 0 {
		t.Fatalf("still uncleanable %+v", m)
	}
	if pf := b.PolicyFaults(); len(pf) != 1 || pf[0].Kind != KindCompaction || pf[0].Count != 2 || pf[0].Topic != "clean" {
		t.Fatalf("faults %+v", pf)
	}
}

// TestCleanerMaxCompactionLag: a partition below the ratio is cleaned when
// its oldest dirty record is older than max.compaction.lag.ms.
func TestCleanerMaxCompactionLag(t *testing.T) {
	now := time.Now()
	l := &fakeCleanLog{state: cleanState{CleanBytes: 1000, DirtyBytes: 10, OldestDirtyMs: now.Add(-time.Hour).UnixMilli()},
		clean: func(cleanRequest) (cleanResult, error) { return cleanResult{Summary: "ok"}, nil }}
	b := cleanerBroker(t, map[string]*fakeCleanLog{"t": l}, map[string]string{"cleanup.policy": "compact"})
	if b.cleanOnce(context.Background(), now) {
		t.Fatal("cleaned below the ratio without max.compaction.lag.ms")
	}
	b.parts[tp{"t", 0}].overrides = map[string]string{"cleanup.policy": "compact", "max.compaction.lag.ms": "60000"}
	if !b.cleanOnce(context.Background(), now) || l.calls.Load() != 1 {
		t.Fatal("max.compaction.lag.ms did not force a cleaning")
	}
}

// TestCleanerThreadSurvivesPanics: a panic outside any one cleaning kills
// the thread; it is counted as dead, restarted after the back-off, and the
// dead-thread gauge returns to 0.
func TestCleanerThreadSurvivesPanics(t *testing.T) {
	var n atomic.Int64
	l := &fakeCleanLog{state: cleanState{DirtyBytes: 10, OldestDirtyMs: -1}, clean: func(cleanRequest) (cleanResult, error) {
		return cleanResult{Summary: "ok"}, nil
	}}
	b := cleanerBroker(t, map[string]*fakeCleanLog{"t": l}, map[string]string{"cleanup.policy": "compact"})
	b.Config.LogCleanerBackoffMs = 200
	// A partition whose config read panics: the measuring code, not Clean.
	b.parts[tp{"boom", 0}] = &partition{topic: "boom", log: panicLog{n: &n}, overrides: map[string]string{"cleanup.policy": "compact"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { b.cleanerThread(ctx, 0); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	sawDead := false
	for time.Now().Before(deadline) && n.Load() < 3 {
		sawDead = sawDead || b.CleanerMetrics().DeadThreads == 1
		time.Sleep(5 * time.Millisecond)
	}
	if n.Load() < 3 || !sawDead {
		t.Fatalf("thread ran %d times, saw dead=%v", n.Load(), sawDead)
	}
	if m := b.CleanerMetrics(); m.Panics < 2 {
		t.Fatalf("panics %+v", m)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("thread did not stop")
	}
	if m := b.CleanerMetrics(); m.DeadThreads != 0 {
		t.Fatalf("dead threads after stop: %+v", m)
	}
}

// panicLog panics when the cleaner measures it.
type panicLog struct {
	partLog
	n *atomic.Int64
}

func (p panicLog) CleanState(int64, int64) cleanState {
	p.n.Add(1)
	panic("measuring bug")
}
func (panicLog) Clean(context.Context, cleanRequest) (cleanResult, error) { return cleanResult{}, nil }

// benchLog is a partition log for the retention benchmark: 20 segments,
// nothing old enough to delete.
type benchLog struct {
	partLog
	dir  string
	segs []plugins.Segment
}

func (l *benchLog) Segments() []plugins.Segment { return l.segs }
func (l *benchLog) StartOffset() int64          { return 0 }
func (l *benchLog) HighWatermark() int64        { return l.segs[len(l.segs)-1].LastOffset + 1 }
func (l *benchLog) Dir() string                 { return l.dir }

// BenchmarkEnforceRetention10k is one retention interval over 10,000
// partitions with the built-in policy (nothing to delete): config merge,
// statfs, the checked decision and the status bookkeeping per partition.
func BenchmarkEnforceRetention10k(b *testing.B) {
	br := &Broker{Config: config.DefaultConfig(), RetentionPolicy: builtin.NewRetention(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), parts: map[tp]*partition{}}
	now := time.Now()
	var segs []plugins.Segment
	for i := int64(0); i < 20; i++ {
		segs = append(segs, plugins.Segment{BaseOffset: i * 100, LastOffset: i*100 + 99, SizeBytes: 1 << 20, MaxTimestampMs: now.UnixMilli(), CreatedMs: now.UnixMilli(), Active: i == 19})
	}
	dir := b.TempDir()
	var overrides map[string]string
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("topic-%d", i/10)
		if i%10 == 0 { // one overrides map per topic, as the broker keeps them
			overrides = map[string]string{"retention.ms": "3600000"}
		}
		br.parts[tp{name, int32(i % 10)}] = &partition{topic: name, index: int32(i % 10), log: &benchLog{dir: dir, segs: segs}, overrides: overrides}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := br.enforceRetention(context.Background(), now); n != 0 {
			b.Fatalf("deleted %d", n)
		}
	}
}

// TestCleanerWaitsAfterACleanThatDidNothing: a partition that looks dirty
// but whose clean finds nothing cleanable (or is aborted by retention)
// waits a back-off instead of being measured and cleaned again at once;
// a review found a thread making 81,940 such calls in 300 ms.
func TestCleanerWaitsAfterACleanThatDidNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean func(cleanRequest) (cleanResult, error)
	}{
		{"no progress", func(cleanRequest) (cleanResult, error) { return cleanResult{Summary: "nothing", NoProgress: true}, nil }},
		{"aborted", func(cleanRequest) (cleanResult, error) { return cleanResult{}, errCleanAborted }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := map[string]*fakeCleanLog{"p": {state: cleanState{CleanBytes: 100, DirtyBytes: 900, OldestDirtyMs: -1}, clean: tc.clean}}
			b := cleanerBroker(t, logs, map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": " 3600000"})
			now := time.Now()
			if !b.cleanOnce(context.Background(), now) || logs["p"].calls.Load() != 1 {
				t.Fatalf("first pass did not clean: %d calls", logs["p"].calls.Load())
			}
			for i := 0; i < 5; i++ {
				if b.cleanOnce(context.Background(), now.Add(time.Duration(i)*time.Millisecond)) {
					t.Fatalf("pass %d cleaned again before the back-off (%d calls)", i+2, logs["p"].calls.Load())
				}
			}
			if !b.cleanOnce(context.Background(), now.Add(b.cleanerBackoff()+time.Second)) || logs["p"].calls.Load() != 2 {
				t.Fatalf("no retry after the back-off: %d calls", logs["p"].calls.Load())
			}
		})
	}
}

// TestCompactedTopicRollsByMaxCompactionLag: as Kafka (KIP-354), a
// compacted topic's segments roll by min(segment.ms,
// max.compaction.lag.ms), so the active segment of a quiet partition
// becomes cleanable within the lag; a delete-only topic keeps segment.ms.
func TestCompactedTopicRollsByMaxCompactionLag(t *testing.T) {
	cfg := config.DefaultConfig()
	for _, tc := range []struct {
		overrides map[string]string
		want      int64
	}{
		{map[string]string{"cleanup.policy": "compact", "max.compaction.lag.ms": "60000"}, 60000},
		{map[string]string{"cleanup.policy": "compact,delete", "max.compaction.lag.ms": "60000", "segment.ms": "30000"}, 30000},
		{map[string]string{"cleanup.policy": "delete", "max.compaction.lag.ms": "60000"}, 7 * 24 * 3600 * 1000},
		{map[string]string{"cleanup.policy": "compact"}, 7 * 24 * 3600 * 1000},
	} {
		tc2, err := cfg.Topic(tc.overrides)
		if err != nil {
			t.Fatal(err)
		}
		if got := logConfig(tc2).SegmentMs; got != tc.want {
			t.Errorf("%v: segment roll after %d ms, want %d", tc.overrides, got, tc.want)
		}
	}
}
