package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// pluginDir holds every plugin binary, built once by TestMain.
var pluginDir string

// plugins are the binaries TestMain builds: file name -> package.
var pluginPkgs = map[string]string{
	"retention-committed": "./examples/plugins/retention-committed",
	"compaction-latest-n": "./examples/plugins/compaction-latest-n",
	"crash":               "./tests/plugins/testdata/crash",
	"hang":                "./tests/plugins/testdata/hang",
	"garbage":             "./tests/plugins/testdata/garbage",
	"flaky":               "./tests/plugins/testdata/flaky",
}

// pluginsBuilt is closed when the plugin build has finished; buildErr is
// its failure.
var (
	pluginsBuilt = make(chan struct{})
	buildErr     error
)

// TestMain builds every plugin into pluginDir with one go build, in the
// background, so that it overlaps the build of the brokkr binary (the first
// test's testbroker.Start); start waits for it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "brokkr-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	go func() {
		defer close(pluginsBuilt)
		// The binaries link in parallel, each named by its package's last
		// element.
		args := []string{"build", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
		for name, pkg := range pluginPkgs {
			if filepath.Base(pkg) != name {
				buildErr = fmt.Errorf("plugin %s must be built from a directory of that name, not %s", name, pkg)
				return
			}
			args = append(args, pkg)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		// Second copies, so a compaction fault is its own: one process
		// serves a plugin name, and a retention crash would hide it.
		for _, name := range []string{"crash", "hang"} {
			if buildErr = os.Link(filepath.Join(dir, name), filepath.Join(dir, name+"-compaction")); buildErr != nil {
				return
			}
		}
	}()
	code := m.Run()
	<-pluginsBuilt
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitPlugins waits for the plugin build.
func waitPlugins(t *testing.T) {
	t.Helper()
	select {
	case <-pluginsBuilt:
	case <-time.After(5 * time.Minute):
		t.Fatal("the plugin build did not finish within 5 minutes")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// env is one test's broker and its clients.
type env struct {
	t         *testing.T
	b         *testbroker.Broker
	adminAddr string // brokkr.admin.listener (/metrics)
	cl        *kgo.Client
	adm       *kadm.Client
	prod      *kgo.Client // one record per batch, uncompressed
}

// start runs a broker with the plugin directory, retention checked every
// 200 ms, the cleaner backing off 100 ms between passes and the admin
// listener on, plus overrides.
func start(t *testing.T, overrides ...string) *env {
	t.Helper()
	testbroker.Binary(t) // builds brokkr while the plugins build
	waitPlugins(t)
	admin := freeAddr(t)
	b := testbroker.Start(t, append([]string{
		"brokkr.plugin.dir=" + pluginDir,
		"log.retention.check.interval.ms=200",
		"log.cleaner.backoff.ms=100",
		"brokkr.admin.listener=" + admin,
	}, overrides...)...)
	t.Cleanup(func() {
		if t.Failed() {
			out := b.Output()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("broker output:\n%s", out)
		}
	})
	cl := newClient(t, b.Addr)
	// Uncompressed, one record per batch: small segment.bytes roll often.
	prod := newClient(t, b.Addr, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	return &env{t: t, b: b, adminAddr: admin, cl: cl, adm: kadm.NewClient(cl), prod: prod}
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates a one-partition topic with configs ("key=value").
func (e *env) createTopic(topic string, configs ...string) {
	t := e.t
	t.Helper()
	cfg := map[string]*string{}
	for _, kv := range configs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("config %q is not key=value", kv)
		}
		cfg[k] = &v
	}
	resp, err := e.adm.CreateTopic(ctxFor(t, 20*time.Second), 1, 1, cfg, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s %v: %v %v %s", topic, configs, err, resp.Err, resp.ErrMessage)
	}
}

// rec is a record as the tests write and read it.
type rec struct {
	Offset int64
	Key    string // "" = no key
	Value  string
	Tomb   bool // null value
	Ts     time.Time
}

func (r rec) String() string {
	v := r.Value
	if r.Tomb {
		v = "<tombstone>"
	}
	return fmt.Sprintf("%d:%s=%s", r.Offset, r.Key, v)
}

// produce writes rs in order, one synchronous record each, and fills in
// their offsets.
func (e *env) produce(topic string, rs []rec) []rec {
	t := e.t
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	out := slices.Clone(rs)
	for i, r := range out {
		kr := &kgo.Record{Topic: topic, Timestamp: r.Ts}
		if r.Key != "" {
			kr.Key = []byte(r.Key)
		}
		if !r.Tomb {
			kr.Value = []byte(r.Value)
		}
		res := e.prod.ProduceSync(ctx, kr)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce %v: %v", r, err)
		}
		out[i].Offset = res[0].Record.Offset
	}
	return out
}

// consumeAll reads partition 0 of topic from its log start offset up to its
// end offset and returns the records with their offsets.
func (e *env) consumeAll(topic string) []rec {
	t := e.t
	t.Helper()
	end := e.listOffset(topic, -1)
	startOff := e.listOffset(topic, -2)
	if end <= startOff {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.b.Addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().At(startOff)},
	}), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []rec
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consuming %s: got %d records up to end offset %d: %v", topic, len(out), end, err)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("consuming %s: %v", topic, e.Err)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, rec{Offset: r.Offset, Key: string(r.Key), Value: string(r.Value), Tomb: r.Value == nil, Ts: r.Timestamp})
			if r.Offset >= end-1 {
				done = true
			}
		})
		if done {
			return out
		}
	}
}

