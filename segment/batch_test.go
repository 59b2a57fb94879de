package segment_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

func TestValidateBatch(t *testing.T) {
	good := func() []byte {
		return segmenttest.Batch(segmenttest.Spec{Records: 3, ValueSize: 10, BaseTimestamp: 1000, TimestampStep: 1})
	}
	edit := func(f func(b []byte) []byte, fixCRC bool) []byte {
		b := f(good())
		if fixCRC {
			segmenttest.FixCRC(b)
		}
		return b
	}
	// record offsets: header(61) then records; first record's offsetDelta is
	// its 3rd field. Find record 1's offsetDelta byte to break it.
	secondDelta := func(b []byte) int {
		p := segment.HeaderSize
		l, n := binary.Varint(b[p:])
		p += n + int(l)             // skip record 0
		_, n = binary.Varint(b[p:]) // length of record 1
		p += n + 1                  // attributes
		_, n = binary.Varint(b[p:]) // timestampDelta
		return p + n
	}
	cases := []struct {
		name string
		b    []byte
		max  int
		want *segment.KafkaError
		code int16
	}{
		{"good", good(), 0, nil, 0},
		{"good at the size limit", good(), len(good()), nil, 0},
		{"too large", good(), len(good()) - 1, segment.ErrMessageTooLarge, 10},
		{"magic 1", edit(func(b []byte) []byte { b[16] = 1; return b }, true), 0, segment.ErrUnsupportedForMessageFormat, 43},
		{"crc flipped", edit(func(b []byte) []byte { b[17] ^= 1; return b }, false), 0, segment.ErrCorruptMessage, 2},
		{"value byte flipped", edit(func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }, false), 0, segment.ErrCorruptMessage, 2},
		{"batchLength too long", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], uint32(len(b))); return b }, false), 0, segment.ErrCorruptMessage, 2},
		{"batchLength too short", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 10); return b }, false), 0, segment.ErrCorruptMessage, 2},
		{"short header", good()[:40], 0, segment.ErrCorruptMessage, 2},
		{"count zero", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[57:], 0); return b }, true), 0, segment.ErrInvalidRecord, 87},
		{"lastOffsetDelta != count-1", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[23:], 5); return b }, true), 0, segment.ErrInvalidRecord, 87},
		{"count and delta agree but records fewer", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[23:], 3)
			binary.BigEndian.PutUint32(b[57:], 4)
			return b
		}, true), 0, segment.ErrInvalidRecord, 87},
		{"offsetDelta skips", edit(func(b []byte) []byte { b[secondDelta(b)] = 4; return b }, true), 0, segment.ErrInvalidRecord, 87},
		{"record length past the end", edit(func(b []byte) []byte { b[segment.HeaderSize] = 0x7e; return b }, true), 0, segment.ErrCorruptMessage, 2},
		{"trailing garbage inside batch", edit(func(b []byte) []byte {
			b = append(b, 0, 0)
			binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
			return b
		}, true), 0, segment.ErrInvalidRecord, 87},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := segment.ValidateBatch(c.b, c.max, nil)
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if h.RecordCount != 3 || h.LastOffset() != 2 || h.MaxTimestamp != 1002 {
					t.Fatalf("header %+v", h)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if got := segment.KafkaCode(err); got != c.code {
				t.Fatalf("KafkaCode = %d, want %d", got, c.code)
			}
		})
	}
}

func TestKafkaCode(t *testing.T) {
	if segment.KafkaCode(nil) != 0 || segment.KafkaCode(errors.New("x")) != -1 || segment.KafkaCode(segment.ErrStorage) != 56 {
		t.Fatal("KafkaCode table wrong")
	}
}

func TestCompressedBatchUsesHook(t *testing.T) {
	b := segmenttest.Batch(segmenttest.Spec{Records: 2, ValueSize: 4, Attributes: segment.CodecZstd})
	called := 0
	hookErr := errors.New("bad inner record")
	_, err := segment.ValidateBatch(b, 0, func(h segment.BatchHeader, batch []byte) error {
		called++
		if h.Codec() != segment.CodecZstd || len(batch) != len(b) {
			t.Errorf("hook got codec %d len %d", h.Codec(), len(batch))
		}
		return errors.Join(segment.ErrInvalidRecord, hookErr)
	})
	if called != 1 || !errors.Is(err, segment.ErrInvalidRecord) || !errors.Is(err, hookErr) {
		t.Fatalf("called=%d err=%v", called, err)
	}
	// Without a hook the records of a compressed batch are not walked.
	if _, err := segment.ValidateBatch(b, 0, nil); err != nil {
		t.Fatalf("no hook: %v", err)
	}
	// Unknown codec 7 is corrupt.
	b7 := segmenttest.Batch(segmenttest.Spec{Records: 1, Attributes: 7})
	if _, err := segment.ValidateBatch(b7, 0, nil); !errors.Is(err, segment.ErrCorruptMessage) {
		t.Fatalf("codec 7: %v", err)
	}
}

func TestBatchesSplitsPayload(t *testing.T) {
	a := segmenttest.Batch(segmenttest.Spec{Records: 2, ValueSize: 5})
	b := segmenttest.Batch(segmenttest.Spec{Records: 7, ValueSize: 1})
	payload := append(append([]byte{}, a...), b...)
	hs, err := segment.Batches(payload, 0, nil)
	if err != nil || len(hs) != 2 || hs[0].RecordCount != 2 || hs[1].RecordCount != 7 {
		t.Fatalf("hs=%+v err=%v", hs, err)
	}
	for _, bad := range [][]byte{nil, payload[:len(payload)-1], append(append([]byte{}, payload...), 1, 2, 3)} {
		if _, err := segment.Batches(bad, 0, nil); !errors.Is(err, segment.ErrCorruptMessage) {
			t.Fatalf("len %d: %v", len(bad), err)
		}
	}
	if _, err := segment.Batches(payload, len(b)-1, nil); !errors.Is(err, segment.ErrMessageTooLarge) {
		t.Fatalf("limit: %v", err)
	}
	// Rewriting base offset and leader epoch keeps the CRC valid.
	segment.SetBaseOffset(payload, 1<<40)
	segment.SetPartitionLeaderEpoch(payload, 77)
	hs, err = segment.Batches(payload, 0, nil)
	if err != nil || hs[0].BaseOffset != 1<<40 || hs[0].PartitionLeaderEpoch != 77 {
		t.Fatalf("after rewrite: %+v %v", hs, err)
	}
}
