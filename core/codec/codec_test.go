package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDecompressWhatClientsWrite round-trips through franz-go's compressor,
// the same code the producer tests use, for every codec.
func TestDecompressWhatClientsWrite(t *testing.T) {
	plain := bytes.Repeat([]byte("brokkr records "), 1000)
	for _, c := range []struct {
		name  string
		codec int
		kc    kgo.CompressionCodec
	}{
		{"gzip", Gzip, kgo.GzipCompression()},
		{"snappy", Snappy, kgo.SnappyCompression()},
		{"lz4", LZ4, kgo.Lz4Compression()},
		{"zstd", Zstd, kgo.ZstdCompression()},
	} {
		comp, err := kgo.DefaultCompressor(c.kc)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, codec := comp.Compress(&buf, plain)
		if int(codec) != c.codec {
			t.Fatalf("%s: compressor used codec %d", c.name, codec)
		}
		got, err := Decompress(c.codec, append([]byte(nil), out...), 1<<20)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: round trip failed: %v", c.name, err)
		}
		if _, err := Decompress(c.codec, append([]byte(nil), out...), len(plain)-1); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: a limit below the plain size gave %v, want ErrTooLarge", c.name, err)
		}
		if _, err := Decompress(c.codec, out[:len(out)/2], 1<<20); err == nil {
			t.Errorf("%s: truncated input decompressed without error", c.name)
		}
	}
}

func TestXerialSnappy(t *testing.T) {
	comp, _ := kgo.DefaultCompressor(kgo.SnappyCompression())
	a, b := bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("b"), 3000)
	var framed []byte
	framed = append(framed, xerialMagic...)
	framed = binary.BigEndian.AppendUint32(framed, 1)
	framed = binary.BigEndian.AppendUint32(framed, 1)
	for _, part := range [][]byte{a, b} {
		var buf bytes.Buffer
		blk, _ := comp.Compress(&buf, part)
		framed = binary.BigEndian.AppendUint32(framed, uint32(len(blk)))
		framed = append(framed, blk...)
	}
	got, err := Decompress(Snappy, framed, 1<<20)
	if err != nil || !bytes.Equal(got, append(a, b...)) {
		t.Fatalf("xerial: %v (%d bytes)", err, len(got))
	}
	if _, err := Decompress(Snappy, framed[:len(framed)-3], 1<<20); err == nil {
		t.Error("truncated xerial block accepted")
	}
	if _, err := Decompress(Snappy, framed, 6000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("xerial limit: %v", err)
	}
}
