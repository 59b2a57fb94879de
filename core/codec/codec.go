// Package codec decompresses Kafka record batches (gzip, snappy raw and in
// Java's xerial framing, lz4 frames, zstd) with a cap on the output, so a
// small compressed batch cannot make the broker allocate gigabytes. It is
// used to validate records and by tools, never on the fetch path: batches
// are stored and served as they came. EncodeBatch and Compress (encode.go)
// write batches: the group coordinator's records and the log cleaner's
// rewritten batches.
package codec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Kafka's compression codecs, the low three bits of a batch's attributes.
const (
	None   = 0
	Gzip   = 1
	Snappy = 2
	LZ4    = 3
	Zstd   = 4
)

// Name is Kafka's name of a codec.
func Name(codec int) string {
	switch codec {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Snappy:
		return "snappy"
	case LZ4:
		return "lz4"
	case Zstd:
		return "zstd"
	}
	return "unknown"
}

// ErrTooLarge: the records would decompress to more than the limit.
var ErrTooLarge = errors.New("decompressed records exceed the limit")

// xerialMagic starts a snappy stream in Java's xerial framing, which the
// Java client writes: magic, then 4-byte version and compatible version,
// then blocks of a 4-byte big-endian length and a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// zstdDecoder is shared: DecodeAll is safe for concurrent use.
var zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))

// Decompress returns the records of a compressed batch, refusing to produce
// more than max bytes.
func Decompress(codec int, src []byte, max int) ([]byte, error) {
	switch codec {
	case None:
		return src, nil
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readMax(zr, max)
	case Snappy:
		if bytes.HasPrefix(src, xerialMagic) {
			if len(src) < 16 {
				return nil, errors.New("snappy: truncated xerial header")
			}
			return xerialDecode(src[16:], max)
		}
		return snappyBlock(src, max)
	case LZ4:
		return readMax(lz4.NewReader(bytes.NewReader(src)), max)
	case Zstd:
		if zstdDecoder == nil {
			return nil, errors.New("zstd decoder unavailable")
		}
		out, err := zstdDecoder.DecodeAll(src, make([]byte, 0, min(len(src)*4, max)))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		if len(out) > max {
			return nil, ErrTooLarge
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

func readMax(r io.Reader, max int) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(max) {
		return nil, ErrTooLarge
	}
	return buf.Bytes(), nil
}

func snappyBlock(src []byte, max int) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > max {
		return nil, ErrTooLarge
	}
	out, err := s2.Decode(nil, src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return out, nil
}

func xerialDecode(src []byte, max int) ([]byte, error) {
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("snappy: truncated xerial block header")
		}
		n := int(binary.BigEndian.Uint32(src))
		src = src[4:]
		if n > len(src) {
			return nil, errors.New("snappy: xerial block longer than the data")
		}
		blk, err := snappyBlock(src[:n], max-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, blk...)
		src = src[n:]
	}
	return out, nil
}
