package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
	"github.com/brokkr/brokkr/plugins/policytest"
)

// pluginBin is the test plugin (internal/testplugin), built once in TestMain.
var pluginBin string

const faultKey = "brokkr.plugin.test.fault"

func TestMain(m *testing.M) {
	if dir := os.Getenv("BROKKR_HOST_TEST_CHILD"); dir != "" {
		childHost(dir) // TestPluginDiesWithBroker's broker stand-in
		return
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "brokkr-plugin-host-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		pluginBin = filepath.Join(dir, "testplugin")
		cmd := exec.Command("go", "build", "-o", pluginBin, "./internal/testplugin")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the test plugin:", err)
			return 1
		}
		return m.Run()
	}())
}

// pluginDir returns a fresh plugin directory holding the test plugin as
// "testplugin" (a hard link, or a copy).
func pluginDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, "testplugin")
	if err := os.Link(pluginBin, dst); err != nil {
		b, err := os.ReadFile(pluginBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// logBuf collects log records for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testHost struct {
	*Host
	log *logBuf
}

// newHost starts a host on a fresh plugin directory with short time-outs.
func newHost(t testing.TB, mod func(*Options)) testHost {
	t.Helper()
	lb := &logBuf{}
	o := Options{
		Dir:            pluginDir(t),
		CallTimeout:    5 * time.Second,
		StartTimeout:   20 * time.Second,
		MinBackoff:     300 * time.Millisecond,
		MaxBackoff:     2 * time.Second,
		HealthInterval: time.Second,
		Logger:         slog.New(slog.NewTextHandler(io.MultiWriter(lb, tlogWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return testHost{h, lb}
}

// tlogWriter sends warnings to t.Log (debug lines are kept out of the test
// output to keep it readable).
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("level=WARN")) || bytes.Contains(p, []byte("level=ERROR")) {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (h testHost) status(t testing.TB, name string) Status {
	t.Helper()
	for _, s := range h.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %q in %+v", name, h.Status())
	return Status{}
}

// eventually polls cond every 50 ms until it holds or limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func retentionFor(t testing.TB, h testHost) plugins.RetentionPolicy {
	t.Helper()
	p, err := h.Retention("testplugin")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func compactionFor(t testing.TB, h testHost) plugins.CompactionPolicy {
	t.Helper()
	p, err := h.Compaction("testplugin")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicySuiteAsPlugin runs the conformance suites against the built-in
// policies served through a real plugin process (the in-process run is in
// plugins/builtin): same tables, same models.
func TestPolicySuiteAsPlugin(t *testing.T) {
	h := newHost(t, nil)
	t.Run("Retention", func(t *testing.T) {
		policytest.RunRetention(t, func(t *testing.T) plugins.RetentionPolicy { return retentionFor(t, h) })
	})
	t.Run("Compaction", func(t *testing.T) {
		policytest.RunCompaction(t, func(t *testing.T) plugins.CompactionPolicy { return compactionFor(t, h) })
	})
	s := h.status(t, "testplugin")
	if s.Faults != 0 || s.Restarts != 0 || !s.Running || s.Calls < 2*policytest.RandomCases {
		t.Fatalf("status after the suites: %+v", s)
	}
}

// TestSameAnswersInProcessAndPlugin compares decisions and reasons of the
// in-process built-ins with the plugin's for random inputs.
func TestSameAnswersInProcessAndPlugin(t *testing.T) {
	h := newHost(t, nil)
	rp, in := retentionFor(t, h), builtin.NewRetention()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	ctx := context.Background()
	for i := range 200 {
		input := policytest.RandomRetentionInput(r)
		want, werr := in.Decide(ctx, input)
		got, gerr := rp.Decide(ctx, input)
		if (werr != nil) != (gerr != nil) || want != got {
			t.Fatalf("case %d: in process %+v, %v; plugin %+v, %v", i, want, werr, got, gerr)
		}
	}
	if got := rp.Info(); got.Name != "testplugin" || got.NeedsValues {
		t.Fatalf("Info = %+v", got)
	}
}

func recordsRoundTrip(recs []plugins.Record, values bool) []plugins.Record {
	out, err := pluginpb.RecordsFromPB(pluginpb.RecordsToPB(recs, values))
	if err != nil {
		panic(err)
	}
	return out
}
