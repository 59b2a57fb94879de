package log

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// slowSyncFS is the OS file system whose .log fdatasync waits until it is
// released, like a disk that takes long to flush.
type slowSyncFS struct {
	segment.OSFS
	gate    chan struct{}
	waiting atomic.Int32
}

type slowFile struct {
	segment.File
	fs *slowSyncFS
}

func (f slowFile) Sync() error {
	f.fs.waiting.Add(1)
	<-f.fs.gate
	return f.File.Sync()
}

func (s *slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (segment.File, error) {
	f, err := s.OSFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return slowFile{File: f, fs: s}, nil
}

// TestFlushDoesNotBlockAppends: while a timed flush waits on a slow
// fdatasync, appends and reads go on; when the sync finishes the recovery
// point covers what was appended before the flush began, not after.
func TestFlushDoesNotBlockAppends(t *testing.T) {
	fsys := &slowSyncFS{gate: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.FlushMs = 10
	l, err := Open(t.TempDir(), cfg, Options{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(segmenttest.Batch(segmenttest.Spec{Records: 5, ValueSize: 10}), 0); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- l.FlushIfDue(time.Now().Add(time.Second)) }()
	deadline := time.Now().Add(10 * time.Second)
	for fsys.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if fsys.waiting.Load() == 0 {
		t.Fatal("the flush never reached fdatasync")
	}
	// The flush is parked in fdatasync: appends and reads must not wait.
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(segmenttest.Batch(segmenttest.Spec{Records: 3, ValueSize: 10}), 0)
		if err == nil {
			var r ReadResult
			r, err = l.Read(0, ReadOptions{MaxBytes: 1 << 20, Limit: LimitLogEnd})
			r.Release()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(fsys.gate)
		t.Fatal("an append waited for a flush's fdatasync")
	}
	close(fsys.gate)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if rp := l.RecoveryPoint(); rp != 5 {
		t.Errorf("recovery point %d after the flush, want 5 (the log end when it began)", rp)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if rp := l.RecoveryPoint(); rp != 8 {
		t.Errorf("recovery point %d after a second flush, want 8", rp)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(); err != ErrClosed {
		t.Errorf("Flush after Close: %v", err)
	}
}
