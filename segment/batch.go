package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Byte offsets of the v2 record batch header fields.
const (
	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// HeaderSize is the size of a v2 record batch header.
	HeaderSize = 61
	// LogOverhead is the baseOffset and batchLength prefix of every batch.
	LogOverhead = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Compression codecs (attributes bits 0-2).
const (
	CodecNone   = 0
	CodecGzip   = 1
	CodecSnappy = 2
	CodecLZ4    = 3
	CodecZstd   = 4
)

// BatchHeader is a decoded v2 record batch header.
type BatchHeader struct {
	BaseOffset           int64
	BatchLength          int32
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the number of bytes the batch occupies in the log.
func (h BatchHeader) Size() int64 { return LogOverhead + int64(h.BatchLength) }

// LastOffset is the offset of the batch's last record.
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is LastOffset + 1.
func (h BatchHeader) NextOffset() int64 { return h.LastOffset() + 1 }

// Codec is the compression codec (attributes bits 0-2).
func (h BatchHeader) Codec() int { return int(h.Attributes & 7) }

// LogAppendTime reports timestamp type LogAppendTime (attributes bit 3).
func (h BatchHeader) LogAppendTime() bool { return h.Attributes&8 != 0 }

// Transactional reports attributes bit 4.
func (h BatchHeader) Transactional() bool { return h.Attributes&0x10 != 0 }

// Control reports attributes bit 5 (a transaction marker batch).
func (h BatchHeader) Control() bool { return h.Attributes&0x20 != 0 }

// ParseHeader decodes the first HeaderSize bytes of b. It checks only that
// b is long enough; it does not check magic, lengths or the CRC.
func ParseHeader(b []byte) (BatchHeader, error) {
	if len(b) < HeaderSize {
		return BatchHeader{}, fmt.Errorf("%w: batch header needs %d bytes, have %d", ErrCorruptMessage, HeaderSize, len(b))
	}
	be := binary.BigEndian
	return BatchHeader{
		BaseOffset:           int64(be.Uint64(b[offBaseOffset:])),
		BatchLength:          int32(be.Uint32(b[offBatchLength:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:                int8(b[offMagic]),
		CRC:                  be.Uint32(b[offCRC:]),
		Attributes:           int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta:      int32(be.Uint32(b[offLastOffsetDelta:])),
		BaseTimestamp:        int64(be.Uint64(b[offBaseTimestamp:])),
		MaxTimestamp:         int64(be.Uint64(b[offMaxTimestamp:])),
		ProducerID:           int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:        int16(be.Uint16(b[offProducerEpoch:])),
		BaseSequence:         int32(be.Uint32(b[offBaseSequence:])),
		RecordCount:          int32(be.Uint32(b[offRecordCount:])),
	}, nil
}

// checkHeader checks the header fields that need no record bytes: magic,
// length bounds, counts. size limit maxBytes applies to the whole batch
// (12 + batchLength) when > 0.
func checkHeader(h BatchHeader, maxBytes int) error {
	if h.Magic != 2 {
		return fmt.Errorf("%w: magic %d, only 2 is supported", ErrUnsupportedForMessageFormat, h.Magic)
	}
	if h.BatchLength < HeaderSize-LogOverhead {
		return fmt.Errorf("%w: batchLength %d is shorter than a header", ErrCorruptMessage, h.BatchLength)
	}
	if maxBytes > 0 && h.Size() > int64(maxBytes) {
		return fmt.Errorf("%w: batch of %d bytes exceeds the limit of %d", ErrMessageTooLarge, h.Size(), maxBytes)
	}
	if h.RecordCount <= 0 {
		return fmt.Errorf("%w: record count %d", ErrInvalidRecord, h.RecordCount)
	}
	// A stored batch may hold fewer records than its offset range: the log
	// cleaner keeps a partly kept batch's offsets and lastOffsetDelta (as
	// Kafka's cleaner does). What a client sends must be dense (checkDense).
	if h.LastOffsetDelta < 0 || int64(h.LastOffsetDelta)+1 < int64(h.RecordCount) {
		return fmt.Errorf("%w: lastOffsetDelta %d with %d records", ErrInvalidRecord, h.LastOffsetDelta, h.RecordCount)
	}
	return nil
}

// checkDense: a batch from a producer covers exactly its records' offsets.
func checkDense(h BatchHeader) error {
	if int64(h.LastOffsetDelta)+1 != int64(h.RecordCount) {
		return fmt.Errorf("%w: lastOffsetDelta %d with %d records", ErrInvalidRecord, h.LastOffsetDelta, h.RecordCount)
	}
	return nil
}

// CRCValid reports whether batch (exactly one batch, header included) has
// a CRC-32C that matches bytes 21..end.
func CRCValid(batch []byte) bool {
	if len(batch) < HeaderSize {
		return false
	}
	return crc32.Checksum(batch[offAttributes:], castagnoli) == binary.BigEndian.Uint32(batch[offCRC:])
}

// ComputeCRC returns the CRC-32C a batch's header should carry.
func ComputeCRC(batch []byte) uint32 { return crc32.Checksum(batch[offAttributes:], castagnoli) }

// SetBaseOffset rewrites the base offset in place (outside the CRC).
func SetBaseOffset(batch []byte, off int64) {
	binary.BigEndian.PutUint64(batch[offBaseOffset:], uint64(off))
}

// SetPartitionLeaderEpoch rewrites the partition leader epoch in place
// (outside the CRC).
func SetPartitionLeaderEpoch(batch []byte, epoch int32) {
	binary.BigEndian.PutUint32(batch[offLeaderEpoch:], uint32(epoch))
}

// RecordsCheck validates the records of a compressed batch. The caller
// (the broker, which has the codecs) decompresses and walks them; segment
// has no codecs. It should return an error wrapping ErrCorruptMessage or
// ErrInvalidRecord.
type RecordsCheck func(h BatchHeader, batch []byte) error

// ValidateBatch checks that batch is exactly one well-formed v2 batch no
// larger than maxBytes (0: no limit): magic 2, batchLength matching
// len(batch), CRC-32C, record count > 0 and lastOffsetDelta+1 == count,
// and, when uncompressed, every record's framing and offset delta. For a
// compressed batch the record checks are left to check (may be nil).
func ValidateBatch(batch []byte, maxBytes int, check RecordsCheck) (BatchHeader, error) {
	return validateBatch(batch, maxBytes, check, true)
}

// ValidateStoredBatch is ValidateBatch for a batch read from the log, which
// may be sparse: the log cleaner keeps a partly kept batch's offset range
// (lastOffsetDelta) with fewer records, whose offset deltas have gaps.
func ValidateStoredBatch(batch []byte, maxBytes int, check RecordsCheck) (BatchHeader, error) {
	return validateBatch(batch, maxBytes, check, false)
}

func validateBatch(batch []byte, maxBytes int, check RecordsCheck, dense bool) (BatchHeader, error) {
	if maxBytes > 0 && len(batch) > maxBytes {
		return BatchHeader{}, fmt.Errorf("%w: batch of %d bytes exceeds the limit of %d", ErrMessageTooLarge, len(batch), maxBytes)
	}
	h, err := ParseHeader(batch)
	if err != nil {
		return h, err
	}
	if err := checkHeader(h, maxBytes); err != nil {
		return h, err
	}
	if dense {
		if err := checkDense(h); err != nil {
			return h, err
		}
	}
	if h.Size() != int64(len(batch)) {
		return h, fmt.Errorf("%w: batchLength says %d bytes, have %d", ErrCorruptMessage, h.Size(), len(batch))
	}
	if !CRCValid(batch) {
		return h, fmt.Errorf("%w: CRC-32C mismatch (header %#08x, computed %#08x)", ErrCorruptMessage, h.CRC, ComputeCRC(batch))
	}
	if h.Codec() == CodecNone {
		if err := walkRecords(batch, nil, dense); err != nil {
			return h, err
		}
	} else if h.Codec() > CodecZstd {
		return h, fmt.Errorf("%w: unknown compression codec %d", ErrCorruptMessage, h.Codec())
	} else if check != nil {
		if err := check(h, batch); err != nil {
			return h, err
		}
	}
	return h, nil
}

// Record is one decoded record of an uncompressed batch. Key and Value
// alias the batch's bytes (nil when null).
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key, Value     []byte
	Headers        []RecordHeader
}

// RecordHeader is one record header.
type RecordHeader struct {
	Key   string
	Value []byte
}

// WalkRecords checks the framing of every record of an uncompressed stored
// batch and, if fn is non-nil, calls it with each. Offset deltas must
// increase and stay within lastOffsetDelta; a batch the log cleaner
// compacted has gaps between them. Framing errors wrap ErrCorruptMessage;
// count and offset delta errors wrap ErrInvalidRecord.
func WalkRecords(batch []byte, fn func(Record) error) error {
	return walkRecords(batch, fn, false)
}

// WalkRecordsDense is WalkRecords for a batch as a producer sends it:
// record i must have offset delta i.
func WalkRecordsDense(batch []byte, fn func(Record) error) error {
	return walkRecords(batch, fn, true)
}

func walkRecords(batch []byte, fn func(Record) error, dense bool) error {
	h, err := ParseHeader(batch)
	if err != nil {
		return err
	}
	if h.Size() != int64(len(batch)) {
		return fmt.Errorf("%w: batchLength says %d bytes, have %d", ErrCorruptMessage, h.Size(), len(batch))
	}
	if h.Codec() != CodecNone {
		return fmt.Errorf("%w: records are compressed (codec %d)", ErrCorruptMessage, h.Codec())
	}
	b := batch[HeaderSize:]
	var i int32
	prev := int32(-1)
	for len(b) > 0 {
		if i >= h.RecordCount {
			return fmt.Errorf("%w: %d bytes after the %d records the header counts", ErrInvalidRecord, len(b), h.RecordCount)
		}
		l, n := binary.Varint(b)
		if n <= 0 || l < 0 || l > int64(len(b)-n) {
			return fmt.Errorf("%w: record %d: bad length", ErrCorruptMessage, i)
		}
		rec := b[n : n+int(l)]
		b = b[n+int(l):]
		r, err := parseRecord(rec)
		if err != nil {
			return fmt.Errorf("%w: record %d: %v", ErrCorruptMessage, i, err)
		}
		if dense && r.OffsetDelta != i || r.OffsetDelta <= prev || r.OffsetDelta > h.LastOffsetDelta {
			return fmt.Errorf("%w: record %d has offsetDelta %d", ErrInvalidRecord, i, r.OffsetDelta)
		}
		prev = r.OffsetDelta
		if fn != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
		i++
	}
	if i != h.RecordCount {
		return fmt.Errorf("%w: header counts %d records, batch holds %d", ErrInvalidRecord, h.RecordCount, i)
	}
	return nil
}

var errShort = errors.New("truncated field")

type recReader struct {
	b   []byte
	err error
}

func (r *recReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) bytes(nullable bool) []byte {
	l := r.varint()
	if r.err != nil {
		return nil
	}
	if l == -1 && nullable {
		return nil
	}
	if l < 0 || l > int64(len(r.b)) {
		r.err = fmt.Errorf("length %d out of range", l)
		return nil
	}
	v := r.b[:l:l]
	r.b = r.b[l:]
	return v
}

func parseRecord(b []byte) (Record, error) {
	if len(b) < 1 {
		return Record{}, errShort
	}
	r := recReader{b: b[1:]}
	rec := Record{Attributes: int8(b[0])}
	rec.TimestampDelta = r.varint()
	od := r.varint()
	if od < -1<<31 || od > 1<<31-1 {
		return rec, fmt.Errorf("offsetDelta %d out of range", od)
	}
	rec.OffsetDelta = int32(od)
	rec.Key = r.bytes(true)
	rec.Value = r.bytes(true)
	nh := r.varint()
	if r.err == nil && (nh < 0 || nh > int64(len(r.b))) {
		return rec, fmt.Errorf("header count %d out of range", nh)
	}
	for j := int64(0); j < nh && r.err == nil; j++ {
		k := r.bytes(false)
		v := r.bytes(true)
		rec.Headers = append(rec.Headers, RecordHeader{Key: string(k), Value: v})
	}
	if r.err != nil {
		return rec, r.err
	}
	if len(r.b) != 0 {
		return rec, fmt.Errorf("%d bytes left inside the record", len(r.b))
	}
	return rec, nil
}

// Batches splits a produce payload (zero or more concatenated batches)
// and validates each with ValidateBatch. It returns the headers; a payload
// with any bad batch, or trailing bytes that are not a whole batch, is an
// error and nothing should be written.
func Batches(payload []byte, maxBytes int, check RecordsCheck) ([]BatchHeader, error) {
	return batches(payload, maxBytes, check, true)
}

// StoredBatches is Batches for bytes read from the log, whose batches may
// be sparse (ValidateStoredBatch).
func StoredBatches(payload []byte, maxBytes int, check RecordsCheck) ([]BatchHeader, error) {
	return batches(payload, maxBytes, check, false)
}

func batches(payload []byte, maxBytes int, check RecordsCheck, dense bool) ([]BatchHeader, error) {
	var hs []BatchHeader
	for pos := 0; pos < len(payload); {
		rest := payload[pos:]
		if len(rest) < LogOverhead {
			return nil, fmt.Errorf("%w: %d trailing bytes at %d are not a batch", ErrCorruptMessage, len(rest), pos)
		}
		l := int64(int32(binary.BigEndian.Uint32(rest[offBatchLength:])))
		size := LogOverhead + l
		if l < HeaderSize-LogOverhead {
			return nil, fmt.Errorf("%w: batch at %d: batchLength %d", ErrCorruptMessage, pos, l)
		}
		if maxBytes > 0 && size > int64(maxBytes) {
			return nil, fmt.Errorf("%w: batch at %d is %d bytes, limit %d", ErrMessageTooLarge, pos, size, maxBytes)
		}
		if size > int64(len(rest)) {
			return nil, fmt.Errorf("%w: batch at %d says %d bytes, only %d remain", ErrCorruptMessage, pos, size, len(rest))
		}
		h, err := validateBatch(rest[:size], maxBytes, check, dense)
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", len(hs), err)
		}
		hs = append(hs, h)
		pos += int(size)
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("%w: no record batch in the payload", ErrCorruptMessage)
	}
	return hs, nil
}