// listOffset is ListOffsets for partition 0: -1 latest (the end offset),
// -2 earliest (the log start offset).
func (e *env) listOffset(topic string, ts int64) int64 {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lo kadm.ListedOffsets
	var err error
	if ts == -2 {
		lo, err = e.adm.ListStartOffsets(ctx, topic)
	} else {
		lo, err = e.adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	o, ok := lo.Lookup(topic, 0)
	if !ok || o.Err != nil {
		t.Fatalf("offset of %s/0: found=%v err=%v", topic, ok, o.Err)
	}
	return o.Offset
}

// segmentBases lists the base offsets of partition 0's segment files.
func (e *env) segmentBases(topic string) []int64 {
	t := e.t
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.b.DataDir, "logs", topic+"-0", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, f := range files {
		n, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(f), ".log"), 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// baseHolding is the base of the segment holding offset o: the largest base
// at or below it.
func baseHolding(bases []int64, o int64) int64 {
	best := int64(-1)
	for _, b := range bases {
		if b <= o {
			best = b
		}
	}
	return best
}

// partitionStatus is the JSON of brokkr.status.partition.<n> (the fields
// these tests read).
type partitionStatus struct {
	Partition     int32  `json:"partition"`
	CleanupPolicy string `json:"cleanup_policy"`
	Retention     *struct {
		Policy       string `json:"policy"`
		LastDecision string `json:"last_decision"`
		LastDeleted  int    `json:"last_deleted_segments"`
		Fault        string `json:"fault"`
		Faults       int64  `json:"faults"`
	} `json:"retention"`
	Cleaner *struct {
		Policy          string `json:"policy"`
		LastCleanMs     int64  `json:"last_clean_ms"`
		LastCleanResult string `json:"last_clean_result"`
		Cleanings       int64  `json:"cleanings"`
		LastError       string `json:"last_error"`
		Failures        int    `json:"consecutive_failures"`
	} `json:"cleaner"`
}

// status asks the broker for partition 0's policy status (DescribeConfigs
// naming brokkr.status.partition.0).
func (e *env) status(topic string) partitionStatus {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	res.ConfigNames = []string{"brokkr.status.partition.0"}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, e.cl)
	if err != nil {
		t.Fatalf("DescribeConfigs %s: %v", topic, err)
	}
	for _, r := range resp.Resources {
		for _, c := range r.Configs {
			if c.Name == "brokkr.status.partition.0" && c.Value != nil {
				var st partitionStatus
				if err := json.Unmarshal([]byte(*c.Value), &st); err != nil {
					t.Fatalf("status of %s: %v in %s", topic, err, *c.Value)
				}
				return st
			}
		}
	}
	t.Fatalf("no brokkr.status.partition.0 for %s in %+v", topic, resp.Resources)
	return partitionStatus{}
}

// cli runs the brokkr client binary against the broker and returns its
// standard output.
func (e *env) cli(args ...string) string {
	t := e.t
	t.Helper()
	cmd := exec.Command(testbroker.Binary(t), append(args, "--brokers", e.b.Addr)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("brokkr %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// metric sums the samples of a Prometheus metric whose labels contain
// every one of the given label pairs (`topic="x"`).
func (e *env) metric(name string, labels ...string) float64 {
	t := e.t
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + e.adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// eventually polls cond every 200 ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
