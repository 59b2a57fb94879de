package broker

// The log cleaner: compaction of cleanup.policy=compact topics, as Kafka's
// LogCleaner schedules it.
//
// log.cleaner.threads goroutines each loop: measure every hosted compacted
// partition (clean and dirty bytes from core/log's CleanState), pick the
// dirtiest eligible one (dirty ratio at least min.cleanable.dirty.ratio, or
// an oldest dirty record older than max.compaction.lag.ms, which goes
// first), and Clean it with the topic's compaction policy (built-in or a
// plugin). With nothing to clean a thread sleeps log.cleaner.backoff.ms.
// A failed cleaning is logged, counted and retried with exponential
// back-off (from log.cleaner.backoff.ms up to 10 minutes); the partition
// counts as uncleanable until a cleaning succeeds.
//
// The cleaner must not die silently (a dead cleaner once let an offsets
// topic grow until consumer groups could not load): a panic while cleaning
// a partition is that partition's failure; a panic anywhere else in a
// thread is recovered, counted, logged with its stack, and the thread is
// restarted after a back-off. kafka_log_logcleaner_deadthreadcount is the
// number of threads dead at the moment (waiting to restart).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/plugins"
)

// cleanableLog is what the cleaner needs of a partition's log (core/log's
// CleanState and Clean, adapted in logstore.go). The cleaner finds it by
// type assertion, so a log without it is simply never cleaned.
type cleanableLog interface {
	// CleanState measures the log: bytes already cleaned, dirty bytes that
	// a cleaning could cover now (respecting min.compaction.lag.ms), and
	// the timestamp of the oldest dirty record (-1 if none).
	CleanState(nowMs, minCompactionLagMs int64) cleanState
	// Clean runs one cleaning pass with the policy.
	Clean(ctx context.Context, req cleanRequest) (cleanResult, error)
}

type cleanState struct {
	CleanBytes    int64
	DirtyBytes    int64
	OldestDirtyMs int64 // -1 when unknown or none
}

type cleanRequest struct {
	Policy plugins.CompactionPolicy
	NowMs  int64
	Config map[string]string
}

type cleanResult struct {
	Summary    string // one line for the status and the log
	NoProgress bool   // nothing was cleanable: no segment was read
}

// startCleaner starts log.cleaner.threads cleaner threads (none when
// log.cleaner.enable is false).
func (b *Broker) startCleaner(ctx context.Context) {
	b.pol.cleanerStartMs.Store(time.Now().UnixMilli())
	if !b.Config.LogCleanerEnable || b.Config.LogCleanerThreads <= 0 {
		b.log.Warn("log cleaner disabled: compacted topics are never cleaned", "log.cleaner.enable", b.Config.LogCleanerEnable, "log.cleaner.threads", b.Config.LogCleanerThreads)
		return
	}
	for i := 0; i < int(b.Config.LogCleanerThreads); i++ {
		go b.cleanerThread(ctx, i)
	}
}

// cleanerBackoff is log.cleaner.backoff.ms (at least 10 ms).
func (b *Broker) cleanerBackoff() time.Duration {
	return max(time.Duration(b.Config.LogCleanerBackoffMs)*time.Millisecond, 10*time.Millisecond)
}

// cleanerThread runs one cleaner thread until ctx ends, restarting it after
// a panic.
func (b *Broker) cleanerThread(ctx context.Context, id int) {
	restarts := 0
	for ctx.Err() == nil {
		if !b.runCleaner(ctx, id) {
			return
		}
		restarts++
		wait := min(b.cleanerBackoff()*time.Duration(1<<min(restarts-1, 10)), 10*time.Minute)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			b.log.Warn("log cleaner thread restarted after a panic", "thread", id, "restarts", restarts)
		}
		b.pol.cleanerDeadThreads.Add(-1)
	}
}

