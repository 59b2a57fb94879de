package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/brokkr/brokkr/segment"
)

var allCodecs = []int{None, Gzip, Snappy, LZ4, Zstd}

// sampleRecords covers null and empty keys and values, headers with null
// and empty values, negative and large timestamp deltas.
func sampleRecords() []Record {
	return []Record{
		{OffsetDelta: 0, TimestampDelta: 0, Key: []byte("k0"), Value: []byte("v0")},
		{OffsetDelta: 1, TimestampDelta: -5, Key: nil, Value: []byte("null key")},
		{OffsetDelta: 2, TimestampDelta: 1 << 40, Key: []byte("tombstone"), Value: nil},
		{OffsetDelta: 3, Key: []byte{}, Value: []byte{}},
		{OffsetDelta: 4, TimestampDelta: 7, Key: []byte("h"), Value: bytes.Repeat([]byte("x"), 3000),
			Headers: []Header{{Key: "a", Value: []byte("1")}, {Key: "", Value: nil}, {Key: "ü", Value: []byte{}}}},
	}
}

// plainRecords validates batch as the broker does and returns its records.
func plainRecords(t *testing.T, batch []byte) (segment.BatchHeader, []segment.Record) {
	t.Helper()
	check := func(h segment.BatchHeader, b []byte) error {
		p, err := PlainBatch(b, 1<<24)
		if err != nil {
			return err
		}
		return segment.WalkRecords(p, nil)
	}
	h, err := segment.ValidateBatch(batch, 0, check)
	if err != nil {
		t.Fatalf("ValidateBatch: %v", err)
	}
	p, err := PlainBatch(batch, 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	var got []segment.Record
	if err := segment.WalkRecords(p, func(r segment.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return h, got
}

// sameBytes also tells nil (null) from empty.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func TestEncodeBatchRoundTrip(t *testing.T) {
	recs := sampleRecords()
	for _, c := range allCodecs {
		t.Run(Name(c), func(t *testing.T) {
			hdr := BatchHeader{BaseOffset: 1234, PartitionLeaderEpoch: 7, Attributes: int16(c) | 0x10,
				BaseTimestamp: 1_700_000_000_000, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 9, LastOffsetDelta: -1}
			b, err := EncodeBatch(hdr, recs)
			if err != nil {
				t.Fatal(err)
			}
			h, got := plainRecords(t, b)
			want := segment.BatchHeader{BaseOffset: 1234, BatchLength: int32(len(b) - 12), PartitionLeaderEpoch: 7, Magic: 2,
				CRC: segment.ComputeCRC(b), Attributes: int16(c) | 0x10, LastOffsetDelta: 4, BaseTimestamp: 1_700_000_000_000,
				MaxTimestamp: 1_700_000_000_000 + 1<<40, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 9, RecordCount: 5}
			if h != want {
				t.Errorf("header\n got %+v\nwant %+v", h, want)
			}
			if len(got) != len(recs) {
				t.Fatalf("%d records back, want %d", len(got), len(recs))
			}
			for i, r := range recs {
				g := got[i]
				if g.OffsetDelta != r.OffsetDelta || g.TimestampDelta != r.TimestampDelta || g.Attributes != 0 ||
					!sameBytes(g.Key, r.Key) || !sameBytes(g.Value, r.Value) || len(g.Headers) != len(r.Headers) {
					t.Fatalf("record %d: got %+v, want %+v", i, g, r)
				}
				for j, hh := range r.Headers {
					if g.Headers[j].Key != hh.Key || !sameBytes(g.Headers[j].Value, hh.Value) {
						t.Errorf("record %d header %d: got %+v, want %+v", i, j, g.Headers[j], hh)
					}
				}
			}
			checkWithKmsg(t, b, hdr, recs)
		})
	}
}

// checkWithKmsg decodes batch with franz-go (kmsg.RecordBatch, kgo's
// decompressor, kmsg.Record) and compares with what was encoded.
func checkWithKmsg(t *testing.T, b []byte, hdr BatchHeader, recs []Record) {
	t.Helper()
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatalf("kmsg: %v", err)
	}
	if kb.FirstOffset != hdr.BaseOffset || kb.Magic != 2 || kb.Length != int32(len(b)-12) ||
		uint32(kb.CRC) != segment.ComputeCRC(b) || kb.Attributes != hdr.Attributes ||
		kb.PartitionLeaderEpoch != hdr.PartitionLeaderEpoch || kb.FirstTimestamp != hdr.BaseTimestamp ||
		kb.ProducerID != hdr.ProducerID || kb.ProducerEpoch != hdr.ProducerEpoch ||
		kb.FirstSequence != hdr.BaseSequence || kb.NumRecords != int32(len(recs)) {
		t.Fatalf("kmsg header disagrees: %+v", kb)
	}
	raw, err := kgo.DefaultDecompressor().Decompress(kb.Records, kgo.CompressionCodecType(hdr.Attributes&7))
	if err != nil {
		t.Fatalf("kgo decompress: %v", err)
	}
	for i, r := range recs {
		l, n := binary.Varint(raw)
		if n <= 0 || int(l) > len(raw)-n {
			t.Fatalf("record %d: bad length", i)
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(raw[:n+int(l)]); err != nil {
			t.Fatalf("kmsg record %d: %v", i, err)
		}
		raw = raw[n+int(l):]
		if kr.OffsetDelta != r.OffsetDelta || kr.TimestampDelta64 != r.TimestampDelta ||
			!sameBytes(kr.Key, r.Key) || !sameBytes(kr.Value, r.Value) || len(kr.Headers) != len(r.Headers) {
			t.Fatalf("kmsg record %d: got %+v, want %+v", i, kr, r)
		}
		for j, hh := range r.Headers {
			if kr.Headers[j].Key != hh.Key || !bytes.Equal(kr.Headers[j].Value, hh.Value) {
				t.Errorf("kmsg record %d header %d: got %+v", i, j, kr.Headers[j])
			}
		}
	}
	if len(raw) != 0 {
		t.Errorf("%d bytes after the records", len(raw))
	}
}

// TestEncodeBatchRandom encodes random batches with every codec and checks
// them with the broker's validator and with franz-go.
func TestEncodeBatchRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func() []byte {
		if rng.IntN(5) == 0 {
			return nil
		}
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = byte('a' + rng.IntN(4)) // compressible
		}
		return b
	}
	for i := range 60 {
		c := allCodecs[i%len(allCodecs)]
		recs := make([]Record, 1+rng.IntN(300))
		for j := range recs {
			recs[j] = Record{OffsetDelta: int32(j), TimestampDelta: rng.Int64N(1000) - 100, Key: blob(), Value: blob()}
			for range rng.IntN(3) {
				recs[j].Headers = append(recs[j].Headers, Header{Key: string(blob()), Value: blob()})
			}
		}
		hdr := BatchHeader{BaseOffset: rng.Int64N(1 << 40), PartitionLeaderEpoch: -1, Attributes: int16(c),
			BaseTimestamp: rng.Int64N(1 << 41), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}
		b, err := EncodeBatch(hdr, recs)
		if err != nil {
			t.Fatal(err)
		}
		h, got := plainRecords(t, b)
		if len(got) != len(recs) || h.LastOffsetDelta != int32(len(recs)-1) {
			t.Fatalf("case %d (%s): %d records, lastOffsetDelta %d", i, Name(c), len(got), h.LastOffsetDelta)
		}
		var maxTS int64 = recs[0].TimestampDelta
		for j, r := range recs {
			maxTS = max(maxTS, r.TimestampDelta)
			if !sameBytes(got[j].Key, r.Key) || !sameBytes(got[j].Value, r.Value) || len(got[j].Headers) != len(r.Headers) {
				t.Fatalf("case %d record %d differs", i, j)
			}
		}
		if h.MaxTimestamp != hdr.BaseTimestamp+maxTS {
			t.Errorf("case %d: maxTimestamp %d, want %d", i, h.MaxTimestamp, hdr.BaseTimestamp+maxTS)
		}
		checkWithKmsg(t, b, hdr, recs)
	}
}

