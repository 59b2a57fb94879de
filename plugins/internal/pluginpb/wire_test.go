package pluginpb

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokkr/brokkr/plugins"
)

func randomRecords(r *rand.Rand, n int) []plugins.Record {
	out := make([]plugins.Record, n)
	for i := range out {
		rec := plugins.Record{Offset: int64(i*3 + r.IntN(3)), TimestampMs: r.Int64N(1 << 41), Tombstone: r.IntN(4) == 0}
		switch r.IntN(3) {
		case 0: // null key
		case 1:
			rec.Key = []byte{}
		default:
			rec.Key = bytes.Repeat([]byte{byte(r.IntN(256))}, 1+r.IntN(20))
		}
		if !rec.Tombstone {
			switch r.IntN(3) {
			case 0:
			case 1:
				rec.Value = []byte{}
			default:
				rec.Value = bytes.Repeat([]byte{'v'}, 1+r.IntN(50))
			}
		}
		for range r.IntN(3) {
			h := plugins.Header{Key: "h"}
			if r.IntN(2) == 0 {
				h.Value = []byte{byte(r.IntN(256))}
			}
			rec.Headers = append(rec.Headers, h)
		}
		out[i] = rec
	}
	return out
}

// TestRecordsRoundTrip: random records (null and empty keys and values,
// tombstones, headers with null values) survive encoding, protobuf
// marshalling and decoding exactly; without values, no value arrives.
func TestRecordsRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range 300 {
		recs := randomRecords(r, r.IntN(60))
		for _, values := range []bool{true, false} {
			raw, err := proto.Marshal(RecordsToPB(recs, values))
			if err != nil {
				t.Fatal(err)
			}
			var m Records
			if err := proto.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			got, err := RecordsFromPB(&m)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			want := make([]plugins.Record, len(recs))
			copy(want, recs)
			for j := range want {
				if !values {
					want[j].Value = nil
				}
			}
			if len(got) != len(want) {
				t.Fatalf("case %d: %d records back, want %d", i, len(got), len(want))
			}
			for j := range want {
				if !reflect.DeepEqual(got[j], want[j]) {
					t.Fatalf("case %d (values %v) record %d: got %#v, want %#v", i, values, j, got[j], want[j])
				}
			}
		}
	}
}

// TestRecordsFromPBRefusesBadColumns: inconsistent columns are ErrBadBatch,
// never a panic or a record built from the wrong bytes.
func TestRecordsFromPBRefusesBadColumns(t *testing.T) {
	good := func() *Records {
		return RecordsToPB([]plugins.Record{
			{Offset: 1, Key: []byte("ab"), Value: []byte("v"), Headers: []plugins.Header{{Key: "h"}}},
			{Offset: 2, Key: []byte("c")},
		}, true)
	}
	for name, mutate := range map[string]func(*Records){
		"short timestamps":  func(m *Records) { m.TimestampsMs = m.TimestampsMs[:1] },
		"short flags":       func(m *Records) { m.Flags = nil },
		"key too long":      func(m *Records) { m.KeyLengths[1] = 50 },
		"negative key len":  func(m *Records) { m.KeyLengths[0] = -7 },
		"key bytes left":    func(m *Records) { m.KeyData = append(m.KeyData, 'x') },
		"value lengths":     func(m *Records) { m.ValueLengths = m.ValueLengths[:1] },
		"value too long":    func(m *Records) { m.ValueLengths[0] = 9 },
		"too many headers":  func(m *Records) { m.HeaderCounts[1] = 3 },
		"headers left over": func(m *Records) { m.Headers = append(m.Headers, &Header{Key: "x"}) },
	} {
		m := good()
		mutate(m)
		if recs, err := RecordsFromPB(m); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: %v, %+v; want ErrBadBatch", name, err, recs)
		}
	}
	if _, err := RecordsFromPB(good()); err != nil {
		t.Fatal(err)
	}
}

// TestChunks: chunks are consecutive, cover the batch, stay under the limit
// unless a single record is larger, and depend only on the records.
func TestChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	recs := randomRecords(r, 500)
	for _, limit := range []int{1, 100, 1000, 1 << 20} {
		chunks := Chunks(recs, true, limit)
		var all []plugins.Record
		for _, c := range chunks {
			size := 0
			for _, rec := range c {
				size += RecordWireBytes(rec, true)
			}
			if len(c) == 0 || (len(c) > 1 && size > limit) {
				t.Fatalf("limit %d: chunk of %d records, %d bytes", limit, len(c), size)
			}
			all = append(all, c...)
		}
		if !reflect.DeepEqual(all, recs) {
			t.Fatalf("limit %d: chunks do not cover the batch in order", limit)
		}
		if !reflect.DeepEqual(chunks, Chunks(recs, true, limit)) {
			t.Fatalf("limit %d: chunking not deterministic", limit)
		}
	}
	if c := Chunks(nil, false, 10); len(c) != 1 || len(c[0]) != 0 {
		t.Fatalf("empty batch: %v", c)
	}
}
