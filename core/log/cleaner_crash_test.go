package log

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/segment"
)

const cleanCrashEnv = "BROKKR_CLEAN_CRASH_CHILD"

func killConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 64 << 10
	c.SegmentIndexBytes = 8 << 10
	c.IndexIntervalBytes = 1024
	return c
}

const killNow = 10_000_000 // every tombstone of the template has expired

var killCleanCfg = map[string]string{"delete.retention.ms": "1000"}

// TestCleanKill9Child is the child of TestCleanKill9: it opens the log in
// $BROKKR_CLEAN_CRASH_CHILD, cleans it (throttled when _RATE is set) and
// prints "start", "at <step>" at every step of the clean (stopping there
// for good when the step is _STEP), and "done". It does nothing unless
// started by TestCleanKill9.
func TestCleanKill9Child(t *testing.T) {
	dir := os.Getenv(cleanCrashEnv)
	if dir == "" {
		return
	}
	stop := os.Getenv(cleanCrashEnv + "_STEP")
	rate, _ := strconv.ParseFloat(os.Getenv(cleanCrashEnv+"_RATE"), 64)
	l, err := Open(dir, killConfig(), Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	l.SetHighWatermark(l.LogEndOffset())
	w := os.Stdout // unbuffered: the parent acts on each line
	l.cl.step = func(s string) {
		fmt.Fprintf(w, "at %s\n", s)
		if s == stop {
			time.Sleep(time.Hour) // until killed
		}
	}
	fmt.Fprintln(w, "start")
	if _, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: killNow, Config: killCleanCfg, Throttle: NewThrottle(rate)}); err != nil {
		fmt.Fprintln(w, "error", err)
		os.Exit(3)
	}
	fmt.Fprintln(w, "done")
	time.Sleep(time.Hour)
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// killTemplate writes a log already cleaned once (so the next clean also
// merges segments) with more appended after, and returns its records.
func killTemplate(t *testing.T, dir string) []mrec {
	rng := rand.New(rand.NewPCG(42, 42))
	l, err := Open(dir, killConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []mrec
	add := func(n int, ts int64) {
		for i := 0; i < n; i++ {
			cdc, rs := randomBatch(rng, 300, ts+int64(i), 20)
			recs = append(recs, appendRecords(t, l, cdc, rs)...)
		}
	}
	add(700, 1000)
	l.SetHighWatermark(l.LogEndOffset())
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: 5000, Config: killCleanCfg})
	if err != nil {
		t.Fatal(err)
	}
	recs = modelClean(recs, res.CleanedTo, 5000, 1000)
	add(700, 6000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestCleanKill9 kills a real process with SIGKILL while it cleans a log:
// at every kind of step of the swap (after the outputs are staged, with
// the lock taken, after the commit record, between renames and removals,
// after the checkpoint) and at random moments of a throttled clean. After
// each kill the reopened log holds exactly the records before the clean
// (killed before the commit) or exactly those after it (killed after),
// never a mix, and no cleaner file is left.
func TestCleanKill9(t *testing.T) {
	if os.Getenv(cleanCrashEnv) != "" {
		return
	}
	t0 := time.Now()
	root := t.TempDir()
	tmpl := filepath.Join(root, "template", "t-0")
	pre := killTemplate(t, tmpl)
	t.Logf("template written in %v", time.Since(t0))

	// The clean done to completion: the post set and the steps.
	done := filepath.Join(root, "done", "t-0")
	copyDir(t, tmpl, done)
	l, err := Open(done, killConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := logRecords(t, l); !sameRecords(got, pre) {
		t.Fatalf("template: %s", diffRecords(got, pre))
	}
	var steps []string
	l.cl.step = func(s string) { steps = append(steps, s) }
	l.SetHighWatermark(l.LogEndOffset())
	res, err := l.Clean(context.Background(), CleanOptions{Policy: builtin.NewCompaction(), NowMs: killNow, Config: killCleanCfg})
	if err != nil {
		t.Fatal(err)
	}
	post := logRecords(t, l)
	if want := modelClean(pre, res.CleanedTo, killNow, 1000); !sameRecords(post, want) {
		t.Fatalf("post: %s", diffRecords(post, want))
	}
	l.Close()
	t.Logf("clean: %+v", res)
	committed := slices.Index(steps, "committed")
	var renamed, removed string
	for _, s := range steps {
		if strings.HasPrefix(s, "renamed ") && renamed == "" {
			renamed = s
		}
		if strings.HasPrefix(s, "removed ") {
			removed = s
		}
	}
	if committed < 0 || renamed == "" || removed == "" {
		t.Fatalf("steps %q: the clean must rename and remove", steps)
	}
	// Random kills are spread over a throttled clean of about 0.5 s.
	rate := float64(res.BytesRead+res.BytesWritten) / 0.5
	rounds := []string{"staged", "locked", "committed", renamed, removed, "swapped", "checkpointed"}
	for i := 0; i < 6; i++ {
		rounds = append(rounds, "") // a random moment
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	outcome := map[string]int{}
	for round, stop := range rounds {
		dir := filepath.Join(root, fmt.Sprint("r", round), "t-0")
		copyDir(t, tmpl, dir)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCleanKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), cleanCrashEnv+"="+dir, cleanCrashEnv+"_STEP="+stop)
		if stop == "" {
			cmd.Env = append(cmd.Env, cleanCrashEnv+"_RATE="+strconv.FormatFloat(rate, 'f', 0, 64))
		}
		lines := startChild(t, cmd)
		deadline := time.After(60 * time.Second)
		var killAt <-chan time.Time
		last := ""
	wait:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited before the kill (last line %q)", round, last)
				}
				if strings.HasPrefix(line, "error") {
					t.Fatalf("round %d: child: %s", round, line)
				}
				last = line
				if stop != "" && line == "at "+stop {
					break wait
				}
				if stop == "" && line == "start" {
					killAt = time.After(time.Duration(rng.IntN(600)) * time.Millisecond)
				}
			case <-killAt:
				break wait
			case <-deadline:
				t.Fatalf("round %d: child made no progress (last line %q)", round, last)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for line := range lines {
			last = line
		}
		cmd.Wait()

		l, err := Open(dir, killConfig(), Options{RecoveryPoint: 0})
		if err != nil {
			t.Fatalf("round %d (%q): reopen: %v", round, stop, err)
		}
		got := logRecords(t, l)
		cleaned := l.CleanedTo()
		l.Close()
		isPre, isPost := sameRecords(got, pre), sameRecords(got, post)
		switch {
		case !isPre && !isPost:
			t.Fatalf("round %d (killed at %q, last line %q): neither the old (%s) nor the new (%s) records", round, stop, last, diffRecords(got, pre), diffRecords(got, post))
		case stop != "" && slices.Index(steps, stop) < committed && !isPre:
			t.Fatalf("round %d: killed at %q before the commit, but the clean happened", round, stop)
		case stop != "" && slices.Index(steps, stop) >= committed && !isPost:
			t.Fatalf("round %d: killed at %q after the commit, but the old records are back", round, stop)
		case isPost && cleaned != res.CleanedTo || isPre && !isPost && cleaned != res.FirstDirty:
			t.Fatalf("round %d: cleaner checkpoint %d (pre %d, post %d)", round, cleaned, res.FirstDirty, res.CleanedTo)
		}
		if f := cleanerFiles(t, segment.OSFS{}, dir); len(f) > 0 {
			t.Fatalf("round %d: left behind %v", round, f)
		}
		kind := "old"
		if isPost {
			kind = "new"
		}
		outcome[kind]++
		t.Logf("round %d at %v: killed at %q (last line %q): %s set", round, time.Since(t0).Round(time.Millisecond), stop, last, kind)
	}
	t.Logf("outcomes: %v", outcome)
}
