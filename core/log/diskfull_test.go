package log

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it at cleanup.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (the test needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills a 16 MiB tmpfs: appends fail with ErrStorage wrapping
// ENOSPC, nothing acknowledged is lost or corrupted, a restart finds
// nothing to cut, and appends work again once space is freed.
func TestDiskFull(t *testing.T) {
	root := mountTmpfs(t, "16m")
	filler := filepath.Join(root, "filler")
	if err := os.WriteFile(filler, make([]byte, 6<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.SegmentBytes = 3 << 20
	cfg.SegmentIndexBytes = 64 << 10
	dir := filepath.Join(root, "t-0")
	var storageErrs int
	l, err := Open(dir, cfg, Options{Events: Events{StorageError: func(string, error) { storageErrs++ }}})
	if err != nil {
		t.Fatal(err)
	}
	big := func() []byte {
		return segmenttest.Batch(segmenttest.Spec{Records: 64, ValueSize: 1000, BaseTimestamp: 1})
	}
	var acked []AppendResult
	var appendErr error
	for i := 0; i < 1000; i++ {
		res, err := l.Append(big(), 1)
		if err != nil {
			appendErr = err
			break
		}
		acked = append(acked, res)
	}
	if appendErr == nil {
		t.Fatal("16 MiB tmpfs never filled")
	}
	if !errors.Is(appendErr, ErrStorage) || !errors.Is(appendErr, syscall.ENOSPC) || segment.KafkaCode(appendErr) != 56 {
		t.Fatalf("append on a full disk: %v", appendErr)
	}
	if storageErrs == 0 {
		t.Fatal("no StorageError event")
	}
	t.Logf("%d batches (%d MiB) acknowledged before ENOSPC: %v", len(acked), len(acked)*64*1000>>20, appendErr)
	leo := acked[len(acked)-1].LastOffset + 1
	// More attempts keep failing cleanly, the LEO does not move.
	for i := 0; i < 3; i++ {
		if _, err := l.Append(big(), 1); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("retry %d on a full disk: %v", i, err)
		}
	}
	if l.LogEndOffset() != leo {
		t.Fatalf("LEO %d after failed appends, want %d", l.LogEndOffset(), leo)
	}
	check := func(l *Log) {
		l.SetHighWatermark(l.LogEndOffset())
		got := readAll(t, l, 0, LimitHighWatermark)
		off := int64(0)
		for _, b := range got {
			if _, err := segment.ValidateStoredBatch(b, 0, nil); err != nil {
				t.Fatalf("batch at %d: %v", off, err)
			}
			h, _ := segment.ParseHeader(b)
			if h.BaseOffset != off {
				t.Fatalf("batch at %d, want %d", h.BaseOffset, off)
			}
			off = h.NextOffset()
		}
		if off != l.LogEndOffset() {
			t.Fatalf("read to %d, LEO %d", off, l.LogEndOffset())
		}
	}
	check(l)
	// A restart (after kill -9) finds every acknowledged batch and nothing to cut.
	l.abandon()
	var cuts []segment.Recovery
	l, err = Open(dir, cfg, Options{RecoveryPoint: 0, Events: Events{RecoveryTruncated: func(_ string, r segment.Recovery) { cuts = append(cuts, r) }}})
	if err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	if l.LogEndOffset() != leo || len(cuts) != 0 {
		t.Fatalf("after restart: LEO %d want %d, cuts %+v", l.LogEndOffset(), leo, cuts)
	}
	check(l)
	// Free space: appends work again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := l.Append(big(), 1); err != nil {
			t.Fatalf("append after freeing space: %v", err)
		}
	}
	if l.LogEndOffset() != leo+5*64 {
		t.Fatalf("LEO %d, want %d", l.LogEndOffset(), leo+5*64)
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
