package plugins

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// history is n records over 5 keys, each key overwritten, all stamped two
// days ago: a compaction would remove most of them, and any time retention
// all but the active segment.
func history(n int) []rec {
	old := time.Now().Add(-48 * time.Hour)
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{Key: fmt.Sprintf("k%d", i%5), Value: fmt.Sprintf("v%03d-%s", i, strings.Repeat("h", 150)), Ts: old}
	}
	return out
}

// faultTopic is one topic whose policy is a fault plugin.
type faultTopic struct {
	name      string
	retention bool // the plugin is the retention policy, else the compaction policy
	configs   []string
}

func (f faultTopic) create(e *env) {
	cfg := []string{"segment.bytes=1024", "retention.ms=1000", "delete.retention.ms=0", "min.cleanable.dirty.ratio=0.01"}
	if f.retention {
		cfg = append(cfg, "cleanup.policy=delete")
	} else {
		cfg = append(cfg, "cleanup.policy=compact")
	}
	e.createTopic(f.name, append(cfg, f.configs...)...)
}

// faulted reports whether the topic's status shows a current fault.
func (f faultTopic) faulted(e *env) (bool, string) {
	st := e.status(f.name)
	if f.retention {
		if st.Retention == nil {
			return false, "no retention status"
		}
		return st.Retention.Fault != "" && st.Retention.Faults > 0, st.Retention.Fault
	}
	if st.Cleaner == nil {
		return false, "no cleaner status"
	}
	return st.Cleaner.LastError != "" && st.Cleaner.Failures > 0 && st.Cleaner.Cleanings == 0, st.Cleaner.LastError
}

// describeShowsFault checks what an operator sees: `brokkr topic describe`
// names the plugin as the topic's policy and, in --json, carries the fault
// in the partition's status.
func (f faultTopic) describeShowsFault(e *env, plugin string) {
	t := e.t
	t.Helper()
	text := e.cli("topic", "describe", f.name)
	line := "COMPACTION POLICY"
	if f.retention {
		line = "RETENTION POLICY"
	}
	found := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, line) && strings.Contains(l, plugin) {
			found = true
		}
	}
	if !found {
		t.Errorf("brokkr topic describe %s has no %q line naming %s:\n%s", f.name, line, plugin, text)
	}
	var topics []struct {
		Partitions []struct {
			Status partitionStatus `json:"status"`
		} `json:"partitions"`
	}
	js := e.cli("topic", "describe", f.name, "--json")
	if err := json.Unmarshal([]byte(js), &topics); err != nil || len(topics) != 1 || len(topics[0].Partitions) != 1 {
		t.Fatalf("brokkr topic describe %s --json: %v\n%s", f.name, err, js)
	}
	st := topics[0].Partitions[0].Status
	switch {
	case f.retention && (st.Retention == nil || st.Retention.Fault == ""):
		t.Errorf("brokkr topic describe %s --json shows no retention fault: %s", f.name, js)
	case !f.retention && (st.Cleaner == nil || st.Cleaner.LastError == ""):
		t.Errorf("brokkr topic describe %s --json shows no cleaner error: %s", f.name, js)
	}
}

// checkFaults produces history to every topic, waits until every topic
// shows its fault, lets several more retention checks and cleaner passes
// run, and asserts that every record is still there, unchanged, from
// offset 0, and that the faults are counted in /metrics.
func checkFaults(t *testing.T, e *env, plugin string, topics []faultTopic, wait time.Duration) {
	recs := map[string][]rec{}
	for _, f := range topics {
		f.create(e)
		recs[f.name] = e.produce(f.name, history(40))
	}
	t0 := time.Now()
	for _, f := range topics {
		eventually(t, wait, f.name+" shows its policy fault", func() bool {
			ok, _ := f.faulted(e)
			return ok
		})
		t.Logf("%s shows its fault after %v", f.name, time.Since(t0).Round(100*time.Millisecond))
	}
	time.Sleep(2 * time.Second) // more checks and passes with the faulty plugin
	for _, f := range topics {
		ok, msg := f.faulted(e)
		if !ok {
			t.Errorf("%s: the fault is no longer shown (%q)", f.name, msg)
		}
		t.Logf("%s fault: %s", f.name, msg)
		if s := e.listOffset(f.name, -2); s != 0 {
			t.Errorf("%s: log start offset %d, want 0: a faulty policy deleted segments", f.name, s)
		}
		got := e.consumeAll(f.name)
		if !sameRecords(got, recs[f.name]) {
			t.Errorf("%s: %d of %d records left after faults; first %v", f.name, len(got), len(recs[f.name]), got[:min(3, len(got))])
		}
		f.describeShowsFault(e, plugin)
		if n := e.metric("brokkr_policy_faults_total", `topic="`+f.name+`"`); n < 1 {
			t.Errorf("%s: brokkr_policy_faults_total = %v, want >= 1", f.name, n)
		}
	}
	if n := e.metric("brokkr_plugin_faults_total", `plugin="`+plugin+`"`); n < 1 {
		t.Errorf("brokkr_plugin_faults_total{plugin=%q} = %v, want >= 1", plugin, n)
	}
}

// TestFaultCrash: a plugin whose retention panics in every Decide and whose
// compaction exits in the middle of every pass deletes nothing.
func TestFaultCrash(t *testing.T) {
	e := start(t)
	checkFaults(t, e, "crash", []faultTopic{
		{name: "crash-r", retention: true, configs: []string{"brokkr.retention.plugin=crash"}},
		// A second copy of the binary, so the compaction crashes are its own
		// (one process serves a plugin name).
		{name: "crash-c", configs: []string{"brokkr.compaction.plugin=crash-compaction"}},
	}, 30*time.Second)
}

