package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
	"github.com/twmb/franz-go/pkg/kgo"
)

func runRoot(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

// gzipBatch turns an uncompressed batch into a gzip one, as a producer would.
func gzipBatch(t *testing.T, b []byte) []byte {
	comp, err := kgo.DefaultCompressor(kgo.GzipCompression())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	z, _ := comp.Compress(&buf, b[segment.HeaderSize:])
	out := append(append([]byte(nil), b[:segment.HeaderSize]...), z...)
	binary.BigEndian.PutUint16(out[21:], 1)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-segment.LogOverhead))
	segmenttest.FixCRC(out)
	return out
}

func TestLogDump(t *testing.T) {
	dir := t.TempDir()
	b1 := segmenttest.Batch(segmenttest.Spec{BaseOffset: 0, Records: 3, ValueSize: 5, BaseTimestamp: 1000, TimestampStep: 10, LeaderEpoch: 4})
	b2 := gzipBatch(t, segmenttest.Batch(segmenttest.Spec{BaseOffset: 3, Records: 2, ValueSize: 4, BaseTimestamp: 2000, Seed: 'a'}))
	logPath := filepath.Join(dir, "00000000000000000000.log")
	if err := os.WriteFile(logPath, append(append([]byte(nil), b1...), b2...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runRoot(t, "log", "dump", "--records", logPath)
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, out)
	}
	for _, want := range []string{
		"baseOffset: 0 lastOffset: 2 count: 3 ",
		"partitionLeaderEpoch: 4 ",
		"CreateTime: 1020 size: " + itoa(len(b1)) + " magic: 2 compresscodec: none",
		"baseOffset: 3 lastOffset: 4 count: 2 ",
		"compresscodec: gzip",
		"position: " + itoa(len(b1)) + " ",
		"| offset: 2 timestamp: 1020 keySize: -1 valueSize: 5",
		"| offset: 4 timestamp: 2000 keySize: -1 valueSize: 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "isvalid: true"); n != 2 {
		t.Errorf("%d valid batches, want 2:\n%s", n, out)
	}
	if n := strings.Count(out, "| offset:"); n != 5 {
		t.Errorf("%d records printed, want 5:\n%s", n, out)
	}

	// A flipped byte in the second batch is shown as a bad CRC, exit 1.
	bad := append(append([]byte(nil), b1...), b2...)
	bad[len(bad)-3] ^= 0xff
	if err := os.WriteFile(logPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runRoot(t, "log", "dump", logPath)
	if err == nil || !strings.Contains(out, "isvalid: false") || !strings.Contains(errOut, "1 batch(es) failed the CRC check") {
		t.Errorf("corrupt batch: err %v\nout %s\nerr %s", err, out, errOut)
	}
	// A torn tail is reported with its position.
	if err := os.WriteFile(logPath, append(append([]byte(nil), b1...), b2[:20]...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err = runRoot(t, "log", "dump", logPath)
	if err == nil || !strings.Contains(errOut, "position "+itoa(len(b1))) {
		t.Errorf("torn tail: err %v, stderr %s", err, errOut)
	}

	// Index and time index entries, with absolute offsets from the name.
	idx := filepath.Join(dir, "00000000000000000100.index")
	var ib []byte
	ib = binary.BigEndian.AppendUint32(ib, 7)
	ib = binary.BigEndian.AppendUint32(ib, 4096)
	ib = append(ib, make([]byte, 16)...) // preallocated zeros are not entries
	if err := os.WriteFile(idx, ib, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runRoot(t, "log", "dump", idx)
	if err != nil || !strings.Contains(out, "offset: 107 position: 4096") || strings.Count(out, "offset:") != 1 {
		t.Errorf("index dump: %v\n%s", err, out)
	}
	if _, _, err := runRoot(t, "log", "dump", filepath.Join(dir, "notes.txt")); err == nil {
		t.Error("a file that is not a segment file was accepted")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
