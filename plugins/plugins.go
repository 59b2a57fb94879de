// Package plugins defines the two policy interfaces of Brokkr's log: retention
// ("which whole segments may go") and compaction ("which records survive a
// cleaning"). Both are batched: a retention call sees a whole partition, a
// compaction call sees a batch of record metadata, never one record per call.
//
// Built-in policies (package plugins/builtin) and, later, external go-plugin
// policies implement the same interfaces. The host never trusts a policy's
// answer: Validate checks a RetentionDecision against its input and
// ValidateSurvivors checks a compaction answer against its batch, so a policy
// that answers nonsense deletes nothing.
//
// This package imports the standard library only.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Info describes a policy.
type Info struct {
	// Name is the policy's name as a topic config names it (for example
	// "builtin.time-size" or the plugin binary's name).
	Name string
	// NeedsValues asks the host to fill Record.Value for compaction. A policy
	// that decides on keys, timestamps and headers leaves it false and the
	// host does not read or ship values.
	NeedsValues bool
}

// Segment describes one segment of a partition's log.
type Segment struct {
	BaseOffset int64 // first offset the segment may hold
	LastOffset int64 // last offset it holds; BaseOffset-1 when empty
	SizeBytes  int64 // bytes on disk (log file)
	// MaxTimestampMs is the largest record timestamp in the segment, in Unix
	// milliseconds (Kafka's segment.largestTimestamp), -1 if unknown/empty;
	// time retention then measures from CreatedMs.
	MaxTimestampMs int64
	CreatedMs      int64 // when the segment was created, Unix milliseconds
	Active         bool  // the segment appends go to; it is never deleted
}

// RetentionInput is everything a retention policy sees about one partition.
type RetentionInput struct {
	Topic     string
	Partition int32
	// Segments in offset order; the last one is the active segment.
	Segments []Segment
	// Config is the topic's effective config with Kafka names
	// ("retention.ms", "retention.bytes", "cleanup.policy", ...) and brokkr.*
	// settings; the host has already merged broker defaults in.
	Config map[string]string

	NowMs          int64 // the host's clock, Unix milliseconds
	HighWatermark  int64
	LogStartOffset int64
	// MinCommittedOffset is the lowest offset committed by any consumer group
	// for this partition, -1 when not known.
	MinCommittedOffset int64
	DiskUsedBytes      int64 // usage of the partition's log dir's file system
	DiskCapacityBytes  int64 // its capacity; 0 when unknown
}

// RetentionDecision is a retention policy's answer: the new log start offset
// (whole segments wholly below it go) and why, for the audit log.
type RetentionDecision struct {
	LogStartOffset int64
	Reason         string
}

