package broker

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"golang.org/x/sys/unix"
)

// retentionLoop applies the retention policy to every hosted partition
// every log.retention.check.interval.ms until ctx ends.
func (b *Broker) retentionLoop(ctx context.Context) {
	if b.RetentionPolicy == nil {
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

// enforceRetention asks the policy about each hosted partition and deletes
// the whole segments it allows. The answer is checked first
// (plugins.DecideChecked: never the active segment, never at or above the
// high watermark, never below the current log start); a policy that
// fails, panics or answers nonsense deletes nothing, and that is logged and
// counted. Every deletion is logged with the policy, its inputs and its
// reason. It returns the number of segments deleted.
func (b *Broker) enforceRetention(ctx context.Context, now time.Time) int {
	b.pmu.RLock()
	parts := make([]*partition, 0, len(b.parts))
	for _, p := range b.parts {
		parts = append(parts, p)
	}
	b.pmu.RUnlock()
	deleted := 0
	for _, p := range parts {
		if ctx.Err() != nil {
			return deleted
		}
		in := p.retentionInput(b, now)
		v, d, err := plugins.DecideChecked(ctx, b.RetentionPolicy, in)
		if err != nil {
			b.stats.RetentionFailures.Add(1)
			b.log.Warn("retention policy failed; nothing deleted", "policy", b.RetentionPolicy.Info().Name, "topic", p.topic, "partition", p.index, "err", err)
			continue
		}
		if len(v.Delete) == 0 {
			continue
		}
		gone, err := p.log.DeleteSegmentsBelow(v.LogStartOffset)
		if err != nil {
			b.log.Error("deleting segments for retention", "topic", p.topic, "partition", p.index, "err", err)
			continue
		}
		deleted += gone
		b.stats.RetentionSegmentsDeleted.Add(int64(gone))
		b.log.Info("retention deleted segments", "policy", b.RetentionPolicy.Info().Name, "reason", d.Reason,
			"topic", p.topic, "partition", p.index, "segments", gone, "new_log_start", v.LogStartOffset,
			"retention.ms", in.Config["retention.ms"], "retention.bytes", in.Config["retention.bytes"],
			"high_watermark", in.HighWatermark, "rounded_down", v.RoundedDown)
	}
	return deleted
}

// retentionInput describes the partition to a retention policy.
func (p *partition) retentionInput(b *Broker, now time.Time) plugins.RetentionInput {
	in := plugins.RetentionInput{
		Topic: p.topic, Partition: p.index, Config: map[string]string{},
		NowMs: now.UnixMilli(), HighWatermark: p.log.HighWatermark(), LogStartOffset: p.log.StartOffset(),
		MinCommittedOffset: -1, // no consumer groups yet
	}
	p.cfgMu.RLock()
	overrides := p.overrides
	p.cfgMu.RUnlock()
	for _, e := range b.Config.DescribeTopic(overrides) {
		in.Config[e.Name] = e.Value
	}
	in.Segments = p.log.Segments()
	var st unix.Statfs_t
	if err := unix.Statfs(p.log.Dir(), &st); err == nil {
		in.DiskCapacityBytes = int64(st.Blocks) * st.Bsize
		in.DiskUsedBytes = int64(st.Blocks-st.Bfree) * st.Bsize
	}
	return in
}
