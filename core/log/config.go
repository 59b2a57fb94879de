package log

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/brokkr/brokkr/segment"
)

// Config is a partition log's settings, Kafka's topic-level names in
// comments. DefaultConfig has Kafka's defaults except the flush interval
// (see docs/durability.md).
type Config struct {
	SegmentBytes       int64 // segment.bytes (1 GiB)
	SegmentMs          int64 // segment.ms (7 days)
	SegmentIndexBytes  int   // segment.index.bytes (10 MiB)
	IndexIntervalBytes int   // index.interval.bytes (4096)
	MaxMessageBytes    int   // max.message.bytes (1048588)
	// FlushMessages is flush.messages: fsync once this many records are
	// unflushed. 0 or math.MaxInt64 means never (Kafka's default).
	FlushMessages int64
	// FlushMs is flush.ms: fsync when the oldest unflushed append is this
	// old (checked by Manager's flusher). 0 or math.MaxInt64 means never.
	FlushMs int64
}

// DefaultConfig: Kafka's defaults, except FlushMs = 1000 (Brokkr's
// choice: a single-node broker has no replica to fall back on; see
// docs/durability.md).
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		SegmentMs:          7 * 24 * 3600 * 1000,
		SegmentIndexBytes:  10 << 20,
		IndexIntervalBytes: 4096,
		MaxMessageBytes:    1048588,
		FlushMessages:      math.MaxInt64,
		FlushMs:            1000,
	}
}

// Validate reports every bad setting at once.
func (c Config) Validate() error {
	var errs []string
	if c.SegmentBytes < 14 {
		errs = append(errs, fmt.Sprintf("segment.bytes %d is below 14", c.SegmentBytes))
	}
	if c.SegmentBytes > math.MaxInt32 {
		errs = append(errs, fmt.Sprintf("segment.bytes %d does not fit 32-bit index positions", c.SegmentBytes))
	}
	if c.SegmentMs < 1 {
		errs = append(errs, fmt.Sprintf("segment.ms %d is below 1", c.SegmentMs))
	}
	if c.SegmentIndexBytes < 4*12 {
		errs = append(errs, fmt.Sprintf("segment.index.bytes %d is below 48", c.SegmentIndexBytes))
	}
	if c.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Sprintf("index.interval.bytes %d is negative", c.IndexIntervalBytes))
	}
	if c.MaxMessageBytes < segment.HeaderSize {
		errs = append(errs, fmt.Sprintf("max.message.bytes %d is below a batch header (61)", c.MaxMessageBytes))
	}
	if c.FlushMessages < 0 || c.FlushMs < 0 {
		errs = append(errs, "flush.messages and flush.ms must not be negative")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("log config: %v", errs)
}

func (c Config) segmentConfig() segment.Config {
	return segment.Config{IndexMaxBytes: c.SegmentIndexBytes, IndexIntervalBytes: c.IndexIntervalBytes}
}

// Events are callbacks for what a log does on its own; any may be nil.
// cmd/brokkr wires them to metrics. They are called with the log's lock
// held: they must not call back into the log.
type Events struct {
	SegmentRolled     func(dir string, newBase int64, reason string)
	SegmentDeleted    func(dir string, info SegmentInfo)
	SegmentRecovered  func(dir string, r segment.Recovery) // every segment re-read at open
	RecoveryTruncated func(dir string, r segment.Recovery)
	IndexRebuilt      func(dir string, r segment.Recovery)
	SegmentsDropped   func(dir string, bases []int64, reason string) // whole segments discarded by recovery
	Flushed           func(dir string, upTo int64, took time.Duration)
	StorageError      func(dir string, err error)
}

// Options are what a log is given rather than configured with.
type Options struct {
	FS     segment.FS           // nil: the OS
	Now    func() time.Time     // nil: time.Now
	Logger *slog.Logger         // nil: discard
	Events Events               //
	Check  segment.RecordsCheck // record checks of compressed batches (the broker's codecs)
	// RecoveryPoint: offsets below it are known flushed; segments holding
	// offsets >= it are re-read and CRC-checked on Open. math.MaxInt64
	// (after a clean shutdown) trusts everything.
	RecoveryPoint int64
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = segment.OSFS{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
