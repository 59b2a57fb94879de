package compat

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord/zk/zktest"
	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// roundTrip creates a topic, produces n records and reads them back.
func roundTrip(t *testing.T, addr, topic string, n int) {
	t.Helper()
	createTopic(t, addr, topic, 2, nil)
	prod := newClient(t, addr, kgo.DefaultProduceTopic(topic))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		prod.Produce(ctx, kgo.StringRecord(strconv.Itoa(i)), func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := consumeAll(t, addr, topic, n)
	total := 0
	for _, rs := range got {
		total += len(rs)
	}
	if total != n {
		t.Fatalf("read %d records, want %d", total, n)
	}
}

// TestBrokerOnZooKeeper runs the broker with the real ZooKeeper server as
// its coordination backend (Kafka's zookeeper.connect), restarts it, and
// finds its topic and data again.
func TestBrokerOnZooKeeper(t *testing.T) {
	zk := zktest.Start(t)
	b := testbroker.Start(t, "zookeeper.connect="+zk.Addr()+"/brokkr", "zookeeper.session.timeout.ms=4000")
	if !strings.Contains(b.Output(), "coordination zk://"+zk.Addr()+"/brokkr") {
		t.Fatalf("the broker did not select ZooKeeper:\n%s", b.Output())
	}
	roundTrip(t, b.Addr, "on-zk", 1000)
	if _, clean := b.Stop(); !clean {
		t.Fatalf("unclean stop:\n%s", b.Output())
	}
	b.Restart(t)
	total := 0
	for _, rs := range consumeAll(t, b.Addr, "on-zk", 1000) {
		total += len(rs)
	}
	if total != 1000 {
		t.Errorf("after a restart on ZooKeeper %d records were read back, want 1000", total)
	}
}

// TestBrokerOnGossip runs the broker with the gossip backend, bootstrapping
// a one-node gossip cluster on a loopback port.
func TestBrokerOnGossip(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b := testbroker.Start(t, "brokkr.coordination=gossip://"+addr, "brokkr.gossip.bind="+addr)
	roundTrip(t, b.Addr, "on-gossip", 1000)
}
