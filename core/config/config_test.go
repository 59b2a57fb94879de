package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.properties")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePropertiesForms(t *testing.T) {
	props, err := ParseProperties("f", "# comment\n! also\n\na=1\nb : 2\nc 3\nd=x\\\n   y\ne=tab\\there\nf=\\u0041\n  g = spaced value  \n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "1", "b": "2", "c": "3", "d": "xy", "e": "tab\there", "f": "A", "g": "spaced value"}
	lines := map[string]int{"a": 4, "d": 7, "g": 11}
	if len(props) != len(want) {
		t.Fatalf("got %d properties, want %d: %+v", len(props), len(want), props)
	}
	for _, p := range props {
		if want[p.Key] != p.Value {
			t.Errorf("%s = %q, want %q", p.Key, p.Value, want[p.Key])
		}
		if l, ok := lines[p.Key]; ok && p.Line != l {
			t.Errorf("%s on line %d, want %d", p.Key, p.Line, l)
		}
	}
	if _, err := ParseProperties("f", "x=\\u00"); err == nil || !strings.Contains(err.Error(), "f:1") {
		t.Errorf("truncated escape: err = %v, want an error naming f:1", err)
	}
}

func TestDefaultsAreKafkas(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.LogSegmentBytes != 1<<30 || c.LogRetentionMs != 604800000 || c.MessageMaxBytes != 1048588 ||
		c.LogIndexIntervalBytes != 4096 || c.SocketRequestMaxBytes != 104857600 || c.NumPartitions != 1 {
		t.Errorf("defaults differ from Kafka's: %+v", c)
	}
	if c.Listeners[0] != "PLAINTEXT://localhost:9092" || c.LogDirs[0] != "./brokkr-data" || c.CoordinationSpec() != "etcd-embedded" {
		t.Errorf("zero-config defaults: %v %v %v", c.Listeners, c.LogDirs, c.CoordinationSpec())
	}
}

func TestUnknownAndInvalidKeysNameFileAndLine(t *testing.T) {
	p := writeFile(t, "node.id=3\nlog.retention.hour=5\nnum.partitions=zero\nauto.create.topics.enable=yes\nlisteners=PLAINTEXT//x:1\n")
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("Load accepted a file with four bad lines")
	}
	msg := err.Error()
	for _, want := range []string{
		p + `:2: unknown key "log.retention.hour" (did you mean log.retention.hours?)`,
		p + `:3: num.partitions: "zero" is not an integer`,
		p + `:4: auto.create.topics.enable: "yes" is not true or false`,
		p + `:5: listeners:`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 4 {
		t.Errorf("want all 4 problems reported at once, got %d:\n%s", n, msg)
	}
}

func TestRetentionPrecedenceAndOverrides(t *testing.T) {
	p := writeFile(t, "log.retention.hours=1\nlog.retention.minutes=2\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.LogRetentionMs != 2*60*1000 {
		t.Errorf("minutes must beat hours: got %d ms", c.LogRetentionMs)
	}
	c, err = Load(p, []string{"log.retention.ms=7", "num.partitions=4"})
	if err != nil {
		t.Fatal(err)
	}
	if c.LogRetentionMs != 7 || c.NumPartitions != 4 {
		t.Errorf("overrides: retention %d partitions %d", c.LogRetentionMs, c.NumPartitions)
	}
	if c.Set["num.partitions"].Where() != "--override" {
		t.Errorf("override source = %q", c.Set["num.partitions"].Where())
	}
	if _, err := Load(p, []string{"nonsense"}); err == nil {
		t.Error("an override without '=' was accepted")
	}
	c, err = Load("", []string{"log.retention.hours=-1"})
	if err != nil || c.LogRetentionMs != -1 {
		t.Errorf("log.retention.hours=-1 must mean forever: %d %v", c.LogRetentionMs, err)
	}
}

func TestNodeIDSynonymsAndZookeeperSelection(t *testing.T) {
	if _, err := Load("", []string{"node.id=1", "broker.id=2"}); err == nil || !strings.Contains(err.Error(), "differs from node.id") {
		t.Errorf("conflicting ids: err = %v", err)
	}
	c, err := Load("", []string{"broker.id=2", "zookeeper.connect=127.0.0.1:2181/kafka"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != 2 || c.CoordinationSpec() != "zk://127.0.0.1:2181/kafka" {
		t.Errorf("node %d spec %q", c.NodeID, c.CoordinationSpec())
	}
	if _, err := Load("", []string{"brokkr.coordination=consul://x"}); err == nil {
		t.Error("an unknown coordination backend was accepted")
	}
}

func TestKafkaSampleFileLoads(t *testing.T) {
	// The keys of Kafka's own config/server.properties (ZooKeeper mode).
	p := writeFile(t, `broker.id=0
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kafka-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.retention.check.interval.ms=300000
zookeeper.connect=localhost:2181
zookeeper.connection.timeout.ms=18000
group.initial.rebalance.delay.ms=0
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatalf("Kafka's sample file must load: %v", err)
	}
	if c.LogDirs[0] != "/tmp/kafka-logs" || c.CoordinationSpec() != "zk://localhost:2181" {
		t.Errorf("got dirs %v spec %q", c.LogDirs, c.CoordinationSpec())
	}
}
