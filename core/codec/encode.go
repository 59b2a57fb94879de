package codec

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/brokkr/brokkr/segment"
)

// Header is one record header.
type Header struct {
	Key   string
	Value []byte // nil = null
}

// Record is one record to encode. Its attributes byte is always 0 (Kafka
// defines no record attributes).
type Record struct {
	OffsetDelta    int32
	TimestampDelta int64
	Key, Value     []byte // nil = null
	Headers        []Header
}

// BatchHeader holds the fields of a v2 batch header that EncodeBatch does
// not compute (magic, batchLength, CRC and the record count are computed).
type BatchHeader struct {
	BaseOffset           int64
	PartitionLeaderEpoch int32
	// Attributes as Kafka: the codec in bits 0-2, timestamp type
	// (LogAppendTime) bit 3, transactional bit 4, control bit 5.
	Attributes    int16
	BaseTimestamp int64
	MaxTimestamp  int64 // 0: BaseTimestamp + the largest TimestampDelta
	ProducerID    int64 // -1 for none
	ProducerEpoch int16 // -1 for none
	BaseSequence  int32 // -1 for none
	// LastOffsetDelta -1 takes the last record's OffsetDelta. The log
	// cleaner passes the original batch's value, which may be larger than
	// the last retained record's (Kafka keeps it: the batch keeps its offset
	// and sequence range; the removed records leave gaps).
	LastOffsetDelta int32
}

// EncodeBatch returns one magic-2 record batch holding recs, compressed
// with the codec in h.Attributes, with its batchLength, record count and
// CRC-32C (over attributes..end) filled in. It refuses an empty record
// list, an unknown codec, offset deltas that are negative or not strictly
// increasing, and a LastOffsetDelta below the last record's delta.
func EncodeBatch(h BatchHeader, recs []Record) ([]byte, error) {
	if len(recs) == 0 {
		return nil, errors.New("encode batch: no records")
	}
	c := int(h.Attributes & 7)
	if c > Zstd {
		return nil, fmt.Errorf("encode batch: unknown compression codec %d", c)
	}
	prev := int32(-1)
	maxDelta := recs[0].TimestampDelta
	size := 0
	for i := range recs {
		r := &recs[i]
		if r.OffsetDelta <= prev {
			return nil, fmt.Errorf("encode batch: record %d has offsetDelta %d after %d (must increase from 0)", i, r.OffsetDelta, prev)
		}
		prev = r.OffsetDelta
		maxDelta = max(maxDelta, r.TimestampDelta)
		n := bodyLen(r)
		size += varintLen(int64(n)) + n
	}
	last := h.LastOffsetDelta
	if last == -1 {
		last = prev
	} else if last < prev {
		return nil, fmt.Errorf("encode batch: lastOffsetDelta %d is below the last record's offsetDelta %d", last, prev)
	}
	maxTS := h.MaxTimestamp
	if maxTS == 0 {
		maxTS = h.BaseTimestamp + maxDelta
	}

	var b []byte
	if c == None {
		b = make([]byte, segment.HeaderSize, segment.HeaderSize+size)
		for i := range recs {
			b = appendRecord(b, &recs[i])
		}
		if len(b) != segment.HeaderSize+size {
			return nil, fmt.Errorf("encode batch: records took %d bytes, computed %d", len(b)-segment.HeaderSize, size)
		}
	} else {
		bp := rawPool.Get().(*[]byte)
		raw := (*bp)[:0]
		for i := range recs {
			raw = appendRecord(raw, &recs[i])
		}
		b = make([]byte, segment.HeaderSize, segment.HeaderSize+size/2+64)
		var err error
		b, err = compressAppend(b, c, raw)
		if cap(raw) <= 4<<20 {
			*bp = raw
			rawPool.Put(bp)
		}
		if err != nil {
			return nil, fmt.Errorf("encode batch: %w", err)
		}
	}
	if len(b)-segment.LogOverhead > 1<<31-1 {
		return nil, errors.New("encode batch: batch larger than 2 GiB")
	}
	be := binary.BigEndian
	be.PutUint64(b[0:], uint64(h.BaseOffset))
	be.PutUint32(b[8:], uint32(len(b)-segment.LogOverhead))
	be.PutUint32(b[12:], uint32(h.PartitionLeaderEpoch))
	b[16] = 2
	be.PutUint16(b[21:], uint16(h.Attributes))
	be.PutUint32(b[23:], uint32(last))
	be.PutUint64(b[27:], uint64(h.BaseTimestamp))
	be.PutUint64(b[35:], uint64(maxTS))
	be.PutUint64(b[43:], uint64(h.ProducerID))
	be.PutUint16(b[51:], uint16(h.ProducerEpoch))
	be.PutUint32(b[53:], uint32(h.BaseSequence))
	be.PutUint32(b[57:], uint32(len(recs)))
	be.PutUint32(b[17:], segment.ComputeCRC(b))
	return b, nil
}

var rawPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// bodyLen is the encoded size of a record after its length prefix.
func bodyLen(r *Record) int {
	n := 1 + varintLen(r.TimestampDelta) + varintLen(int64(r.OffsetDelta)) +
		bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

func appendRecord(dst []byte, r *Record) []byte {
	dst = binary.AppendVarint(dst, int64(bodyLen(r)))
	dst = append(dst, 0) // attributes
	dst = binary.AppendVarint(dst, r.TimestampDelta)
	dst = binary.AppendVarint(dst, int64(r.OffsetDelta))
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

// Compress returns raw compressed with a Kafka codec: gzip, snappy (one
// raw block, as franz-go and librdkafka write; Java's decoder reads it),
// lz4 (frame format) or zstd. None returns a copy of raw.
func Compress(codec int, raw []byte) ([]byte, error) {
	return compressAppend(nil, codec, raw)
}

var (
	gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression); return w }}
	lz4Pool  = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// Kafka's Java producer writes 64 KiB blocks; a reader sizes its
		// buffer by the block size the frame names.
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
		return w
	}}

	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdErr  error
)

// appendWriter is an io.Writer that appends to a slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func compressAppend(dst []byte, codec int, raw []byte) ([]byte, error) {
	switch codec {
	case None:
		return append(dst, raw...), nil
	case Gzip:
		w := &appendWriter{b: dst}
		zw := gzipPool.Get().(*gzip.Writer)
		zw.Reset(w)
		_, err := zw.Write(raw)
		if err == nil {
			err = zw.Close()
		}
		gzipPool.Put(zw)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return w.b, nil
	case Snappy:
		n := snappy.MaxEncodedLen(len(raw))
		if n < 0 {
			return nil, errors.New("snappy: input too large")
		}
		start := len(dst)
		dst = growTo(dst, start+n)
		out := snappy.Encode(dst[start:start+n], raw)
		return dst[:start+len(out)], nil
	case LZ4:
		w := &appendWriter{b: dst}
		zw := lz4Pool.Get().(*lz4.Writer)
		zw.Reset(w)
		_, err := zw.Write(raw)
		if err == nil {
			err = zw.Close()
		}
		lz4Pool.Put(zw)
		if err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
		return w.b, nil
	case Zstd:
		zstdOnce.Do(func() {
			zstdEnc, zstdErr = zstd.NewWriter(nil, zstd.WithZeroFrames(true))
		})
		if zstdErr != nil {
			return nil, fmt.Errorf("zstd: %w", zstdErr)
		}
		return zstdEnc.EncodeAll(raw, dst), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// growTo returns b with length n, keeping its contents.
func growTo(b []byte, n int) []byte {
	if n <= cap(b) {
		return b[:n]
	}
	nb := make([]byte, n)
	copy(nb, b)
	return nb
}
