package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/segment"
	"github.com/brokkr/brokkr/segment/segmenttest"
)

// clock is a test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func smallConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 16 << 10
	c.SegmentIndexBytes = 4096
	c.IndexIntervalBytes = 512
	return c
}

// batchFor is the deterministic batch a test appends when the LEO is
// base: its content depends only on base.
func batchFor(base int64) []byte {
	return segmenttest.Batch(segmenttest.Spec{
		Records: 1 + int(base%5), ValueSize: 20 + int(base%200), Seed: byte(base),
		BaseTimestamp: 1_000_000 + base*10, TimestampStep: 1,
	})
}

// readAll reads every batch from offset from up to the limit through Read.
func readAll(t testing.TB, l *Log, from int64, limit ReadLimit) [][]byte {
	t.Helper()
	var out [][]byte
	off := from
	for i := 0; i < 100000; i++ {
		r, err := l.Read(off, ReadOptions{MaxBytes: 3000, Limit: limit, MinOneBatch: true})
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if r.Region.Len == 0 {
			r.Release()
			return out
		}
		b, err := readBytes(r)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := segment.StoredBatches(b, 0, nil)
		if err != nil {
			t.Fatalf("read at %d returned bad batches: %v", off, err)
		}
		for p, i := 0, 0; i < len(hs); i++ {
			out = append(out, b[p:p+int(hs[i].Size())])
			p += int(hs[i].Size())
			off = hs[i].NextOffset()
		}
	}
	t.Fatal("readAll did not end")
	return nil
}

// checkBatch checks that got is want with base offset and epoch stamped.
func checkBatch(t testing.TB, got, want []byte, base int64, epoch int32) {
	t.Helper()
	h, err := segment.ValidateStoredBatch(got, 0, nil)
	if err != nil || h.BaseOffset != base || h.PartitionLeaderEpoch != epoch || !bytes.Equal(got[17:], want[17:]) {
		t.Fatalf("batch at %d: header %+v err %v, bytes equal %v", base, h, err, bytes.Equal(got[17:], want[17:]))
	}
}

