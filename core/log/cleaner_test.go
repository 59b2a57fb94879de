package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/segment"
)

// mrec is a record as the model and the tests see it.
type mrec struct {
	Off  int64
	Key  []byte // nil: no key
	Val  []byte // nil: tombstone
	Ts   int64
	Hdrs int // number of headers
}

func (r mrec) String() string {
	return fmt.Sprintf("%d:%q=%q@%d", r.Off, r.Key, r.Val, r.Ts)
}

// keyedBatch encodes recs (offsets from 0) with the codec; offsets are
// assigned by Append.
func keyedBatch(t testing.TB, cdc int, recs []mrec) []byte {
	t.Helper()
	h := codec.BatchHeader{Attributes: int16(cdc), BaseTimestamp: recs[0].Ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, LastOffsetDelta: -1}
	cr := make([]codec.Record, len(recs))
	for i, r := range recs {
		cr[i] = codec.Record{OffsetDelta: int32(i), TimestampDelta: r.Ts - recs[0].Ts, Key: r.Key, Value: r.Val}
		for j := 0; j < r.Hdrs; j++ {
			cr[i].Headers = append(cr[i].Headers, codec.Header{Key: fmt.Sprintf("h%d", j), Value: []byte{byte(j)}})
		}
	}
	b, err := codec.EncodeBatch(h, cr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logRecords reads every record of the log through Read.
func logRecords(t testing.TB, l *Log) []mrec {
	t.Helper()
	var out []mrec
	for _, b := range readAll(t, l, l.LogStartOffset(), LimitLogEnd) {
		h, err := segment.ValidateStoredBatch(b, 0, nil)
		if err != nil {
			t.Fatalf("stored batch invalid: %v", err)
		}
		plain, err := codec.PlainBatch(b, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if err := segment.WalkRecords(plain, func(r segment.Record) error {
			out = append(out, mrec{Off: h.BaseOffset + int64(r.OffsetDelta), Key: bytes.Clone(r.Key), Val: bytes.Clone(r.Value), Ts: h.BaseTimestamp + r.TimestampDelta, Hdrs: len(r.Headers)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func sameRecords(a, b []mrec) bool {
	return slices.EqualFunc(a, b, func(x, y mrec) bool {
		return x.Off == y.Off && bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Val, y.Val) && (x.Val == nil) == (y.Val == nil) &&
			(x.Key == nil) == (y.Key == nil) && x.Ts == y.Ts && x.Hdrs == y.Hdrs
	})
}

func diffRecords(a, b []mrec) string {
	for i := 0; i < min(len(a), len(b)); i++ {
		if !sameRecords(a[i:i+1], b[i:i+1]) {
			return fmt.Sprintf("first difference at %d: %v vs %v (lengths %d, %d)", i, a[i], b[i], len(a), len(b))
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(a), len(b))
}

// modelClean is what a clean of [.., end) at nowMs with delete.retention.ms
// del must leave of the surviving records s: below end, the latest record
// per key (records without a key always), minus tombstones older than del;
// from end on, everything.
func modelClean(s []mrec, end, nowMs, del int64) []mrec {
	latest := map[string]int64{}
	for _, r := range s {
		if r.Off < end && r.Key != nil {
			latest[string(r.Key)] = r.Off
		}
	}
	var out []mrec
	for _, r := range s {
		if r.Off < end && r.Key != nil {
			if latest[string(r.Key)] != r.Off || (r.Val == nil && nowMs-r.Ts > del) {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// randomBatch makes a batch of 1-8 records from a small key space, some
// tombstones and some without key, with a random codec.
func randomBatch(rng *rand.Rand, keys int, ts int64, valSize int) (int, []mrec) {
	n := 1 + rng.IntN(8)
	recs := make([]mrec, n)
	for i := range recs {
		r := mrec{Key: fmt.Appendf(nil, "k%03d", rng.IntN(keys)), Ts: ts + int64(i), Hdrs: rng.IntN(2)}
		switch x := rng.IntN(100); {
		case x < 12:
			// tombstone
		case x < 15:
			r.Key = nil
			r.Val = fmt.Appendf(nil, "nokey-%d", rng.Uint32())
		default:
			r.Val = bytes.Repeat(fmt.Appendf(nil, "v%d.", rng.Uint32()), 1+rng.IntN(valSize))
		}
		recs[i] = r
	}
	return []int{codec.None, codec.None, codec.Gzip, codec.Snappy, codec.LZ4, codec.Zstd}[rng.IntN(6)], recs
}

func cleanerConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 6 << 10
	c.SegmentIndexBytes = 1024
	c.IndexIntervalBytes = 256
	return c
}

// appendRecords appends and returns the records with their offsets.
func appendRecords(t testing.TB, l *Log, cdc int, recs []mrec) []mrec {
	t.Helper()
	res, err := l.Append(keyedBatch(t, cdc, recs), 3)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(recs)
	for i := range out {
		out[i].Off = res.BaseOffset + int64(i)
	}
	return out
}

// TestCleanMatchesModel: random logs (small key space, tombstones, records
// without key, every codec, several segments) cleaned many times between
// appends: after every clean the log holds exactly what the model says,
// with offsets unchanged and in order; every surviving offset is found by
// Read; the log start offset does not move; and a reopen (recovering every
// segment) reads the same.
func TestCleanMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			if seed%2 == 0 { // reads in small windows: records must not outlive theirs
				defer func(w int) { cleanWindow = w }(cleanWindow)
				cleanWindow = 700
			}
			c := newClock()
			cfg := cleanerConfig()
			fsys, l := memLog(t, cfg, c)
			const del = 60_000
			policy := builtin.NewCompaction()
			var model []mrec
			cleans := 0
			for round := 0; round < 14; round++ {
				for i, n := 0, 5+rng.IntN(60); i < n; i++ {
					cdc, recs := randomBatch(rng, 3+int(seed)*4, c.Now().UnixMilli(), 20)
					model = append(model, appendRecords(t, l, cdc, recs)...)
					c.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				}
				// Let the HW lag sometimes: it bounds the cleanable section.
				hw := l.LogEndOffset()
				if rng.IntN(3) == 0 {
					hw -= rng.Int64N(hw - l.LogStartOffset() + 1)
				}
				l.SetHighWatermark(hw)
				start := l.LogStartOffset()
				now := c.Now().UnixMilli()
				res, err := l.Clean(context.Background(), CleanOptions{Policy: policy, NowMs: now,
					Config: map[string]string{"delete.retention.ms": fmt.Sprint(del)}, BatchRecords: 1 + rng.IntN(50)})
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if res.SegmentsBefore > 0 {
					cleans++
					model = modelClean(model, res.CleanedTo, now, del)
					if res.CleanedTo > hw || res.CleanedTo > l.Segments()[len(l.Segments())-1].Base {
						t.Fatalf("cleaned to %d beyond hw %d or the active segment", res.CleanedTo, hw)
					}
				}
				got := logRecords(t, l)
				if !sameRecords(got, model) {
					t.Fatalf("round %d (clean %+v): log differs from the model: %s", round, res, diffRecords(got, model))
				}
				if l.LogStartOffset() != start {
					t.Fatalf("log start moved from %d to %d", start, l.LogStartOffset())
				}
				if got := l.CleanedTo(); got != res.CleanedTo {
					t.Fatalf("CleanedTo %d, result %d", got, res.CleanedTo)
				}
				for _, r := range got {
					rr, err := l.Read(r.Off, ReadOptions{MaxBytes: 1, Limit: LimitLogEnd, MinOneBatch: true})
					if err != nil {
						t.Fatal(err)
					}
					b := make([]byte, rr.Region.Len)
					rr.Region.File.ReadAt(b, rr.Region.Pos)
					rr.Release()
					h, err := segment.ParseHeader(b)
					if err != nil || h.BaseOffset > r.Off || h.LastOffset() < r.Off {
						t.Fatalf("read of offset %d returned batch %d-%d (%v)", r.Off, h.BaseOffset, h.LastOffset(), err)
					}
				}
				if round%5 == 4 { // reopen, re-reading every segment
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					if l, err = Open("/logs/t-0", cfg, Options{FS: fsys, Now: c.Now, RecoveryPoint: 0}); err != nil {
						t.Fatal(err)
					}
					if got := logRecords(t, l); !sameRecords(got, model) {
						t.Fatalf("after reopen: %s", diffRecords(got, model))
					}
					if l.LogStartOffset() != start || l.CleanedTo() != res.CleanedTo && res.SegmentsBefore > 0 {
						t.Fatalf("after reopen: log start %d (was %d), cleaned to %d (was %d)", l.LogStartOffset(), start, l.CleanedTo(), res.CleanedTo)
					}
				}
			}
			if cleans < 3 {
				t.Fatalf("only %d cleans did something", cleans)
			}
			l.Close()
		})
	}
}

// TestCleanEverythingRemoved: when every record of the cleanable section
// goes, the first segment stays (empty) so the log start offset does not
// move, also across a reopen.
func TestCleanEverythingRemoved(t *testing.T) {
	c := newClock()
	cfg := cleanerConfig()
	fsys, l := memLog(t, cfg, c)
	var model []mrec
	for i := 0; i < 200; i++ {
		model = append(model, appendRecords(t, l, codec.None, []mrec{{Key: []byte("k"), Val: bytes.Repeat([]byte("x"), 100), Ts: 1}})...)
	}
	if len(l.Segments()) < 3 {
		t.Fatalf("want several segments, have %d", len(l.Segments()))
	}
	// The last record is a tombstone in the active segment: everything
	// cleanable is superseded... by a record the cleaner does not scan, so
	// first make one in a cleanable segment.
	l.SetHighWatermark(l.LogEndOffset())
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: c.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	model = modelClean(model, res.CleanedTo, c.Now().UnixMilli(), builtin.DefaultDeleteRetentionMs)
	if got := logRecords(t, l); !sameRecords(got, model) {
		t.Fatal(diffRecords(got, model))
	}
	// Now a tombstone for the key, rolled out of the active segment, and a
	// clean a day later removes everything below the active segment.
	model = append(model, appendRecords(t, l, codec.None, []mrec{{Key: []byte("k"), Ts: 2}})...)
	for i := 0; i < 60; i++ {
		model = append(model, appendRecords(t, l, codec.None, []mrec{{Key: nil, Val: bytes.Repeat([]byte("y"), 100), Ts: 3}})...)
	}
	l.SetHighWatermark(l.LogEndOffset())
	now := int64(10 * builtin.DefaultDeleteRetentionMs)
	if res, err = l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: now}); err != nil {
		t.Fatal(err)
	}
	model = modelClean(model, res.CleanedTo, now, builtin.DefaultDeleteRetentionMs)
	if got := logRecords(t, l); !sameRecords(got, model) {
		t.Fatal(diffRecords(got, model))
	}
	if l.LogStartOffset() != 0 || l.Segments()[0].Base != 0 {
		t.Fatalf("log start %d, first segment %d", l.LogStartOffset(), l.Segments()[0].Base)
	}
	l.Close()
	l, err = Open("/logs/t-0", cfg, Options{FS: fsys, Now: c.Now, RecoveryPoint: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LogStartOffset() != 0 {
		t.Fatalf("after reopen: log start %d", l.LogStartOffset())
	}
	if got := logRecords(t, l); !sameRecords(got, model) {
		t.Fatal(diffRecords(got, model))
	}
}

// cleanFixture builds a deterministic flushed log on a MemFS with several
// segments and returns it with its records.
func cleanFixture(t *testing.T, seed uint64) (*segment.MemFS, *Log, *clock, []mrec) {
	rng := rand.New(rand.NewPCG(seed, 5))
	c := newClock()
	fsys, l := memLog(t, cleanerConfig(), c)
	var recs []mrec
	for i := 0; i < 150; i++ {
		cdc, rs := randomBatch(rng, 10, int64(1000+i), 10)
		recs = append(recs, appendRecords(t, l, cdc, rs)...)
	}
	// A first clean leaves small segments that the next one merges.
	l.SetHighWatermark(l.LogEndOffset())
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: 1500, Config: cleanCfg})
	if err != nil || res.SegmentsBefore < 4 {
		t.Fatalf("fixture clean: %+v %v", res, err)
	}
	recs = modelClean(recs, res.CleanedTo, 1500, 100)
	for i := 0; i < 100; i++ {
		cdc, rs := randomBatch(rng, 10, int64(2000+i), 10)
		recs = append(recs, appendRecords(t, l, cdc, rs)...)
	}
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := logRecords(t, l); !sameRecords(got, recs) {
		t.Fatalf("fixture: %s", diffRecords(got, recs))
	}
	if len(l.Segments()) < 5 {
		t.Fatalf("fixture has %d segments", len(l.Segments()))
	}
	return fsys, l, c, recs
}

var cleanCfg = map[string]string{"delete.retention.ms": "100"}

const cleanNow = 1_000_000 // tombstones of the fixtures are expired

// sameMemFiles fails unless dir holds the files of before (memFiles), with
// the same contents.
func sameMemFiles(t *testing.T, fsys *segment.MemFS, dir string, before map[string]string) {
	t.Helper()
	after := memFiles(t, fsys, dir)
	if len(after) != len(before) {
		t.Fatalf("files %d -> %d: %v", len(before), len(after), cleanerFiles(t, fsys, dir))
	}
	for n, b := range before {
		if after[n] != b {
			t.Fatalf("file %s changed", n)
		}
	}
}

func cleanerFiles(t *testing.T, fsys segment.FS, dir string) []string {
	t.Helper()
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name, CleanedSuffix) || strings.HasPrefix(e.Name, "cleaner-swap") || e.Name == cleanerStagingDir || strings.HasSuffix(e.Name, ".swap") {
			out = append(out, e.Name)
		}
	}
	return out
}

// TestCleanCrashAtEveryStep (MemFS, losing unsynced data): a crash at any
// step of a clean leaves exactly the old records (before the commit record)
// or exactly the new ones (from it on), and no cleaner file after Open.
func TestCleanCrashAtEveryStep(t *testing.T) {
	_, l, _, pre := cleanFixture(t, 7)
	var steps []string
	l.cl.step = func(s string) { steps = append(steps, s) }
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
	if err != nil {
		t.Fatal(err)
	}
	post := logRecords(t, l)
	if want := modelClean(pre, res.CleanedTo, cleanNow, 100); !sameRecords(post, want) {
		t.Fatal(diffRecords(post, want))
	}
	if sameRecords(pre, post) || res.SegmentsAfter >= res.SegmentsBefore {
		t.Fatalf("the fixture's clean changed too little: %+v", res)
	}
	l.Close()
	t.Logf("steps: %q", steps)
	if len(steps) < 6 {
		t.Fatalf("steps %q", steps)
	}
	committed := slices.Index(steps, "committed")
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			fsys, l, c, _ := cleanFixture(t, 7)
			l.cl.step = func(s string) {
				if s == step {
					panic(crashPoint(s))
				}
			}
			func() {
				defer func() {
					if r := recover(); r != crashPoint(step) {
						t.Fatalf("recovered %v", r)
					}
				}()
				l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
				t.Fatal("no crash")
			}()
			l.abandon()
			fsys.Crash()
			l2, err := Open("/logs/t-0", cleanerConfig(), Options{FS: fsys, Now: c.Now, RecoveryPoint: 0})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			got := logRecords(t, l2)
			want, cleanedTo := pre, res.FirstDirty
			if i >= committed {
				want, cleanedTo = post, res.CleanedTo
			}
			if !sameRecords(got, want) {
				t.Fatalf("crash at %q: %s", step, diffRecords(got, want))
			}
			if l2.CleanedTo() != cleanedTo {
				t.Fatalf("cleaned to %d, want %d", l2.CleanedTo(), cleanedTo)
			}
			if f := cleanerFiles(t, fsys, "/logs/t-0"); len(f) > 0 {
				t.Fatalf("left behind: %v", f)
			}
			// The log works: a second clean reaches the same result.
			l2.SetHighWatermark(l2.LogEndOffset())
			if _, err := l2.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg}); err != nil {
				t.Fatal(err)
			}
			if got := logRecords(t, l2); !sameRecords(got, post) {
				t.Fatalf("clean after recovery: %s", diffRecords(got, post))
			}
		})
	}
}

