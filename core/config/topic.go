package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// TopicConfig is the effective configuration of one topic: the broker's
// defaults with the topic's overrides applied.
type TopicConfig struct {
	CleanupPolicy          string            // cleanup.policy: delete | compact | compact,delete
	RetentionMs            int64             // retention.ms; -1 = forever
	RetentionBytes         int64             // retention.bytes; -1 = no limit
	SegmentBytes           int64             // segment.bytes
	SegmentMs              int64             // segment.ms
	SegmentIndexBytes      int32             // segment.index.bytes
	IndexIntervalBytes     int32             // index.interval.bytes
	MaxMessageBytes        int32             // max.message.bytes
	MinInsyncReplicas      int32             // min.insync.replicas
	CompressionType        string            // compression.type
	DeleteRetentionMs      int64             // delete.retention.ms
	MinCompactionLagMs     int64             // min.compaction.lag.ms
	MaxCompactionLagMs     int64             // max.compaction.lag.ms
	MinCleanableDirtyRatio float64           // min.cleanable.dirty.ratio
	FileDeleteDelayMs      int64             // file.delete.delay.ms
	FlushMessages          int64             // flush.messages
	FlushMs                int64             // flush.ms
	MessageTimestampType   string            // message.timestamp.type
	UncleanLeaderElection  bool              // unclean.leader.election.enable
	Plugins                map[string]string // brokkr.* plugin settings, passed through
}

// ConfigSource says where an effective value comes from, as DescribeConfigs
// reports it (Kafka's ConfigSource numbering).
type ConfigSource int8

const (
	SourceTopic        ConfigSource = 1 // DYNAMIC_TOPIC_CONFIG
	SourceStaticBroker ConfigSource = 4 // STATIC_BROKER_CONFIG
	SourceDefault      ConfigSource = 5 // DEFAULT_CONFIG
)

// ConfigEntry is one effective topic setting with its source and the broker
// key it falls back to.
type ConfigEntry struct {
	Name      string
	Value     string
	Source    ConfigSource
	Synonym   string // broker key, "" when none
	Sensitive bool
	ReadOnly  bool
}

