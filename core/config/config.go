// Package config is the broker's configuration: one struct keyed by Kafka's
// property names, DefaultConfig with Kafka's defaults (and the few deliberate
// differences documented in docs/config.md), and one Validate that reports
// every problem at once, each as "where: what is wrong".
//
// The file format is Kafka's server.properties (Java properties). Unknown
// keys are refused with a suggestion, unlike Kafka (which logs and ignores
// them): a typo such as "log.retention.hour" silently keeping data for a
// week is the kind of surprise Brokkr exists to remove. Keys that Kafka has
// but that do not apply to Brokkr (thread pool sizes and such) are accepted
// and ignored, so an existing Kafka file loads.
//
// Brokkr-only keys carry the "brokkr." prefix so a Kafka file stays valid.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Config is a broker's static configuration. Embedders fill it from
// DefaultConfig, change fields, and call Validate (Start does too).
type Config struct {
	NodeID                   int32    // node.id, broker.id
	Rack                     string   // broker.rack
	Listeners                []string // listeners
	AdvertisedListeners      []string // advertised.listeners; empty = Listeners
	LogDirs                  []string // log.dirs, log.dir
	NumPartitions            int32    // num.partitions
	DefaultReplicationFactor int16    // default.replication.factor
	MinInsyncReplicas        int32    // min.insync.replicas
	AutoCreateTopicsEnable   bool     // auto.create.topics.enable
	DeleteTopicEnable        bool     // delete.topic.enable

	// Defaults of the per-topic log settings (Kafka's log.* broker keys).
	LogSegmentBytes          int64  // log.segment.bytes
	LogRollMs                int64  // log.roll.ms, log.roll.hours
	LogRetentionMs           int64  // log.retention.ms, .minutes, .hours; -1 = forever
	LogRetentionBytes        int64  // log.retention.bytes; -1 = no limit
	LogIndexIntervalBytes    int32  // log.index.interval.bytes
	LogIndexSizeMaxBytes     int32  // log.index.size.max.bytes
	LogCleanupPolicy         string // log.cleanup.policy
	LogFlushIntervalMessages int64  // log.flush.interval.messages
	LogFlushIntervalMs       int64  // log.flush.interval.ms; -1 = unset
	LogSegmentDeleteDelayMs  int64  // log.segment.delete.delay.ms
	MessageMaxBytes          int32  // message.max.bytes
	CompressionType          string // compression.type

	LogRetentionCheckIntervalMs        int64 // log.retention.check.interval.ms
	LogFlushOffsetCheckpointIntervalMs int64 // log.flush.offset.checkpoint.interval.ms
	LogFlushSchedulerIntervalMs        int64 // log.flush.scheduler.interval.ms

	// The log cleaner (compaction of cleanup.policy=compact topics).
	LogCleanerEnable              bool    // log.cleaner.enable
	LogCleanerThreads             int32   // log.cleaner.threads
	LogCleanerIoMaxBytesPerSecond float64 // log.cleaner.io.max.bytes.per.second; math.MaxFloat64 = unthrottled
	LogCleanerBackoffMs           int64   // log.cleaner.backoff.ms
	LogCleanerMinCleanableRatio   float64 // log.cleaner.min.cleanable.ratio
	LogCleanerDeleteRetentionMs   int64   // log.cleaner.delete.retention.ms
	LogCleanerMinCompactionLagMs  int64   // log.cleaner.min.compaction.lag.ms
	LogCleanerMaxCompactionLagMs  int64   // log.cleaner.max.compaction.lag.ms

	SocketRequestMaxBytes int32 // socket.request.max.bytes
	ConnectionsMaxIdleMs  int64 // connections.max.idle.ms
	QueuedMaxRequests     int32 // queued.max.requests
	FetchMaxBytes         int32 // fetch.max.bytes

	OffsetsTopicNumPartitions     int32 // offsets.topic.num.partitions
	OffsetsTopicReplicationFactor int16 // offsets.topic.replication.factor
	OffsetsRetentionMinutes       int64 // offsets.retention.minutes

	// Consumer groups (core/group, the broker's coordinator).
	OffsetsRetentionCheckIntervalMs int64 // offsets.retention.check.interval.ms
	OffsetMetadataMaxBytes          int32 // offset.metadata.max.bytes
	GroupInitialRebalanceDelayMs    int32 // group.initial.rebalance.delay.ms
	GroupMinSessionTimeoutMs        int32 // group.min.session.timeout.ms
	GroupMaxSessionTimeoutMs        int32 // group.max.session.timeout.ms
	GroupMaxSize                    int32 // group.max.size

	// Coordination: "etcd-embedded" (default), "etcd://h:p,...",
	// "zk://h:p,.../chroot" or "gossip://seed:p,...". Setting
	// zookeeper.connect alone selects ZooKeeper, as in a Kafka ZK-mode file.
	Coordination                 string // brokkr.coordination
	ZookeeperConnect             string // zookeeper.connect
	ZookeeperSessionTimeoutMs    int32  // zookeeper.session.timeout.ms
	ZookeeperConnectionTimeoutMs int32  // zookeeper.connection.timeout.ms; -1 = session time-out
	CoordinationSessionTimeoutMs int32  // brokkr.coordination.session.timeout.ms (etcd lease, gossip)

	// NetworkSendfile is brokkr.network.sendfile: send record bytes of Fetch
	// responses with sendfile (true) or copy them through user space.
	NetworkSendfile bool
	GossipBind      string // brokkr.gossip.bind: ip:port of this node's gossip listener
	PluginDir       string // brokkr.plugin.dir
	// Plugin process limits (plugins/host.Options).
	PluginCallTimeoutMs       int64  // brokkr.plugin.call.timeout.ms
	PluginStartTimeoutMs      int64  // brokkr.plugin.start.timeout.ms
	PluginHealthIntervalMs    int64  // brokkr.plugin.health.interval.ms
	PluginRestartBackoffMs    int64  // brokkr.plugin.restart.backoff.ms (first restart delay)
	PluginRestartBackoffMaxMs int64  // brokkr.plugin.restart.backoff.max.ms
	AdminListen               string // brokkr.admin.listener: host:port for /metrics and health; "" = off

	// Set records, for each key given explicitly, where it was set; the
	// broker uses it to report config sources (DescribeConfigs).
	Set map[string]Property
}