// badPolicy wraps the built-in compaction and misbehaves on demand.
type badPolicy struct {
	mode  string // "foreign", "twice", "scan-error", "survivors-error", "panic", "begin-error"
	inner plugins.CompactionPolicy
}

func (p *badPolicy) Info() plugins.Info { return plugins.Info{Name: "bad-" + p.mode} }
func (p *badPolicy) Begin(ctx context.Context, cp plugins.CompactionParams) (plugins.CompactionPass, error) {
	if p.mode == "begin-error" {
		return nil, errors.New("no")
	}
	in, err := p.inner.Begin(ctx, cp)
	return &badPass{p: p, inner: in}, err
}

type badPass struct {
	p     *badPolicy
	inner plugins.CompactionPass
	calls int
}

func (b *badPass) Scan(ctx context.Context, batch []plugins.Record) error {
	if b.p.mode == "scan-error" {
		return errors.New("scan failed")
	}
	return b.inner.Scan(ctx, batch)
}

func (b *badPass) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	b.calls++
	out, err := b.inner.Survivors(ctx, batch)
	if b.calls < 3 { // misbehave late, after output was written
		return out, err
	}
	switch b.p.mode {
	case "foreign":
		return append(out, batch[len(batch)-1].Offset+1), nil
	case "twice":
		return append(out, batch[0].Offset, batch[0].Offset), nil
	case "survivors-error":
		return nil, errors.New("survivors failed")
	case "panic":
		panic("policy bug")
	}
	return out, err
}

