// Package builtin holds Brokkr's in-process policies with Kafka's semantics:
// time and size retention (retention.ms, retention.bytes, cleanup.policy) and
// keep-latest-per-key compaction (delete.retention.ms, min.compaction.lag.ms).
// They implement the plugins interfaces and take their clock from the input
// (RetentionInput.NowMs, CompactionParams.NowMs), never from time.Now.
package builtin

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/brokkr/brokkr/plugins"
)

// Kafka's topic defaults, used when the effective config lacks a key.
const (
	DefaultRetentionMs       = 7 * 24 * 60 * 60 * 1000 // retention.ms: 7 days
	DefaultRetentionBytes    = -1                      // retention.bytes: unlimited
	DefaultDeleteRetentionMs = 24 * 60 * 60 * 1000     // delete.retention.ms: 1 day
	DefaultMinCompactionLag  = 0                       // min.compaction.lag.ms
)

// CleanupPolicy is a parsed cleanup.policy.
type CleanupPolicy struct{ Delete, Compact bool }

// ParseCleanupPolicy parses cleanup.policy as Kafka does: a comma-separated
// list of "delete" and "compact"; empty or missing means "delete".
func ParseCleanupPolicy(s string) (CleanupPolicy, error) {
	var p CleanupPolicy
	if strings.TrimSpace(s) == "" {
		return CleanupPolicy{Delete: true}, nil
	}
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "delete":
			p.Delete = true
		case "compact":
			p.Compact = true
		default:
			return CleanupPolicy{}, fmt.Errorf("cleanup.policy: unknown value %q (want delete, compact or compact,delete)", strings.TrimSpace(f))
		}
	}
	return p, nil
}

// configInt reads an integer config key with a default; values below min are
// refused with a clear error.
func configInt(cfg map[string]string, key string, def, min int64) (int64, error) {
	s, ok := cfg[key]
	if !ok || strings.TrimSpace(s) == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", key, s)
	}
	if v < min {
		return 0, fmt.Errorf("%s: %d is below the minimum %d", key, v, min)
	}
	return v, nil
}

// Retention is Kafka's time and size retention.
type Retention struct{}

// NewRetention returns the built-in retention policy.
func NewRetention() *Retention { return &Retention{} }

// Info implements plugins.RetentionPolicy.
func (*Retention) Info() plugins.Info { return plugins.Info{Name: "builtin.retention"} }

// Decide implements plugins.RetentionPolicy. With cleanup.policy containing
// "delete", a prefix of segments goes while every segment in it is older than
// retention.ms (its max timestamp before now - retention.ms), and a prefix
// goes while the log stays at or above retention.bytes without it; the new
// log start is the later of the two. A segment only goes when all its
// offsets are below the high watermark, and the active segment never goes.
func (*Retention) Decide(ctx context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	keep := plugins.RetentionDecision{LogStartOffset: in.LogStartOffset}
	if err := ctx.Err(); err != nil {
		return keep, err
	}
	if err := plugins.CheckInput(in); err != nil {
		return keep, err
	}
	cp, err := ParseCleanupPolicy(in.Config["cleanup.policy"])
	if err != nil {
		return keep, err
	}
	rms, err := configInt(in.Config, "retention.ms", DefaultRetentionMs, -1)
	if err != nil {
		return keep, err
	}
	rbytes, err := configInt(in.Config, "retention.bytes", DefaultRetentionBytes, -1)
	if err != nil {
		return keep, err
	}
	if !cp.Delete {
		keep.Reason = "cleanup.policy has no delete: retention keeps everything"
		return keep, nil
	}
	segs := in.Segments
	var total int64
	for _, s := range segs {
		total += s.SizeBytes
	}
	// deletable(i): segment i may go at all (not active, all offsets below HW).
	deletable := func(i int) bool { return i < len(segs)-1 && segs[i+1].BaseOffset <= in.HighWatermark }

	byTime := 0
	if rms >= 0 {
		for byTime < len(segs) && deletable(byTime) && in.NowMs-segmentTime(segs[byTime]) > rms {
			byTime++
		}
	}
	bySize := 0
	if rbytes >= 0 {
		left := total
		for bySize < len(segs) && deletable(bySize) && left-segs[bySize].SizeBytes >= rbytes {
			left -= segs[bySize].SizeBytes
			bySize++
		}
	}
	n := max(byTime, bySize)
	if n == 0 || segs[n].BaseOffset <= in.LogStartOffset {
		keep.Reason = fmt.Sprintf("nothing to delete (retention.ms=%d retention.bytes=%d, %d bytes in %d segments)", rms, rbytes, total, len(segs))
		return keep, nil
	}
	var why []string
	if byTime > 0 {
		why = append(why, fmt.Sprintf("%d segment(s) older than retention.ms=%d", byTime, rms))
	}
	if bySize > 0 {
		why = append(why, fmt.Sprintf("%d segment(s) over retention.bytes=%d (log is %d bytes)", bySize, rbytes, total))
	}
	return plugins.RetentionDecision{
		LogStartOffset: segs[n].BaseOffset,
		Reason:         "delete segments below " + strconv.FormatInt(segs[n].BaseOffset, 10) + ": " + strings.Join(why, "; "),
	}, nil
}

