// Package segmenttest builds Kafka v2 record batches for tests of segment
// and core/log: uncompressed batches with real record framing and a valid
// CRC-32C, and helpers to damage them.
package segmenttest

import (
	"encoding/binary"

	"github.com/brokkr/brokkr/segment"
)

// Spec describes a batch to build.
type Spec struct {
	BaseOffset    int64
	LeaderEpoch   int32
	Records       int   // number of records (>= 1)
	ValueSize     int   // bytes per record value
	BaseTimestamp int64 // timestamp of the first record
	TimestampStep int64 // added per record
	Attributes    int16 // codec bits etc. (the records stay uncompressed bytes)
	Seed          byte  // varies the value bytes
}

// Batch builds one uncompressed v2 batch.
func Batch(s Spec) []byte {
	if s.Records < 1 {
		s.Records = 1
	}
	var recs []byte
	maxTs := s.BaseTimestamp
	for i := 0; i < s.Records; i++ {
		tsd := int64(i) * s.TimestampStep
		if s.BaseTimestamp+tsd > maxTs {
			maxTs = s.BaseTimestamp + tsd
		}
		var r []byte
		r = append(r, 0) // attributes
		r = binary.AppendVarint(r, tsd)
		r = binary.AppendVarint(r, int64(i))
		r = binary.AppendVarint(r, -1) // null key
		r = binary.AppendVarint(r, int64(s.ValueSize))
		for j := 0; j < s.ValueSize; j++ {
			r = append(r, byte(i+j)+s.Seed)
		}
		r = binary.AppendVarint(r, 0) // no headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	b := make([]byte, segment.HeaderSize, segment.HeaderSize+len(recs))
	be := binary.BigEndian
	be.PutUint64(b[0:], uint64(s.BaseOffset))
	be.PutUint32(b[8:], uint32(segment.HeaderSize-segment.LogOverhead+len(recs)))
	be.PutUint32(b[12:], uint32(s.LeaderEpoch))
	b[16] = 2
	be.PutUint16(b[21:], uint16(s.Attributes))
	be.PutUint32(b[23:], uint32(s.Records-1))
	be.PutUint64(b[27:], uint64(s.BaseTimestamp))
	be.PutUint64(b[35:], uint64(maxTs))
	be.PutUint64(b[43:], ^uint64(0)) // producerId -1
	be.PutUint16(b[51:], 0xffff)     // producerEpoch -1
	be.PutUint32(b[53:], 0xffffffff) // baseSequence -1
	be.PutUint32(b[57:], uint32(s.Records))
	b = append(b, recs...)
	FixCRC(b)
	return b
}

// FixCRC recomputes the CRC of a batch after a test edited it.
func FixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], segment.ComputeCRC(b))
}

// Headers validates a payload and returns its headers, panicking on a bad
// one (tests build good payloads).
func Headers(payload []byte) []segment.BatchHeader {
	hs, err := segment.Batches(payload, 0, nil)
	if err != nil {
		panic(err)
	}
	return hs
}
