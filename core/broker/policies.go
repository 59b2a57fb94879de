package broker

// Policy resolution and policy status.
//
// A topic picks its policies with configs: cleanup.policy (delete |
// compact | compact,delete, as in Kafka) says which of retention and
// compaction run; brokkr.retention.plugin and brokkr.compaction.plugin name
// a plugin binary in brokkr.plugin.dir instead of the built-in policy. The
// broker never resolves a name itself: a PolicySource (the brokkr package
// adapts plugins/host to it) answers, and it is the allow-list. Configs
// naming a plugin it refuses (or any plugin when there is no PolicySource,
// i.e. brokkr.plugin.dir is unset) are refused at CreateTopics and
// (Incremental)AlterConfigs with INVALID_CONFIG.
//
// Status: every retention check and every cleaning records what happened
// per partition (policyState). Faults (a failing, hanging or lying policy)
// delete nothing, are counted per topic, policy and kind, logged once per
// change, and cleared by the next good answer. Operators read the status
// through DescribeConfigs with brokkr.status.* names (32_describe_configs.go)
// and the admin /metrics.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/plugins"
	"github.com/twmb/franz-go/pkg/kerr"
)

// PolicyKind is "retention" or "compaction".
type PolicyKind string

// The two kinds of policy.
const (
	KindRetention  PolicyKind = "retention"
	KindCompaction PolicyKind = "compaction"
)

// PolicySource resolves the plugin names topic configs give. Names are plain
// file names in brokkr.plugin.dir; the source is the allow-list.
type PolicySource interface {
	// Check reports whether a topic config may name the plugin (nil) or why
	// not, in one line naming the problem.
	Check(kind PolicyKind, name string) error
	// Retention returns the named retention policy. An error (the plugin is
	// not allowed, crashed and is restarting, ...) means nothing is deleted.
	Retention(name string) (plugins.RetentionPolicy, error)
	// Compaction returns the named compaction policy.
	Compaction(name string) (plugins.CompactionPolicy, error)
}

