// Command retention-committed is an example Brokkr retention policy served
// as a go-plugin process: it keeps a partition's data until every consumer
// group has committed past it, capped by a maximum age.
//
// The rule (policy.go, Decide): the new log start offset is the base of the
// first segment that still holds an offset at or above the lowest offset
// committed by any consumer group (RetentionInput.MinCommittedOffset); when
// no committed offset is known (-1) the committed rule keeps everything.
// Independently, a prefix of segments whose newest record is older than
// max.age.ms goes regardless of commits. The later of the two starts wins.
// A segment only goes when all its offsets are below the high watermark, and
// the active segment never goes, so every answer passes plugins.Validate on
// its own. The clock is RetentionInput.NowMs, never time.Now.
//
// Settings (topic configs, see README.md):
//
//	brokkr.plugin.retention-committed.max.age.ms  default: the topic's retention.ms; -1 = no cap
//
// Build it into the broker's plugin directory and name it on a topic:
//
//	go build -o $PLUGIN_DIR/retention-committed ./examples/plugins/retention-committed
//	brokkr topic create T -c brokkr.retention.plugin=retention-committed
package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/brokkr/brokkr/plugins"
)

// Name is the policy's name: the binary's file name in brokkr.plugin.dir and
// the middle part of its settings' keys.
const Name = "retention-committed"

// MaxAgeKey is the setting that caps how long data is kept for consumers.
const MaxAgeKey = "brokkr.plugin." + Name + ".max.age.ms"

// DefaultRetentionMs is Kafka's retention.ms default (7 days), the cap when
// neither max.age.ms nor retention.ms is set.
const DefaultRetentionMs = 7 * 24 * 60 * 60 * 1000

// Policy is the committed-offset retention policy. It keeps no state.
type Policy struct{}

// Info implements plugins.RetentionPolicy.
func (Policy) Info() plugins.Info { return plugins.Info{Name: Name} }

// Settings are the policy's parsed configuration for one partition.
type Settings struct {
	// Delete is false when cleanup.policy lacks "delete": then nothing goes.
	Delete bool
	// MaxAgeMs caps how long data waits for consumers; -1 means no cap.
	MaxAgeMs int64
	// MaxAgeFrom names where MaxAgeMs came from, for the reason string.
	MaxAgeFrom string
}

// ParseSettings reads the settings from a topic's effective config.
func ParseSettings(cfg map[string]string) (Settings, error) {
	s := Settings{MaxAgeMs: DefaultRetentionMs, MaxAgeFrom: "default retention.ms"}
	del, err := hasDelete(cfg["cleanup.policy"])
	if err != nil {
		return Settings{}, err
	}
	s.Delete = del
	for _, key := range []string{"retention.ms", MaxAgeKey} { // the later wins
		v, ok, err := configInt(cfg, key)
		if err != nil {
			return Settings{}, err
		}
		if ok {
			s.MaxAgeMs, s.MaxAgeFrom = v, key
		}
	}
	return s, nil
}

// configInt reads an integer setting that is -1 (off) or non-negative.
func configInt(cfg map[string]string, key string) (int64, bool, error) {
	raw, ok := cfg[key]
	if !ok || strings.TrimSpace(raw) == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not an integer", key, raw)
	}
	if v < -1 {
		return 0, false, fmt.Errorf("%s: %d is below -1 (-1 means no limit)", key, v)
	}
	return v, true, nil
}

// hasDelete parses cleanup.policy as Kafka does (missing = delete).
func hasDelete(s string) (bool, error) {
	if strings.TrimSpace(s) == "" {
		return true, nil
	}
	del := false
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "delete":
			del = true
		case "compact":
		default:
			return false, fmt.Errorf("cleanup.policy: unknown value %q (want delete, compact or compact,delete)", strings.TrimSpace(f))
		}
	}
	return del, nil
}

// Decide implements plugins.RetentionPolicy.
func (Policy) Decide(ctx context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	keep := plugins.RetentionDecision{LogStartOffset: in.LogStartOffset}
	if err := ctx.Err(); err != nil {
		return keep, err
	}
	if err := plugins.CheckInput(in); err != nil {
		return keep, err
	}
	s, err := ParseSettings(in.Config)
	if err != nil {
		return keep, err
	}
	if !s.Delete {
		keep.Reason = "cleanup.policy has no delete: keep everything"
		return keep, nil
	}
	segs := in.Segments
	// deletable(i): segment i may go at all: not the active segment, and the
	// next segment starts at or below the high watermark, so every offset of
	// segment i is below it and the new start is not above it.
	deletable := func(i int) bool { return i < len(segs)-1 && segs[i+1].BaseOffset <= in.HighWatermark }

	// Committed: a prefix of segments whose every offset is below the lowest
	// committed offset (an empty segment holds none, so it never stops the
	// prefix).
	byCommit := 0
	if c := in.MinCommittedOffset; c >= 0 {
		for byCommit < len(segs) && deletable(byCommit) && segs[byCommit].LastOffset < c {
			byCommit++
		}
	}
	// Age: a prefix of segments whose newest record is older than the cap.
	byAge := 0
	if s.MaxAgeMs >= 0 {
		for byAge < len(segs) && deletable(byAge) && in.NowMs-segmentTime(segs[byAge]) > s.MaxAgeMs {
			byAge++
		}
	}
	n := max(byCommit, byAge)
	if n == 0 || segs[n].BaseOffset <= in.LogStartOffset {
		keep.Reason = keepReason(in, s, n)
		return keep, nil
	}
	var why []string
	if byCommit > 0 {
		why = append(why, fmt.Sprintf("%d segment(s) wholly below the lowest committed offset %d", byCommit, in.MinCommittedOffset))
	}
	if byAge > 0 {
		why = append(why, fmt.Sprintf("%d segment(s) older than %s=%d", byAge, s.MaxAgeFrom, s.MaxAgeMs))
	}
	return plugins.RetentionDecision{
		LogStartOffset: segs[n].BaseOffset,
		Reason:         fmt.Sprintf("delete segments below %d: %s", segs[n].BaseOffset, strings.Join(why, "; ")),
	}, nil
}

// keepReason says what kept the oldest segment (n segments could go but
// they lie below the current log start).
func keepReason(in plugins.RetentionInput, s Settings, n int) string {
	if n > 0 {
		return fmt.Sprintf("keep everything: the segments that may go lie below the log start offset %d", in.LogStartOffset)
	}
	segs := in.Segments
	first := segs[0]
	age := "no age cap"
	if s.MaxAgeMs >= 0 {
		age = fmt.Sprintf("oldest segment is %d ms old, within %s=%d", in.NowMs-segmentTime(first), s.MaxAgeFrom, s.MaxAgeMs)
	}
	switch {
	case len(segs) == 1:
		return "keep everything: only the active segment"
	case segs[1].BaseOffset > in.HighWatermark:
		return fmt.Sprintf("keep everything: oldest segment reaches the high watermark %d", in.HighWatermark)
	case in.MinCommittedOffset < 0:
		return "keep everything: no committed offset known; " + age
	default:
		return fmt.Sprintf("keep everything: oldest segment [%d, %d] holds offsets at or above the lowest committed offset %d; %s",
			first.BaseOffset, first.LastOffset, in.MinCommittedOffset, age)
	}
}

// segmentTime is when a segment's data was last written: its newest record's
// timestamp, or its creation time when it has none (as Kafka falls back to
// the file's modification time).
func segmentTime(s plugins.Segment) int64 {
	if s.MaxTimestampMs >= 0 {
		return s.MaxTimestampMs
	}
	return s.CreatedMs
}
