package plugins

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// latestN is the expected outcome of keep-latest-n over recs (all of them
// cleanable): a record survives when it has no key, or when no later record
// of its key is a tombstone, fewer than n later records share its key, and
// it is not a tombstone older than deleteRetention.
func latestN(recs []rec, n int, deleteRetention time.Duration, now time.Time) []rec {
	var out []rec
	for i, r := range recs {
		later, laterTomb := 0, false
		for _, l := range recs[i+1:] {
			if r.Key != "" && l.Key == r.Key {
				later++
				laterTomb = laterTomb || l.Tomb
			}
		}
		expired := r.Tomb && now.Sub(r.Ts) > deleteRetention
		if r.Key == "" || (later < n && !laterTomb && !expired) {
			out = append(out, r)
		}
	}
	return out
}

func sameRecords(got, want []rec) bool {
	return slices.EqualFunc(got, want, func(a, b rec) bool {
		return a.Offset == b.Offset && a.Key == b.Key && a.Tomb == b.Tomb && (a.Tomb || a.Value == b.Value)
	})
}

// TestCompactionLatestN: a compacted topic whose policy is the
// compaction-latest-n plugin with n=2. Five keys overwritten five times, a
// fresh tombstone (it deletes its key's history and stays), an expired
// tombstone (it deletes its key's history and goes too), then filler
// records with distinct keys so that every interesting record lies in a
// closed, cleanable segment. After the cleaner has run, a consumer reading
// from offset 0 sees exactly the latest two records per key with their
// original offsets, and the status names the plugin.
func TestCompactionLatestN(t *testing.T) {
	e := start(t)
	const topic = "latest2"
	// Created as the plugin's README says, with the CLI.
	out := e.cli("topic", "create", topic, "-c", "cleanup.policy=compact", "-c", "brokkr.compaction.plugin=compaction-latest-n",
		"-c", "brokkr.plugin.compaction-latest-n.n=2", "-c", "segment.bytes=1024", "-c", "min.cleanable.dirty.ratio=0.01")
	if !strings.Contains(out, "created") {
		t.Fatalf("brokkr topic create: %s", out)
	}

	now := time.Now()
	pad := strings.Repeat(".", 150)
	var recs []rec
	for v := range 5 {
		for k := range 5 {
			recs = append(recs, rec{Key: fmt.Sprintf("k%d", k), Value: fmt.Sprintf("k%d-v%d%s", k, v, pad), Ts: now})
		}
	}
	recs = append(recs,
		rec{Key: "k4", Tomb: true, Ts: now}, // deletes k4's five values, stays (1 day)
		rec{Key: "gone", Value: "gone-v0" + pad, Ts: now.Add(-49 * time.Hour)},
		rec{Key: "gone", Tomb: true, Ts: now.Add(-48 * time.Hour)}, // older than delete.retention.ms: goes
		rec{Value: "no key" + pad, Ts: now},                        // keyless: stays
		rec{Key: "k0", Value: "k0-v5" + pad, Ts: now},
	)
	for f := range 12 {
		recs = append(recs, rec{Key: fmt.Sprintf("filler-%02d", f), Value: "filler" + pad, Ts: now})
	}
	recs = e.produce(topic, recs)
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("record %d got offset %d", i, r.Offset)
		}
	}
	want := latestN(recs, 2, 24*time.Hour, now)
	if len(want) >= len(recs)-10 {
		t.Fatalf("test setup: only %d of %d records should go", len(recs)-len(want), len(recs))
	}

	var got []rec
	defer func() {
		if t.Failed() {
			t.Logf("got  %v\nwant %v\nstatus %+v cleaner %+v", got, want, e.status(topic), e.status(topic).Cleaner)
		}
	}()
	start := time.Now()
	eventually(t, 40*time.Second, "the cleaner compacted "+topic+" to the latest 2 records per key", func() bool {
		got = e.consumeAll(topic)
		return sameRecords(got, want)
	})
	t.Logf("cleaned within %v", time.Since(start).Round(100*time.Millisecond))
	// The status follows the swap of the cleaned segments a moment later.
	eventually(t, 10*time.Second, "the status shows a cleaning by compaction-latest-n", func() bool {
		st := e.status(topic)
		return st.Cleaner != nil && st.Cleaner.Policy == "compaction-latest-n" && st.Cleaner.Cleanings > 0
	})
	if st := e.status(topic); st.Cleaner.LastError != "" {
		t.Errorf("cleaner status %+v, want no error", st.Cleaner)
	}
	if end := e.listOffset(topic, -1); end != int64(len(recs)) {
		t.Errorf("end offset %d after cleaning, want %d (offsets keep their values)", end, len(recs))
	}
	// More passes change nothing.
	time.Sleep(time.Second)
	if got = e.consumeAll(topic); !sameRecords(got, want) {
		t.Fatalf("after more cleaner passes:\n got %v\nwant %v", got, want)
	}

	// A second cleaning: one new value for k1 and k2, then fillers. Their
	// oldest kept values lie in the already-cleaned section, where Kafka's
	// cleaner would not show them to Scan; the plugin asks for a full scan,
	// so exactly two per key remain.
	more := []rec{{Key: "k1", Value: "k1-v5" + pad, Ts: now}, {Key: "k2", Value: "k2-v5" + pad, Ts: now}}
	for f := 12; f < 24; f++ {
		more = append(more, rec{Key: fmt.Sprintf("filler-%02d", f), Value: "filler" + pad, Ts: now})
	}
	all := append(recs, e.produce(topic, more)...)
	want = latestN(all, 2, 24*time.Hour, now)
	eventually(t, 40*time.Second, "a second cleaning left the latest 2 records per key", func() bool {
		got = e.consumeAll(topic)
		return sameRecords(got, want)
	})
}