// runCleaner is one life of a cleaner thread. It returns true when the
// thread died of a panic (counted as a dead thread until restarted).
func (b *Broker) runCleaner(ctx context.Context, id int) (died bool) {
	defer func() {
		if r := recover(); r != nil {
			b.pol.cleanerPanics.Add(1)
			b.pol.cleanerDeadThreads.Add(1)
			b.log.Error("log cleaner thread panicked", "thread", id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			died = true
		}
	}()
	for {
		if ctx.Err() != nil {
			return false
		}
		did := b.cleanOnce(ctx, time.Now())
		b.pol.cleanerLastRunMs.Store(time.Now().UnixMilli())
		if did {
			continue
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(b.cleanerBackoff()):
		}
	}
}

// cleanCandidate is one measured compacted partition.
type cleanCandidate struct {
	p      *partition
	cfg    map[string]string
	ratio  float64
	forced bool // oldest dirty record older than max.compaction.lag.ms
}

// cleanOnce measures every hosted compacted partition, records the
// measurements, and cleans the dirtiest eligible one. It reports whether
// it cleaned (or tried to clean) anything.
func (b *Broker) cleanOnce(ctx context.Context, now time.Time) bool {
	nowMs := now.UnixMilli()
	parts := b.hostedPartitions()
	b.pol.prune(parts)
	var best *cleanCandidate
	maxDirty := 0.0
	var set compactionSettings // of the topic of the partitions in turn (parts is by topic)
	for _, p := range parts {
		cl, ok := p.log.(cleanableLog)
		if !ok {
			continue
		}
		if set.cfg == nil || set.topic != p.topic {
			set = b.compactionSettings(p)
		}
		if !set.on {
			continue
		}
		st := cl.CleanState(nowMs, set.minLag)
		ratio := 0.0
		if total := st.CleanBytes + st.DirtyBytes; total > 0 {
			ratio = float64(st.DirtyBytes) / float64(total)
		}
		maxDirty = max(maxDirty, ratio)
		forced := st.DirtyBytes > 0 && st.OldestDirtyMs >= 0 && nowMs-st.OldestDirtyMs > set.maxLag
		k := tp{p.topic, p.index}
		b.pol.mu.Lock()
		cs := b.cleanerStatus(k, set.policy)
		cs.DirtyBytes, cs.CleanBytes, cs.DirtyRatio, cs.LastCheckMs = st.DirtyBytes, st.CleanBytes, ratio, nowMs
		eligible := st.DirtyBytes > 0 && (ratio >= set.minRatio || forced) && !b.pol.cleaning[k] && nowMs >= cs.NextAttemptMs
		b.pol.mu.Unlock()
		if !eligible {
			continue
		}
		c := &cleanCandidate{p: p, cfg: set.cfg, ratio: ratio, forced: forced}
		if best == nil || (c.forced && !best.forced) || (c.forced == best.forced && c.ratio > best.ratio) {
			best = c
		}
	}
	b.pol.maxDirtyPermille.Store(int64(math.Round(maxDirty * 1000)))
	if best == nil {
		return false
	}
	k := tp{best.p.topic, best.p.index}
	b.pol.mu.Lock()
	if b.pol.cleaning[k] { // another thread took it meanwhile
		b.pol.mu.Unlock()
		return true
	}
	if b.pol.cleaning == nil {
		b.pol.cleaning = map[tp]bool{}
	}
	b.pol.cleaning[k] = true
	b.pol.mu.Unlock()
	defer func() {
		b.pol.mu.Lock()
		delete(b.pol.cleaning, k)
		b.pol.mu.Unlock()
	}()
	b.cleanPartition(ctx, best, now)
	return true
}

// compactionSettings is what the cleaner reads of a topic's effective
// config, parsed once per topic in a pass rather than for every partition.
type compactionSettings struct {
	topic          string
	cfg            map[string]string
	on             bool // compacted, with a policy to compact with
	minLag, maxLag int64
	minRatio       float64
	policy         string // the compaction policy's name
}

func (b *Broker) compactionSettings(p *partition) compactionSettings {
	cfg := b.effectiveConfig(p)
	s := compactionSettings{topic: p.topic, cfg: cfg}
	if !cleanupPolicy(cfg).Compact {
		return s
	}
	if b.CompactionPolicy == nil && strings.TrimSpace(cfg[config.CompactionPluginKey]) == "" {
		return s // no built-in compaction on this broker
	}
	s.on = true
	s.minLag = configInt64(cfg, "min.compaction.lag.ms", 0)
	s.maxLag = configInt64(cfg, "max.compaction.lag.ms", math.MaxInt64)
	var err error
	if s.minRatio, err = strconv.ParseFloat(strings.TrimSpace(cfg["min.cleanable.dirty.ratio"]), 64); err != nil {
		s.minRatio = b.Config.LogCleanerMinCleanableRatio
	}
	s.policy = policyName(cfg, config.CompactionPluginKey, b.compactionDefaultName())
	return s
}

// cleanerStatus returns the partition's cleaner status, creating it. Call
// with b.pol.mu held.
func (b *Broker) cleanerStatus(k tp, policy string) *CleanerStatus {
	st := b.pol.status(k)
	if st.Cleaner == nil {
		st.Cleaner = &CleanerStatus{}
	}
	st.Cleaner.Policy = policy
	return st.Cleaner
}

// cleanPartition cleans one partition with its policy and records the
// outcome. A panic inside is this partition's failure, not the thread's.
func (b *Broker) cleanPartition(ctx context.Context, c *cleanCandidate, now time.Time) {
	p := c.p
	policy, name, err := b.compactionPolicyFor(c.cfg)
	if err == nil && policy == nil {
		err = errors.New("no compaction policy on this broker")
	}
	var res cleanResult
	if err == nil {
		res, err = b.cleanRecovered(ctx, p.log.(cleanableLog), cleanRequest{Policy: policy, NowMs: now.UnixMilli(), Config: c.cfg})
	} else {
		err = fmt.Errorf("policy unavailable: %w", err)
	}
	if err != nil && ctx.Err() != nil {
		return // shutting down: not the partition's fault
	}
	end := time.Now().UnixMilli()
	k := tp{p.topic, p.index}
	if errors.Is(err, errCleanAborted) {
		// Retention or a truncation changed the log under the cleaning;
		// nothing was swapped. Not a failure, but not at once either: a
		// long clean that retention keeps aborting would re-read the log
		// in a loop.
		b.pol.mu.Lock()
		b.cleanerStatus(k, name).NextAttemptMs = end + b.cleanerBackoff().Milliseconds()
		b.pol.mu.Unlock()
		b.log.Info("log cleaning aborted: the log changed meanwhile; will retry", "topic", p.topic, "partition", p.index, "retry_in", b.cleanerBackoff())
		return
	}
	b.pol.mu.Lock()
	cs := b.cleanerStatus(k, name)
	if err == nil {
		cs.LastCleanMs, cs.LastCleanResult = end, res.Summary
		cs.Cleanings++
		cs.ConsecutiveFailures, cs.NextAttemptMs = 0, 0
		if res.NoProgress {
			// Nothing was cleanable after all (what looked dirty is held
			// back by min.compaction.lag.ms or the high watermark): wait a
			// back-off rather than measure and call again at once.
			cs.NextAttemptMs = end + b.cleanerBackoff().Milliseconds()
		}
		b.pol.mu.Unlock()
		b.pol.cleanings.Add(1)
		b.log.Info("log cleaner cleaned a partition", "topic", p.topic, "partition", p.index, "policy", name,
			"dirty_ratio", strconv.FormatFloat(c.ratio, 'f', 3, 64), "forced_by_max_lag", c.forced, "result", res.Summary)
		return
	}
	msg := oneLineErr(err)
	cs.LastError, cs.LastErrorMs = msg, end
	cs.ConsecutiveFailures++
	retry := min(b.cleanerBackoff()*time.Duration(1<<min(cs.ConsecutiveFailures-1, 16)), 10*time.Minute)
	cs.NextAttemptMs = end + retry.Milliseconds()
	failures := cs.ConsecutiveFailures
	b.pol.mu.Unlock()
	b.pol.cleanFailures.Add(1)
	b.pol.countFault(p.topic, name, KindCompaction)
	b.log.Warn("log cleaner failed; the partition keeps its segments and is retried", "topic", p.topic, "partition", p.index,
		"policy", name, "err", msg, "consecutive_failures", failures, "retry_in", retry)
}

// cleanRecovered calls Clean, turning a panic into an error.
func (b *Broker) cleanRecovered(ctx context.Context, cl cleanableLog, req cleanRequest) (res cleanResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			b.pol.cleanerPanics.Add(1)
			b.log.Error("log cleaner panicked while cleaning", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: cleaning panicked: %v", errCleanPanic, r)
		}
	}()
	return cl.Clean(ctx, req)
}