type topicKey struct {
	name    string
	synonym string // broker key providing the default
	kind    kind
	min     float64
	max     float64
	enum    []string
	def     func(b *Config) string
	set     func(t *TopicConfig, v string)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func setI64(f func(t *TopicConfig) *int64) func(*TopicConfig, string) {
	return func(t *TopicConfig, v string) { n, _ := strconv.ParseInt(v, 10, 64); *f(t) = n }
}
func setI32(f func(t *TopicConfig) *int32) func(*TopicConfig, string) {
	return func(t *TopicConfig, v string) { n, _ := strconv.ParseInt(v, 10, 32); *f(t) = int32(n) }
}

const kDouble kind = 100

var topicKeys = []topicKey{
	{name: "cleanup.policy", synonym: "log.cleanup.policy", kind: kString, enum: []string{"delete", "compact", "compact,delete", "delete,compact"},
		def: func(b *Config) string { return b.LogCleanupPolicy }, set: func(t *TopicConfig, v string) { t.CleanupPolicy = normPolicy(v) }},
	{name: "retention.ms", synonym: "log.retention.ms", kind: kLong, min: -1, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogRetentionMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.RetentionMs })},
	{name: "retention.bytes", synonym: "log.retention.bytes", kind: kLong, min: -1, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogRetentionBytes) }, set: setI64(func(t *TopicConfig) *int64 { return &t.RetentionBytes })},
	{name: "segment.bytes", synonym: "log.segment.bytes", kind: kInt, min: 14, max: math.MaxInt32,
		def: func(b *Config) string { return itoa(b.LogSegmentBytes) }, set: setI64(func(t *TopicConfig) *int64 { return &t.SegmentBytes })},
	{name: "segment.ms", synonym: "log.roll.ms", kind: kLong, min: 1, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogRollMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.SegmentMs })},
	{name: "segment.index.bytes", synonym: "log.index.size.max.bytes", kind: kInt, min: 4, max: math.MaxInt32,
		def: func(b *Config) string { return itoa(int64(b.LogIndexSizeMaxBytes)) }, set: setI32(func(t *TopicConfig) *int32 { return &t.SegmentIndexBytes })},
	{name: "index.interval.bytes", synonym: "log.index.interval.bytes", kind: kInt, min: 0, max: math.MaxInt32,
		def: func(b *Config) string { return itoa(int64(b.LogIndexIntervalBytes)) }, set: setI32(func(t *TopicConfig) *int32 { return &t.IndexIntervalBytes })},
	{name: "max.message.bytes", synonym: "message.max.bytes", kind: kInt, min: 0, max: math.MaxInt32,
		def: func(b *Config) string { return itoa(int64(b.MessageMaxBytes)) }, set: setI32(func(t *TopicConfig) *int32 { return &t.MaxMessageBytes })},
	{name: "min.insync.replicas", synonym: "min.insync.replicas", kind: kInt, min: 1, max: math.MaxInt32,
		def: func(b *Config) string { return itoa(int64(b.MinInsyncReplicas)) }, set: setI32(func(t *TopicConfig) *int32 { return &t.MinInsyncReplicas })},
	{name: "compression.type", synonym: "compression.type", kind: kString, enum: []string{"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"},
		def: func(b *Config) string { return b.CompressionType }, set: func(t *TopicConfig, v string) { t.CompressionType = v }},
	{name: "delete.retention.ms", synonym: "log.cleaner.delete.retention.ms", kind: kLong, min: 0, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogCleanerDeleteRetentionMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.DeleteRetentionMs })},
	{name: "min.compaction.lag.ms", synonym: "log.cleaner.min.compaction.lag.ms", kind: kLong, min: 0, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogCleanerMinCompactionLagMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.MinCompactionLagMs })},
	{name: "max.compaction.lag.ms", synonym: "log.cleaner.max.compaction.lag.ms", kind: kLong, min: 1, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogCleanerMaxCompactionLagMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.MaxCompactionLagMs })},
	{name: "min.cleanable.dirty.ratio", synonym: "log.cleaner.min.cleanable.ratio", kind: kDouble, min: 0, max: 1,
		def: func(b *Config) string { return strconv.FormatFloat(b.LogCleanerMinCleanableRatio, 'g', -1, 64) }, set: func(t *TopicConfig, v string) { t.MinCleanableDirtyRatio, _ = strconv.ParseFloat(v, 64) }},
	{name: "file.delete.delay.ms", synonym: "log.segment.delete.delay.ms", kind: kLong, min: 0, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogSegmentDeleteDelayMs) }, set: setI64(func(t *TopicConfig) *int64 { return &t.FileDeleteDelayMs })},
	{name: "flush.messages", synonym: "log.flush.interval.messages", kind: kLong, min: 1, max: math.MaxInt64,
		def: func(b *Config) string { return itoa(b.LogFlushIntervalMessages) }, set: setI64(func(t *TopicConfig) *int64 { return &t.FlushMessages })},
	{name: "flush.ms", synonym: "log.flush.interval.ms", kind: kLong, min: 0, max: math.MaxInt64,
		def: func(b *Config) string {
			if b.LogFlushIntervalMs < 0 {
				return itoa(math.MaxInt64)
			}
			return itoa(b.LogFlushIntervalMs)
		}, set: setI64(func(t *TopicConfig) *int64 { return &t.FlushMs })},
	{name: "message.timestamp.type", synonym: "log.message.timestamp.type", kind: kString, enum: []string{"CreateTime", "LogAppendTime"},
		def: func(*Config) string { return "CreateTime" }, set: func(t *TopicConfig, v string) { t.MessageTimestampType = v }},
	{name: "unclean.leader.election.enable", synonym: "unclean.leader.election.enable", kind: kBool,
		def: func(*Config) string { return "false" }, set: func(t *TopicConfig, v string) { t.UncleanLeaderElection = v == "true" }},
}

var topicByName = func() map[string]*topicKey {
	m := map[string]*topicKey{}
	for i := range topicKeys {
		m[topicKeys[i].name] = &topicKeys[i]
	}
	return m
}()

func normPolicy(v string) string {
	v = strings.ReplaceAll(strings.ToLower(v), " ", "")
	if v == "delete,compact" {
		return "compact,delete"
	}
	return v
}

// TopicKeys returns every topic config name Brokkr knows, sorted.
func TopicKeys() []string {
	out := make([]string, 0, len(topicKeys))
	for _, k := range topicKeys {
		out = append(out, k.name)
	}
	sort.Strings(out)
	return out
}

