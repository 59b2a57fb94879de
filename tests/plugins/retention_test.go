package plugins

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// records returns n keyless records of about 200 bytes stamped ts.
func records(n int, prefix string, ts time.Time) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{Value: fmt.Sprintf("%s-%03d-%s", prefix, i, strings.Repeat("r", 200)), Ts: ts}
	}
	return out
}

// commit commits offset for partition 0 of topic in group (an empty group,
// as a tool or a manually assigning consumer commits).
func (e *env) commit(group, topic string, offset int64) {
	t := e.t
	t.Helper()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: offset, LeaderEpoch: -1})
	resp, err := e.adm.CommitOffsets(ctxFor(t, 10*time.Second), group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit %s %s/0 at %d: %v", group, topic, offset, err)
	}
}

// TestRetentionCommitted: a topic whose retention policy is the
// retention-committed plugin. With no committed offset nothing goes, over
// many checks. With two groups committed, segments wholly below the lower
// commit go and the segment holding it stays; when the lagging group
// catches up, the log starts at the segment holding the other group's
// commit. What remains is readable. A second topic with a one-minute age
// cap loses its old segments without any commit.
func TestRetentionCommitted(t *testing.T) {
	e := start(t)
	const topic, aged = "committed", "aged"
	e.createTopic(topic, "cleanup.policy=delete", "brokkr.retention.plugin=retention-committed", "segment.bytes=1024")
	e.createTopic(aged, "brokkr.retention.plugin=retention-committed", "segment.bytes=1024",
		"brokkr.plugin.retention-committed.max.age.ms=60000")

	now := time.Now()
	e.produce(topic, records(40, "c", now))
	e.produce(aged, records(20, "old", now.Add(-2*time.Hour)))
	e.produce(aged, records(10, "new", now))

	bases := e.segmentBases(topic)
	if len(bases) < 6 {
		t.Fatalf("test setup: %s has %d segments, want several: %v", topic, len(bases), bases)
	}
	agedBases := e.segmentBases(aged)

	// The age cap works without any commit.
	wantAged := baseHolding(agedBases, 20)
	eventually(t, 20*time.Second, fmt.Sprintf("%s starts at %d", aged, wantAged), func() bool {
		return e.listOffset(aged, -2) == wantAged
	})

	// No commit: nothing goes, however many checks run (the age cap is
	// retention.ms, 7 days).
	time.Sleep(time.Second)
	if s := e.listOffset(topic, -2); s != 0 {
		t.Fatalf("%s starts at %d with no consumer group committed, want 0", topic, s)
	}
	if st := e.status(topic); st.Retention == nil || st.Retention.Policy != "retention-committed" || !strings.Contains(st.Retention.LastDecision, "no committed offset") {
		t.Errorf("status %+v, want policy retention-committed deciding on no committed offset", st.Retention)
	}
	if plan := e.cli("retention", "plan", topic); !strings.Contains(plan, "no committed offset known") {
		t.Errorf("brokkr retention plan %s does not say that no committed offset is known:\n%s", topic, plan)
	}

	e.commit("fast", topic, 25)
	e.commit("slow", topic, 9)
	want := baseHolding(bases, 9)
	if want == 0 {
		t.Fatalf("test setup: offset 9 is in the first segment (bases %v)", bases)
	}
	eventually(t, 20*time.Second, fmt.Sprintf("%s starts at %d (the segment holding the slow group's commit 9)", topic, want), func() bool {
		return e.listOffset(topic, -2) == want
	})
	time.Sleep(time.Second)
	if s := e.listOffset(topic, -2); s != want {
		t.Fatalf("%s starts at %d, want it to stay at %d while the slow group is at 9", topic, s, want)
	}

	e.commit("slow", topic, 30)
	want = baseHolding(bases, 25)
	eventually(t, 20*time.Second, fmt.Sprintf("%s starts at %d (the segment holding the fast group's commit 25)", topic, want), func() bool {
		return e.listOffset(topic, -2) == want
	})
	got := e.consumeAll(topic)
	if len(got) != 40-int(want) || got[0].Offset != want || !strings.HasPrefix(got[0].Value, fmt.Sprintf("c-%03d-", want)) {
		t.Errorf("after retention read %d records from %v, want %d from offset %d", len(got), got[:min(1, len(got))], 40-want, want)
	}
	if st := e.status(topic); st.Retention == nil || !strings.Contains(st.Retention.LastDecision, "committed") {
		t.Errorf("status %+v, want a decision naming the committed offset", st.Retention)
	}
	// The dry run says why nothing more may go.
	plan := e.cli("retention", "plan", topic)
	for _, want := range []string{"retention-committed", "holds offsets at or above the lowest committed offset 25"} {
		if !strings.Contains(plan, want) {
			t.Errorf("brokkr retention plan %s does not say %q:\n%s", topic, want, plan)
		}
	}
	t.Logf("brokkr retention plan %s:\n%s", topic, plan)
	if !strings.Contains(e.b.Output(), "retention deleted segments") {
		t.Errorf("no audit line for the deletions")
	}
}