var errCleanPanic = errors.New("log cleaner")

// errCleanAborted: the log changed under a cleaning (not a failure).
var errCleanAborted = errors.New("clean aborted")

func configInt64(cfg map[string]string, key string, def int64) int64 {
	// Trimmed as the topic config check and core/log read it: a value
	// read differently here and there made the cleaner spin.
	v, err := strconv.ParseInt(strings.TrimSpace(cfg[key]), 10, 64)
	if err != nil {
		return def
	}
	return v
}

// CleanerMetrics are the log cleaner's gauges and counters.
type CleanerMetrics struct {
	Threads               int     // log.cleaner.threads when enabled, else 0
	DeadThreads           int64   // threads dead right now (kafka_log_logcleaner_deadthreadcount)
	Panics                int64   // panics recovered since start
	TimeSinceLastRunMs    int64   // since the last pass ended (since start if none)
	UncleanablePartitions int     // partitions whose last cleaning failed
	MaxDirtyPercent       float64 // of the last pass
	Cleanings             int64   // successful cleanings since start
	Failures              int64   // failed cleanings since start
}

// CleanerMetrics reads the cleaner's metrics.
func (b *Broker) CleanerMetrics() CleanerMetrics {
	m := CleanerMetrics{
		DeadThreads: b.pol.cleanerDeadThreads.Load(), Panics: b.pol.cleanerPanics.Load(),
		MaxDirtyPercent: float64(b.pol.maxDirtyPermille.Load()) / 10,
		Cleanings:       b.pol.cleanings.Load(), Failures: b.pol.cleanFailures.Load(),
	}
	if b.Config.LogCleanerEnable {
		m.Threads = int(b.Config.LogCleanerThreads)
	}
	last := b.pol.cleanerLastRunMs.Load()
	if last == 0 {
		last = b.pol.cleanerStartMs.Load()
	}
	if last > 0 {
		m.TimeSinceLastRunMs = max(time.Now().UnixMilli()-last, 0)
	}
	b.pol.mu.Lock()
	for _, st := range b.pol.parts {
		if st.Cleaner != nil && st.Cleaner.ConsecutiveFailures > 0 {
			m.UncleanablePartitions++
		}
	}
	b.pol.mu.Unlock()
	return m
}

// PartitionDirtyBytes is one row of brokkr_log_cleaner_dirty_bytes.
type PartitionDirtyBytes struct {
	Topic     string
	Partition int32
	Bytes     int64
}

// CleanerDirtyBytes are the dirty bytes of every measured compacted
// partition, as of the cleaner's last pass.
func (b *Broker) CleanerDirtyBytes() []PartitionDirtyBytes {
	var out []PartitionDirtyBytes
	b.pol.mu.Lock()
	for k, st := range b.pol.parts {
		if st.Cleaner != nil {
			out = append(out, PartitionDirtyBytes{Topic: k.topic, Partition: k.index, Bytes: st.Cleaner.DirtyBytes})
		}
	}
	b.pol.mu.Unlock()
	return out
}
