package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupBroker starts the real brokkr binary for the group commands.
var groupBroker = func(t *testing.T) string {
	return testbroker.Start(t, "group.initial.rebalance.delay.ms=0").Addr
}

// committedOffsets reads a group's committed offsets of topic through
// OffsetFetch (kadm), independently of the command under test.
func committedOffsets(t *testing.T, addr, group, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err != nil {
			t.Fatalf("OffsetFetch %s %s/%d: %v", group, topic, p, o.Err)
		}
		out[p] = o.At
	}
	return out
}

func wantOffsets(t *testing.T, what string, got map[int32]int64, want ...int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: committed %v, want %v", what, got, want)
	}
	for p, w := range want {
		if got[int32(p)] != w {
			t.Fatalf("%s: committed %v, want %v", what, got, want)
		}
	}
}

// TestGroupCommands drives list, describe, delete and seek against the real
// broker with a live franz-go group member, and checks every change through
// OffsetFetch.
func TestGroupCommands(t *testing.T) {
	b := groupBroker(t)
	mustRun(t, "", "topic", "create", "orders", "-p", "3", "--brokers", b)

	// 30 records, record i in partition i%3 with timestamp base+i s, so
	// every partition holds 10 and the record at offset k of any
	// partition has i = 3k+p.
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	prod, err := kgo.NewClient(kgo.SeedBrokers(b), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 30; i++ {
		r := &kgo.Record{Topic: "orders", Partition: int32(i % 3), Value: []byte("v" + strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// A live member: consume everything, then commit 5, 10, 3.
	member, err := kgo.NewClient(kgo.SeedBrokers(b), kgo.ClientID("cli-test"), kgo.ConsumerGroup("app"),
		kgo.ConsumeTopics("orders"), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	for n := 0; n < 30; {
		fs := member.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("member consumed %d of 30 records", n)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		n += fs.NumRecords()
	}
	commitErr := make(chan error, 1)
	member.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{"orders": {0: {Epoch: -1, Offset: 5}, 1: {Epoch: -1, Offset: 10}, 2: {Epoch: -1, Offset: 3}}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				for _, tr := range resp.Topics {
					for _, pr := range tr.Partitions {
						if pr.ErrorCode != 0 {
							err = kerr.ErrorForCode(pr.ErrorCode)
						}
					}
				}
			}
			commitErr <- err
		})
	if err := <-commitErr; err != nil {
		t.Fatalf("member commit: %v", err)
	}
	wantOffsets(t, "member commit", committedOffsets(t, b, "app", "orders"), 5, 10, 3)

	// list, with and without a state filter
	r := mustRun(t, "", "group", "list", "--brokers", b)
	if !regexp.MustCompile(`(?m)^GROUP\s+STATE\s+PROTOCOL-TYPE$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^app\s+Stable\s+consumer$`).MatchString(r.stdout) {
		t.Fatalf("group list:\n%s", r.stdout)
	}
	r = mustRun(t, "", "group", "list", "--state", "empty", "--brokers", b)
	if strings.Contains(r.stdout, "app") {
		t.Fatalf("group list --state empty shows a Stable group:\n%s", r.stdout)
	}
	r = mustRun(t, "", "group", "list", "--state", "Stable,Empty", "--json", "--brokers", b)
	var lg []listedGroup
	decodeJSON(t, r.stdout, &lg)
	if len(lg) != 1 || lg[0].Group != "app" || lg[0].State != "Stable" || lg[0].ProtocolType != "consumer" {
		t.Fatalf("group list --json: %+v", lg)
	}
	mustFail(t, []string{"--state", `"Rebalancing"`}, "", "group", "list", "--state", "Rebalancing", "--brokers", b)

	// describe: members, assignment, committed / end / lag
	r = mustRun(t, "", "group", "describe", "app", "--brokers", b)
	for _, re := range []string{
		`(?m)^STATE\s+Stable$`, `(?m)^PROTOCOL-TYPE\s+consumer$`, `(?m)^PROTOCOL\s+cooperative-sticky$`, `(?m)^MEMBERS\s+1$`,
		`(?m)^MEMBER-ID\s+INSTANCE-ID\s+CLIENT-ID\s+HOST\s+ASSIGNMENT$`,
		`(?m)^\S+\s+-\s+cli-test\s+/?127\.0\.0\.1\s+orders:0,1,2$`,
		`(?m)^TOPIC\s+PARTITION\s+CURRENT-OFFSET\s+LOG-END-OFFSET\s+LAG\s+MEMBER-ID\s+HOST\s+CLIENT-ID$`,
		`(?m)^orders\s+0\s+5\s+10\s+5\s+\S+\s+\S+\s+cli-test$`,
		`(?m)^orders\s+1\s+10\s+10\s+0\s+\S+\s+\S+\s+cli-test$`,
		`(?m)^orders\s+2\s+3\s+10\s+7\s+\S+\s+\S+\s+cli-test$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("group describe: no line matching %s in\n%s", re, r.stdout)
		}
	}
	r = mustRun(t, "", "group", "describe", "app", "--json", "--brokers", b)
	var dg []describedGroup
	decodeJSON(t, r.stdout, &dg)
	if len(dg) != 1 || len(dg[0].Members) != 1 || len(dg[0].Offsets) != 3 {
		t.Fatalf("describe --json: %+v", dg)
	}
	m := dg[0].Members[0]
	if m.ClientID != "cli-test" || len(m.Assignment) != 1 || m.Assignment[0].Topic != "orders" || len(m.Assignment[0].Partitions) != 3 {
		t.Fatalf("describe --json member: %+v", m)
	}
	if o := dg[0].Offsets[2]; o.Committed != 3 || o.LogEnd != 10 || o.Lag != 7 || o.MemberID != m.MemberID {
		t.Fatalf("describe --json offsets[2]: %+v", o)
	}

	// A static member (group.instance.id) shows its instance id.
	static, err := kgo.NewClient(kgo.SeedBrokers(b), kgo.ClientID("cli-static"), kgo.ConsumerGroup("pinned"),
		kgo.InstanceID("pod-7"), kgo.ConsumeTopics("orders"), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()
	testbroker.Eventually(t, 20*time.Second, "the static member to join", func() bool {
		static.PollRecords(ctx, 1)
		_, gen := static.GroupMetadata()
		return gen > 0
	})
	r = mustRun(t, "", "group", "describe", "pinned", "--brokers", b)
	if !regexp.MustCompile(`(?m)^pod-7-\S+\s+pod-7\s+cli-static\s+/?127\.0\.0\.1\s+orders:0,1,2$`).MatchString(r.stdout) {
		t.Fatalf("describe of a group with a static member:\n%s", r.stdout)
	}

	// A group with members can neither be deleted nor sought.
	mustFail(t, []string{`group "app"`, "NON_EMPTY_GROUP"}, "", "group", "delete", "app", "--brokers", b)
	mustFail(t, []string{`group "app" is Stable with 1 member(s)`, "inactive"}, "", "group", "seek", "app", "--topic", "orders", "--to-earliest", "--brokers", b)
	wantOffsets(t, "after refused seek", committedOffsets(t, b, "app", "orders"), 5, 10, 3)

	// The member leaves; the group is Empty and keeps its offsets.
	member.Close()
	testbroker.Eventually(t, 15*time.Second, "group app to become Empty", func() bool {
		r := runCLI(t, "", "group", "describe", "app", "--brokers", b)
		return r.code == 0 && regexp.MustCompile(`(?m)^STATE\s+Empty$`).MatchString(r.stdout)
	})
	r = mustRun(t, "", "group", "describe", "app", "--brokers", b)
	if !regexp.MustCompile(`(?m)^MEMBERS\s+0$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^orders\s+2\s+3\s+10\s+7\s+-\s+-\s+-$`).MatchString(r.stdout) {
		t.Fatalf("describe of the empty group:\n%s", r.stdout)
	}

	// dry run: a plan, nothing committed
	r = mustRun(t, "", "group", "seek", "app", "--topic", "orders", "--to-earliest", "--dry-run", "--brokers", b)
	for _, re := range []string{`(?m)^TOPIC\s+PARTITION\s+CURRENT\s+NEW\s+STATUS$`, `(?m)^orders\s+0\s+5\s+0\s+planned \(dry run\)$`, `(?m)^orders\s+2\s+3\s+0\s+planned \(dry run\)$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("seek --dry-run: no line matching %s in\n%s", re, r.stdout)
		}
	}
	wantOffsets(t, "after dry run", committedOffsets(t, b, "app", "orders"), 5, 10, 3)

	// one partition to an offset
	r = mustRun(t, "", "group", "seek", "app", "--topic", "orders:1", "--to-offset", "4", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+1\s+10\s+4\s+committed$`).MatchString(r.stdout) || strings.Contains(r.stdout, "orders  0") {
		t.Fatalf("seek --to-offset:\n%s", r.stdout)
	}
	wantOffsets(t, "after --to-offset 4 on partition 1", committedOffsets(t, b, "app", "orders"), 5, 4, 3)

	// an offset past the end is clamped to the end
	mustRun(t, "", "group", "seek", "app", "--topic", "orders:0,2", "--to-offset", "1000", "--brokers", b)
	wantOffsets(t, "after --to-offset 1000", committedOffsets(t, b, "app", "orders"), 10, 4, 10)

	// earliest, JSON
	r = mustRun(t, "", "group", "seek", "app", "--topic", "orders", "--to-earliest", "--json", "--brokers", b)
	var plan []seekRow
	decodeJSON(t, r.stdout, &plan)
	if len(plan) != 3 || plan[1].Current != 4 || plan[1].New != 0 || plan[1].Status != "committed" {
		t.Fatalf("seek --json: %+v", plan)
	}
	wantOffsets(t, "after --to-earliest", committedOffsets(t, b, "app", "orders"), 0, 0, 0)

	// a timestamp: the record at base+15s is i=15 in partition 0 (offset
	// 5); the first at or after it in partitions 1 and 2 are i=16, 17,
	// offset 5 as well.
	ts := base.Add(15 * time.Second).UnixMilli()
	mustRun(t, "", "group", "seek", "app", "--topic", "orders", "--to-timestamp", strconv.FormatInt(ts, 10), "--brokers", b)
	wantOffsets(t, "after --to-timestamp", committedOffsets(t, b, "app", "orders"), 5, 5, 5)
	// a time after every record: the log end
	mustRun(t, "", "group", "seek", "app", "--topic", "orders", "--to-timestamp", strconv.FormatInt(base.Add(time.Hour).UnixMilli()+60_000, 10), "--brokers", b)
	wantOffsets(t, "after --to-timestamp in the future", committedOffsets(t, b, "app", "orders"), 10, 10, 10)

	// latest through --all-topics, after seeking back to earliest
	mustRun(t, "", "group", "seek", "app", "--topic", "orders", "--to-earliest", "--brokers", b)
	mustRun(t, "", "group", "seek", "app", "--all-topics", "--to-latest", "--brokers", b)
	wantOffsets(t, "after --to-latest", committedOffsets(t, b, "app", "orders"), 10, 10, 10)
	r = mustRun(t, "", "group", "describe", "app", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+1\s+10\s+10\s+0\s`).MatchString(r.stdout) {
		t.Fatalf("describe after --to-latest:\n%s", r.stdout)
	}

	// seeking a group that does not exist creates it, as Kafka's tool does
	mustRun(t, "", "group", "seek", "fresh", "--topic", "orders:2", "--to-offset", "7", "--brokers", b)
	if got := committedOffsets(t, b, "fresh", "orders"); len(got) != 1 || got[2] != 7 {
		t.Fatalf("offsets of the new group: %v, want partition 2 at 7", got)
	}

	// bad input: one line each, nothing committed
	mustFail(t, []string{"exactly one of"}, "", "group", "seek", "app", "--topic", "orders", "--to-earliest", "--to-latest", "--brokers", b)
	mustFail(t, []string{"exactly one of"}, "", "group", "seek", "app", "--topic", "orders", "--brokers", b)
	mustFail(t, []string{"--topic T"}, "", "group", "seek", "app", "--to-latest", "--brokers", b)
	mustFail(t, []string{`topic "orders" has no partition 9`}, "", "group", "seek", "app", "--topic", "orders:9", "--to-earliest", "--brokers", b)
	mustFail(t, []string{`"x" is not a partition number`}, "", "group", "seek", "app", "--topic", "orders:x", "--to-earliest", "--brokers", b)
	mustFail(t, []string{`topic "nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}, "", "group", "seek", "app", "--topic", "nope", "--to-earliest", "--brokers", b)
	mustFail(t, []string{"--to-offset", "negative"}, "", "group", "seek", "app", "--topic", "orders", "--to-offset", "-3", "--brokers", b)
	wantOffsets(t, "after bad seeks", committedOffsets(t, b, "app", "orders"), 10, 10, 10)

	// delete: one that exists, one that does not
	res := runCLI(t, "", "group", "delete", "app", "ghost", "--brokers", b)
	if res.code != 1 || !regexp.MustCompile(`(?m)^app\s+deleted$`).MatchString(res.stdout) ||
		!regexp.MustCompile(`(?m)^ghost\s+GROUP_ID_NOT_FOUND`).MatchString(res.stdout) ||
		!strings.Contains(res.stderr, `group "ghost": GROUP_ID_NOT_FOUND`) {
		t.Fatalf("delete app ghost: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if got := committedOffsets(t, b, "app", "orders"); len(got) != 0 {
		t.Fatalf("offsets of the deleted group: %v", got)
	}
	mustFail(t, []string{`group "app" does not exist`}, "", "group", "describe", "app", "--brokers", b)
	r = mustRun(t, "", "group", "list", "--brokers", b)
	if regexp.MustCompile(`(?m)^app\s`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^fresh\s+Empty\s`).MatchString(r.stdout) {
		t.Fatalf("list after delete:\n%s", r.stdout)
	}

	// unknown verb
	mustFail(t, []string{`unknown command "describ" for "brokkr group" (did you mean describe?)`}, "", "group", "describ", "--brokers", b)
}

// TestGroupSeekHelpers checks the pure parts of seek and list: the --topic
// syntax, the clamp to [log start, log end] and --state names.
func TestGroupSeekHelpers(t *testing.T) {
	for _, c := range []struct {
		in    string
		topic string
		parts string
		err   string
	}{
		{"orders", "orders", "[]", ""},
		{"orders:0,2", "orders", "[0 2]", ""},
		{"orders:2,2,1", "orders", "[2 1]", ""},
		{"a.b-c_d:7", "a.b-c_d", "[7]", ""},
		{":1", "", "", "empty topic name"},
		{"orders:", "", "", `"" is not a partition number`},
		{"orders:-1", "", "", `"-1" is not a partition number`},
		{"orders:1,x", "", "", `"x" is not a partition number`},
		{"orders:99999999999", "", "", "is not a partition number"},
	} {
		topic, ps, err := parseTopicSpec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseTopicSpec(%q): error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || topic != c.topic || (c.parts == "[]" && ps != nil) || (c.parts != "[]" && fmt.Sprint(ps) != c.parts) {
			t.Errorf("parseTopicSpec(%q) = %q %v %v, want %q %s", c.in, topic, ps, err, c.topic, c.parts)
		}
	}
	for _, c := range []struct{ want, start, end, got int64 }{
		{5, 0, 10, 5}, {0, 3, 10, 3}, {11, 0, 10, 10}, {10, 0, 10, 10}, {3, 3, 3, 3}, {0, 0, 0, 0},
	} {
		if g := clampOffset(c.want, c.start, c.end); g != c.got {
			t.Errorf("clampOffset(%d, %d, %d) = %d, want %d", c.want, c.start, c.end, g, c.got)
		}
	}
	for in, want := range map[string]string{"empty": "Empty", "STABLE": "Stable", "preparingrebalance": "PreparingRebalance", "Dead": "Dead"} {
		if got, err := canonicalState(in); err != nil || got != want {
			t.Errorf("canonicalState(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := canonicalState("Rebalancing"); err == nil {
		t.Error("canonicalState accepted an unknown state")
	}
}

// TestCoordRetry: answers of a coordinator that is not ready are retried
// until the context ends; any other answer is returned at once.
func TestCoordRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	calls := 0
	err := coordRetry(ctx, func() error {
		calls++
		switch calls {
		case 1:
			return kerr.CoordinatorNotAvailable
		case 2:
			return &kadm.ShardErrors{Name: "DescribeGroups", Errs: []kadm.ShardError{{Err: kerr.CoordinatorLoadInProgress}}}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("coordRetry: %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	if err := coordRetry(ctx, func() error { calls++; return kerr.GroupIDNotFound }); err != kerr.GroupIDNotFound || calls != 1 {
		t.Fatalf("coordRetry retried a final answer: %v after %d calls", err, calls)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if err := coordRetry(short, func() error { return kerr.NotCoordinator }); err != kerr.NotCoordinator || time.Since(start) > 5*time.Second {
		t.Fatalf("coordRetry past its context: %v after %v", err, time.Since(start))
	}
}