// DefaultConfig returns Kafka's defaults, except where docs/config.md says why not.
func DefaultConfig() Config {
	return Config{
		NodeID:                   0,
		Listeners:                []string{"PLAINTEXT://localhost:9092"},
		LogDirs:                  []string{"./brokkr-data"},
		NumPartitions:            1,
		DefaultReplicationFactor: 1,
		MinInsyncReplicas:        1,
		AutoCreateTopicsEnable:   true,
		DeleteTopicEnable:        true,

		LogSegmentBytes:          1 << 30,
		LogRollMs:                168 * 3600 * 1000,
		LogRetentionMs:           168 * 3600 * 1000,
		LogRetentionBytes:        -1,
		LogIndexIntervalBytes:    4096,
		LogIndexSizeMaxBytes:     10 << 20,
		LogCleanupPolicy:         "delete",
		LogFlushIntervalMessages: math.MaxInt64,
		LogFlushIntervalMs:       1000, // Kafka: unset (never); see docs/durability.md
		LogSegmentDeleteDelayMs:  60000,
		MessageMaxBytes:          1048588,
		CompressionType:          "producer",

		LogRetentionCheckIntervalMs:        300000,
		LogFlushOffsetCheckpointIntervalMs: 60000,
		LogFlushSchedulerIntervalMs:        math.MaxInt64,

		LogCleanerEnable:              true,
		LogCleanerThreads:             1,
		LogCleanerIoMaxBytesPerSecond: math.MaxFloat64,
		LogCleanerBackoffMs:           15000,
		LogCleanerMinCleanableRatio:   0.5,
		LogCleanerDeleteRetentionMs:   86400000,
		LogCleanerMinCompactionLagMs:  0,
		LogCleanerMaxCompactionLagMs:  math.MaxInt64,

		SocketRequestMaxBytes: 104857600,
		ConnectionsMaxIdleMs:  600000,
		QueuedMaxRequests:     500,
		FetchMaxBytes:         57671680,

		OffsetsTopicNumPartitions:     50,
		OffsetsTopicReplicationFactor: 3,
		OffsetsRetentionMinutes:       10080,

		OffsetsRetentionCheckIntervalMs: 600000,
		OffsetMetadataMaxBytes:          4096,
		GroupInitialRebalanceDelayMs:    3000,
		GroupMinSessionTimeoutMs:        6000,
		GroupMaxSessionTimeoutMs:        1800000,
		GroupMaxSize:                    math.MaxInt32,

		Coordination:                 "etcd-embedded",
		ZookeeperSessionTimeoutMs:    18000,
		ZookeeperConnectionTimeoutMs: -1,
		CoordinationSessionTimeoutMs: 3000,
		NetworkSendfile:              true,

		PluginCallTimeoutMs:       10000,
		PluginStartTimeoutMs:      10000,
		PluginHealthIntervalMs:    10000,
		PluginRestartBackoffMs:    1000,
		PluginRestartBackoffMaxMs: 60000,
	}
}