// RetentionPolicy decides, per partition, where the log may start.
type RetentionPolicy interface {
	Info() Info
	// Decide returns the new log start offset. Returning the input's
	// LogStartOffset means "delete nothing". It must not keep state between
	// calls that changes the answer for the same input.
	Decide(ctx context.Context, in RetentionInput) (RetentionDecision, error)
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is the metadata of one record as a compaction policy sees it.
type Record struct {
	Offset      int64
	Key         []byte // nil for a record without a key
	TimestampMs int64
	Headers     []Header
	Tombstone   bool   // the value is null
	Value       []byte // only filled when the policy's Info.NeedsValues
}

// CompactionParams opens one cleaning pass over one partition.
type CompactionParams struct {
	Topic     string
	Partition int32
	Config    map[string]string // effective topic config, as RetentionInput.Config
	NowMs     int64             // the host's clock for the whole pass
}

// CompactionPolicy starts cleaning passes. A pass mirrors Kafka's two-phase
// cleaner: the host first shows the dirty section (every cleanable record
// for a FullScanner) to Scan, in offset order, then every cleanable record
// to Survivors, again in offset order but batched independently, which
// answers which offsets of each batch are kept.
type CompactionPolicy interface {
	Info() Info
	Begin(ctx context.Context, p CompactionParams) (CompactionPass, error)
}

// CompactionPass is one cleaning pass. Calls on a pass are sequential.
type CompactionPass interface {
	// Scan sees one batch of the section, in offset order, so that the
	// policy can learn (for example) the latest offset per key.
	Scan(ctx context.Context, batch []Record) error
	// Survivors returns the offsets of batch that are kept, in any order.
	Survivors(ctx context.Context, batch []Record) ([]int64, error)
	// Close ends the pass and frees its state.
	Close() error
}

// FullScanner is an optional interface of a CompactionPolicy, found by type
// assertion. By default a cleaning shows Scan only the dirty section (the
// records written since the partition was last cleaned), as Kafka's cleaner
// builds its offset map, while Survivors sees every cleanable record. A
// policy whose FullScan reports true is shown every cleanable record in
// Scan too, at the price of reading the already-cleaned section twice: a
// policy whose answer for an old record depends on how many records of its
// key follow it (keep the latest N per key) needs that. The plugin host's
// policies report true, since the broker cannot know what a plugin needs.
type FullScanner interface {
	FullScan() bool
}

// ErrInvalidInput reports a RetentionInput the host should never build.
var ErrInvalidInput = errors.New("plugins: invalid retention input")

// ErrRefused reports a policy answer the host refuses; nothing is deleted.
var ErrRefused = errors.New("plugins: policy answer refused")

// CheckInput reports whether in is well formed: at least one segment, the
// last and only the last one active, segments in order without overlap, and
// log start offset and high watermark inside the log.
func CheckInput(in RetentionInput) error {
	n := len(in.Segments)
	if n == 0 {
		return fmt.Errorf("%w: no segments", ErrInvalidInput)
	}
	for i, s := range in.Segments {
		if s.BaseOffset < 0 {
			return fmt.Errorf("%w: segment %d has negative base offset %d", ErrInvalidInput, i, s.BaseOffset)
		}
		if s.LastOffset < s.BaseOffset-1 {
			return fmt.Errorf("%w: segment %d last offset %d below base %d", ErrInvalidInput, i, s.LastOffset, s.BaseOffset)
		}
		if s.SizeBytes < 0 {
			return fmt.Errorf("%w: segment %d has negative size", ErrInvalidInput, i)
		}
		if s.Active != (i == n-1) {
			return fmt.Errorf("%w: segment %d (base %d): exactly the last segment must be active", ErrInvalidInput, i, s.BaseOffset)
		}
		if i > 0 && s.BaseOffset <= in.Segments[i-1].LastOffset {
			return fmt.Errorf("%w: segment %d (base %d) overlaps the previous one (last %d)", ErrInvalidInput, i, s.BaseOffset, in.Segments[i-1].LastOffset)
		}
		if i > 0 && s.BaseOffset <= in.Segments[i-1].BaseOffset {
			return fmt.Errorf("%w: segment %d base %d not above previous base", ErrInvalidInput, i, s.BaseOffset)
		}
	}
	leo := LogEndOffset(in.Segments)
	if in.LogStartOffset < in.Segments[0].BaseOffset || in.LogStartOffset > leo {
		return fmt.Errorf("%w: log start offset %d outside the log [%d, %d]", ErrInvalidInput, in.LogStartOffset, in.Segments[0].BaseOffset, leo)
	}
	if in.HighWatermark < in.LogStartOffset || in.HighWatermark > leo {
		return fmt.Errorf("%w: high watermark %d outside [log start %d, log end %d]", ErrInvalidInput, in.HighWatermark, in.LogStartOffset, leo)
	}
	return nil
}

// LogEndOffset is the offset the next appended record gets.
func LogEndOffset(segs []Segment) int64 {
	if len(segs) == 0 {
		return 0
	}
	a := segs[len(segs)-1]
	return max(a.LastOffset+1, a.BaseOffset)
}

// Verdict is the host's reading of a valid decision.
type Verdict struct {
	// LogStartOffset is what the host sets: the decision, or the decision
	// rounded down to a segment boundary. Equal to the input's log start
	// offset when nothing goes.
	LogStartOffset int64
	// Delete lists the segments that go (wholly below LogStartOffset).
	Delete []Segment
	// RoundedDown is set when the decision pointed into a segment.
	RoundedDown bool
}

// Validate checks a retention decision against its input. It refuses
// (ErrRefused, nothing deleted) a decision that is negative, below the current
// log start offset, above the high watermark, into the active segment or
// beyond the log end; it rounds a decision that points into the middle of a
// segment down to that segment's base offset. The segments in Verdict.Delete
// are never the active one and hold only offsets below the high watermark.
func Validate(in RetentionInput, d RetentionDecision) (Verdict, error) {
	if err := CheckInput(in); err != nil {
		return Verdict{}, err
	}
	off := d.LogStartOffset
	segs := in.Segments
	active := segs[len(segs)-1]
	switch {
	case off < 0:
		return Verdict{}, fmt.Errorf("%w: negative log start offset %d", ErrRefused, off)
	case off == in.LogStartOffset:
		// "Delete nothing", even when the current start is mid-segment or
		// inside the active segment (after DeleteRecords).
		return Verdict{LogStartOffset: off}, nil
	case off < in.LogStartOffset:
		return Verdict{}, fmt.Errorf("%w: log start offset %d below the current %d", ErrRefused, off, in.LogStartOffset)
	case off > LogEndOffset(segs):
		return Verdict{}, fmt.Errorf("%w: log start offset %d beyond the log end %d (unknown offset)", ErrRefused, off, LogEndOffset(segs))
	case off > in.HighWatermark:
		return Verdict{}, fmt.Errorf("%w: log start offset %d above the high watermark %d", ErrRefused, off, in.HighWatermark)
	case off > active.BaseOffset:
		return Verdict{}, fmt.Errorf("%w: log start offset %d inside the active segment (base %d)", ErrRefused, off, active.BaseOffset)
	}
	// Round down to the base of the segment holding off (the last segment
	// whose base is <= off).
	i, found := slices.BinarySearchFunc(segs, off, func(s Segment, o int64) int {
		switch {
		case s.BaseOffset < o:
			return -1
		case s.BaseOffset > o:
			return 1
		}
		return 0
	})
	if !found {
		i-- // segs[i].BaseOffset < off < segs[i+1].BaseOffset; i >= 0 since off >= LSO >= first base
	}
	v := Verdict{LogStartOffset: segs[i].BaseOffset, RoundedDown: !found}
	if v.LogStartOffset <= in.LogStartOffset {
		// Nothing new goes; keep the current (possibly mid-segment) start.
		return Verdict{LogStartOffset: in.LogStartOffset, RoundedDown: v.RoundedDown}, nil
	}
	v.Delete = slices.Clone(segs[:i])
	return v, nil
}

// ValidateSurvivors checks a compaction answer against its batch: every
// surviving offset must be an offset of the batch, at most once. It returns
// the survivors in ascending order. On error the host keeps the whole batch.
func ValidateSurvivors(batch []Record, survivors []int64) ([]int64, error) {
	in := make(map[int64]struct{}, len(batch))
	for _, r := range batch {
		in[r.Offset] = struct{}{}
	}
	out := slices.Clone(survivors)
	slices.Sort(out)
	for i, o := range out {
		if _, ok := in[o]; !ok {
			return nil, fmt.Errorf("%w: survivor offset %d is not in the batch", ErrRefused, o)
		}
		if i > 0 && out[i-1] == o {
			return nil, fmt.Errorf("%w: survivor offset %d listed twice", ErrRefused, o)
		}
	}
	return out, nil
}

// ErrPolicyFailed wraps a policy's own failure (an error or a panic).
var ErrPolicyFailed = errors.New("plugins: policy failed")

// DecideChecked is what the host's retention loop calls per partition: it
// checks the input, asks the policy (an in-process policy's panic becomes an
// error), and validates the answer. On any error the verdict is empty and the
// host deletes nothing; the decision is returned for the audit log whenever
// the policy produced one.
func DecideChecked(ctx context.Context, p RetentionPolicy, in RetentionInput) (v Verdict, d RetentionDecision, err error) {
	if err := CheckInput(in); err != nil {
		return Verdict{}, RetentionDecision{}, err
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %s panicked: %v", ErrPolicyFailed, p.Info().Name, r)
			}
		}()
		d, err = p.Decide(ctx, in)
	}()
	if err != nil {
		if !errors.Is(err, ErrPolicyFailed) {
			err = fmt.Errorf("%w: %w", ErrPolicyFailed, err)
		}
		return Verdict{}, d, err
	}
	v, err = Validate(in, d)
	if err != nil {
		return Verdict{}, d, err
	}
	return v, d, nil
}