// TestEncodeBatchCleanerShape: a batch whose records were thinned by
// compaction keeps the given LastOffsetDelta and MaxTimestamp.
func TestEncodeBatchCleanerShape(t *testing.T) {
	recs := []Record{{OffsetDelta: 1, Key: []byte("a"), Value: []byte("1")}, {OffsetDelta: 5, Key: []byte("b"), Value: []byte("2")}}
	b, err := EncodeBatch(BatchHeader{BaseOffset: 10, Attributes: Zstd, BaseTimestamp: 100, MaxTimestamp: 999, LastOffsetDelta: 9,
		ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	h, err := segment.ParseHeader(b)
	if err != nil || h.LastOffsetDelta != 9 || h.MaxTimestamp != 999 || h.RecordCount != 2 || !segment.CRCValid(b) {
		t.Fatalf("header %+v, %v", h, err)
	}
	checkWithKmsg(t, b, BatchHeader{BaseOffset: 10, Attributes: Zstd, BaseTimestamp: 100, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs)
}

func TestEncodeBatchRefuses(t *testing.T) {
	one := []Record{{OffsetDelta: 0}}
	for _, c := range []struct {
		name string
		h    BatchHeader
		recs []Record
	}{
		{"no records", BatchHeader{LastOffsetDelta: -1}, nil},
		{"codec 5", BatchHeader{Attributes: 5, LastOffsetDelta: -1}, one},
		{"codec 7", BatchHeader{Attributes: 7, LastOffsetDelta: -1}, one},
		{"negative offset delta", BatchHeader{LastOffsetDelta: -1}, []Record{{OffsetDelta: -1}}},
		{"repeated offset delta", BatchHeader{LastOffsetDelta: -1}, []Record{{OffsetDelta: 0}, {OffsetDelta: 0}}},
		{"decreasing offset delta", BatchHeader{LastOffsetDelta: -1}, []Record{{OffsetDelta: 3}, {OffsetDelta: 2}}},
		{"lastOffsetDelta below the last record", BatchHeader{LastOffsetDelta: 1}, []Record{{OffsetDelta: 0}, {OffsetDelta: 2}}},
	} {
		if b, err := EncodeBatch(c.h, c.recs); err == nil {
			t.Errorf("%s: encoded %d bytes, want an error", c.name, len(b))
		}
	}
}

func TestCompressRoundTrip(t *testing.T) {
	inputs := [][]byte{{}, []byte("x"), bytes.Repeat([]byte("brokkr "), 50000)}
	rng := rand.New(rand.NewPCG(3, 4))
	noise := make([]byte, 300000)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	inputs = append(inputs, noise)
	for _, c := range allCodecs {
		for i, in := range inputs {
			out, err := Compress(c, in)
			if err != nil {
				t.Fatalf("%s input %d: %v", Name(c), i, err)
			}
			back, err := Decompress(c, out, len(in)+1)
			if err != nil || !bytes.Equal(back, in) {
				t.Errorf("%s input %d: round trip failed: %v", Name(c), i, err)
			}
			kb, err := kgo.DefaultDecompressor().Decompress(out, kgo.CompressionCodecType(c))
			if err != nil || !bytes.Equal(kb, in) {
				t.Errorf("%s input %d: franz-go disagrees: %v", Name(c), i, err)
			}
			if c != None && i == 2 && len(out) > len(in)/10 {
				t.Errorf("%s: %d bytes compressed to %d", Name(c), len(in), len(out))
			}
		}
	}
	if _, err := Compress(6, []byte("x")); err == nil {
		t.Error("codec 6 accepted")
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	recs := make([]Record, 5)
	for i := range recs {
		recs[i] = Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "key-%d", i), Value: bytes.Repeat([]byte("v"), 60)}
	}
	for _, c := range allCodecs {
		b.Run(Name(c), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeBatch(BatchHeader{Attributes: int16(c), LastOffsetDelta: -1}, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLZ4BlockSize: frames name 64 KiB blocks (as Kafka's Java producer
// writes), also from a pooled writer.
func TestLZ4BlockSize(t *testing.T) {
	for range 3 {
		out, err := Compress(LZ4, bytes.Repeat([]byte("abc"), 100000))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) < 6 || out[5]>>4&7 != 4 {
			t.Fatalf("frame descriptor BD byte %#x, want block max size 4 (64 KiB)", out[5])
		}
	}
}

// TestSparseBatchStoredNotProduced: a batch as the log cleaner writes it
// (kept records at offset deltas 0, 3 and 7 of an original 0..9, the
// original lastOffsetDelta kept) is valid in the log and readable with
// its gaps, and refused as INVALID_RECORD when a producer sends it.
func TestSparseBatchStoredNotProduced(t *testing.T) {
	for _, c := range []int{None, Zstd} {
		recs := []Record{{OffsetDelta: 0, Key: []byte("a")}, {OffsetDelta: 3, Key: []byte("b")}, {OffsetDelta: 7, Key: []byte("c"), Value: []byte("v")}}
		b, err := EncodeBatch(BatchHeader{BaseOffset: 100, Attributes: int16(c), BaseTimestamp: 1, ProducerID: 7, ProducerEpoch: 0, BaseSequence: 40, LastOffsetDelta: 9}, recs)
		if err != nil {
			t.Fatal(err)
		}
		h, err := segment.ValidateStoredBatch(b, 0, nil)
		if err != nil || h.LastOffset() != 109 || h.RecordCount != 3 {
			t.Fatalf("codec %d: stored check: %+v %v", c, h, err)
		}
		if _, err := segment.StoredBatches(b, 0, nil); err != nil {
			t.Fatalf("codec %d: StoredBatches: %v", c, err)
		}
		if _, err := segment.ValidateBatch(b, 0, nil); !errors.Is(err, segment.ErrInvalidRecord) {
			t.Fatalf("codec %d: a sparse batch from a producer: %v, want INVALID_RECORD", c, err)
		}
		if _, err := segment.Batches(b, 0, nil); !errors.Is(err, segment.ErrInvalidRecord) {
			t.Fatalf("codec %d: Batches accepted a sparse batch: %v", c, err)
		}
		plain, err := PlainBatch(b, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		if err := segment.WalkRecords(plain, func(r segment.Record) error { got = append(got, r.OffsetDelta); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int32{0, 3, 7}) {
			t.Fatalf("codec %d: offset deltas %v", c, got)
		}
		if err := segment.WalkRecordsDense(plain, nil); !errors.Is(err, segment.ErrInvalidRecord) {
			t.Fatalf("codec %d: WalkRecordsDense: %v", c, err)
		}
	}
}
