package broker

import (
	"testing"

	"github.com/brokkr/brokkr/netio"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The benchmarks behind docs/protocol.md's codec decision: kmsg for every
// request and for admin responses, a hand-framed encoder only for Fetch.

func fetchFixture(partitions, recordBytes int) ([]fetchTopicOut, *kmsg.FetchResponse) {
	recs := make([]byte, recordBytes)
	to := fetchTopicOut{name: "bench"}
	ref := kmsg.NewPtrFetchResponse()
	ref.Version = 16
	rt := kmsg.NewFetchResponseTopic()
	rt.Topic = "bench"
	for p := 0; p < partitions; p++ {
		to.partitions = append(to.partitions, fetchOut{partition: int32(p), highWatermark: 1000, lastStable: 1000, preferredReplica: -1,
			records: []netio.Chunk{netio.BytesChunk(recs)}, recordsLen: int64(len(recs))})
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition, rp.HighWatermark, rp.LastStableOffset, rp.PreferredReadReplica = int32(p), 1000, 1000, -1
		rp.RecordBatches = recs
		rt.Partitions = append(rt.Partitions, rp)
	}
	ref.Topics = []kmsg.FetchResponseTopic{rt}
	return []fetchTopicOut{to}, ref
}

// BenchmarkFetchEncodeHand: the zero-copy encoder (headers only; records
// stay file regions).
func BenchmarkFetchEncodeHand(b *testing.B) {
	topics, _ := fetchFixture(16, 64<<10)
	b.ReportAllocs()
	b.SetBytes(16 * 64 << 10)
	for b.Loop() {
		_ = encodeFetch(16, 0, 0, topics)
	}
}

// BenchmarkFetchEncodeKmsg: kmsg's generated encoder, which copies the
// record bytes into its output buffer.
func BenchmarkFetchEncodeKmsg(b *testing.B) {
	_, ref := fetchFixture(16, 64<<10)
	b.ReportAllocs()
	b.SetBytes(16 * 64 << 10)
	buf := make([]byte, 0, 2<<20)
	for b.Loop() {
		buf = ref.AppendTo(buf[:0])
	}
}

// BenchmarkProduceDecodeKmsg: parsing a 1 MiB Produce request with kmsg.
func BenchmarkProduceDecodeKmsg(b *testing.B) {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, 1
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "bench"
	for p := 0; p < 4; p++ {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(p), make([]byte, 256<<10)
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	body := req.AppendTo(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r := kmsg.NewPtrProduceRequest()
		r.Version = 9
		if err := r.ReadFrom(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMetadataRoundTripKmsg: an admin-sized response (100 topics of 10
// partitions) encoded by kmsg.
func BenchmarkMetadataEncodeKmsg(b *testing.B) {
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = 12
	for t := 0; t < 100; t++ {
		mt := kmsg.NewMetadataResponseTopic()
		name := "topic-" + string(rune('a'+t%26))
		mt.Topic = &name
		for p := 0; p < 10; p++ {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition, mp.Replicas, mp.ISR = int32(p), []int32{0}, []int32{0}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = resp.AppendTo(buf[:0])
	}
}