func (b *badPass) Close() error { return b.inner.Close() }

// memFiles is every file of a MemFS dir with its contents.
func memFiles(t *testing.T, fsys *segment.MemFS, dir string) map[string]string {
	t.Helper()
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if e.IsDir {
			out[e.Name] = "dir"
			continue
		}
		f, err := fsys.OpenFile(filepath.Join(dir, e.Name), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, e.Size)
		f.ReadAt(b, 0)
		f.Close()
		out[e.Name] = string(b)
	}
	return out
}

// TestCleanRefusesBadPolicies: an invalid Survivors answer (an offset not
// in the batch, one listed twice), a policy error or panic aborts the
// clean: the files are byte for byte unchanged, nothing is left behind,
// the records are all there, and the log keeps working.
func TestCleanRefusesBadPolicies(t *testing.T) {
	for _, mode := range []string{"foreign", "twice", "scan-error", "survivors-error", "panic", "begin-error"} {
		t.Run(mode, func(t *testing.T) {
			fsys, l, _, pre := cleanFixture(t, 3)
			defer l.Close()
			before := memFiles(t, fsys, "/logs/t-0")
			checkpoint := l.CleanedTo()
			_, err := l.Clean(context.Background(), CleanOptions{Policy: &badPolicy{mode: mode, inner: builtin.NewCompaction()}, NowMs: cleanNow, Config: cleanCfg, BatchRecords: 50})
			if err == nil {
				t.Fatal("clean succeeded")
			}
			wantErr := plugins.ErrPolicyFailed
			if mode == "foreign" || mode == "twice" {
				wantErr = plugins.ErrRefused
			}
			if !errors.Is(err, wantErr) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			sameMemFiles(t, fsys, "/logs/t-0", before)
			if got := logRecords(t, l); !sameRecords(got, pre) {
				t.Fatal(diffRecords(got, pre))
			}
			if l.CleanedTo() != checkpoint {
				t.Fatalf("checkpoint moved to %d", l.CleanedTo())
			}
			if _, err := l.Append(keyedBatch(t, codec.None, []mrec{{Key: []byte("a"), Val: []byte("b"), Ts: 5}}), 3); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCleanRacesAppendsAndReads (run with -race): appends, reads of random
// offsets, retention and flushes run while the log is cleaned over and
// over; reads always return valid batches holding the offset asked for or
// the next surviving one, no clean fails except ErrCleanAborted, and at the
// end the latest record of every key is there.
func TestCleanRacesAppendsAndReads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	cfg := cleanerConfig()
	l, err := Open(dir, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	errs := make(chan error, 8)
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
				start, leo := l.LogStartOffset(), l.LogEndOffset()
				if leo <= start {
					time.Sleep(time.Millisecond)
					continue
				}
				off := start + rng.Int64N(leo-start)
				res, err := l.Read(off, ReadOptions{MaxBytes: 4000, Limit: LimitLogEnd, MinOneBatch: true})
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue
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
				if len(b) == 0 {
					continue // everything from off on was cleaned away up to the end of a read
				}
				hs, err := segment.StoredBatches(b, 0, nil)
				if err != nil || len(hs) == 0 || hs[0].LastOffset() < off {
					errs <- fmt.Errorf("read at %d: %d batches, %v", off, len(hs), err)
					return
				}
			}
		}(uint64(r))
	}
	latest := map[string]mrec{}
	var mu sync.Mutex
	var swaps, aborts atomic.Int64
	wg.Add(1)
	go func() { // cleaner
		defer wg.Done()
		p := builtin.NewCompaction()
		for {
			select {
			case <-done:
				return
			default:
			}
			res, err := l.Clean(context.Background(), CleanOptions{Policy: p, NowMs: time.Now().UnixMilli(), Config: map[string]string{"delete.retention.ms": "100000000"}, BatchRecords: 100})
			if err != nil && !errors.Is(err, ErrCleanAborted) {
				errs <- err
				return
			}
			if err == nil && res.SegmentsBefore > 0 {
				swaps.Add(1)
				if res.SwapTook <= 0 || res.SwapTook > res.Took {
					errs <- fmt.Errorf("swap took %v of %v", res.SwapTook, res.Took)
					return
				}
				t.Logf("clean took %v, the lock %v", res.Took, res.SwapTook)
			}
			if err != nil {
				aborts.Add(1)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	// Append at least 1000 batches, and on until the cleaner swapped 3
	// times (bounded: 20000 batches or 30 s).
	stopAt := time.Now().Add(15 * time.Second)
	for i := 0; i < 20000 && (i < 1000 || swaps.Load() < 3) && time.Now().Before(stopAt); i++ {
		cdc, recs := randomBatch(rng, 40, time.Now().UnixMilli(), 10)
		got := appendRecords(t, l, cdc, recs)
		mu.Lock()
		for _, r := range got {
			if r.Key != nil {
				latest[string(r.Key)] = r
			}
		}
		mu.Unlock()
		l.SetHighWatermark(l.LogEndOffset() - int64(rng.IntN(3)))
		if i%300 == 299 && i < 1000 { // (a deletion aborts the clean running then)
			segs := l.Segments()
			if _, err := l.DeleteSegmentsBelow(segs[1].Base); err != nil {
				t.Fatal(err)
			}
			for _, r := range latest { // retention may take latest records too
				if r.Off < l.LogStartOffset() {
					delete(latest, string(r.Key))
				}
			}
		}
		if i%200 == 0 {
			if err := l.Flush(); err != nil {
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
	if swaps.Load() < 3 {
		t.Fatalf("only %d cleans swapped segments while appending (%d aborted)", swaps.Load(), aborts.Load())
	}
	t.Logf("%d cleans swapped segments while appending, %d aborted", swaps.Load(), aborts.Load())
	l.SetHighWatermark(l.LogEndOffset())
	if _, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: time.Now().UnixMilli(), Config: map[string]string{"delete.retention.ms": "100000000"}}); err != nil {
		t.Fatal(err)
	}
	got := logRecords(t, l)
	byOff := map[int64]mrec{}
	for i, r := range got {
		if i > 0 && r.Off <= got[i-1].Off {
			t.Fatalf("offsets out of order: %d after %d", r.Off, got[i-1].Off)
		}
		byOff[r.Off] = r
	}
	for k, r := range latest {
		if g, ok := byOff[r.Off]; !ok || !sameRecords([]mrec{g}, []mrec{r}) {
			t.Fatalf("latest record of %s (%v) missing or changed: %v", k, r, g)
		}
	}
	if f := cleanerFiles(t, segment.OSFS{}, dir); len(f) > 0 {
		t.Fatalf("left behind: %v", f)
	}
}

// TestThrottleRate: Wait lets through no more than the rate (plus 100 ms of
// burst), and nil or Kafka's default means no throttle.
func TestThrottleRate(t *testing.T) {
	if NewThrottle(0) != nil || NewThrottle(1.7976931348623157e308) != nil || NewThrottle(-1) != nil {
		t.Fatal("unthrottled rates must give nil")
	}
	var nilT *Throttle
	if err := nilT.Wait(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
	th := NewThrottle(1 << 20) // 1 MiB/s
	t0 := time.Now()
	for i := 0; i < 16; i++ {
		if err := th.Wait(context.Background(), 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(t0); d < 800*time.Millisecond || d > 10*time.Second {
		t.Fatalf("1 MiB at 1 MiB/s took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := th.Wait(ctx, 10<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the deadline: %v", err)
	}
}

// TestCleanThrottled: a clean moving N bytes (read + written) at R bytes/s
// takes at least 0.8 N/R.
func TestCleanThrottled(t *testing.T) {
	_, l, _, _ := cleanFixture(t, 11)
	defer l.Close()
	const rate = 50_000
	t0 := time.Now()
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg, Throttle: NewThrottle(rate)})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	n := res.BytesRead + res.BytesWritten
	want := time.Duration(float64(n) / rate * 0.8 * float64(time.Second))
	t.Logf("moved %d bytes in %v (floor %v)", n, took, want)
	if n < rate/2 {
		t.Fatalf("only %d bytes moved: the test proves little", n)
	}
	if took < want {
		t.Fatalf("took %v, want at least %v", took, want)
	}
}

// TestCleanState: dirty and clean bytes, the first uncleanable offset
// (active segment, high watermark, min.compaction.lag.ms) and the oldest
// dirty timestamp.
func TestCleanState(t *testing.T) {
	c := newClock()
	_, l := memLog(t, cleanerConfig(), c)
	defer l.Close()
	for i := 0; i < 200; i++ {
		appendRecords(t, l, codec.None, []mrec{{Key: fmt.Appendf(nil, "k%d", i%7), Val: bytes.Repeat([]byte("v"), 100), Ts: int64(1000 + i)}})
	}
	segs := l.Segments()
	active := segs[len(segs)-1].Base
	st := l.CleanState(5000, 0)
	if st.FirstUncleanable != l.LogStartOffset() || st.DirtyBytes != 0 {
		t.Fatalf("HW 0: %+v", st)
	}
	l.SetHighWatermark(l.LogEndOffset())
	st = l.CleanState(5000, 0)
	var dirty int64
	for _, s := range segs[:len(segs)-1] {
		dirty += s.Size
	}
	if st.FirstUncleanable != active || st.DirtyBytes != dirty || st.CleanBytes != 0 || st.CleanedTo != 0 || st.OldestDirtyTimestamp != 1000 {
		t.Fatalf("all dirty: %+v (active %d, dirty %d)", st, active, dirty)
	}
	// min.compaction.lag.ms: segment 2 holds records newer than now-lag.
	lagNow := segs[2].MaxTimestamp + 10
	if st = l.CleanState(lagNow, 11); st.FirstUncleanable != segs[2].Base || st.DirtyBytes != segs[0].Size+segs[1].Size {
		t.Fatalf("lag: %+v, want first uncleanable %d", st, segs[2].Base)
	}
	if _, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: lagNow, Config: map[string]string{"min.compaction.lag.ms": "11"}}); err != nil {
		t.Fatal(err)
	}
	st = l.CleanState(lagNow, 11)
	if st.CleanedTo != segs[2].Base || st.DirtyBytes != 0 || st.CleanBytes == 0 || st.OldestDirtyTimestamp < 0 {
		t.Fatalf("after a clean: %+v", st)
	}
}

// TestCleanKeepsOpenRegionsReadable: a fetch that took a region of a
// segment before a clean replaced it still reads the old bytes after the
// swap (the file is unlinked or renamed over, not truncated), on the OS
// file system.
func TestCleanKeepsOpenRegionsReadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l, err := Open(dir, cleanerConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rng := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 200; i++ {
		cdc, recs := randomBatch(rng, 5, 1000, 10)
		appendRecords(t, l, cdc, recs)
	}
	l.SetHighWatermark(l.LogEndOffset())
	segs := l.Segments()
	var held []ReadResult
	var want [][]byte
	for _, s := range segs[:3] {
		r, err := l.Read(s.Base, ReadOptions{MaxBytes: 1 << 20, Limit: LimitLogEnd})
		if err != nil || r.Region.Len == 0 {
			t.Fatal(err)
		}
		b := make([]byte, r.Region.Len)
		r.Region.File.ReadAt(b, r.Region.Pos)
		held, want = append(held, r), append(want, b)
	}
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
	if err != nil || res.SegmentsBefore < 3 || res.BytesWritten >= res.BytesRead/2 {
		t.Fatalf("clean %+v %v", res, err)
	}
	for i, r := range held {
		b := make([]byte, r.Region.Len)
		if _, err := r.Region.File.ReadAt(b, r.Region.Pos); err != nil && err != io.EOF {
			t.Fatalf("region %d after the swap: %v", i, err)
		}
		if !bytes.Equal(b, want[i]) {
			t.Fatalf("region %d changed under the reader", i)
		}
		r.Release()
	}
}

// TestCleanTruncateDuringSwap: a truncation right after the swap (before
// the clean removed its commit record) completes the record first and
// lowers the cleaner checkpoint, so segments appended afterwards are
// checked by recovery as usual; after a power loss the log holds the
// cleaned records below the truncation point and the new appends.
func TestCleanTruncateDuringSwap(t *testing.T) {
	fsys, l, c, pre := cleanFixture(t, 9)
	var to int64
	var truncErr error
	l.cl.step = func(s string) {
		if s != "swapped" {
			return
		}
		segs := l.Segments()
		to = segs[len(segs)/2].Base + 1
		_, truncErr = l.TruncateTo(to)
		if _, err := fsys.Stat("/logs/t-0/" + cleanerSwapFile); err == nil {
			truncErr = fmt.Errorf("commit record still there after TruncateTo")
		}
	}
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
	if err != nil || truncErr != nil {
		t.Fatal(err, truncErr)
	}
	l.cl.step = nil
	if l.CleanedTo() > l.Segments()[len(l.Segments())-1].Base {
		t.Fatalf("checkpoint %d above the active segment %d", l.CleanedTo(), l.Segments()[len(l.Segments())-1].Base)
	}
	var want []mrec
	for _, r := range modelClean(pre, res.CleanedTo, cleanNow, 100) {
		if r.Off < l.LogEndOffset() {
			want = append(want, r)
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 60; i++ {
		cdc, recs := randomBatch(rng, 10, 3000, 10)
		want = append(want, appendRecords(t, l, cdc, recs)...)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	l.abandon()
	fsys.Crash()
	l2, err := Open("/logs/t-0", cleanerConfig(), Options{FS: fsys, Now: c.Now, RecoveryPoint: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := logRecords(t, l2); !sameRecords(got, want) {
		t.Fatalf("truncated to %d: %s", to, diffRecords(got, want))
	}
}

// TestCleanStopsOnCorruptionAndCancel: a batch failing its CRC, or a
// cancelled context, stops the clean with an error; the files are
// unchanged and nothing is left behind.
func TestCleanStopsOnCorruptionAndCancel(t *testing.T) {
	for _, mode := range []string{"crc", "cancel"} {
		t.Run(mode, func(t *testing.T) {
			fsys, l, _, _ := cleanFixture(t, 4)
			defer l.Close()
			ctx := context.Background()
			wantErr := error(segment.ErrCorruptMessage)
			switch mode {
			case "crc":
				segs := l.Segments()
				s := segs[len(segs)-2] // a dirty, cleanable segment
				fsys.Corrupt(segment.FileName("/logs/t-0", s.Base, segment.LogExt), s.Size-3, []byte{0xde, 0xad})
			case "cancel":
				c, cancel := context.WithCancel(ctx)
				ctx, wantErr = c, context.Canceled
				l.cl.step = nil
				calls := 0
				pol := &cancelPolicy{Compaction: builtin.NewCompaction(), after: func() {
					if calls++; calls == 2 {
						cancel()
					}
				}}
				before := memFiles(t, fsys, "/logs/t-0")
				if _, err := l.Clean(ctx, CleanOptions{Policy: pol, NowMs: cleanNow, Config: cleanCfg, BatchRecords: 20}); !errors.Is(err, wantErr) {
					t.Fatalf("error %v, want %v", err, wantErr)
				}
				if after := memFiles(t, fsys, "/logs/t-0"); len(after) != len(before) {
					t.Fatalf("files changed: %d -> %d", len(before), len(after))
				}
				return
			}
			before := memFiles(t, fsys, "/logs/t-0")
			if _, err := l.Clean(ctx, CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg}); !errors.Is(err, wantErr) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			sameMemFiles(t, fsys, "/logs/t-0", before)
		})
	}
}

// cancelPolicy calls after at every Survivors call.
type cancelPolicy struct {
	*builtin.Compaction
	after func()
}

func (p *cancelPolicy) Begin(ctx context.Context, cp plugins.CompactionParams) (plugins.CompactionPass, error) {
	in, err := p.Compaction.Begin(ctx, cp)
	return &cancelPass{CompactionPass: in, after: p.after}, err
}

type cancelPass struct {
	plugins.CompactionPass
	after func()
}

func (c *cancelPass) Survivors(ctx context.Context, b []plugins.Record) ([]int64, error) {
	c.after()
	return c.CompactionPass.Survivors(ctx, b)
}

// TestCleanDiskFull: writes failing with ENOSPC at various points of a
// clean fail it with ErrStorage; the files are unchanged, nothing is left
// behind, and once space is back the clean succeeds.
func TestCleanDiskFull(t *testing.T) {
	for _, after := range []int{0, 3, 10, 30} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			fsys, l, _, pre := cleanFixture(t, 6)
			defer l.Close()
			before := memFiles(t, fsys, "/logs/t-0")
			fsys.FailWritesAfter(after, syscall.ENOSPC)
			_, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
			fsys.ClearFaults()
			if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("error %v, want ErrStorage and ENOSPC", err)
			}
			sameMemFiles(t, fsys, "/logs/t-0", before)
			if got := logRecords(t, l); !sameRecords(got, pre) {
				t.Fatal(diffRecords(got, pre))
			}
			res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
			if err != nil || res.SegmentsBefore == 0 {
				t.Fatalf("clean with space back: %+v %v", res, err)
			}
		})
	}
}

// TestCleanWithRetentionMeanwhile: retention deleting whole groups of the
// segments being cleaned does not abort the clean (their outputs are
// dropped, the rest is swapped, the log start stays where retention put
// it); deleting part of a group does abort it, changing nothing else.
func TestCleanWithRetentionMeanwhile(t *testing.T) {
	t.Run("whole-groups", func(t *testing.T) {
		c := newClock()
		fsys, l := memLog(t, cleanerConfig(), c)
		defer l.Close()
		rng := rand.New(rand.NewPCG(12, 12))
		var pre []mrec
		for i := 0; i < 120; i++ {
			cdc, recs := randomBatch(rng, 30, int64(1000+i), 20)
			pre = append(pre, appendRecords(t, l, cdc, recs)...)
		}
		l.SetHighWatermark(l.LogEndOffset())
		var start int64
		l.cl.step = func(s string) {
			if s == "staged" {
				segs := l.Segments()
				if _, err := l.DeleteSegmentsBelow(segs[2].Base); err != nil {
					t.Error(err)
				}
				start = l.LogStartOffset()
			}
		}
		res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
		if err != nil {
			t.Fatal(err)
		}
		if l.LogStartOffset() != start || l.Segments()[0].Base != start || start == 0 {
			t.Fatalf("log start %d, first segment %d, retention set %d", l.LogStartOffset(), l.Segments()[0].Base, start)
		}
		var left []mrec
		for _, r := range pre {
			if r.Off >= start {
				left = append(left, r)
			}
		}
		want := modelClean(left, res.CleanedTo, cleanNow, 100)
		if got := logRecords(t, l); !sameRecords(got, want) {
			t.Fatal(diffRecords(got, want))
		}
		if f := cleanerFiles(t, fsys, "/logs/t-0"); len(f) > 0 {
			t.Fatalf("left behind %v", f)
		}
		l.Close()
		l2, err := Open("/logs/t-0", cleanerConfig(), Options{FS: fsys, Now: c.Now, RecoveryPoint: 0})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if got := logRecords(t, l2); !sameRecords(got, want) || l2.LogStartOffset() != start {
			t.Fatalf("after reopen (start %d): %s", l2.LogStartOffset(), diffRecords(got, want))
		}
	})
	t.Run("half-a-group", func(t *testing.T) {
		fsys, l, _, pre := cleanFixture(t, 5) // its small cleaned segments are merged
		defer l.Close()
		var start int64
		l.cl.step = func(s string) {
			if s == "staged" {
				segs := l.Segments()
				if _, err := l.DeleteSegmentsBelow(segs[1].Base); err != nil {
					t.Error(err)
				}
				start = l.LogStartOffset()
			}
		}
		_, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: cleanNow, Config: cleanCfg})
		if !errors.Is(err, ErrCleanAborted) {
			t.Fatalf("error %v, want ErrCleanAborted", err)
		}
		var want []mrec
		for _, r := range pre {
			if r.Off >= start {
				want = append(want, r)
			}
		}
		if got := logRecords(t, l); !sameRecords(got, want) {
			t.Fatal(diffRecords(got, want))
		}
		if f := cleanerFiles(t, fsys, "/logs/t-0"); len(f) > 0 {
			t.Fatalf("left behind %v", f)
		}
	})
}
