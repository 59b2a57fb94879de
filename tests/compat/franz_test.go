package compat

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const records = 10000

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t *testing.T, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
	}
}

// consumeAll reads [0, want) records of every partition of topic and
// returns them per partition, in order.
func consumeAll(t *testing.T, addr, topic string, want int) map[int32][]*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[int32][]*kgo.Record{}
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the time-out", n, want)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], r)
			n++
		})
	}
	return got
}

// TestFranzGoEveryCodec produces 10,000 keyed records with headers through
// franz-go's idempotent producer, once per compression codec, and reads
// them back: content, order per partition and consecutive offsets.
func TestFranzGoEveryCodec(t *testing.T) {
	b := testbroker.Start(t)
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := "franz-" + c.name
			createTopic(t, b.Addr, topic, 3, nil)
			prod := newClient(t, b.Addr, kgo.ProducerBatchCompression(c.codec), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now().Add(-time.Second).UnixMilli()
			for i := 0; i < records; i++ {
				r := &kgo.Record{
					Key:     []byte("key-" + strconv.Itoa(i%97)),
					Value:   []byte(fmt.Sprintf("value-%d-%s", i, c.name)),
					Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}},
				}
				prod.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						t.Errorf("produce: %v", err)
					}
				})
			}
			if err := prod.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got := consumeAll(t, b.Addr, topic, records)
			seen := map[int]bool{}
			for p, rs := range got {
				last := -1
				for j, r := range rs {
					if r.Offset != int64(j) {
						t.Fatalf("partition %d: record %d has offset %d", p, j, r.Offset)
					}
					i, err := strconv.Atoi(string(r.Headers[0].Value))
					if err != nil || len(r.Headers) != 1 || r.Headers[0].Key != "i" {
						t.Fatalf("headers %v", r.Headers)
					}
					if string(r.Value) != fmt.Sprintf("value-%d-%s", i, c.name) || string(r.Key) != "key-"+strconv.Itoa(i%97) {
						t.Fatalf("record %d: key %q value %q", i, r.Key, r.Value)
					}
					if i <= last {
						t.Fatalf("partition %d: record %d after %d: order broken", p, i, last)
					}
					if seen[i] {
						t.Fatalf("record %d twice", i)
					}
					seen[i], last = true, i
					if r.Timestamp.UnixMilli() < start {
						t.Fatalf("timestamp %v before the test began", r.Timestamp)
					}
				}
			}
			if len(seen) != records {
				t.Fatalf("read %d distinct records, want %d", len(seen), records)
			}
		})
	}
}

// TestListOffsetsByTimestamp: the offset for a timestamp is the first
// record at or after it.
func TestListOffsetsByTimestamp(t *testing.T) {
	b := testbroker.Start(t)
	topic := "by-time"
	createTopic(t, b.Addr, topic, 1, nil)
	prod := newClient(t, b.Addr, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < 100; i++ {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(newClient(t, b.Addr))
	for _, c := range []struct {
		at   time.Time
		want int64
	}{
		{base.Add(-time.Minute), 0},
		{base, 0},
		{base.Add(42 * time.Second), 42},
		{base.Add(42*time.Second + time.Millisecond), 43},
		{base.Add(99 * time.Second), 99},
	} {
		lo, err := adm.ListOffsetsAfterMilli(ctx, c.at.UnixMilli(), topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := lo.Lookup(topic, 0)
		if o.Err != nil || o.Offset != c.want {
			t.Errorf("offset after %v: %d (%v), want %d", c.at.Sub(base), o.Offset, o.Err, c.want)
		}
	}
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := end.Lookup(topic, 0); o.Offset != 100 {
		t.Errorf("end offset %d, want 100", o.Offset)
	}
}
