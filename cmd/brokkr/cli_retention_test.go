package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/broker"
)

// TestRetentionPlanNeedsBrokkr: against a Kafka cluster that does not
// answer brokkr.status.* (kfake), `retention plan` fails with one line
// naming the partitions without a plan, `topic describe` still works and
// prints no policy section, and an unknown topic is named.
func TestRetentionPlanNeedsBrokkr(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "plain", "-p", "2", "--brokers", b)
	mustFail(t, []string{"no plan for partition(s) 0,1"}, "", "retention", "plan", "plain", "--brokers", b)
	mustFail(t, []string{`topic "ghost"`, "UNKNOWN_TOPIC_OR_PARTITION"}, "", "retention", "plan", "ghost", "--brokers", b)
	r := mustRun(t, "", "topic", "describe", "plain", "--brokers", b)
	if strings.Contains(r.stdout, "CLEANUP POLICY") {
		t.Fatalf("describe invented a policy section:\n%s", r.stdout)
	}
	mustFail(t, []string{`unknown command "pla" for "brokkr retention" (did you mean plan?)`}, "", "retention", "pla", "--brokers", b)
}

// TestPrintPolicyStatus: the describe table shows the policies, a
// retention fault with its count, dirty bytes and ratio, the last clean
// and a cleaning error with its failures in a row.
func TestPrintPolicyStatus(t *testing.T) {
	now := time.Now().UnixMilli()
	dt := describedTopic{
		Name:   "t",
		Policy: &broker.TopicPolicyStatus{CleanupPolicy: "compact,delete", Retention: "keeper", Compaction: "builtin.compaction"},
		Partitions: []describedPartition{
			{Partition: 0, Status: &broker.PartitionStatus{
				Retention: &broker.RetentionStatus{Policy: "keeper", Fault: "plugin unavailable: crashed", FaultMs: now - 2000, Faults: 3},
				Cleaner:   &broker.CleanerStatus{Policy: "builtin.compaction", DirtyBytes: 4096, DirtyRatio: 0.25, LastCleanMs: now - 60000, LastCleanResult: "kept 10 records", LastError: "disk full", LastErrorMs: now - 1000, ConsecutiveFailures: 2, NextAttemptMs: now + 30000},
			}},
			{Partition: 1},
		},
	}
	var buf bytes.Buffer
	if err := printPolicyStatus(&buf, dt); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, re := range []string{
		`(?m)^CLEANUP POLICY\s+compact,delete$`,
		`(?m)^RETENTION POLICY\s+keeper$`,
		`(?m)^0\s+keeper\s+-\s+plugin unavailable: crashed \(\S+, 2s ago, 3 faults\)\s+4096\s+0\.25\s+builtin\.compaction \(\S+, 1m0s ago\): kept 10 records\s+disk full \(\S+, 1s ago, 2 in a row, retry in \d+(\.\d)?s\)$`,
		`(?m)^1\s+(-\s+){6}\(status not available\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("no line matching %s in\n%s", re, out)
		}
	}
	buf.Reset()
	if err := printPolicyStatus(&buf, describedTopic{Name: "kafka"}); err != nil || buf.Len() != 0 {
		t.Fatalf("no policy status printed %q", buf.String())
	}
}