// IsPluginKey reports whether name is a Brokkr plugin setting
// ("brokkr.retention.plugin", "brokkr.compaction.plugin" and
// "brokkr.plugin.<name>.<setting>"), passed to policies uninterpreted.
func IsPluginKey(name string) bool { return strings.HasPrefix(name, "brokkr.") }

// CheckTopicConfig validates one topic config entry as a client sent it.
// The error text is meant for the INVALID_CONFIG error message.
func CheckTopicConfig(name, value string) error {
	if IsPluginKey(name) {
		return nil
	}
	k, ok := topicByName[name]
	if !ok {
		msg := fmt.Sprintf("unknown topic config %q", name)
		best, bestD := "", 4
		for _, n := range TopicKeys() {
			if d := editDistance(name, n); d < bestD {
				best, bestD = n, d
			}
		}
		if best != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", best)
		}
		return errors.New(msg)
	}
	value = strings.TrimSpace(value)
	switch k.kind {
	case kInt, kLong:
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", name, value)
		}
		if float64(v) < k.min || float64(v) > k.max {
			return fmt.Errorf("%s: %d is out of range [%.0f, %.0f]", name, v, k.min, k.max)
		}
	case kDouble:
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < k.min || v > k.max {
			return fmt.Errorf("%s: %q is not a number in [%g, %g]", name, value, k.min, k.max)
		}
	case kBool:
		if value != "true" && value != "false" {
			return fmt.Errorf("%s: %q is not true or false", name, value)
		}
	default:
		if len(k.enum) > 0 {
			norm := value
			if name == "cleanup.policy" {
				norm = normPolicy(value)
			}
			for _, e := range k.enum {
				if norm == e {
					return nil
				}
			}
			return fmt.Errorf("%s: %q is not one of %s", name, value, strings.Join(k.enum, ", "))
		}
	}
	return nil
}

// CheckTopicConfigs validates a whole set of overrides, every problem at once.
func CheckTopicConfigs(overrides map[string]string) error {
	var errs []error
	names := make([]string, 0, len(overrides))
	for n := range overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := CheckTopicConfig(n, overrides[n]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Topic returns the effective topic config: the broker's defaults with the
// overrides applied. Overrides must have passed CheckTopicConfigs; an invalid
// one is reported and the default kept.
func (c *Config) Topic(overrides map[string]string) (TopicConfig, error) {
	var t TopicConfig
	var errs []error
	for _, k := range topicKeys {
		v := k.def(c)
		if o, ok := overrides[k.name]; ok {
			if err := CheckTopicConfig(k.name, o); err != nil {
				errs = append(errs, err)
			} else {
				v = strings.TrimSpace(o)
			}
		}
		k.set(&t, v)
	}
	for n, v := range overrides {
		if IsPluginKey(n) {
			if t.Plugins == nil {
				t.Plugins = map[string]string{}
			}
			t.Plugins[n] = v
		}
	}
	return t, errors.Join(errs...)
}

// DescribeTopic lists every effective topic setting with its source, as
// DescribeConfigs answers (sorted by name).
func (c *Config) DescribeTopic(overrides map[string]string) []ConfigEntry {
	var out []ConfigEntry
	for _, k := range topicKeys {
		e := ConfigEntry{Name: k.name, Value: k.def(c), Source: SourceDefault, Synonym: k.synonym}
		if c.brokerSet(k.synonym) {
			e.Source = SourceStaticBroker
		}
		if o, ok := overrides[k.name]; ok {
			e.Value, e.Source = o, SourceTopic
			if k.name == "cleanup.policy" {
				e.Value = normPolicy(o)
			}
		}
		out = append(out, e)
	}
	for n, v := range overrides {
		if IsPluginKey(n) {
			out = append(out, ConfigEntry{Name: n, Value: v, Source: SourceTopic})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// brokerSet reports whether the broker key, or a lower-precedence synonym of
// it (log.retention.hours for log.retention.ms), was set explicitly.
func (c *Config) brokerSet(name string) bool {
	names := []string{name}
	switch name {
	case "log.retention.ms":
		names = append(names, "log.retention.minutes", "log.retention.hours")
	case "log.roll.ms":
		names = append(names, "log.roll.hours")
	}
	for _, n := range names {
		if _, ok := c.Set[n]; ok {
			return true
		}
	}
	return false
}