type kind int

const (
	kInt kind = iota
	kLong
	kBool
	kString
	kList
)

// key describes one accepted property.
type key struct {
	name string
	kind kind
	min  int64 // for numbers
	max  int64
	enum []string
	// field points at the Config field the key sets; nil for keys resolved
	// in resolveSynonyms.
	field func(c *Config) any
	doc   string
}

// setField stores a parsed value into the field a key points at.
func setField(ptr any, v any) {
	switch f := ptr.(type) {
	case *int16:
		*f = int16(v.(int64))
	case *int32:
		*f = int32(v.(int64))
	case *int64:
		*f = v.(int64)
	case *bool:
		*f = v.(bool)
	case *string:
		*f = v.(string)
	case *[]string:
		*f = v.([]string)
	case *float64:
		*f = v.(float64)
	}
}

// fieldString renders a field's value as a properties value.
func fieldString(ptr any) string {
	switch f := ptr.(type) {
	case *int16:
		return strconv.FormatInt(int64(*f), 10)
	case *int32:
		return strconv.FormatInt(int64(*f), 10)
	case *int64:
		return strconv.FormatInt(*f, 10)
	case *bool:
		return strconv.FormatBool(*f)
	case *string:
		return *f
	case *[]string:
		return strings.Join(*f, ",")
	case *float64:
		return strconv.FormatFloat(*f, 'g', -1, 64)
	}
	return ""
}

const (
	maxInt32 = math.MaxInt32
	maxInt64 = math.MaxInt64
)