func memLog(t *testing.T, cfg Config, c *clock) (*segment.MemFS, *Log) {
	fsys := segment.NewMemFS()
	l, err := Open("/logs/t-0", cfg, Options{FS: fsys, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return fsys, l
}

func TestAppendReadRollReopen(t *testing.T) {
	for _, name := range []string{"os", "mem"} {
		t.Run(name, func(t *testing.T) {
			c := newClock()
			var fsys segment.FS = segment.OSFS{}
			dir := filepath.Join(t.TempDir(), "t-0")
			if name == "mem" {
				fsys, dir = segment.NewMemFS(), "/logs/t-0"
			}
			rolled := 0
			opts := Options{FS: fsys, Now: c.Now, Events: Events{SegmentRolled: func(string, int64, string) { rolled++ }}}
			l, err := Open(dir, smallConfig(), opts)
			if err != nil {
				t.Fatal(err)
			}
			var want [][]byte
			for i := 0; i < 200; i++ {
				leo := l.LogEndOffset()
				b := batchFor(leo)
				want = append(want, append([]byte(nil), b...))
				res, err := l.Append(b, 3)
				if err != nil {
					t.Fatal(err)
				}
				if res.BaseOffset != leo || res.LastOffset != leo+int64(1+leo%5)-1 || res.LogAppendTime != c.Now().UnixMilli() {
					t.Fatalf("append %d: %+v", i, res)
				}
			}
			if rolled == 0 || len(l.Segments()) != rolled+1 {
				t.Fatalf("rolled %d times, %d segments", rolled, len(l.Segments()))
			}
			for _, s := range l.Segments() {
				if s.Size > smallConfig().SegmentBytes {
					t.Fatalf("segment %d is %d bytes, above segment.bytes", s.Base, s.Size)
				}
			}
			// Nothing is visible to consumers before the high watermark moves.
			if got := readAll(t, l, 0, LimitHighWatermark); len(got) != 0 {
				t.Fatalf("read %d batches above the HW", len(got))
			}
			leo := l.LogEndOffset()
			if hw := l.SetHighWatermark(leo + 100); hw != leo {
				t.Fatalf("HW clamped to %d, want %d", hw, leo)
			}
			check := func(l *Log) {
				got := readAll(t, l, 0, LimitHighWatermark)
				if len(got) != len(want) {
					t.Fatalf("read %d batches, want %d", len(got), len(want))
				}
				off := int64(0)
				for i := range got {
					checkBatch(t, got[i], want[i], off, 3)
					off += int64(1 + off%5)
				}
			}
			check(l)
			// out of range
			if _, err := l.Read(leo+1, ReadOptions{MaxBytes: 100}); !errors.Is(err, ErrOffsetOutOfRange) || segment.KafkaCode(err) != 1 {
				t.Fatalf("read past LEO: %v", err)
			}
			if r, err := l.Read(leo, ReadOptions{MaxBytes: 100}); err != nil || r.Region.Len != 0 || r.LogEndOffset != leo || r.HighWatermark != leo {
				t.Fatalf("read at LEO: %+v %v", r, err)
			}
			segsBefore := l.Segments()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2, err := Open(dir, smallConfig(), Options{FS: fsys, Now: c.Now, RecoveryPoint: 1 << 62})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if l2.LogEndOffset() != leo || len(l2.Segments()) != len(segsBefore) {
				t.Fatalf("reopened: LEO %d segments %d, want %d %d", l2.LogEndOffset(), len(l2.Segments()), leo, len(segsBefore))
			}
			for i, s := range l2.Segments() {
				b := segsBefore[i]
				if s.Base != b.Base || s.LastOffset != b.LastOffset || s.Size != b.Size || s.MaxTimestamp != b.MaxTimestamp {
					t.Fatalf("segment %d: %+v, before close %+v", i, s, b)
				}
			}
			l2.SetHighWatermark(leo)
			check(l2)
		})
	}
}

func TestBadPayloadIsNotWritten(t *testing.T) {
	c := newClock()
	_, l := memLog(t, smallConfig(), c)
	defer l.Close()
	good := batchFor(0)
	bad := batchFor(0)
	bad[len(bad)-1] ^= 1
	payload := append(append([]byte{}, good...), bad...)
	if _, err := l.Append(payload, 0); !errors.Is(err, segment.ErrCorruptMessage) || segment.KafkaCode(err) != 2 {
		t.Fatalf("append of a payload with a corrupt batch: %v", err)
	}
	big := segmenttest.Batch(segmenttest.Spec{Records: 1, ValueSize: 2000})
	cfg := smallConfig()
	cfg.MaxMessageBytes = 1000
	l.cfg = cfg
	if _, err := l.Append(big, 0); !errors.Is(err, segment.ErrMessageTooLarge) || segment.KafkaCode(err) != 10 {
		t.Fatalf("too large: %v", err)
	}
	if l.LogEndOffset() != 0 || l.Segments()[0].Size != 0 {
		t.Fatalf("a rejected payload reached the log: LEO %d", l.LogEndOffset())
	}
	// Two good batches in one payload get consecutive offsets.
	two := append(append([]byte{}, batchFor(0)...), batchFor(1)...)
	res, err := l.Append(two, 0)
	if err != nil || res.BaseOffset != 0 || res.LastOffset != 0+1+1 {
		t.Fatalf("two batches: %+v %v", res, err)
	}
}

func TestSegmentMsRollsOnTheClock(t *testing.T) {
	c := newClock()
	cfg := DefaultConfig()
	cfg.SegmentMs = 60_000
	var reasons []string
	l, err := Open("/l/t-0", cfg, Options{FS: segment.NewMemFS(), Now: c.Now, Events: Events{SegmentRolled: func(_ string, _ int64, r string) { reasons = append(reasons, r) }}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Append(batchFor(0), 0)
	c.Add(59 * time.Second)
	l.Append(batchFor(1), 0)
	if len(reasons) != 0 {
		t.Fatalf("rolled before segment.ms: %v", reasons)
	}
	c.Add(time.Second)
	l.Append(batchFor(2), 0)
	if len(reasons) != 1 || reasons[0] != "segment.ms" || len(l.Segments()) != 2 || l.Segments()[1].Base != 3 {
		t.Fatalf("rolls %v segments %+v", reasons, l.Segments())
	}
}

func TestTruncateDeleteTimestampsEpochs(t *testing.T) {
	c := newClock()
	fsys, l := memLog(t, smallConfig(), c)
	epoch := int32(1)
	starts := map[int32]int64{}
	var bases []int64
	for i := 0; i < 300; i++ {
		bases = append(bases, l.LogEndOffset())
		if i%60 == 0 {
			epoch++
			starts[epoch] = l.LogEndOffset()
		}
		if _, err := l.Append(batchFor(l.LogEndOffset()), epoch); err != nil {
			t.Fatal(err)
		}
	}
	leo := l.LogEndOffset()
	l.SetHighWatermark(leo)
	// epochs 2..6
	if got := l.EpochEntries(); len(got) != 5 || got[0].Epoch != 2 || got[0].StartOffset != 0 || got[4].StartOffset != starts[6] {
		t.Fatalf("epochs %+v", got)
	}
	cases := []struct {
		req       int32
		wantEpoch int32
		wantOff   int64
	}{
		{6, 6, leo}, {4, 4, starts[5]}, {2, 2, starts[3]}, {1, 1, 0}, {9, -1, -1}, {-1, -1, -1},
	}
	for _, cs := range cases {
		e, o := l.EndOffsetForEpoch(cs.req)
		if e != cs.wantEpoch || o != cs.wantOff {
			t.Errorf("EndOffsetForEpoch(%d) = %d %d, want %d %d", cs.req, e, o, cs.wantEpoch, cs.wantOff)
		}
	}
	// The checkpoint file is Kafka's text format.
	f, _ := fsys.OpenFile("/logs/t-0/leader-epoch-checkpoint", os.O_RDONLY, 0)
	buf := make([]byte, 200)
	n, _ := f.ReadAt(buf, 0)
	f.Close()
	if !strings.HasPrefix(string(buf[:n]), "0\n5\n2 0\n3 ") {
		t.Fatalf("leader-epoch-checkpoint:\n%s", buf[:n])
	}
	// Timestamps: batch at base b has timestamps 1_000_000+10b .. +records-1.
	// The first record of the batch at base b has timestamp 1_000_000+10b
	// and every earlier record a smaller one (fewer than 10 records each).
	for _, i := range []int{0, 1, 57, 200, len(bases) - 1} {
		off := bases[i]
		got, ok, err := l.OffsetForTimestamp(1_000_000 + off*10)
		if err != nil || !ok || got != off {
			t.Fatalf("timestamp of offset %d: %d %v %v", off, got, ok, err)
		}
		// one past it is the batch's second record, if it has one
		if got, ok, _ := l.OffsetForTimestamp(1_000_000 + off*10 + 1); !ok || got != off+1 {
			t.Fatalf("timestamp of offset %d + 1: %d %v", off, got, ok)
		}
	}
	if o, ok, _ := l.OffsetForTimestamp(LatestTimestamp); !ok || o != leo {
		t.Fatal("latest")
	}
	if o, ok, _ := l.OffsetForTimestamp(1 << 50); ok {
		t.Fatalf("a timestamp after everything found %d", o)
	}
	if o, _, _ := l.OffsetForTimestamp(MaxTimestamp); o != leo-1 {
		t.Fatalf("max timestamp offset %d, want %d", o, leo-1)
	}
	// Truncate into the middle of an older segment.
	segs := l.Segments()
	mid := segs[1].Base + 3
	wake := l.Changed()
	newLEO, err := l.TruncateTo(mid)
	if err != nil || newLEO > mid || newLEO < segs[1].Base {
		t.Fatalf("truncate to %d: leo %d %v", mid, newLEO, err)
	}
	select {
	case <-wake:
	default:
		t.Fatal("truncation did not wake waiters")
	}
	if len(l.Segments()) != 2 || l.HighWatermark() != newLEO || l.RecoveryPoint() > newLEO {
		t.Fatalf("after truncate: %d segments HW %d", len(l.Segments()), l.HighWatermark())
	}
	for _, e := range l.EpochEntries() {
		if e.StartOffset >= newLEO {
			t.Fatalf("epoch entry %+v survived truncation to %d", e, newLEO)
		}
	}
	// Appending continues from the new LEO; reading returns all batches.
	for i := 0; i < 50; i++ {
		if _, err := l.Append(batchFor(l.LogEndOffset()), 9); err != nil {
			t.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	got := readAll(t, l, 0, LimitHighWatermark)
	off := int64(0)
	for _, b := range got {
		h, _ := segment.ParseHeader(b)
		if h.BaseOffset != off {
			t.Fatalf("offset gap: batch at %d, expected %d", h.BaseOffset, off)
		}
		off = h.NextOffset()
	}
	if off != l.LogEndOffset() {
		t.Fatalf("read up to %d, LEO %d", off, l.LogEndOffset())
	}
	// Retention: delete below an offset in the 3rd segment.
	segs = l.Segments()
	deleted, err := l.DeleteSegmentsBelow(segs[2].Base + 1)
	if err != nil || len(deleted) != 2 || l.LogStartOffset() != segs[2].Base {
		t.Fatalf("deleted %+v start %d err %v", deleted, l.LogStartOffset(), err)
	}
	if _, err := l.Read(0, ReadOptions{MaxBytes: 10}); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", err)
	}
	if e := l.EpochEntries(); e[0].StartOffset != l.LogStartOffset() {
		t.Fatalf("epoch cache not moved to log start: %+v", e)
	}
	if _, err := fsys.Stat(segment.FileName("/logs/t-0", 0, segment.LogExt)); err == nil {
		t.Fatal("deleted segment's file is still there")
	}
	// The active segment is never deleted, whatever the offset.
	if _, err := l.DeleteSegmentsBelow(1 << 60); err != nil || len(l.Segments()) != 1 {
		t.Fatalf("delete everything: %d segments left, %v", len(l.Segments()), err)
	}
	if l.LogStartOffset() != l.Segments()[0].Base {
		t.Fatal("log start not at the remaining segment")
	}
	l.Close()
}

func TestChangedIsClosedByAppendAndHW(t *testing.T) {
	c := newClock()
	_, l := memLog(t, smallConfig(), c)
	defer l.Close()
	ch := l.Changed()
	done := make(chan struct{})
	go func() {
		<-ch
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("woke without a change")
	case <-time.After(20 * time.Millisecond):
	}
	l.Append(batchFor(0), 0)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("append did not wake the waiter")
	}
	ch = l.Changed()
	l.SetHighWatermark(0) // no change: no wake
	select {
	case <-ch:
		t.Fatal("unchanged HW woke waiters")
	default:
	}
	l.SetHighWatermark(1)
	select {
	case <-ch:
	default:
		t.Fatal("HW change did not wake waiters")
	}
}

func TestPowerLossKeepsFlushedAppends(t *testing.T) {
	for _, every := range []int64{1, 0} {
		c := newClock()
		fsys := segment.NewMemFS()
		cfg := smallConfig()
		cfg.FlushMessages = every
		l, err := Open("/logs/t-0", cfg, Options{FS: fsys, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(every), 1))
		n := 50 + rng.IntN(100)
		var flushedLEO int64
		for i := 0; i < n; i++ {
			if _, err := l.Append(batchFor(l.LogEndOffset()), 0); err != nil {
				t.Fatal(err)
			}
			if every == 0 && i == n/2 {
				l.Flush()
				flushedLEO = l.LogEndOffset()
			}
		}
		leo, rp := l.LogEndOffset(), l.RecoveryPoint()
		fsys.Crash()
		var truncs []segment.Recovery
		l2, err := Open("/logs/t-0", cfg, Options{FS: fsys, Now: c.Now, RecoveryPoint: rp, Events: Events{RecoveryTruncated: func(_ string, r segment.Recovery) { truncs = append(truncs, r) }}})
		if err != nil {
			t.Fatal(err)
		}
		want := leo
		if every == 0 {
			// Rolls flush the sealed segment too, so more than the explicit
			// flush may survive, never less, and the tail is cut cleanly.
			want = l2.LogEndOffset()
			if want < flushedLEO || want > leo {
				t.Fatalf("flush.messages=never: LEO after power loss %d, flushed %d, appended %d", want, flushedLEO, leo)
			}
		}
		if l2.LogEndOffset() != want {
			t.Fatalf("flush.messages=%d: LEO after power loss %d, want %d (%+v)", every, l2.LogEndOffset(), want, truncs)
		}
		l2.SetHighWatermark(want)
		got := readAll(t, l2, 0, LimitHighWatermark)
		off := int64(0)
		for _, b := range got {
			checkBatch(t, b, batchFor(off), off, 0)
			h, _ := segment.ParseHeader(b)
			off = h.NextOffset()
		}
		if off != want {
			t.Fatalf("read to %d, want %d", off, want)
		}
		l2.Close()
	}
}

func TestStorageErrorsLeaveTheLogUsable(t *testing.T) {
	c := newClock()
	fsys, l := memLog(t, smallConfig(), c)
	var storageErrs int
	l.opts.Events.StorageError = func(string, error) { storageErrs++ }
	for i := 0; i < 20; i++ {
		l.Append(batchFor(l.LogEndOffset()), 0)
	}
	leo := l.LogEndOffset()
	for nth := 0; nth < 4; nth++ {
		fsys.FailWritesAfter(nth, errENOSPC)
		var err error
		for i := 0; i < 40 && err == nil; i++ {
			_, err = l.Append(batchFor(l.LogEndOffset()), 0)
		}
		if !errors.Is(err, ErrStorage) || !errors.Is(err, errENOSPC) || segment.KafkaCode(err) != 56 {
			t.Fatalf("nth %d: %v", nth, err)
		}
		fsys.ClearFaults()
		leo = l.LogEndOffset()
		l.SetHighWatermark(leo)
		got := readAll(t, l, 0, LimitHighWatermark)
		off := int64(0)
		for _, b := range got {
			checkBatch(t, b, batchFor(off), off, 0)
			h, _ := segment.ParseHeader(b)
			off = h.NextOffset()
		}
		if off != leo {
			t.Fatalf("nth %d: read to %d, LEO %d", nth, off, leo)
		}
	}
	if storageErrs == 0 {
		t.Fatal("StorageError event never fired")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open("/logs/t-0", smallConfig(), Options{FS: fsys, Now: c.Now, RecoveryPoint: 0})
	if err != nil || l2.LogEndOffset() != leo {
		t.Fatalf("reopen: LEO %d want %d, %v", l2.LogEndOffset(), leo, err)
	}
	l2.Close()
}

// TestConcurrentReadersAndWriter: reads (region lookup under the read
// lock, bytes read after it is dropped) run while appends roll segments
// and retention deletes them; every region read holds whole, valid
// batches with the expected content. Run with -race.
func TestConcurrentReadersAndWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l, err := Open(dir, smallConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for {
				select {
				case <-done:
					return
				default:
				}
				start, hw := l.LogStartOffset(), l.HighWatermark()
				if hw <= start {
					select {
					case <-l.Changed():
					case <-done:
					}
					continue
				}
				off := start + rng.Int64N(hw-start)
				res, err := l.Read(off, ReadOptions{MaxBytes: 4000, MinOneBatch: true})
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue // retention moved the start meanwhile
				}
				if err != nil {
					errs <- err
					return
				}
				b, err := readBytes(res)
				if err != nil {
					errs <- err
					return
				}
				hs, err := segment.StoredBatches(b, 0, nil)
				if err != nil || len(hs) == 0 || hs[0].LastOffset() < off || hs[0].BaseOffset > off {
					errs <- fmt.Errorf("read at %d: %d batches, %v", off, len(hs), err)
					return
				}
				if !bytes.Equal(b[17:hs[0].Size()], batchFor(hs[0].BaseOffset)[17:]) {
					errs <- fmt.Errorf("read at %d: wrong content", off)
					return
				}
			}
		}(uint64(r))
	}
	for i := 0; i < 1500; i++ {
		if _, err := l.Append(batchFor(l.LogEndOffset()), 1); err != nil {
			t.Fatal(err)
		}
		l.SetHighWatermark(l.LogEndOffset())
		if i%300 == 299 {
			segs := l.Segments()
			if _, err := l.DeleteSegmentsBelow(segs[len(segs)/2].Base); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// readBytes reads the bytes of a read's region and releases it.
func readBytes(r ReadResult) ([]byte, error) {
	defer r.Release()
	b := make([]byte, r.Region.Len)
	if _, err := r.Region.File.ReadAt(b, r.Region.Pos); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}