// checkPolicyConfigs vets the brokkr.* entries of a topic's new overrides:
// a plugin named by brokkr.retention.plugin / brokkr.compaction.plugin must
// be allowed by the PolicySource, and brokkr.status.* names are reserved
// for read-only status. The error is a controller.Error with
// INVALID_CONFIG and a one-line message.
func (b *Broker) checkPolicyConfigs(cfgs map[string]string) error {
	var msgs []string
	names := make([]string, 0, len(cfgs))
	for n := range cfgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := strings.TrimSpace(cfgs[n])
		var kind PolicyKind
		switch {
		case strings.HasPrefix(n, config.StatusPrefix):
			msgs = append(msgs, fmt.Sprintf("%s: brokkr.status.* names are read-only status, not configs", n))
			continue
		case n == config.RetentionPluginKey:
			kind = KindRetention
		case n == config.CompactionPluginKey:
			kind = KindCompaction
		default:
			continue
		}
		if v == "" {
			continue // empty = the built-in policy
		}
		if err := checkPluginName(v); err != nil {
			msgs = append(msgs, fmt.Sprintf("%s=%s: %v", n, v, err))
			continue
		}
		if b.Policies == nil {
			msgs = append(msgs, fmt.Sprintf("%s=%s: plugins are disabled on this broker (brokkr.plugin.dir is not set)", n, v))
			continue
		}
		if err := b.Policies.Check(kind, v); err != nil {
			msgs = append(msgs, fmt.Sprintf("%s=%s: %v", n, v, err))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &controller.Error{Err: kerr.InvalidConfig, Message: strings.Join(msgs, "; ")}
}

// checkPluginName refuses what cannot be a plain file name in the plugin
// dir (a path, "..", hidden files), before any PolicySource sees it.
func checkPluginName(name string) error {
	switch {
	case strings.ContainsAny(name, `/\`):
		return errors.New("a plugin is named by its file name in brokkr.plugin.dir, not by a path")
	case name == "." || name == ".." || strings.HasPrefix(name, "."):
		return errors.New("not a plugin file name")
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return errors.New("control characters in a plugin name")
	}
	return nil
}

// cleanupPolicyFlags says which of retention and compaction a topic's
// cleanup.policy runs.
type cleanupPolicyFlags struct{ Delete, Compact bool }

// cleanupPolicy parses the effective cleanup.policy as Kafka does (a list
// of delete and compact; empty or broken means delete: config validation
// keeps broken values out).
func cleanupPolicy(cfg map[string]string) cleanupPolicyFlags {
	var cp cleanupPolicyFlags
	for _, f := range strings.Split(cfg["cleanup.policy"], ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "delete":
			cp.Delete = true
		case "compact":
			cp.Compact = true
		case "":
		default:
			return cleanupPolicyFlags{Delete: true}
		}
	}
	if !cp.Delete && !cp.Compact {
		cp.Delete = true
	}
	return cp
}

// retentionPolicyFor resolves a topic's retention policy. It returns the
// policy's display name even when resolution fails; nil policy with nil
// error means "no retention" (the Broker has no built-in one).
func (b *Broker) retentionPolicyFor(cfg map[string]string) (plugins.RetentionPolicy, string, error) {
	return resolvePolicy(b, cfg, config.RetentionPluginKey, b.RetentionPolicy, b.retentionDefaultName(), func(s PolicySource, n string) (plugins.RetentionPolicy, error) { return s.Retention(n) })
}

// compactionPolicyFor resolves a topic's compaction policy (the Broker's
// built-in one unless brokkr.compaction.plugin names a plugin). Nil policy
// with nil error: no compaction (the Broker has no built-in one).
func (b *Broker) compactionPolicyFor(cfg map[string]string) (plugins.CompactionPolicy, string, error) {
	return resolvePolicy(b, cfg, config.CompactionPluginKey, b.CompactionPolicy, b.compactionDefaultName(), func(s PolicySource, n string) (plugins.CompactionPolicy, error) { return s.Compaction(n) })
}

// resolvePolicy is retentionPolicyFor and compactionPolicyFor: the
// built-in policy (builtinName "none" when it is nil) unless cfg[key]
// names a plugin, which the PolicySource resolves with get.
func resolvePolicy[P comparable](b *Broker, cfg map[string]string, key string, builtin P, builtinName string, get func(PolicySource, string) (P, error)) (P, string, error) {
	var none P
	name := strings.TrimSpace(cfg[key])
	if name == "" {
		return builtin, builtinName, nil
	}
	if err := checkPluginName(name); err != nil {
		return none, name, err
	}
	if b.Policies == nil {
		return none, name, errors.New("plugins are disabled on this broker (brokkr.plugin.dir is not set)")
	}
	p, err := get(b.Policies, name)
	if err != nil {
		return none, name, err
	}
	if p == none {
		return none, name, errors.New("policy source returned no policy")
	}
	return p, name, nil
}

// effectiveConfig is a partition's effective topic config by Kafka name,
// brokkr.* plugin settings included, as policies see it. The caller owns
// the returned map. The merge is cached per topic while its overrides map
// stays the same (applyTopicConfig installs a new map on every change).
func (b *Broker) effectiveConfig(p *partition) map[string]string {
	p.cfgMu.RLock()
	overrides := p.overrides
	p.cfgMu.RUnlock()
	id := reflect.ValueOf(overrides).UnsafePointer()
	b.pol.mu.Lock()
	c, ok := b.pol.cfgCache[p.topic]
	b.pol.mu.Unlock()
	if !ok || c.id != id {
		c = cachedConfig{id: id, cfg: b.mergedConfig(overrides)}
		b.pol.mu.Lock()
		if b.pol.cfgCache == nil {
			b.pol.cfgCache = map[string]cachedConfig{}
		}
		b.pol.cfgCache[p.topic] = c
		b.pol.mu.Unlock()
	}
	return maps.Clone(c.cfg)
}

// mergedConfig is a topic's effective config by Kafka name: overrides over
// the broker's defaults.
func (b *Broker) mergedConfig(overrides map[string]string) map[string]string {
	cfg := map[string]string{}
	for _, e := range b.Config.DescribeTopic(overrides) {
		cfg[e.Name] = e.Value
	}
	return cfg
}

// cachedConfig is a topic's merged config and the overrides map it came
// from (by identity; never written after it is installed).
type cachedConfig struct {
	id  unsafe.Pointer
	cfg map[string]string
}

// hostedPartitions is a snapshot of the partitions this broker hosts, in
// topic and partition order.
func (b *Broker) hostedPartitions() []*partition {
	b.pmu.RLock()
	parts := make([]*partition, 0, len(b.parts))
	for _, p := range b.parts {
		parts = append(parts, p)
	}
	b.pmu.RUnlock()
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].topic != parts[j].topic {
			return parts[i].topic < parts[j].topic
		}
		return parts[i].index < parts[j].index
	})
	return parts
}

// RetentionStatus is the retention side of a partition's policy status.
type RetentionStatus struct {
	Policy       string `json:"policy"`
	LastCheckMs  int64  `json:"last_check_ms,omitempty"`
	LastDecision string `json:"last_decision,omitempty"` // the policy's reason, last good check
	LastDeleteMs int64  `json:"last_delete_ms,omitempty"`
	LastDeleted  int    `json:"last_deleted_segments,omitempty"`
	Fault        string `json:"fault,omitempty"` // the current fault; "" when healthy
	FaultMs      int64  `json:"fault_ms,omitempty"`
	Faults       int64  `json:"faults,omitempty"` // faults since the broker started
}

// CleanerStatus is the log cleaner's side of a partition's policy status.
type CleanerStatus struct {
	Policy              string  `json:"policy"`
	DirtyBytes          int64   `json:"dirty_bytes"`
	CleanBytes          int64   `json:"clean_bytes"`
	DirtyRatio          float64 `json:"dirty_ratio"`
	LastCheckMs         int64   `json:"last_check_ms,omitempty"`
	LastCleanMs         int64   `json:"last_clean_ms,omitempty"`
	LastCleanResult     string  `json:"last_clean_result,omitempty"`
	Cleanings           int64   `json:"cleanings,omitempty"`
	LastError           string  `json:"last_error,omitempty"`
	LastErrorMs         int64   `json:"last_error_ms,omitempty"`
	ConsecutiveFailures int     `json:"consecutive_failures,omitempty"`
	NextAttemptMs       int64   `json:"next_attempt_ms,omitempty"` // back-off after a failure
}

// PartitionStatus is what brokkr.status.partition.<n> answers, as JSON.
type PartitionStatus struct {
	Partition     int32            `json:"partition"`
	CleanupPolicy string           `json:"cleanup_policy"`
	Retention     *RetentionStatus `json:"retention,omitempty"`
	Cleaner       *CleanerStatus   `json:"cleaner,omitempty"`
}

type faultKey struct {
	Topic, Policy string
	Kind          PolicyKind
}

// policyState is the broker's policy bookkeeping. The zero value is ready.
type policyState struct {
	mu     sync.Mutex
	parts  map[tp]*PartitionStatus
	faults map[faultKey]int64
	// cleaning holds the partitions a cleaner thread is working on.
	cleaning map[tp]bool
	// cfgCache holds each topic's merged config (effectiveConfig).
	cfgCache map[string]cachedConfig

	cleanerDeadThreads atomic.Int64
	cleanerPanics      atomic.Int64
	cleanerLastRunMs   atomic.Int64 // end of the last cleaner pass, Unix ms; 0 = never
	cleanerStartMs     atomic.Int64
	cleanings          atomic.Int64
	cleanFailures      atomic.Int64
	maxDirtyPermille   atomic.Int64 // max dirty ratio of the last pass, in 1/1000
}

// status returns the partition's status record, creating it. Call with
// s.mu held.
func (s *policyState) status(k tp) *PartitionStatus {
	if s.parts == nil {
		s.parts = map[tp]*PartitionStatus{}
	}
	st, ok := s.parts[k]
	if !ok {
		st = &PartitionStatus{Partition: k.index}
		s.parts[k] = st
	}
	return st
}

// prune forgets the status of partitions no longer hosted.
func (s *policyState) prune(hosted []*partition) {
	keep := make(map[tp]bool, len(hosted))
	for _, p := range hosted {
		keep[tp{p.topic, p.index}] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	topics := map[string]bool{}
	for k := range keep {
		topics[k.topic] = true
	}
	for k := range s.parts {
		if !keep[k] {
			delete(s.parts, k)
		}
	}
	for t := range s.cfgCache {
		if !topics[t] {
			delete(s.cfgCache, t)
		}
	}
}

// countFault counts one fault for the metrics.
func (s *policyState) countFault(topic, policy string, kind PolicyKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults == nil {
		s.faults = map[faultKey]int64{}
	}
	s.faults[faultKey{topic, policy, kind}]++
}

// PolicyFault is one row of brokkr_policy_faults_total.
type PolicyFault struct {
	Topic, Policy string
	Kind          PolicyKind
	Count         int64
}

// PolicyFaults are the policy faults counted since start, by topic, policy
// and kind, sorted.
func (b *Broker) PolicyFaults() []PolicyFault {
	s := &b.pol
	s.mu.Lock()
	out := make([]PolicyFault, 0, len(s.faults))
	for k, n := range s.faults {
		out = append(out, PolicyFault{Topic: k.Topic, Policy: k.Policy, Kind: k.Kind, Count: n})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, c := out[i], out[j]
		if a.Topic != c.Topic {
			return a.Topic < c.Topic
		}
		if a.Policy != c.Policy {
			return a.Policy < c.Policy
		}
		return a.Kind < c.Kind
	})
	return out
}

// PartitionStatuses returns a copy of the policy status of topic's hosted
// partitions (all topics when topic is ""), by topic and partition.
func (b *Broker) PartitionStatuses(topic string) map[string][]PartitionStatus {
	out := map[string][]PartitionStatus{}
	for _, p := range b.hostedPartitions() {
		if topic != "" && p.topic != topic {
			continue
		}
		out[p.topic] = append(out[p.topic], b.partitionStatus(p))
	}
	return out
}

// partitionStatus is a copy of one partition's status, with its current
// cleanup.policy and the policies it would use.
func (b *Broker) partitionStatus(p *partition) PartitionStatus {
	cfg := b.effectiveConfig(p)
	b.pol.mu.Lock()
	st := *b.pol.status(tp{p.topic, p.index})
	if st.Retention != nil {
		r := *st.Retention
		st.Retention = &r
	}
	if st.Cleaner != nil {
		c := *st.Cleaner
		st.Cleaner = &c
	}
	b.pol.mu.Unlock()
	st.CleanupPolicy = cfg["cleanup.policy"]
	cp := cleanupPolicy(cfg)
	if cp.Delete && st.Retention == nil {
		st.Retention = &RetentionStatus{Policy: policyName(cfg, config.RetentionPluginKey, b.retentionDefaultName())}
	}
	if cp.Compact && st.Cleaner == nil {
		st.Cleaner = &CleanerStatus{Policy: policyName(cfg, config.CompactionPluginKey, b.compactionDefaultName())}
	}
	if !cp.Delete {
		st.Retention = nil
	}
	if !cp.Compact {
		st.Cleaner = nil
	}
	return st
}

func policyName(cfg map[string]string, key, def string) string {
	if n := strings.TrimSpace(cfg[key]); n != "" {
		return n
	}
	return def
}

func (b *Broker) retentionDefaultName() string {
	if b.RetentionPolicy == nil {
		return "none"
	}
	return b.RetentionPolicy.Info().Name
}

func (b *Broker) compactionDefaultName() string {
	if b.CompactionPolicy == nil {
		return "none"
	}
	return b.CompactionPolicy.Info().Name
}

// retentionFault records a retention fault: counted every time, logged
// when it differs from the partition's current fault.
func (b *Broker) retentionFault(p *partition, policy string, err error, now time.Time) {
	b.stats.RetentionFailures.Add(1)
	b.pol.countFault(p.topic, policy, KindRetention)
	msg := oneLineErr(err)
	b.pol.mu.Lock()
	st := b.pol.status(tp{p.topic, p.index})
	if st.Retention == nil || st.Retention.Policy != policy {
		st.Retention = &RetentionStatus{Policy: policy, Faults: faultsOf(st.Retention)}
	}
	r := st.Retention
	changed := r.Fault != msg
	r.Fault, r.FaultMs, r.LastCheckMs = msg, now.UnixMilli(), now.UnixMilli()
	r.Faults++
	b.pol.mu.Unlock()
	if changed {
		b.log.Warn("retention policy fault; nothing deleted", "topic", p.topic, "partition", p.index, "policy", policy, "err", msg)
	} else {
		b.log.Debug("retention policy fault persists; nothing deleted", "topic", p.topic, "partition", p.index, "policy", policy)
	}
}

func faultsOf(r *RetentionStatus) int64 {
	if r == nil {
		return 0
	}
	return r.Faults
}

// retentionGood records a good retention decision, clearing any fault.
func (b *Broker) retentionGood(p *partition, policy, reason string, deleted int, now time.Time) {
	b.pol.mu.Lock()
	st := b.pol.status(tp{p.topic, p.index})
	if st.Retention == nil || st.Retention.Policy != policy {
		st.Retention = &RetentionStatus{Policy: policy, Faults: faultsOf(st.Retention)}
	}
	r := st.Retention
	cleared := r.Fault
	r.Fault, r.FaultMs = "", 0
	r.LastCheckMs, r.LastDecision = now.UnixMilli(), reason
	if deleted > 0 {
		r.LastDeleteMs, r.LastDeleted = now.UnixMilli(), deleted
	}
	b.pol.mu.Unlock()
	if cleared != "" {
		b.log.Info("retention policy healthy again", "topic", p.topic, "partition", p.index, "policy", policy, "previous_fault", cleared)
	}
}

// oneLineErr renders an error on one line, bounded, for logs and status.
func oneLineErr(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// retentionCtx bounds one policy call.
func retentionCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

// TopicPolicyStatus is what brokkr.status.policy answers, as JSON.
type TopicPolicyStatus struct {
	Broker        int32  `json:"broker"`
	CleanupPolicy string `json:"cleanup_policy"`
	Retention     string `json:"retention"`  // policy name (built-in or plugin file)
	Compaction    string `json:"compaction"` // policy name
	Plugins       bool   `json:"plugins"`    // brokkr.plugin.dir is set on this broker
}

// statusEntry answers one brokkr.status.* name for a topic, as compact
// JSON; false when the name is not a status name or the partition it
// names is not hosted here.
func (b *Broker) statusEntry(ctx context.Context, topic string, overrides map[string]string, name string) (string, bool) {
	key, ok := strings.CutPrefix(name, config.StatusPrefix)
	if !ok {
		return "", false
	}
	var v any
	switch {
	case key == "policy":
		cfg := b.mergedConfig(overrides)
		v = TopicPolicyStatus{
			Broker: b.Config.NodeID, CleanupPolicy: cfg["cleanup.policy"], Plugins: b.Policies != nil,
			Retention:  policyName(cfg, config.RetentionPluginKey, b.retentionDefaultName()),
			Compaction: policyName(cfg, config.CompactionPluginKey, b.compactionDefaultName()),
		}
	case key == "partitions":
		sts := []PartitionStatus{}
		for _, p := range b.hostedPartitions() {
			if p.topic == topic {
				sts = append(sts, b.partitionStatus(p))
			}
		}
		v = sts
	case strings.HasPrefix(key, "partition."):
		n, err := strconv.ParseInt(strings.TrimPrefix(key, "partition."), 10, 32)
		if err != nil {
			return "", false
		}
		p := b.partitionFor(topic, int32(n))
		if p == nil {
			return "", false
		}
		v = b.partitionStatus(p)
	case key == "retention.plan":
		plans := []RetentionPlan{}
		now := time.Now()
		for _, p := range b.hostedPartitions() {
			if p.topic == topic {
				plans = append(plans, b.planRetention(ctx, p, now, diskUsage{}))
			}
		}
		v = plans
	default:
		return "", false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(out), true
}
