package segment_test

import (
	"os"
	"strings"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"golang.org/x/sys/unix"
)

// dataBytes is how much of a file the file system reports as data.
func dataBytes(t *testing.T, name string) int64 {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var total, off int64
	for off < st.Size() {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		total += h - d
		off = h
	}
	return total
}

// TestRecoveryLeavesPreallocatedIndexesSparse: recovering an empty segment
// after a crash must not read or write its whole preallocated indexes
// (10 MiB each): that cost ~10 ms per partition, and 50 partitions of
// __consumer_offsets made a restart after kill -9 take ~1 s.
func TestRecoveryLeavesPreallocatedIndexesSparse(t *testing.T) {
	dir := t.TempDir()
	cfg := segment.Config{IndexMaxBytes: 10 << 20, IndexIntervalBytes: 4096}
	s, err := segment.Create(segment.OSFS{}, dir, 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.CloseNoSeal()
	for i := 0; i < 3; i++ {
		s, rec, err := segment.Open(segment.OSFS{}, dir, 0, cfg, 0)
		if err != nil || rec.Truncated() || rec.IndexRebuilt {
			t.Fatalf("open %d: %v %+v", i, err, rec)
		}
		s.CloseNoSeal()
	}
	for _, ext := range []string{segment.IndexExt, segment.TimeIndexExt} {
		name := segment.FileName(dir, 0, ext)
		if n := dataBytes(t, name); n > 64<<10 {
			t.Errorf("%s: %d bytes became data after three recoveries; want the preallocation left a hole", ext, n)
		}
	}
}

// TestRecoveryFindsGarbageInsideAHole: the SEEK_DATA shortcut must still
// find non-zero bytes far past the valid entries of an index.
func TestRecoveryFindsGarbageInsideAHole(t *testing.T) {
	dir := t.TempDir()
	cfg := segment.Config{IndexMaxBytes: 10 << 20, IndexIntervalBytes: 4096}
	s, err := segment.Create(segment.OSFS{}, dir, 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.CloseNoSeal()
	f, err := os.OpenFile(segment.FileName(dir, 0, segment.IndexExt), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad}, 6<<20+13); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s2, rec, err := segment.Open(segment.OSFS{}, dir, 0, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.CloseNoSeal()
	if !rec.IndexRebuilt || !strings.Contains(rec.IndexReason, "damaged") {
		t.Fatalf("garbage at 6 MiB of the index went unnoticed: %+v", rec)
	}
}
