package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/brokkr/brokkr/internal/testbroker"
)

// TestSarama produces 10,000 records with sarama's sync producer (its
// default Kafka 2.8 protocol versions) and consumes them back with its
// partition consumer.
func TestSarama(t *testing.T) {
	b := testbroker.Start(t)
	topic := "sarama"
	createTopic(t, b.Addr, topic, 2, nil)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewRoundRobinPartitioner
	cfg.Producer.Compression = sarama.CompressionSnappy
	prod, err := sarama.NewSyncProducer([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var msgs []*sarama.ProducerMessage
	for i := 0; i < records; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k" + strconv.Itoa(i)), Value: sarama.StringEncoder("v" + strconv.Itoa(i))})
	}
	for i := 0; i < len(msgs); i += 500 {
		if err := prod.SendMessages(msgs[i:min(i+500, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	want := map[int32][]int{}
	for _, m := range msgs {
		if int(m.Offset) != len(want[m.Partition]) {
			t.Fatalf("partition %d: offset %d assigned out of sequence", m.Partition, m.Offset)
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Value.(sarama.StringEncoder)), "v"))
		want[m.Partition] = append(want[m.Partition], i)
	}
	cons, err := sarama.NewConsumer([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for p, idx := range want {
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(60 * time.Second)
		for j, i := range idx {
			select {
			case m := <-pc.Messages():
				if m.Offset != int64(j) || string(m.Value) != "v"+strconv.Itoa(i) || string(m.Key) != "k"+strconv.Itoa(i) {
					t.Fatalf("partition %d #%d: offset %d key %q value %q", p, j, m.Offset, m.Key, m.Value)
				}
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-timeout:
				t.Fatalf("partition %d: only %d of %d records within 60 s", p, j, len(idx))
			}
		}
		pc.Close()
	}
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestKcat produces 10,000 keyed lines with kcat (librdkafka 2.0) and reads
// them back with their offsets, partitions and keys.
func TestKcat(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed: scripts/test.sh installs it (apt-get install kcat)")
	}
	b := testbroker.Start(t)
	topic := "kcat"
	createTopic(t, b.Addr, topic, 3, nil)
	var in bytes.Buffer
	for i := 0; i < records; i++ {
		fmt.Fprintf(&in, "k%d:line %d\n", i, i)
	}
	run(t, in.Bytes(), "kcat", "-b", b.Addr, "-P", "-t", topic, "-K", ":", "-z", "lz4", "-X", "enable.idempotence=true")
	out := run(t, nil, "kcat", "-b", b.Addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != records {
		t.Fatalf("kcat read %d lines, want %d", len(lines), records)
	}
	next := map[string]int64{}
	lastByKeyPartition := map[string]int{}
	seen := map[int]bool{}
	for _, l := range lines {
		var p, key, val string
		var off int64
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			t.Fatalf("line %q", l)
		}
		p, key, val = f[0], f[2], f[3]
		off, _ = strconv.ParseInt(f[1], 10, 64)
		if off != next[p] {
			t.Fatalf("partition %s: offset %d, want %d", p, off, next[p])
		}
		next[p]++
		i, err := strconv.Atoi(strings.TrimPrefix(key, "k"))
		if err != nil || val != "line "+strconv.Itoa(i) {
			t.Fatalf("key %q value %q", key, val)
		}
		if last, ok := lastByKeyPartition[p]; ok && i < last {
			t.Fatalf("partition %s: line %d after %d", p, i, last)
		}
		lastByKeyPartition[p] = i
		seen[i] = true
	}
	if len(seen) != records {
		t.Fatalf("%d distinct lines", len(seen))
	}
}

// TestConfluentKafkaPython produces and consumes 10,000 records through
// librdkafka's Python binding (Debian's python3-confluent-kafka, run by
// /usr/bin/python3, which is the interpreter that package installs into).
func TestConfluentKafkaPython(t *testing.T) {
	b := testbroker.Start(t)
	topic := "python"
	createTopic(t, b.Addr, topic, 2, nil)
	script := filepath.Join(t.TempDir(), "roundtrip.py")
	if err := os.WriteFile(script, []byte(pyScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, nil, "/usr/bin/python3", script, b.Addr, topic, strconv.Itoa(records))
	if got := strings.TrimSpace(string(out)); got != fmt.Sprintf("ok %d", records) {
		t.Fatalf("python said %q", got)
	}
}

const pyScript = `
import sys
from confluent_kafka import Producer, Consumer, TopicPartition
addr, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
def cb(err, msg):
    if err is not None:
        errors.append(err)
p = Producer({"bootstrap.servers": addr, "enable.idempotence": True, "compression.type": "zstd", "linger.ms": 5})
for i in range(n):
    p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("i", b"%d" % i)], on_delivery=cb)
    if i % 1000 == 0:
        p.poll(0)
left = p.flush(60)
if left or errors:
    print("produce failed: left=%d errors=%r" % (left, errors[:3]))
    sys.exit(1)
c = Consumer({"bootstrap.servers": addr, "group.id": "unused", "enable.auto.commit": False})
parts = c.list_topics(topic, timeout=10).topics[topic].partitions
c.assign([TopicPartition(topic, p, 0) for p in parts])
seen, nextoff = set(), {}
import time
deadline = time.time() + 60
while len(seen) < n and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        print("consume error: %s" % m.error())
        sys.exit(1)
    i = int(m.key()[1:])
    if m.value() != b"v%d" % i or dict(m.headers())["i"] != b"%d" % i:
        print("bad record %r" % (m.value(),))
        sys.exit(1)
    if m.offset() != nextoff.get(m.partition(), 0):
        print("partition %d offset %d, want %d" % (m.partition(), m.offset(), nextoff.get(m.partition(), 0)))
        sys.exit(1)
    nextoff[m.partition()] = m.offset() + 1
    seen.add(i)
c.close()
print("ok %d" % len(seen))
`