// segmentTime is the time retention.ms is measured from: the largest record
// timestamp, or for a segment without one (empty) its creation time, as
// Kafka falls back to the file's modification time.
func segmentTime(s plugins.Segment) int64 {
	if s.MaxTimestampMs >= 0 {
		return s.MaxTimestampMs
	}
	return s.CreatedMs
}

// Compaction keeps the latest record per key. A latest record that is a
// tombstone goes once it is older than delete.retention.ms; any record younger
// than min.compaction.lag.ms is kept; records without a key are kept (Kafka
// refuses them on compacted topics; the cleaner never drops what it cannot
// reason about).
type Compaction struct{}

// NewCompaction returns the built-in compaction policy.
func NewCompaction() *Compaction { return &Compaction{} }

// Info implements plugins.CompactionPolicy.
func (*Compaction) Info() plugins.Info { return plugins.Info{Name: "builtin.compaction"} }

// Begin implements plugins.CompactionPolicy.
func (*Compaction) Begin(ctx context.Context, p plugins.CompactionParams) (plugins.CompactionPass, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	del, err := configInt(p.Config, "delete.retention.ms", DefaultDeleteRetentionMs, 0)
	if err != nil {
		return nil, err
	}
	lag, err := configInt(p.Config, "min.compaction.lag.ms", DefaultMinCompactionLag, 0)
	if err != nil {
		return nil, err
	}
	return &compactionPass{now: p.NowMs, deleteRetention: del, lag: lag, index: map[string]int{}}, nil
}

type compactionPass struct {
	now, deleteRetention, lag int64
	index                     map[string]int // key -> index into latest
	latest                    []int64        // highest offset seen by Scan, per key
	closed                    bool
}

func (c *compactionPass) Scan(ctx context.Context, batch []plugins.Record) error {
	if c.closed {
		return fmt.Errorf("builtin compaction: Scan on a closed pass")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range batch {
		if r.Key == nil {
			continue
		}
		// Lookups with string(r.Key) do not allocate; only a new key does.
		if i, ok := c.index[string(r.Key)]; ok {
			c.latest[i] = max(c.latest[i], r.Offset)
		} else {
			c.index[string(r.Key)] = len(c.latest)
			c.latest = append(c.latest, r.Offset)
		}
	}
	return nil
}

func (c *compactionPass) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	if c.closed {
		return nil, fmt.Errorf("builtin compaction: Survivors on a closed pass")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]int64, 0, len(batch))
	for _, r := range batch {
		if c.keep(r) {
			out = append(out, r.Offset)
		}
	}
	return out, nil
}

func (c *compactionPass) keep(r plugins.Record) bool {
	if r.Key == nil || c.now-r.TimestampMs < c.lag {
		return true
	}
	i, ok := c.index[string(r.Key)]
	if !ok || r.Offset >= c.latest[i] {
		// The latest for its key (or never scanned: keep, never guess).
		return !(r.Tombstone && c.now-r.TimestampMs > c.deleteRetention)
	}
	return false
}

func (c *compactionPass) Close() error {
	c.closed = true
	c.index, c.latest = nil, nil
	return nil
}