// keys is every broker key Brokkr understands. Precedence between synonyms
// (log.retention.ms over .minutes over .hours) is resolved in Load.
var keys = []key{
	{name: "node.id", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.NodeID }, doc: "this broker's id"},
	{name: "broker.id", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.NodeID }, doc: "synonym of node.id"},
	{name: "broker.rack", kind: kString, field: func(c *Config) any { return &c.Rack }},
	{name: "listeners", kind: kList, field: func(c *Config) any { return &c.Listeners }},
	{name: "advertised.listeners", kind: kList, field: func(c *Config) any { return &c.AdvertisedListeners }},
	{name: "log.dirs", kind: kList, field: func(c *Config) any { return &c.LogDirs }},
	{name: "log.dir", kind: kList, field: func(c *Config) any { return &c.LogDirs }},
	{name: "num.partitions", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.NumPartitions }},
	{name: "default.replication.factor", kind: kInt, min: 1, max: math.MaxInt16, field: func(c *Config) any { return &c.DefaultReplicationFactor }},
	{name: "min.insync.replicas", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.MinInsyncReplicas }},
	{name: "auto.create.topics.enable", kind: kBool, field: func(c *Config) any { return &c.AutoCreateTopicsEnable }},
	{name: "delete.topic.enable", kind: kBool, field: func(c *Config) any { return &c.DeleteTopicEnable }},

	{name: "log.segment.bytes", kind: kLong, min: 14, max: maxInt32, field: func(c *Config) any { return &c.LogSegmentBytes }},
	{name: "log.roll.ms", kind: kLong, min: 1, max: maxInt64},
	{name: "log.roll.hours", kind: kLong, min: 1, max: maxInt32},
	{name: "log.retention.ms", kind: kLong, min: -1, max: maxInt64},
	{name: "log.retention.minutes", kind: kLong, min: -1, max: maxInt32},
	{name: "log.retention.hours", kind: kLong, min: -1, max: maxInt32},
	{name: "log.retention.bytes", kind: kLong, min: -1, max: maxInt64, field: func(c *Config) any { return &c.LogRetentionBytes }},
	{name: "log.index.interval.bytes", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.LogIndexIntervalBytes }},
	{name: "log.index.size.max.bytes", kind: kInt, min: 4, max: maxInt32, field: func(c *Config) any { return &c.LogIndexSizeMaxBytes }},
	{name: "log.cleanup.policy", kind: kString, enum: []string{"delete", "compact", "compact,delete", "delete,compact"}, field: func(c *Config) any { return &c.LogCleanupPolicy }},
	{name: "log.flush.interval.messages", kind: kLong, min: 1, max: maxInt64, field: func(c *Config) any { return &c.LogFlushIntervalMessages }},
	{name: "log.flush.interval.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogFlushIntervalMs }},
	{name: "log.flush.scheduler.interval.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogFlushSchedulerIntervalMs }},
	{name: "log.segment.delete.delay.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogSegmentDeleteDelayMs }},
	{name: "message.max.bytes", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.MessageMaxBytes }},
	{name: "compression.type", kind: kString, enum: []string{"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"}, field: func(c *Config) any { return &c.CompressionType }},
	{name: "log.retention.check.interval.ms", kind: kLong, min: 1, max: maxInt64, field: func(c *Config) any { return &c.LogRetentionCheckIntervalMs }},
	{name: "log.cleaner.enable", kind: kBool, field: func(c *Config) any { return &c.LogCleanerEnable }},
	{name: "log.cleaner.threads", kind: kInt, min: 0, max: 64, field: func(c *Config) any { return &c.LogCleanerThreads }},
	{name: "log.cleaner.io.max.bytes.per.second", kind: kDouble, min: 1, max: maxInt64, field: func(c *Config) any { return &c.LogCleanerIoMaxBytesPerSecond }},
	{name: "log.cleaner.backoff.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogCleanerBackoffMs }},
	{name: "log.cleaner.min.cleanable.ratio", kind: kDouble, min: 0, max: 1, field: func(c *Config) any { return &c.LogCleanerMinCleanableRatio }},
	{name: "log.cleaner.delete.retention.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogCleanerDeleteRetentionMs }},
	{name: "log.cleaner.min.compaction.lag.ms", kind: kLong, min: 0, max: maxInt64, field: func(c *Config) any { return &c.LogCleanerMinCompactionLagMs }},
	{name: "log.cleaner.max.compaction.lag.ms", kind: kLong, min: 1, max: maxInt64, field: func(c *Config) any { return &c.LogCleanerMaxCompactionLagMs }},
	{name: "log.flush.offset.checkpoint.interval.ms", kind: kLong, min: 0, max: maxInt32, field: func(c *Config) any { return &c.LogFlushOffsetCheckpointIntervalMs }},

	{name: "socket.request.max.bytes", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.SocketRequestMaxBytes }},
	{name: "connections.max.idle.ms", kind: kLong, min: -1, max: maxInt64, field: func(c *Config) any { return &c.ConnectionsMaxIdleMs }},
	{name: "queued.max.requests", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.QueuedMaxRequests }},
	{name: "fetch.max.bytes", kind: kInt, min: 1024, max: maxInt32, field: func(c *Config) any { return &c.FetchMaxBytes }},

	{name: "offsets.topic.num.partitions", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.OffsetsTopicNumPartitions }},
	{name: "offsets.topic.replication.factor", kind: kInt, min: 1, max: math.MaxInt16, field: func(c *Config) any { return &c.OffsetsTopicReplicationFactor }},
	{name: "offsets.retention.minutes", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.OffsetsRetentionMinutes }},
	{name: "offsets.retention.check.interval.ms", kind: kLong, min: 1, max: maxInt64, field: func(c *Config) any { return &c.OffsetsRetentionCheckIntervalMs }},
	{name: "offset.metadata.max.bytes", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.OffsetMetadataMaxBytes }},
	{name: "group.initial.rebalance.delay.ms", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.GroupInitialRebalanceDelayMs }},
	{name: "group.min.session.timeout.ms", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.GroupMinSessionTimeoutMs }},
	{name: "group.max.session.timeout.ms", kind: kInt, min: 0, max: maxInt32, field: func(c *Config) any { return &c.GroupMaxSessionTimeoutMs }},
	{name: "group.max.size", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.GroupMaxSize }},

	{name: "brokkr.coordination", kind: kString, field: func(c *Config) any { return &c.Coordination }, doc: "etcd-embedded | etcd://host:port,... | zk://host:port,.../chroot | gossip://seed:port,..."},
	{name: "zookeeper.connect", kind: kString, field: func(c *Config) any { return &c.ZookeeperConnect }},
	{name: "zookeeper.session.timeout.ms", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.ZookeeperSessionTimeoutMs }},
	{name: "zookeeper.connection.timeout.ms", kind: kInt, min: 1, max: maxInt32, field: func(c *Config) any { return &c.ZookeeperConnectionTimeoutMs }},
	{name: "brokkr.coordination.session.timeout.ms", kind: kInt, min: 100, max: maxInt32, field: func(c *Config) any { return &c.CoordinationSessionTimeoutMs }},
	{name: "brokkr.network.sendfile", kind: kBool, field: func(c *Config) any { return &c.NetworkSendfile }},
	{name: "brokkr.gossip.bind", kind: kString, field: func(c *Config) any { return &c.GossipBind }},
	{name: "brokkr.plugin.dir", kind: kString, field: func(c *Config) any { return &c.PluginDir }},
	{name: "brokkr.plugin.call.timeout.ms", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.PluginCallTimeoutMs }},
	{name: "brokkr.plugin.start.timeout.ms", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.PluginStartTimeoutMs }},
	{name: "brokkr.plugin.health.interval.ms", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.PluginHealthIntervalMs }},
	{name: "brokkr.plugin.restart.backoff.ms", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.PluginRestartBackoffMs }},
	{name: "brokkr.plugin.restart.backoff.max.ms", kind: kLong, min: 1, max: maxInt32, field: func(c *Config) any { return &c.PluginRestartBackoffMaxMs }},
	{name: "brokkr.admin.listener", kind: kString, field: func(c *Config) any { return &c.AdminListen }},
}

