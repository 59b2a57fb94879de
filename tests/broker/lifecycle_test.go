package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describe returns a topic's configs by name.
func describe(t *testing.T, adm *kadm.Client, topic string) map[string]kadm.Config {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs of %s: %v %v", topic, err, rc.Err)
	}
	out := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		out[c.Key] = c
	}
	return out
}

func expectConfig(t *testing.T, cs map[string]kadm.Config, name, value string, src kmsg.ConfigSource) {
	t.Helper()
	c, ok := cs[name]
	if !ok {
		t.Errorf("config %s not described", name)
		return
	}
	if c.Value == nil || *c.Value != value || c.Source != src {
		t.Errorf("config %s = %v from %v, want %q from %v", name, c.MaybeValue(), c.Source, value, src)
	}
}

// partitionDirs lists the partition directories of topic under logs.
func partitionDirs(t *testing.T, logs, topic string) []string {
	t.Helper()
	ents, err := os.ReadDir(logs)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), topic+"-") || strings.HasPrefix(e.Name(), topic+".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// topicsNow asks the broker, on a fresh raw connection, for every topic
// (Metadata v12: no client-side metadata cache in the way).
func topicsNow(t *testing.T, addr string) map[string]kmsg.MetadataResponseTopic {
	t.Helper()
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(12)
	resp := dial(t, addr).mustRoundTrip(md).(*kmsg.MetadataResponse)
	out := map[string]kmsg.MetadataResponseTopic{}
	for _, tp := range resp.Topics {
		if tp.Topic == nil {
			t.Fatalf("Metadata v12 answered a topic without a name: %+v", tp)
		}
		if tp.IsInternal {
			continue // __consumer_offsets, created by the broker at start
		}
		out[*tp.Topic] = tp
	}
	return out
}

func names(m map[string]kmsg.MetadataResponseTopic) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

// TestTopicLifecycle: create with configs, describe them back, alter them
// (taking effect at once), add partitions, delete (metadata and files),
// recreate empty, and delete by topic id.
func TestTopicLifecycle(t *testing.T) {
	b := testbroker.Start(t, "log.segment.bytes=8388608")
	adm := newAdmin(t, b.Addr)
	logs := filepath.Join(b.DataDir, "logs")
	const topic = "orders"

	created := createTopic(t, b.Addr, topic, 2, map[string]*string{
		"retention.ms":      kadm.StringPtr("3600000"),
		"max.message.bytes": kadm.StringPtr("2048"),
		"cleanup.policy":    kadm.StringPtr("compact"),
	})
	cs := describe(t, adm, topic)
	expectConfig(t, cs, "retention.ms", "3600000", kmsg.ConfigSourceDynamicTopicConfig)
	expectConfig(t, cs, "max.message.bytes", "2048", kmsg.ConfigSourceDynamicTopicConfig)
	expectConfig(t, cs, "cleanup.policy", "compact", kmsg.ConfigSourceDynamicTopicConfig)
	expectConfig(t, cs, "segment.bytes", "8388608", kmsg.ConfigSourceStaticBrokerConfig)
	expectConfig(t, cs, "compression.type", "producer", kmsg.ConfigSourceDefaultConfig)
	expectConfig(t, cs, "min.insync.replicas", "1", kmsg.ConfigSourceDefaultConfig)
	if dirs := partitionDirs(t, logs, topic); len(dirs) != 2 {
		t.Fatalf("partition directories %v, want orders-0 and orders-1", dirs)
	}

	// max.message.bytes=2048 is enforced, and raising it takes effect
	// without a restart.
	rc := dial(t, b.Addr)
	big := recordBatch(-1, -1, -1, strings.Repeat("x", 4096))
	if p := onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, 0, big))); p.ErrorCode != kerr.MessageTooLarge.Code {
		t.Errorf("4 KiB batch with max.message.bytes=2048: error %d, want MESSAGE_TOO_LARGE (%d)", p.ErrorCode, kerr.MessageTooLarge.Code)
	}
	alter, err := adm.AlterTopicConfigs(ctxFor(t, 10*time.Second), []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kadm.StringPtr("65536")},
		{Op: kadm.DeleteConfig, Name: "cleanup.policy"},
	}, topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alter {
		if r.Err != nil {
			t.Fatalf("incremental alter configs: %v", r.Err)
		}
	}
	cs = describe(t, adm, topic)
	expectConfig(t, cs, "max.message.bytes", "65536", kmsg.ConfigSourceDynamicTopicConfig)
	expectConfig(t, cs, "cleanup.policy", "delete", kmsg.ConfigSourceDefaultConfig)
	expectConfig(t, cs, "retention.ms", "3600000", kmsg.ConfigSourceDynamicTopicConfig)
	if p := onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, 0, big))); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("4 KiB batch after raising max.message.bytes to 65536: error %d offset %d, want 0 and 0", p.ErrorCode, p.BaseOffset)
	}

	// CreatePartitions: 2 -> 4, and the new partitions take records.
	cp, err := adm.CreatePartitions(ctxFor(t, 10*time.Second), 2, topic)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := cp[topic]; !ok || r.Err != nil {
		t.Fatalf("create partitions: %+v", cp)
	}
	if n := len(topicsNow(t, b.Addr)[topic].Partitions); n != 4 {
		t.Fatalf("after CreatePartitions +2: %d partitions, want 4", n)
	}
	for p := int32(2); p < 4; p++ {
		r := onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, p, recordBatch(-1, -1, -1, "new", "partition"))))
		if r.ErrorCode != 0 || r.BaseOffset != 0 {
			t.Errorf("produce to new partition %d: error %d offset %d", p, r.ErrorCode, r.BaseOffset)
		}
		if leo := endOffset(t, b.Addr, topic, p); leo != 2 {
			t.Errorf("new partition %d: end offset %d, want 2", p, leo)
		}
	}
	if dirs := partitionDirs(t, logs, topic); len(dirs) != 4 {
		t.Errorf("partition directories %v after growing to 4", dirs)
	}
	// Shrinking is refused.
	if cp, err := adm.UpdatePartitions(ctxFor(t, 10*time.Second), 3, topic); err == nil && cp[topic].Err == nil {
		t.Errorf("shrinking %s from 4 to 3 partitions succeeded", topic)
	}

	// DeleteTopics: metadata and data gone when the answer comes.
	dr, err := adm.DeleteTopics(ctxFor(t, 10*time.Second), topic)
	if err != nil || dr[topic].Err != nil {
		t.Fatalf("delete %s: %v %+v", topic, err, dr)
	}
	if _, ok := topicsNow(t, b.Addr)[topic]; ok {
		t.Errorf("%s still in metadata after DeleteTopics", topic)
	}
	if dirs := partitionDirs(t, logs, topic); len(dirs) != 0 {
		t.Errorf("partition directories %v still on disk after DeleteTopics answered", dirs)
	}

	// Recreate: empty, new id.
	again := createTopic(t, b.Addr, topic, 1, nil)
	if again.ID == created.ID {
		t.Errorf("recreated topic kept the old topic id %v", created.ID)
	}
	if leo := endOffset(t, b.Addr, topic, 0); leo != 0 {
		t.Errorf("recreated topic: end offset %d, want 0", leo)
	}
	cs = describe(t, adm, topic)
	expectConfig(t, cs, "retention.ms", "604800000", kmsg.ConfigSourceDefaultConfig)
	if p := onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, 0, recordBatch(-1, -1, -1, "fresh")))); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("first produce to the recreated topic: error %d offset %d, want offset 0", p.ErrorCode, p.BaseOffset)
	}
	if vals := consumeValues(t, b.Addr, topic); len(vals[0]) != 1 || vals[0][0] != "fresh" {
		t.Errorf("recreated topic holds %q, want only \"fresh\"", vals[0])
	}

	// DeleteTopics v6 by topic id (and an unknown id).
	byID := createTopic(t, b.Addr, "by-id", 3, nil)
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.SetVersion(6)
	req.TimeoutMillis = 10000
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = byID.ID
	unknown := kmsg.NewDeleteTopicsRequestTopic()
	unknown.TopicID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	req.Topics = append(req.Topics, dt, unknown)
	resp := rc.mustRoundTrip(req).(*kmsg.DeleteTopicsResponse)
	if len(resp.Topics) != 2 {
		t.Fatalf("DeleteTopics v6: %d answers, want 2", len(resp.Topics))
	}
	for _, r := range resp.Topics {
		switch r.TopicID {
		case byID.ID:
			if r.ErrorCode != 0 || r.Topic == nil || *r.Topic != "by-id" {
				t.Errorf("DeleteTopics v6 by id: error %d name %v, want 0 and by-id", r.ErrorCode, r.Topic)
			}
		case unknown.TopicID:
			if r.ErrorCode != kerr.UnknownTopicID.Code {
				t.Errorf("DeleteTopics v6 of an unknown id: error %d, want UNKNOWN_TOPIC_ID (%d)", r.ErrorCode, kerr.UnknownTopicID.Code)
			}
		default:
			t.Errorf("DeleteTopics v6 answered for id %x", r.TopicID)
		}
	}
	all := topicsNow(t, b.Addr)
	if _, ok := all["by-id"]; ok || len(all) != 1 || all[topic].TopicID != again.ID {
		t.Errorf("after deleting by-id by id: topics %v, want %s (id %x) only", names(all), topic, again.ID)
	}
	if dirs := partitionDirs(t, logs, "by-id"); len(dirs) != 0 {
		t.Errorf("by-id partition directories %v still on disk", dirs)
	}

	// A restart does not bring a deleted topic back.
	if d, clean := b.Stop(); !clean {
		t.Fatalf("SIGTERM: not a clean exit after %v", d)
	}
	b.Restart(t)
	all = topicsNow(t, b.Addr)
	if _, ok := all["by-id"]; ok || len(all) != 1 || len(all[topic].Partitions) != 1 || all[topic].TopicID != again.ID {
		t.Errorf("after a restart: topics %v, want %s (id %x, 1 partition) only", names(all), topic, again.ID)
	}
	assertNoPanic(t, b)
}
