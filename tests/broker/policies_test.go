package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/broker"
	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runBrokkr runs the real binary's CLI (not serve) against a broker and
// returns its stdout; a non-zero exit fails the test.
func runBrokkr(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testbroker.Binary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("brokkr %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// consumeAll reads every record of partition 0 from the log start to the
// current end offset.
func consumeAll(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	end := endOffset(t, addr, topic, 0)
	ctx := ctxFor(t, 20*time.Second)
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	var out []*kgo.Record
	for {
		if len(out) > 0 && out[len(out)-1].Offset >= end-1 {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: time-out at %d records (end %d)", topic, len(out), end)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < end {
				out = append(out, r)
			}
		})
	}
}

type keptRecord struct {
	key, value string
	tombstone  bool
}

// TestCompactionKeepsLastPerKey: on a compacted topic with small segments
// and min.cleanable.dirty.ratio=0.01, the real broker's cleaner rewrites the
// log so that exactly the last record per key remains (tombstones included,
// delete.retention.ms not passed), at its original offset; `brokkr topic
// describe` shows a successful cleaning; /metrics shows no dead cleaner
// thread and counts the cleanings.
func TestCompactionKeepsLastPerKey(t *testing.T) {
	admin := freeAddr(t)
	b := testbroker.Start(t, "log.cleaner.backoff.ms=100", "brokkr.admin.listener="+admin)
	seg, ratio, compact := "1024", "0.01", "compact"
	createTopic(t, b.Addr, "cmp", 1, map[string]*string{"cleanup.policy": &compact, "segment.bytes": &seg, "min.cleanable.dirty.ratio": &ratio})

	cl := newClient(t, b.Addr, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic("cmp"))
	ctx := ctxFor(t, 40*time.Second)
	last := map[string]int64{}
	want := map[int64]keptRecord{}
	produce := func(key string, value []byte) {
		t.Helper()
		res := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: value})
		r, err := res.First()
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := last[key]; ok {
			delete(want, o)
		}
		last[key] = r.Offset
		want[r.Offset] = keptRecord{key: key, value: string(value), tombstone: value == nil}
	}
	// 20 keys, 8 rounds of overwrites; every 5th key deleted (tombstone)
	// in round 6, two of those written again in round 7.
	pad := strings.Repeat("x", 60)
	for round := 0; round < 8; round++ {
		for k := 0; k < 20; k++ {
			key := fmt.Sprintf("key-%02d", k)
			switch {
			case round == 6 && k%5 == 0:
				produce(key, nil)
			case round == 7 && k%5 == 0 && k >= 10:
				produce(key, []byte(fmt.Sprintf("again-%d-%s", k, pad)))
			case round == 7 && k%5 == 0:
				// stays deleted
			default:
				produce(key, []byte(fmt.Sprintf("r%d-%s", round, pad)))
			}
		}
	}
	// Unique filler keys push everything above into cleanable (non-active)
	// segments; they all survive.
	for i := 0; i < 40; i++ {
		produce(fmt.Sprintf("filler-%02d", i), []byte(pad))
	}
	end := endOffset(t, b.Addr, "cmp", 0)

	produced := time.Now()
	var got []*kgo.Record
	testbroker.Eventually(t, 30*time.Second, "the cleaner reduced cmp to the last record per key", func() bool {
		got = consumeAll(t, b.Addr, "cmp")
		// Only whole segments below the active one are cleaned; what the
		// active segment holds may still carry overwritten keys only if
		// they are filler (unique), so the count must match exactly.
		return len(got) == len(want)
	})
	t.Logf("%d records reduced to %d, %v after the last produce", end, len(got), time.Since(produced).Round(time.Millisecond))
	for _, r := range got {
		w, ok := want[r.Offset]
		if !ok {
			t.Fatalf("offset %d (key %s) survived but is not the last for its key", r.Offset, r.Key)
		}
		if string(r.Key) != w.key || string(r.Value) != w.value || (r.Value == nil) != w.tombstone {
			t.Fatalf("offset %d: got key %q value %q (nil=%v), want %+v", r.Offset, r.Key, r.Value, r.Value == nil, w)
		}
	}
	if e := endOffset(t, b.Addr, "cmp", 0); e != end {
		t.Fatalf("end offset moved from %d to %d", end, e)
	}

	var dts []struct {
		Partitions []struct {
			Status *broker.PartitionStatus `json:"status"`
		} `json:"partitions"`
		Policy *broker.TopicPolicyStatus `json:"policy"`
	}
	out := runBrokkr(t, "topic", "describe", "cmp", "--json", "--brokers", b.Addr)
	if err := json.Unmarshal([]byte(out), &dts); err != nil || len(dts) != 1 || len(dts[0].Partitions) != 1 {
		t.Fatalf("describe --json: %v\n%s", err, out)
	}
	st := dts[0].Partitions[0].Status
	if st == nil || st.Cleaner == nil || st.Cleaner.LastCleanMs == 0 || st.Cleaner.Cleanings == 0 || st.Cleaner.Policy != "builtin.compaction" || st.Cleaner.ConsecutiveFailures != 0 {
		t.Fatalf("describe shows no successful cleaning: %+v\n%s", st, out)
	}
	if p := dts[0].Policy; p == nil || p.CleanupPolicy != "compact" || p.Compaction != "builtin.compaction" {
		t.Fatalf("describe policy %+v", p)
	}
	table := runBrokkr(t, "topic", "describe", "cmp", "--brokers", b.Addr)
	if !strings.Contains(table, "COMPACTION POLICY  builtin.compaction") || !strings.Contains(table, "kept ") {
		t.Fatalf("describe table lacks the cleaner status:\n%s", table)
	}

	// An all-configs describe (what kafka-configs sends) shows no status.
	rcs, err := newAdmin(t, b.Addr).DescribeTopicConfigs(ctxFor(t, 10*time.Second), "cmp")
	if err != nil || len(rcs) != 1 || len(rcs[0].Configs) == 0 {
		t.Fatalf("describe configs: %v %+v", err, rcs)
	}
	for _, c := range rcs[0].Configs {
		if strings.HasPrefix(c.Key, "brokkr.status.") {
			t.Fatalf("an all-configs describe includes %s", c.Key)
		}
	}

	m := scrapeMetrics(t, admin)
	if v, ok := m["kafka_log_logcleaner_deadthreadcount"]; !ok || v != 0 {
		t.Fatalf("kafka_log_logcleaner_deadthreadcount = %v (present %v)", v, ok)
	}
	if m["brokkr_log_cleaner_cleanings_total"] < 1 {
		t.Fatalf("no cleanings counted: %v", m["brokkr_log_cleaner_cleanings_total"])
	}
	if _, ok := m[`brokkr_log_cleaner_dirty_bytes{partition="0",topic="cmp"}`]; !ok {
		t.Fatal("no brokkr_log_cleaner_dirty_bytes for cmp-0")
	}
	if v := m["kafka_log_logcleanermanager_uncleanable_partitions_count"]; v != 0 {
		t.Fatalf("uncleanable partitions: %v", v)
	}
	assertNoPanic(t, b)
}