// ignored are Kafka broker keys that an existing server.properties may hold
// and that do not apply to Brokkr. They are accepted and have no effect.
var ignored = []string{
	"num.network.threads", "num.io.threads", "background.threads", "num.replica.fetchers",
	"socket.send.buffer.bytes", "socket.receive.buffer.bytes", "num.recovery.threads.per.data.dir",
	"transaction.state.log.replication.factor", "transaction.state.log.min.isr",
	"transaction.state.log.num.partitions",
	"log.cleaner.dedupe.buffer.size",
	"log.cleaner.io.buffer.size", "zookeeper.connection.timeout", "listener.security.protocol.map",
	"inter.broker.listener.name", "security.inter.broker.protocol", "controlled.shutdown.enable",
	"auto.leader.rebalance.enable", "jmx.port", "log.preallocate",
}

var byName = func() map[string]*key {
	m := make(map[string]*key, len(keys))
	for i := range keys {
		m[keys[i].name] = &keys[i]
	}
	return m
}()

func isIgnored(name string) bool {
	for _, n := range ignored {
		if n == name {
			return true
		}
	}
	return false
}

// Load reads a properties file (path may be "" for none) and applies the
// overrides ("key=value", as given to --override) on top of DefaultConfig.
// Every problem is reported, one per line, each naming where it is.
func Load(path string, overrides []string) (Config, error) {
	var props []Property
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		p, err := ParseProperties(path, string(data))
		if err != nil {
			return Config{}, err
		}
		props = p
	}
	for _, o := range overrides {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return Config{}, fmt.Errorf("--override %q: want key=value", o)
		}
		props = append(props, Property{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)})
	}
	c := DefaultConfig()
	err := c.Apply(props)
	return c, err
}