// TestFaultGarbage: a plugin that answers promptly but nonsense (a log
// start past the log end, inside the active segment, negative; survivors
// not in the batch) deletes nothing.
func TestFaultGarbage(t *testing.T) {
	e := start(t)
	checkFaults(t, e, "garbage", []faultTopic{
		{name: "garbage-beyond", retention: true, configs: []string{"brokkr.retention.plugin=garbage"}},
		{name: "garbage-active", retention: true, configs: []string{"brokkr.retention.plugin=garbage", "brokkr.plugin.garbage.mode=active"}},
		{name: "garbage-negative", retention: true, configs: []string{"brokkr.retention.plugin=garbage", "brokkr.plugin.garbage.mode=negative"}},
		{name: "garbage-c", configs: []string{"brokkr.compaction.plugin=garbage"}},
	}, 30*time.Second)
}

// TestFaultHang: a plugin that blocks every call for an hour is cut off by
// the host's call time-out (brokkr.plugin.call.timeout.ms, 1.5 s here),
// and deletes nothing.
func TestFaultHang(t *testing.T) {
	e := start(t, "brokkr.plugin.call.timeout.ms=1500")
	checkFaults(t, e, "hang", []faultTopic{
		{name: "hang-r", retention: true, configs: []string{"brokkr.retention.plugin=hang"}},
		{name: "hang-c", configs: []string{"brokkr.compaction.plugin=hang-compaction"}},
	}, 30*time.Second)
}

// TestFaultHeals: a plugin that crashes on its first 2 calls (counted in a
// file, since every crash loses the process) is restarted after its
// back-off and then does what its policy says: retention keeps only the
// active segment, compaction the latest record per key. The faults were
// counted, and are no longer shown.
func TestFaultHeals(t *testing.T) {
	e := start(t, "brokkr.plugin.restart.backoff.ms=200", "brokkr.plugin.restart.backoff.max.ms=1000")
	dir := t.TempDir()
	counterR, counterC := filepath.Join(dir, "retention-calls"), filepath.Join(dir, "compaction-calls")
	r := faultTopic{name: "flaky-r", retention: true, configs: []string{"brokkr.retention.plugin=flaky",
		"brokkr.plugin.flaky.counter=" + counterR, "brokkr.plugin.flaky.crashes=2"}}
	c := faultTopic{name: "flaky-c", configs: []string{"brokkr.compaction.plugin=flaky",
		"brokkr.plugin.flaky.counter=" + counterC, "brokkr.plugin.flaky.crashes=2"}}
	r.create(e)
	c.create(e)
	rr := e.produce(r.name, history(40))
	cr := e.produce(c.name, history(40))
	bases := e.segmentBases(r.name)
	active := bases[len(bases)-1]
	eventually(t, 40*time.Second, fmt.Sprintf("%s starts at its active segment %d once the plugin is healthy", r.name, active), func() bool {
		return e.listOffset(r.name, -2) == active
	})
	if got := e.consumeAll(r.name); !sameRecords(got, rr[active:]) {
		t.Errorf("%s: after retention read %v, want the records from %d", r.name, got, active)
	}
	cleanBases := e.segmentBases(c.name)
	firstUncleanable := cleanBases[len(cleanBases)-1] // the active segment's base
	// The plugin sees the cleanable records only: it keeps the latest of
	// each key among them.
	latest := map[string]int64{}
	for _, x := range cr[:firstUncleanable] {
		latest[x.Key] = x.Offset
	}
	var want []rec
	for _, x := range cr {
		if x.Offset >= firstUncleanable || latest[x.Key] == x.Offset {
			want = append(want, x)
		}
	}
	t.Logf("%s segments %v: want %d of %d records", c.name, cleanBases, len(want), len(cr))
	eventually(t, 40*time.Second, c.name+" compacted to the latest record per key once the plugin is healthy", func() bool {
		return sameRecords(e.consumeAll(c.name), want)
	})
	for _, f := range []struct{ topic, counter string }{{r.name, counterR}, {c.name, counterC}} {
		b, err := os.ReadFile(f.counter)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n < 3 {
			t.Errorf("%s: the plugin counted %d calls (%v), want >= 3 (2 crashes, then healthy)", f.topic, n, err)
		}
	}
	if st := e.status(r.name); st.Retention == nil || st.Retention.Faults < 2 || st.Retention.Fault != "" {
		t.Errorf("%s: retention status %+v, want >= 2 faults counted and none shown now", r.name, st.Retention)
	}
	// The status follows the swap of the cleaned segments a moment later.
	eventually(t, 10*time.Second, c.name+" status shows a cleaning and no consecutive failures", func() bool {
		st := e.status(c.name)
		return st.Cleaner != nil && st.Cleaner.Cleanings > 0 && st.Cleaner.Failures == 0
	})
	if st := e.status(c.name); st.Cleaner.LastError == "" {
		t.Errorf("%s: cleaner status %+v, want the last error kept", c.name, st.Cleaner)
	}
	if n := e.metric("brokkr_policy_faults_total", `topic="flaky-r"`); n < 2 {
		t.Errorf("brokkr_policy_faults_total{topic=flaky-r} = %v, want >= 2", n)
	}
	if n := e.metric("brokkr_plugin_restarts_total", `plugin="flaky"`); n < 2 {
		t.Errorf("brokkr_plugin_restarts_total{plugin=flaky} = %v, want >= 2", n)
	}
}
