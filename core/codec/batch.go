package codec

import (
	"encoding/binary"

	"github.com/brokkr/brokkr/segment"
)

// PlainBatch returns batch with its records decompressed and its header
// made to match (codec bits cleared, batchLength fixed; the CRC is left as
// it was), so segment.WalkRecords can read the records. An uncompressed
// batch is returned as it is.
func PlainBatch(batch []byte, max int) ([]byte, error) {
	h, err := segment.ParseHeader(batch)
	if err != nil {
		return nil, err
	}
	if h.Codec() == None {
		return batch, nil
	}
	recs, err := Decompress(h.Codec(), batch[segment.HeaderSize:], max)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, 0, segment.HeaderSize+len(recs))
	plain = append(append(plain, batch[:segment.HeaderSize]...), recs...)
	binary.BigEndian.PutUint16(plain[21:], uint16(h.Attributes)&^7)
	binary.BigEndian.PutUint32(plain[8:], uint32(len(plain)-segment.LogOverhead))
	return plain, nil
}