// Apply sets the given properties (later ones win) and then validates.
func (c *Config) Apply(props []Property) error {
	var errs []error
	if c.Set == nil {
		c.Set = map[string]Property{}
	}
	for _, p := range props {
		k, ok := byName[p.Key]
		if !ok {
			if isIgnored(p.Key) {
				c.Set[p.Key] = p
				continue
			}
			msg := fmt.Sprintf("%s: unknown key %q", p.Where(), p.Key)
			if s := suggest(p.Key); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		v, err := k.parse(p.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %v", p.Where(), p.Key, err))
			continue
		}
		c.Set[p.Key] = p // a later setting of the same key wins, as in Kafka
		if k.field != nil {
			setField(k.field(c), v)
		}
	}
	errs = append(errs, c.resolveSynonyms()...)
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// resolveSynonyms applies Kafka's precedence among time synonyms and checks
// that node.id and broker.id agree.
func (c *Config) resolveSynonyms() []error {
	var errs []error
	num := func(name string) (int64, bool) {
		p, ok := c.Set[name]
		if !ok {
			return 0, false
		}
		v, _ := strconv.ParseInt(p.Value, 10, 64)
		return v, true
	}
	if v, ok := num("log.retention.ms"); ok {
		c.LogRetentionMs = v
	} else if v, ok := num("log.retention.minutes"); ok {
		c.LogRetentionMs = minutesToMs(v)
	} else if v, ok := num("log.retention.hours"); ok {
		c.LogRetentionMs = minutesToMs(v * 60)
		if v < 0 {
			c.LogRetentionMs = -1
		}
	}
	if v, ok := num("log.roll.ms"); ok {
		c.LogRollMs = v
	} else if v, ok := num("log.roll.hours"); ok {
		c.LogRollMs = v * 3600 * 1000
	}
	n, okN := c.Set["node.id"]
	b, okB := c.Set["broker.id"]
	if okN && okB && strings.TrimSpace(n.Value) != strings.TrimSpace(b.Value) {
		errs = append(errs, fmt.Errorf("%s: broker.id=%s differs from node.id=%s set at %s; set one of them", b.Where(), b.Value, n.Value, n.Where()))
	}
	return errs
}

func minutesToMs(m int64) int64 {
	if m < 0 {
		return -1
	}
	return m * 60 * 1000
}

func (k *key) parse(s string) (any, error) {
	s = strings.TrimSpace(s)
	switch k.kind {
	case kInt, kLong:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		if v < k.min || v > k.max {
			return nil, fmt.Errorf("%d is out of range [%d, %d]", v, k.min, k.max)
		}
		return v, nil
	case kDouble:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		if v < float64(k.min) || v > float64(k.max) && k.max != maxInt64 {
			return nil, fmt.Errorf("%g is out of range [%d, %d]", v, k.min, k.max)
		}
		return v, nil
	case kBool:
		switch strings.ToLower(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not true or false", s)
	case kList:
		var out []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		return out, nil
	default:
		if len(k.enum) > 0 {
			norm := strings.ReplaceAll(strings.ToLower(s), " ", "")
			for _, e := range k.enum {
				if norm == e {
					return norm, nil
				}
			}
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(k.enum, ", "))
		}
		return s, nil
	}
}

// Validate checks the whole configuration and reports every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		where := "config"
		if p, ok := c.Set[name]; ok {
			where = p.Where()
		}
		errs = append(errs, fmt.Errorf("%s: %s: %s", where, name, fmt.Sprintf(format, a...)))
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "at least one listener is required")
	}
	for _, l := range c.Listeners {
		if err := checkListener(l); err != nil {
			bad("listeners", "%v", err)
		}
	}
	for _, l := range c.AdvertisedListeners {
		if err := checkListener(l); err != nil {
			bad("advertised.listeners", "%v", err)
		}
	}
	if len(c.LogDirs) == 0 {
		bad("log.dirs", "at least one log directory is required")
	}
	if c.PluginRestartBackoffMs > c.PluginRestartBackoffMaxMs {
		bad("brokkr.plugin.restart.backoff.ms", "%d is above brokkr.plugin.restart.backoff.max.ms=%d", c.PluginRestartBackoffMs, c.PluginRestartBackoffMaxMs)
	}
	if c.MessageMaxBytes > c.SocketRequestMaxBytes {
		bad("message.max.bytes", "%d is larger than socket.request.max.bytes=%d", c.MessageMaxBytes, c.SocketRequestMaxBytes)
	}
	if !strings.HasPrefix(c.Coordination, "etcd") && !strings.HasPrefix(c.Coordination, "zk://") && !strings.HasPrefix(c.Coordination, "gossip://") {
		bad("brokkr.coordination", "%q is not etcd-embedded, etcd://..., zk://... or gossip://...", c.Coordination)
	}
	if c.Coordination != "etcd-embedded" && c.ZookeeperConnect != "" && !strings.HasPrefix(c.Coordination, "zk://") {
		bad("zookeeper.connect", "is set but brokkr.coordination=%s selects another backend", c.Coordination)
	}
	if c.GroupMaxSessionTimeoutMs < c.GroupMinSessionTimeoutMs {
		bad("group.max.session.timeout.ms", "%d is below group.min.session.timeout.ms=%d", c.GroupMaxSessionTimeoutMs, c.GroupMinSessionTimeoutMs)
	}
	return errors.Join(errs...)
}

