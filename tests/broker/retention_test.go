package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

func startOffset(t *testing.T, addr, topic string) int64 {
	t.Helper()
	lo, err := newAdmin(t, addr).ListStartOffsets(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := lo.Lookup(topic, 0)
	return o.Offset
}

// produceAt writes n 1 KiB records stamped ts, one batch each, so small
// segments roll often.
func produceAt(t *testing.T, cl *kgo.Client, topic string, n int, ts time.Time) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Value: []byte(strings.Repeat("r", 1024)), Timestamp: ts}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetentionDeletesOldSegments: the built-in time and size retention,
// checked every 200 ms, advances the log start offset by whole segments,
// keeps the active segment and recent data, leaves a compact-only topic
// alone, and counts what it deleted.
func TestRetentionDeletesOldSegments(t *testing.T) {
	b := testbroker.Start(t, "log.retention.check.interval.ms=200", "brokkr.admin.listener=127.0.0.1:0")
	seg := "4096"
	hour := "3600000"
	createTopic(t, b.Addr, "by-time", 1, map[string]*string{"segment.bytes": &seg, "retention.ms": &hour})
	compact := "compact"
	createTopic(t, b.Addr, "compacted", 1, map[string]*string{"segment.bytes": &seg, "retention.ms": &hour, "cleanup.policy": &compact})
	limit := "12000"
	createTopic(t, b.Addr, "by-size", 1, map[string]*string{"segment.bytes": &seg, "retention.bytes": &limit})

	// Uncompressed, so 1 KiB records fill 4 KiB segments.
	cl := newClient(t, b.Addr, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	old := time.Now().Add(-2 * time.Hour)
	produceAt(t, cl, "by-time", 20, old)
	produceAt(t, cl, "by-time", 5, time.Now())
	produceAt(t, cl, "compacted", 20, old)
	produceAt(t, cl, "by-size", 30, time.Now())

	defer func() {
		if t.Failed() {
			for _, d := range []string{"by-time-0", "by-size-0"} {
				ents, _ := os.ReadDir(filepath.Join(b.DataDir, "logs", d))
				for _, e := range ents {
					fi, _ := e.Info()
					t.Logf("%s/%s %d", d, e.Name(), fi.Size())
				}
			}
			lo, err := newAdmin(t, b.Addr).ListStartOffsets(ctxFor(t, 10*time.Second), "by-size")
			t.Logf("start offsets %+v %v", lo, err)
		}
	}()
	testbroker.Eventually(t, 20*time.Second, "time retention advanced the log start of by-time", func() bool {
		return startOffset(t, b.Addr, "by-time") > 0
	})
	testbroker.Eventually(t, 20*time.Second, "size retention advanced the log start of by-size", func() bool {
		return startOffset(t, b.Addr, "by-size") > 0
	})
	time.Sleep(500 * time.Millisecond) // more checks: nothing further may go
	if s := startOffset(t, b.Addr, "by-time"); s > 20 {
		t.Errorf("by-time starts at %d: recent records (offsets 20-24) were deleted", s)
	}
	if s := startOffset(t, b.Addr, "compacted"); s != 0 {
		t.Errorf("a compact-only topic lost its head to time retention: start %d", s)
	}
	// Size retention keeps at least retention.bytes (whole segments).
	var size int64
	files, _ := filepath.Glob(filepath.Join(b.DataDir, "logs", "by-size-0", "*.log"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	if size < 12000 {
		t.Errorf("by-size holds %d bytes of log, below retention.bytes=12000", size)
	}
	// What remains is still readable from the new start.
	adm := newAdmin(t, b.Addr)
	ends, err := adm.ListEndOffsets(ctxFor(t, 10*time.Second), "by-time")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("by-time", 0); o.Offset != 25 {
		t.Errorf("by-time end offset %d, want 25", o.Offset)
	}
	if !strings.Contains(b.Output(), "retention deleted segments") {
		t.Errorf("no audit line for the deletions:\n%s", b.Output())
	}
}
