package log

import (
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/segment"
)

func readFile(t *testing.T, fsys segment.FS, name string) string {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	sz, _ := f.Size()
	b := make([]byte, sz)
	f.ReadAt(b, 0)
	return string(b)
}

func memManager(t *testing.T, fsys *segment.MemFS, c *clock, ev Events) *Manager {
	t.Helper()
	m, err := OpenManager(ManagerConfig{LogDirs: []string{"/a", "/b"}, Default: smallConfig(), CheckpointMs: 1000, SchedulerMs: -1},
		Options{FS: fsys, Now: c.Now, Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestManagerLifecycle(t *testing.T) {
	fsys := segment.NewMemFS()
	c := newClock()
	m := memManager(t, fsys, c, Events{})
	for _, tp := range []TopicPartition{{"orders", 0}, {"orders", 1}, {"my-topic", 2}} {
		l, err := m.Create(tp.Topic, tp.Partition, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			if _, err := l.Append(batchFor(l.LogEndOffset()), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := m.Create("../x", 0, nil); err == nil {
		t.Fatal("a topic name with a path separator was accepted")
	}
	// partitions are spread over both dirs
	a, _ := fsys.ReadDir("/a")
	b, _ := fsys.ReadDir("/b")
	if len(a) == 0 || len(b) == 0 {
		t.Fatalf("dirs: %v / %v", a, b)
	}
	// Flush by flush.ms through Tick, then the periodic checkpoint.
	l, _ := m.Get("orders", 0)
	leo := l.LogEndOffset()
	if l.RecoveryPoint() != 0 {
		t.Fatal("recovery point moved without a flush")
	}
	c.Add(999 * time.Millisecond)
	m.Tick(c.Now())
	if l.RecoveryPoint() != 0 {
		t.Fatal("flushed before flush.ms")
	}
	c.Add(time.Millisecond)
	m.Tick(c.Now())
	if l.RecoveryPoint() != leo {
		t.Fatalf("recovery point %d after flush.ms, want %d", l.RecoveryPoint(), leo)
	}
	ck := readFile(t, fsys, "/"+m.dirOf[TopicPartition{"orders", 0}][1:]+"/"+RecoveryPointFile)
	if !strings.Contains(ck, "orders 0 "+strconv.FormatInt(leo, 10)+"\n") || !strings.HasPrefix(ck, "0\n") {
		t.Fatalf("checkpoint:\n%s", ck)
	}
	// Delete really removes the data.
	dir := m.dirOf[TopicPartition{"orders", 1}]
	if err := m.Delete("orders", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("orders", 1); ok {
		t.Fatal("deleted partition still served")
	}
	ents, _ := fsys.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name, "orders-1") {
			t.Fatalf("deleted partition left %s", e.Name)
		}
	}
	// An interrupted delete (renamed, not removed) is finished at start.
	fsys.MkdirAll("/a/gone-0.abcd-delete", 0o755)
	f, _ := fsys.OpenFile("/a/gone-0.abcd-delete/00000000000000000000.log", os.O_RDWR|os.O_CREATE, 0o644)
	f.WriteAt([]byte("x"), 0)
	f.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/a", "/b"} {
		if _, err := fsys.Stat(d + "/" + CleanShutdownFile); err != nil {
			t.Fatalf("no clean shutdown marker in %s after Close", d)
		}
	}
	var truncs []segment.Recovery
	m = memManager(t, fsys, c, Events{RecoveryTruncated: func(_ string, r segment.Recovery) { truncs = append(truncs, r) }})
	if _, err := fsys.Stat("/a/gone-0.abcd-delete"); err == nil {
		t.Fatal("interrupted delete not finished")
	}
	for _, d := range []string{"/a", "/b"} {
		if _, err := fsys.Stat(d + "/" + CleanShutdownFile); err == nil {
			t.Fatalf("clean shutdown marker in %s survived the start", d)
		}
	}
	if got := m.Partitions(); len(got) != 2 || got[0] != (TopicPartition{"my-topic", 2}) || got[1] != (TopicPartition{"orders", 0}) {
		t.Fatalf("partitions after restart: %v", got)
	}
	l, _ = m.Get("orders", 0)
	if l.LogEndOffset() != leo || l.RecoveryPoint() != leo {
		t.Fatalf("after a clean restart: LEO %d RP %d, want %d", l.LogEndOffset(), l.RecoveryPoint(), leo)
	}
	// A storage error while running: no clean shutdown marker at Close.
	fsys.FailWritesAfter(0, syscall.EIO)
	if _, err := l.Append(batchFor(l.LogEndOffset()), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with EIO: %v", err)
	}
	fsys.ClearFaults()
	m.Close()
	for _, d := range []string{"/a", "/b"} {
		if _, err := fsys.Stat(d + "/" + CleanShutdownFile); err == nil {
			t.Fatalf("clean shutdown marker written in %s after a storage error", d)
		}
	}
	if len(truncs) != 0 {
		t.Fatalf("clean restart cut tails: %+v", truncs)
	}
}

// TestRecoveryStartsAtTheRecoveryPoint: after a crash only what lies past
// the checkpointed recovery point is re-read, and a torn tail there is
// cut and reported.
func TestRecoveryStartsAtTheRecoveryPoint(t *testing.T) {
	fsys := segment.NewMemFS()
	c := newClock()
	m := memManager(t, fsys, c, Events{})
	l, _ := m.Create("t", 0, nil)
	for i := 0; i < 200; i++ {
		l.Append(batchFor(l.LogEndOffset()), 0)
	}
	l.Flush()
	m.Checkpoint()
	rp := l.RecoveryPoint()
	for i := 0; i < 5; i++ {
		l.Append(batchFor(l.LogEndOffset()), 0)
	}
	leo := l.LogEndOffset()
	segs := l.Segments()
	active := segs[len(segs)-1]
	m.stopAndAbandon()
	// Tear the tail: half a batch of garbage after the last batch.
	name := segment.FileName(l.Dir(), active.Base, segment.LogExt)
	f, _ := fsys.OpenFile(name, os.O_RDWR, 0)
	sz, _ := f.Size()
	torn := batchFor(leo)[:40]
	f.WriteAt(torn, sz)
	f.Close()
	var recovered, truncs []segment.Recovery
	ev := Events{
		RecoveryTruncated: func(_ string, r segment.Recovery) { truncs = append(truncs, r) },
		SegmentRecovered:  func(_ string, r segment.Recovery) { recovered = append(recovered, r) },
	}
	m = memManager(t, fsys, c, ev)
	defer m.Close()
	l, _ = m.Get("t", 0)
	if l.LogEndOffset() != leo {
		t.Fatalf("LEO %d, want %d", l.LogEndOffset(), leo)
	}
	if len(truncs) != 1 || truncs[0].TruncatedBytes != 40 || truncs[0].Base != active.Base {
		t.Fatalf("truncations %+v", truncs)
	}
	// Only the segment holding the recovery point was re-read, from the
	// index entry below the recovery point: at most the unflushed bytes
	// plus one index interval and one batch.
	if len(segs) < 3 || len(recovered) != 1 || recovered[0].Base != active.Base {
		t.Fatalf("%d segments, recovered %+v", len(segs), recovered)
	}
	unflushed := int64(0)
	for o := rp; o < leo; o = o + 1 + o%5 {
		unflushed += int64(len(batchFor(o)))
	}
	if max := unflushed + int64(smallConfig().IndexIntervalBytes) + 1000; recovered[0].Scanned > max || recovered[0].Scanned < unflushed {
		t.Fatalf("recovery scanned %d bytes; unflushed %d", recovered[0].Scanned, unflushed)
	}
}

// TestSchedulerFlushesOnItsOwn: with Kafka's Long.MAX scheduler interval
// the background flusher still runs (every second) and flush.ms applies.
func TestSchedulerFlushesOnItsOwn(t *testing.T) {
	cfg := smallConfig()
	cfg.FlushMs = 10
	m, err := OpenManager(ManagerConfig{LogDirs: []string{t.TempDir()}, Default: cfg, SchedulerMs: math.MaxInt64}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Create("t", 0, nil)
	l.Append(batchFor(0), 0)
	deadline := time.Now().Add(20 * time.Second)
	for l.RecoveryPoint() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler never flushed")
		}
		time.Sleep(50 * time.Millisecond) // bounded by the deadline above
	}
	if l.RecoveryPoint() != l.LogEndOffset() {
		t.Fatalf("recovery point %d, LEO %d", l.RecoveryPoint(), l.LogEndOffset())
	}
}