// CoordinationSpec is the backend spec to open: zookeeper.connect alone
// selects ZooKeeper, as a Kafka ZK-mode file expects.
func (c *Config) CoordinationSpec() string {
	if _, set := c.Set["brokkr.coordination"]; !set && c.ZookeeperConnect != "" {
		return "zk://" + c.ZookeeperConnect
	}
	return c.Coordination
}

func checkListener(l string) error {
	name, rest, ok := strings.Cut(l, "://")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME://host:port", l)
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return fmt.Errorf("%q: missing :port", l)
	}
	p, err := strconv.Atoi(rest[i+1:])
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port %q", l, rest[i+1:])
	}
	return nil
}

// Keys returns the names of every accepted key, sorted.
func Keys() []string {
	out := make([]string, 0, len(keys)+len(ignored))
	for _, k := range keys {
		out = append(out, k.name)
	}
	out = append(out, ignored...)
	sort.Strings(out)
	return out
}

// suggest returns the known key closest to name, if it is close.
func suggest(name string) string {
	best, bestD := "", 4
	for _, k := range Keys() {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// BrokerEntry is one broker setting as DescribeConfigs reports it.
type BrokerEntry struct {
	Name   string
	Value  string
	Source ConfigSource
}

// DescribeBroker lists the broker keys Brokkr understands with their
// effective values, sorted by name.
func (c *Config) DescribeBroker() []BrokerEntry {
	var out []BrokerEntry
	for _, k := range keys {
		var v string
		switch {
		case k.field != nil:
			v = fieldString(k.field(c))
		case k.name == "log.retention.ms":
			v = strconv.FormatInt(c.LogRetentionMs, 10)
		case k.name == "log.roll.ms":
			v = strconv.FormatInt(c.LogRollMs, 10)
		default:
			p, ok := c.Set[k.name]
			if !ok {
				continue
			}
			v = p.Value
		}
		src := SourceDefault
		if _, ok := c.Set[k.name]; ok {
			src = SourceStaticBroker
		}
		out = append(out, BrokerEntry{Name: k.name, Value: v, Source: src})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