// TestRetentionPlanIsADryRun: `brokkr retention plan` on a time-retention
// topic lists the old segments (offsets, sizes, timestamps), the new log
// start and the policy's reason; a consume afterwards still starts at
// offset 0 with every record: the plan deleted nothing.
func TestRetentionPlanIsADryRun(t *testing.T) {
	// Retention itself checks once an hour: only the plan could delete.
	b := testbroker.Start(t, "log.retention.check.interval.ms=3600000", "offsets.topic.num.partitions=1")
	seg, hour := "4096", "3600000"
	createTopic(t, b.Addr, "aged", 1, map[string]*string{"segment.bytes": &seg, "retention.ms": &hour})
	cl := newClient(t, b.Addr, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	old := time.Now().Add(-2 * time.Hour)
	produceAt(t, cl, "aged", 20, old)
	produceAt(t, cl, "aged", 5, time.Now())

	out := runBrokkr(t, "retention", "plan", "aged", "--json", "--brokers", b.Addr)
	var plans []broker.RetentionPlan
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	p := plans[0]
	if p.Refused != "" || len(p.Delete) == 0 || p.NewLogStartOffset <= 0 || p.NewLogStartOffset > 20 || p.Policy != "builtin.retention" {
		t.Fatalf("plan %+v", p)
	}
	for i, s := range p.Delete {
		if s.LastOffset >= 20 || s.SizeBytes <= 0 || s.MaxTimestampMs > old.UnixMilli()+1000 || (i > 0 && s.BaseOffset != p.Delete[i-1].LastOffset+1) {
			t.Fatalf("planned segment %d: %+v (old records end at 19, stamped %d)", i, s, old.UnixMilli())
		}
	}
	if !strings.Contains(p.Reason, "older than retention.ms=3600000") {
		t.Fatalf("reason %q", p.Reason)
	}
	table := runBrokkr(t, "retention", "plan", "aged", "--brokers", b.Addr)
	for _, want := range []string{fmt.Sprintf("would delete %d segments", len(p.Delete)), fmt.Sprintf("new log start offset %d", p.NewLogStartOffset), "BASE", "MAX TIMESTAMP", "reason: "} {
		if !strings.Contains(table, want) {
			t.Fatalf("plan table lacks %q:\n%s", want, table)
		}
	}
	if p.MinCommittedOffset != -1 {
		t.Fatalf("min committed offset %d before any group committed", p.MinCommittedOffset)
	}
	// A group's commit reaches the policy's input.
	commits := kadm.Offsets{}
	commits.Add(kadm.Offset{Topic: "aged", Partition: 0, At: 7, LeaderEpoch: -1})
	if err := newAdmin(t, b.Addr).CommitAllOffsets(ctxFor(t, 20*time.Second), "plan-readers", commits); err != nil {
		t.Fatal(err)
	}
	out = runBrokkr(t, "retention", "plan", "aged", "--json", "--brokers", b.Addr)
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 || plans[0].MinCommittedOffset != 7 {
		t.Fatalf("plan after a commit at 7: %v\n%s", err, out)
	}
	if s := startOffset(t, b.Addr, "aged"); s != 0 {
		t.Fatalf("log start moved to %d after a plan", s)
	}
	if got := consumeAll(t, b.Addr, "aged"); len(got) != 25 || got[0].Offset != 0 {
		t.Fatalf("after the plan: %d records from offset %d, want 25 from 0", len(got), got[0].Offset)
	}
}

// TestPluginConfigsRefused: a topic config naming a plugin that is not in
// brokkr.plugin.dir, a path, or any plugin on a broker without a plugin dir
// is refused with INVALID_CONFIG and a message naming the problem, on
// CreateTopics and IncrementalAlterConfigs. A plugin that is in the dir is
// accepted; when it is not a working plugin, its topic loses nothing and
// `brokkr topic describe` shows the retention fault.
func TestPluginConfigsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	with := testbroker.Start(t, "brokkr.plugin.dir="+dir, "log.retention.check.interval.ms=200",
		"brokkr.plugin.start.timeout.ms=2000", "brokkr.plugin.restart.backoff.ms=100", "brokkr.plugin.restart.backoff.max.ms=500")
	without := testbroker.Start(t)

	create := func(addr, topic, key, value string) (error, string) {
		t.Helper()
		resp, err := newAdmin(t, addr).CreateTopic(ctxFor(t, 20*time.Second), 1, 1, map[string]*string{key: &value}, topic)
		if resp.Topic != topic {
			t.Fatalf("create %s: no answer: %v", topic, err)
		}
		return resp.Err, resp.ErrMessage
	}
	for _, c := range []struct {
		addr, key, value, msg string
	}{
		{without.Addr, "brokkr.retention.plugin", "broken", "brokkr.plugin.dir is not set"},
		{with.Addr, "brokkr.retention.plugin", "missing", "no such file"},
		{with.Addr, "brokkr.compaction.plugin", "notexec", "not executable"},
		{with.Addr, "brokkr.retention.plugin", "/bin/true", "not by a path"},
		{with.Addr, "brokkr.retention.plugin", "../" + filepath.Base(dir) + "/broken", "not by a path"},
		{with.Addr, "brokkr.status.policy", "x", "read-only"},
	} {
		err, msg := create(c.addr, "refused", c.key, c.value)
		if err != kerr.InvalidConfig || !strings.Contains(msg, c.msg) || !strings.Contains(msg, c.key) {
			t.Errorf("%s=%s: got %v %q, want INVALID_CONFIG naming %q", c.key, c.value, err, msg, c.msg)
		}
	}
	// Nothing was created by the refusals.
	if md, err := newAdmin(t, with.Addr).Metadata(ctxFor(t, 10*time.Second), "refused"); err == nil {
		if td, ok := md.Topics["refused"]; ok && td.Err == nil {
			t.Fatal("a refused topic exists")
		}
	}

	// Allowed: a file in the dir. Its retention is broken: nothing goes.
	seg, ms := "4096", "1"
	broken := "broken"
	if resp, err := newAdmin(t, with.Addr).CreateTopic(ctxFor(t, 20*time.Second), 1, 1, map[string]*string{"segment.bytes": &seg, "retention.ms": &ms, "brokkr.retention.plugin": &broken}, "guarded"); err != nil || resp.Err != nil {
		t.Fatalf("create guarded: %v %v %s", err, resp.Err, resp.ErrMessage)
	}
	cl := newClient(t, with.Addr, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produceAt(t, cl, "guarded", 12, time.Now().Add(-time.Hour))
	var st *broker.PartitionStatus
	testbroker.Eventually(t, 30*time.Second, "describe shows the broken plugin's retention fault", func() bool {
		var dts []struct {
			Partitions []struct {
				Status *broker.PartitionStatus `json:"status"`
			} `json:"partitions"`
		}
		out := runBrokkr(t, "topic", "describe", "guarded", "--json", "--brokers", with.Addr)
		if json.Unmarshal([]byte(out), &dts) != nil || len(dts) != 1 || len(dts[0].Partitions) != 1 {
			return false
		}
		st = dts[0].Partitions[0].Status
		return st != nil && st.Retention != nil && st.Retention.Fault != "" && st.Retention.Faults > 0
	})
	if st.Retention.Policy != "broken" {
		t.Fatalf("retention status %+v", st.Retention)
	}
	if s := startOffset(t, with.Addr, "guarded"); s != 0 {
		t.Fatalf("a broken plugin's topic lost records: log start %d", s)
	}
	table := runBrokkr(t, "topic", "describe", "guarded", "--brokers", with.Addr)
	if !strings.Contains(table, "RETENTION POLICY   broken") || !strings.Contains(table, "faults)") {
		t.Fatalf("describe table lacks the fault:\n%s", table)
	}

	// Altering an existing topic to a bad plugin is refused too.
	resps, err := newAdmin(t, with.Addr).AlterTopicConfigs(ctxFor(t, 10*time.Second), []kadm.AlterConfig{{Name: "brokkr.retention.plugin", Value: &[]string{"nope"}[0]}}, "guarded")
	if err != nil || len(resps) != 1 || resps[0].Err != kerr.InvalidConfig || !strings.Contains(resps[0].ErrMessage, "nope") {
		t.Fatalf("alter to a missing plugin: %v %+v", err, resps)
	}
	assertNoPanic(t, with)
}

// TestOffsetsTopicIsCleaned: __consumer_offsets is cleaned like any
// compacted topic. With small segments and a low dirty ratio, 300 commits
// of one group shrink to a few segments; the cleaner reports cleanings for
// the offsets partition, and after a restart the group's committed offset
// (loaded from the cleaned log) is the last one.
func TestOffsetsTopicIsCleaned(t *testing.T) {
	b := testbroker.Start(t, "log.cleaner.backoff.ms=100", "offsets.topic.num.partitions=1")
	createTopic(t, b.Addr, "src", 1, nil)
	adm := newAdmin(t, b.Addr)
	commit := func(at int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "src", Partition: 0, At: at, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctxFor(t, 20*time.Second), "cleaned-group", offs); err != nil {
			t.Fatalf("commit %d: %v", at, err)
		}
	}
	commit(0) // creates __consumer_offsets
	rs, err := adm.AlterTopicConfigs(ctxFor(t, 10*time.Second), []kadm.AlterConfig{
		{Name: "segment.bytes", Value: &[]string{"1024"}[0]},
		{Name: "min.cleanable.dirty.ratio", Value: &[]string{"0.01"}[0]},
	}, "__consumer_offsets")
	if err != nil || len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("alter __consumer_offsets: %v %+v", err, rs)
	}
	const n = 300
	for i := int64(1); i <= n; i++ {
		commit(i)
	}
	type st struct {
		Partitions []struct {
			Status *broker.PartitionStatus `json:"status"`
		} `json:"partitions"`
	}
	testbroker.Eventually(t, 30*time.Second, "the cleaner cleaned __consumer_offsets-0", func() bool {
		var dts []st
		out := runBrokkr(t, "topic", "describe", "__consumer_offsets", "--json", "--brokers", b.Addr)
		if json.Unmarshal([]byte(out), &dts) != nil || len(dts) != 1 || len(dts[0].Partitions) != 1 {
			return false
		}
		s := dts[0].Partitions[0].Status
		return s != nil && s.Cleaner != nil && s.Cleaner.Cleanings > 0 && s.Cleaner.DirtyBytes < 4096
	})
	logs, _ := filepath.Glob(filepath.Join(b.DataDir, "logs", "__consumer_offsets-0", "*.log"))
	t.Logf("__consumer_offsets-0 has %d segments after %d commits", len(logs), n+1)
	if len(logs) > 20 {
		t.Fatalf("__consumer_offsets-0 still has %d segments", len(logs))
	}

	b.Stop()
	b.Restart(t)
	var got int64 = -1
	testbroker.Eventually(t, 30*time.Second, "the group's offset is readable after the restart", func() bool {
		fetched, err := newAdmin(t, b.Addr).FetchOffsets(ctxFor(t, 5*time.Second), "cleaned-group")
		if err != nil {
			return false
		}
		o, ok := fetched.Lookup("src", 0)
		if !ok || o.Err != nil {
			return false
		}
		got = o.At
		return true
	})
	if got != n {
		t.Fatalf("committed offset after cleaning and restart = %d, want %d", got, n)
	}
	assertNoPanic(t, b)
}
