package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"golang.org/x/sys/unix"
)

// retentionLoop applies each topic's retention policy to every hosted
// partition every log.retention.check.interval.ms until ctx ends.
func (b *Broker) retentionLoop(ctx context.Context) {
	if b.RetentionPolicy == nil && b.Policies == nil {
		b.log.Warn("no retention policy: segments are never deleted")
		return
	}
	every := time.Duration(b.Config.LogRetentionCheckIntervalMs) * time.Millisecond
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.enforceRetention(ctx, now)
		}
	}
}

// RetentionPlan is what one partition's retention policy decides now: the
// segments that would go and why, or why nothing may go. It is both the
// dry run (brokkr.status.retention.plan, `brokkr retention plan`) and the
// input of enforceRetention, so the two cannot disagree.
type RetentionPlan struct {
	Partition          int32         `json:"partition"`
	Policy             string        `json:"policy"`
	CleanupPolicy      string        `json:"cleanup_policy"`
	Runs               bool          `json:"runs"` // cleanup.policy includes delete
	Segments           int           `json:"segments"`
	LogStartOffset     int64         `json:"log_start_offset"`
	HighWatermark      int64         `json:"high_watermark"`
	MinCommittedOffset int64         `json:"min_committed_offset"`
	NewLogStartOffset  int64         `json:"new_log_start_offset"`
	Reason             string        `json:"reason,omitempty"`  // the policy's own reason
	Refused            string        `json:"refused,omitempty"` // a fault: nothing may go
	RoundedDown        bool          `json:"rounded_down,omitempty"`
	Delete             []PlanSegment `json:"delete"`
}

// PlanSegment is one segment a retention plan deletes.
type PlanSegment struct {
	BaseOffset     int64 `json:"base_offset"`
	LastOffset     int64 `json:"last_offset"`
	SizeBytes      int64 `json:"size_bytes"`
	MaxTimestampMs int64 `json:"max_timestamp_ms"`
}

// planRetention asks the partition's policy what may go now, through
// plugins.DecideChecked (never the active segment, never at or above the
// high watermark, never below the log start; a panicking, failing or lying
// policy gets a plan with Refused set and nothing to delete).
func (b *Broker) planRetention(ctx context.Context, p *partition, now time.Time, disks diskUsage) RetentionPlan {
	cfg := b.effectiveConfig(p)
	cp := cleanupPolicy(cfg)
	policy, name, perr := b.retentionPolicyFor(cfg)
	in := p.retentionInput(b, cfg, now, disks)
	plan := RetentionPlan{
		Partition: p.index, Policy: name, CleanupPolicy: cfg["cleanup.policy"], Runs: cp.Delete,
		Segments: len(in.Segments), LogStartOffset: in.LogStartOffset, HighWatermark: in.HighWatermark,
		MinCommittedOffset: in.MinCommittedOffset, NewLogStartOffset: in.LogStartOffset, Delete: []PlanSegment{},
	}
	switch {
	case !cp.Delete:
		plan.Reason = "cleanup.policy=" + plan.CleanupPolicy + " has no delete: retention does not run"
		return plan
	case perr != nil:
		plan.Refused = "policy unavailable: " + oneLineErr(perr)
		return plan
	case policy == nil:
		plan.Reason = "no retention policy on this broker: nothing is deleted"
		return plan
	}
	cctx, cancel := retentionCtx(ctx)
	defer cancel()
	v, d, err := plugins.DecideChecked(cctx, policy, in)
	plan.Reason = d.Reason
	if err != nil {
		plan.Refused = oneLineErr(err)
		if d.LogStartOffset != 0 || d.Reason != "" {
			plan.Refused += fmt.Sprintf(" (the policy answered log start %d)", d.LogStartOffset)
		}
		return plan
	}
	plan.NewLogStartOffset, plan.RoundedDown = v.LogStartOffset, v.RoundedDown
	for _, s := range v.Delete {
		plan.Delete = append(plan.Delete, PlanSegment{BaseOffset: s.BaseOffset, LastOffset: s.LastOffset, SizeBytes: s.SizeBytes, MaxTimestampMs: s.MaxTimestampMs})
	}
	return plan
}

// enforceRetention asks each hosted partition's policy what may go and
// deletes those whole segments. A fault (the policy cannot be resolved,
// fails, panics, or answers nonsense) deletes nothing; it is counted,
// logged once per change and kept in the partition's status until the next
// good answer. Every deletion is logged with the policy, its inputs and
// its decision (the audit line). It returns the number of segments deleted.
func (b *Broker) enforceRetention(ctx context.Context, now time.Time) int {
	parts := b.hostedPartitions()
	b.pol.prune(parts)
	deleted := 0
	disks := diskUsage{}
	for _, p := range parts {
		if ctx.Err() != nil {
			return deleted
		}
		plan := b.planRetention(ctx, p, now, disks)
		if !plan.Runs || (plan.Refused == "" && plan.Policy == "none") {
			continue
		}
		if plan.Refused != "" {
			b.retentionFault(p, plan.Policy, fmt.Errorf("%s", plan.Refused), now)
			continue
		}
		if len(plan.Delete) == 0 {
			b.retentionGood(p, plan.Policy, plan.Reason, 0, now)
			continue
		}
		gone, err := p.log.DeleteSegmentsBelow(plan.NewLogStartOffset)
		if err != nil {
			b.log.Error("deleting segments for retention", "topic", p.topic, "partition", p.index, "err", err)
			continue
		}
		deleted += gone
		b.stats.RetentionSegmentsDeleted.Add(int64(gone))
		b.retentionGood(p, plan.Policy, plan.Reason, gone, now)
		var bases []string
		var bytes int64
		for _, s := range plan.Delete {
			bases = append(bases, fmt.Sprint(s.BaseOffset))
			bytes += s.SizeBytes
		}
		b.log.Info("retention deleted segments", "topic", p.topic, "partition", p.index, "policy", plan.Policy,
			"segments_in_log", plan.Segments, "high_watermark", plan.HighWatermark, "log_start", plan.LogStartOffset,
			"min_committed", plan.MinCommittedOffset, "decision", plan.NewLogStartOffset, "rounded_down", plan.RoundedDown,
			"reason", plan.Reason, "deleted", gone, "deleted_bases", strings.Join(bases, ","), "deleted_bytes", bytes)
	}
	return deleted
}

// retentionInput describes the partition to a retention policy.
func (p *partition) retentionInput(b *Broker, cfg map[string]string, now time.Time, disks diskUsage) plugins.RetentionInput {
	in := plugins.RetentionInput{
		Topic: p.topic, Partition: p.index, Config: cfg,
		NowMs: now.UnixMilli(), HighWatermark: p.log.HighWatermark(), LogStartOffset: p.log.StartOffset(),
		MinCommittedOffset: b.minCommittedOffset(p.topic, p.index),
	}
	in.Segments = p.log.Segments()
	in.DiskUsedBytes, in.DiskCapacityBytes = disks.of(filepath.Dir(p.log.Dir()))
	return in
}

// diskUsage caches the file-system usage of log dirs for one retention
// pass (one statfs per log dir, not per partition).
type diskUsage map[string][2]int64

// of returns the used and total bytes of the file system holding dir
// (0, 0 when unknown).
func (d diskUsage) of(dir string) (used, capacity int64) {
	if u, ok := d[dir]; ok {
		return u[0], u[1]
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		capacity = int64(st.Blocks) * st.Bsize
		used = int64(st.Blocks-st.Bfree) * st.Bsize
	}
	if d != nil {
		d[dir] = [2]int64{used, capacity}
	}
	return used, capacity
}
