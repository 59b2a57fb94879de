package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// configOf returns a topic's config value and source from describe --json.
func configOf(t *testing.T, dt describedTopic, key string) (string, string) {
	t.Helper()
	for _, c := range dt.Configs {
		if c.Key == key {
			v := "<null>"
			if c.Value != nil {
				v = *c.Value
			}
			return v, c.Source
		}
	}
	t.Fatalf("config %q not in describe output of %s", key, dt.Name)
	return "", ""
}

func describeJSON(t *testing.T, brokers, topic string) describedTopic {
	t.Helper()
	r := mustRun(t, "", "topic", "describe", topic, "-c", "--json", "--brokers", brokers)
	var dts []describedTopic
	decodeJSON(t, r.stdout, &dts)
	if len(dts) != 1 || dts[0].Name != topic {
		t.Fatalf("describe %s: got %+v", topic, dts)
	}
	return dts[0]
}

func listJSON(t *testing.T, brokers string, extra ...string) map[string]listedTopic {
	t.Helper()
	r := mustRun(t, "", append([]string{"topic", "list", "--json", "--brokers", brokers}, extra...)...)
	var ls []listedTopic
	decodeJSON(t, r.stdout, &ls)
	m := map[string]listedTopic{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

// TestTopicLifecycle drives every topic verb against the fake cluster and
// reads each change back with another verb.
func TestTopicLifecycle(t *testing.T) {
	b := startFake(t)

	// create with configs, human output
	r := mustRun(t, "", "topic", "create", "orders", "-p", "3", "-r", "2",
		"-c", "retention.ms=3600000", "-c", "cleanup.policy=compact", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+\S+\s+3\s+2\s+created$`).MatchString(r.stdout) {
		t.Fatalf("create output:\n%s", r.stdout)
	}

	// describe the configs back, JSON and table
	dt := describeJSON(t, b, "orders")
	if len(dt.Partitions) != 3 {
		t.Fatalf("partitions: got %d, want 3", len(dt.Partitions))
	}
	for i, p := range dt.Partitions {
		if p.Partition != int32(i) || len(p.Replicas) != 2 || len(p.ISR) != 2 || p.Leader < 0 || p.StartOffset != 0 || p.EndOffset != 0 {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
	if v, src := configOf(t, dt, "retention.ms"); v != "3600000" || src != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("retention.ms = %q from %s", v, src)
	}
	if v, src := configOf(t, dt, "cleanup.policy"); v != "compact" || src != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("cleanup.policy = %q from %s", v, src)
	}
	if dt.ID == "" {
		t.Fatal("no topic ID")
	}
	r = mustRun(t, "", "topic", "describe", "orders", "--configs", "--brokers", b)
	for _, re := range []string{
		`(?m)^NAME\s+orders$`,
		`(?m)^PARTITIONS\s+3$`,
		`(?m)^PARTITION\s+LEADER\s+EPOCH\s+REPLICAS\s+ISR\s+OFFLINE\s+START\s+END$`,
		`(?m)^2\s+\d+\s+\d+\s+\d+,\d+\s+\d+,\d+\s+-\s+0\s+0$`,
		`(?m)^retention\.ms\s+3600000\s+DYNAMIC_TOPIC_CONFIG$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("describe output does not match %s:\n%s", re, r.stdout)
		}
	}

	// list, table and JSON
	mustRun(t, "", "topic", "create", "audit", "-p", "1", "--replication-factor", "3", "--brokers", b)
	r = mustRun(t, "", "topic", "list", "--brokers", b)
	if !regexp.MustCompile(`(?m)^NAME\s+ID\s+PARTITIONS\s+REPLICAS\n(audit\s+\S+\s+1\s+3)\n(orders\s+\S+\s+3\s+2)\n$`).MatchString(r.stdout) {
		t.Fatalf("list output:\n%s", r.stdout)
	}
	ls := listJSON(t, b)
	if len(ls) != 2 || ls["orders"].Partitions != 3 || ls["orders"].Replicas != 2 || ls["orders"].ID != dt.ID {
		t.Fatalf("list --json: %+v", ls)
	}

	// alter-config: set one, delete the other override
	r = mustRun(t, "", "topic", "alter-config", "orders", "--set", "retention.ms=1000", "--set", "max.message.bytes=2048", "--delete", "cleanup.policy", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+altered$`).MatchString(r.stdout) {
		t.Fatalf("alter-config output:\n%s", r.stdout)
	}
	dt = describeJSON(t, b, "orders")
	if v, src := configOf(t, dt, "retention.ms"); v != "1000" || src != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after alter: retention.ms = %q from %s", v, src)
	}
	if v, src := configOf(t, dt, "max.message.bytes"); v != "2048" || src != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after alter: max.message.bytes = %q from %s", v, src)
	}
	if v, src := configOf(t, dt, "cleanup.policy"); v != "delete" || src == "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after delete: cleanup.policy = %q from %s, want the default", v, src)
	}

	// add-partitions
	r = mustRun(t, "", "topic", "add-partitions", "orders", "--num", "2", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+\S+\s+5\s+2\s+added 2$`).MatchString(r.stdout) {
		t.Fatalf("add-partitions output:\n%s", r.stdout)
	}
	if dt = describeJSON(t, b, "orders"); len(dt.Partitions) != 5 {
		t.Fatalf("after add-partitions: %d partitions, want 5", len(dt.Partitions))
	}

	// delete, then list
	r = mustRun(t, "", "topic", "delete", "orders", "--brokers", b)
	if !regexp.MustCompile(`(?m)^orders\s+deleted$`).MatchString(r.stdout) {
		t.Fatalf("delete output:\n%s", r.stdout)
	}
	if ls = listJSON(t, b); len(ls) != 1 || ls["audit"].Name != "audit" {
		t.Fatalf("after delete, list: %+v", ls)
	}
	mustFail(t, []string{`topic "orders": UNKNOWN_TOPIC_OR_PARTITION`}, "", "topic", "delete", "orders", "--brokers", b)
	mustFail(t, []string{`topic "orders": UNKNOWN_TOPIC_OR_PARTITION`}, "", "topic", "describe", "orders", "--brokers", b)
	r = mustRun(t, "", "topic", "delete", "orders", "--if-exists", "--brokers", b)
	if !strings.Contains(r.stdout, "does not exist (skipped)") {
		t.Fatalf("delete --if-exists output:\n%s", r.stdout)
	}
}

// TestTopicCreateErrors covers an existing topic, a partial failure across
// several topics, --if-not-exists, --dry-run and flag validation.
func TestTopicCreateErrors(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "t", "-p", "2", "--brokers", b)

	line := mustFail(t, []string{`brokkr: topic "t": TOPIC_ALREADY_EXISTS: `}, "", "topic", "create", "t", "--brokers", b)
	if strings.Contains(line, "of") && strings.Contains(line, "failed") {
		t.Fatalf("a single failure should not be summarised: %q", line)
	}

	// Several topics: the new ones are created, the existing one is named,
	// the exit code is non-zero, and each topic has its own row.
	r := runCLI(t, "", "topic", "create", "t", "u", "v", "-p", "1", "--brokers", b)
	if r.code == 0 || !strings.HasPrefix(r.stderr, `brokkr: topic "t": TOPIC_ALREADY_EXISTS`) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("partial failure: exit %d stderr %q", r.code, r.stderr)
	}
	for _, re := range []string{`(?m)^t\s+-\s+-\s+-\s+TOPIC_ALREADY_EXISTS`, `(?m)^u\s+\S+\s+1\s+\d+\s+created$`, `(?m)^v\s+\S+\s+1\s+\d+\s+created$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("partial failure output does not match %s:\n%s", re, r.stdout)
		}
	}
	if ls := listJSON(t, b); len(ls) != 3 {
		t.Fatalf("after partial create: %+v", ls)
	}
	mustFail(t, []string{"2 of 2 topics failed", `topic "u": TOPIC_ALREADY_EXISTS`, `topic "v": TOPIC_ALREADY_EXISTS`}, "", "topic", "create", "u", "v", "--brokers", b)

	// --json still reports every topic, and the exit code still says failure.
	r = runCLI(t, "", "topic", "create", "t", "j", "--json", "--brokers", b)
	var rs []topicResult
	decodeJSON(t, r.stdout, &rs)
	if r.code == 0 || len(rs) != 2 || rs[0].Topic != "t" || rs[0].Status != "failed" || !strings.HasPrefix(rs[0].Error, "TOPIC_ALREADY_EXISTS: ") ||
		rs[1].Topic != "j" || rs[1].Status != "created" || rs[1].ID == "" || rs[1].Error != "" {
		t.Fatalf("create --json partial failure: exit %d %+v", r.code, rs)
	}
	if r := mustRun(t, "", "topic", "list", "--json", "--brokers", startFake(t)); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("empty list --json: %q", r.stdout)
	}

	r = mustRun(t, "", "topic", "create", "t", "w", "--if-not-exists", "--brokers", b)
	if !regexp.MustCompile(`(?m)^t\s+.*exists \(skipped\)$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^w\s+.*created$`).MatchString(r.stdout) {
		t.Fatalf("--if-not-exists output:\n%s", r.stdout)
	}

	r = mustRun(t, "", "topic", "create", "dry", "-p", "4", "--dry-run", "--brokers", b)
	if !strings.Contains(r.stdout, "dry run") {
		t.Fatalf("--dry-run output:\n%s", r.stdout)
	}
	if ls := listJSON(t, b); ls["dry"].Name != "" {
		t.Fatal("--dry-run created the topic")
	}

	mustFail(t, []string{`--config "retention.ms": want key=value`}, "", "topic", "create", "x", "-c", "retention.ms", "--brokers", b)
	mustFail(t, []string{"--partitions: must be positive"}, "", "topic", "create", "x", "-p", "0", "--brokers", b)
	mustFail(t, []string{`topic "x" given twice`}, "", "topic", "create", "x", "x", "--brokers", b)
	mustFail(t, []string{"nothing to change"}, "", "topic", "alter-config", "t", "--brokers", b)
	mustFail(t, []string{"--num: must be a positive"}, "", "topic", "add-partitions", "t", "--num", "-1", "--brokers", b)
	mustFail(t, []string{`topic "nope": `, "UNKNOWN_TOPIC_OR_PARTITION"}, "", "topic", "add-partitions", "nope", "--num", "1", "--brokers", b)
}

// TestUnreachableBroker checks that a wrong address fails with a clear
// message within the time-out, both in process and through the binary.
func TestUnreachableBroker(t *testing.T) {
	// A port that was just free: connection refused.
	addr := closedPort(t)
	line := mustFail(t, []string{"cannot reach any broker of " + addr, "connection refused"}, "", "topic", "list", "--brokers", addr, "--timeout", "3s")
	t.Log(line)

	// An address that does not answer (TEST-NET-1): either no route, or the
	// time-out; both must come back within it, with a named broker.
	r := runCLI(t, "", "cluster", "info", "--brokers", "192.0.2.1:9092", "--timeout", "2s")
	if r.code == 0 || !strings.Contains(r.stderr, "cannot reach any broker of 192.0.2.1:9092") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("blackhole: exit %d stderr %q", r.code, r.stderr)
	}
	t.Logf("blackhole: %s after %s", strings.TrimSpace(r.stderr), r.elapsed)
	if r.elapsed > 2*time.Second+3*time.Second {
		t.Fatalf("blackhole: took %s with --timeout 2s", r.elapsed)
	}

	// A broker that accepts connections and never answers: the time-out
	// itself must end the command, with a message that says so.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(io.Discard, c)
		}
	}()
	r = runCLI(t, "", "topic", "list", "--brokers", mute.Addr().String(), "--timeout", "2s")
	t.Logf("mute broker: %s after %s", strings.TrimSpace(r.stderr), r.elapsed)
	if r.code == 0 || !regexp.MustCompile(`^brokkr: cannot reach any broker of `+regexp.QuoteMeta(mute.Addr().String())+`( within 2s: .*timeout|: no answer within 2s)\n$`).MatchString(r.stderr) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("mute broker: exit %d stderr %q", r.code, r.stderr)
	}
	if r.elapsed < 2*time.Second || r.elapsed > 5*time.Second {
		t.Fatalf("mute broker: took %s with --timeout 2s", r.elapsed)
	}

	mustFail(t, []string{`"nohost" has no port`}, "", "topic", "list", "--brokers", "nohost")
	mustFail(t, []string{"--timeout: must be positive"}, "", "topic", "list", "--brokers", addr, "--timeout", "0s")
}

// TestBinaryExitCodesAndEnv runs main itself in a child process: the exit
// code and the single stderr line a user sees, and $BROKKR_BROKERS.
func TestBinaryExitCodesAndEnv(t *testing.T) {
	b := startFake(t)
	env := []string{"BROKKR_BROKERS=" + b}
	r := runBinary(t, env, "", "topic", "create", "t", "-p", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "created") {
		t.Fatalf("create via $BROKKR_BROKERS: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBinary(t, env, "", "topic", "create", "t")
	if r.code != 1 || !regexp.MustCompile(`^brokkr: topic "t": TOPIC_ALREADY_EXISTS: [^\n]+\n$`).MatchString(r.stderr) {
		t.Fatalf("existing topic: exit %d stderr %q", r.code, r.stderr)
	}
	r = runBinary(t, env, "a\nb\n", "produce", "t", "--partition", "1", "--json")
	var sum produceSummary
	decodeJSON(t, r.stdout, &sum)
	if r.code != 0 || sum.Records != 2 || len(sum.Partitions) != 1 || sum.Partitions[0].Partition != 1 {
		t.Fatalf("produce via binary: exit %d %+v %s", r.code, sum, r.stderr)
	}
	r = runBinary(t, env, "", "consume", "t", "--to", "end", "--format", `%p:%o:%v\n`)
	if r.code != 0 || r.stdout != "1:0:a\n1:1:b\n" {
		t.Fatalf("consume via binary: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// The flag wins over the environment.
	r = runBinary(t, []string{"BROKKR_BROKERS=127.0.0.1:1"}, "", "cluster", "info", "--brokers", b)
	if r.code != 0 || !strings.Contains(r.stdout, "kfake") {
		t.Fatalf("--brokers over env: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBinary(t, []string{"BROKKR_BROKERS=127.0.0.1:1"}, "", "cluster", "info", "--timeout", "3s")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "brokkr: cannot reach any broker of 127.0.0.1:1") {
		t.Fatalf("env default: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestClusterInfo checks the cluster ID, controller, brokers and API
// versions against what the fake cluster reports.
func TestClusterInfo(t *testing.T) {
	b := startFake(t)
	r := mustRun(t, "", "cluster", "info", "--brokers", b)
	if !regexp.MustCompile(`(?m)^CLUSTER\s+kfake$`).MatchString(r.stdout) {
		t.Fatalf("cluster info:\n%s", r.stdout)
	}
	for _, addr := range strings.Split(b, ",") {
		host, port, _ := strings.Cut(addr, ":")
		if !regexp.MustCompile(`(?m)^\d\*?\s+` + regexp.QuoteMeta(host) + `\s+` + port + `\s+\S+$`).MatchString(r.stdout) {
			t.Fatalf("broker %s not listed:\n%s", addr, r.stdout)
		}
	}
	if strings.Count(r.stdout, "*") != 1 {
		t.Fatalf("want exactly one controller mark:\n%s", r.stdout)
	}

	r = mustRun(t, "", "cluster", "info", "--api-versions", "--json", "--brokers", b)
	var info clusterInfo
	decodeJSON(t, r.stdout, &info)
	if info.ClusterID != "kfake" || len(info.Brokers) != 3 || info.Controller < 0 {
		t.Fatalf("cluster info --json: %+v", info)
	}
	found := map[string]apiRange{}
	for _, a := range info.APIVersions {
		found[a.Name] = a
	}
	if p := found["Produce"]; p.Key != 0 || p.Max < 9 || len(p.Brokers) != 3 {
		t.Fatalf("Produce range: %+v", p)
	}
	if a := found["ApiVersions"]; a.Key != 18 || a.Max < 3 {
		t.Fatalf("ApiVersions range: %+v", a)
	}
	r = mustRun(t, "", "cluster", "info", "--api-versions", "--brokers", b)
	if !regexp.MustCompile(`(?m)^0\s+Produce\s+\d+\s+\d+\s+all$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "APIs, the same version ranges") {
		t.Fatalf("cluster info --api-versions:\n%s", r.stdout)
	}
}

// TestUnknownVerb: a mistyped verb is an error with a suggestion, not help
// and exit 0.
func TestUnknownVerb(t *testing.T) {
	mustFail(t, []string{`unknown command "creat" for "brokkr topic" (did you mean create?)`}, "", "topic", "creat", "x")
	mustFail(t, []string{`unknown command "inf" for "brokkr cluster"`}, "", "cluster", "inf")
	if r := runCLI(t, "", "topic"); r.code != 0 || !strings.Contains(r.stdout, "add-partitions") {
		t.Fatalf("topic without a verb: exit %d\n%s", r.code, r.stdout)
	}
}

// TestBinaryInterruptedConsume: an unbounded consume prints records as they
// come and exits 0 on SIGINT, having flushed what it printed.
func TestBinaryInterruptedConsume(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "live", "-p", "1", "--brokers", b)
	mustRun(t, "one\ntwo\n", "produce", "live", "--brokers", b)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCLIHelperProcess$", "--", "consume", "live", "--brokers", b, "-f", `%o:%v\n`)
	cmd.Env = append(os.Environ(), "BROKKR_CLI_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no output within 30s; stderr %q", errOut.String())
		}
		return ""
	}
	if l := next(); l != "0:one" {
		t.Fatalf("first line %q", l)
	}
	if l := next(); l != "1:two" {
		t.Fatalf("second line %q", l)
	}
	// A record produced while it waits shows up too.
	mustRun(t, "three\n", "produce", "live", "--brokers", b)
	if l := next(); l != "2:three" {
		t.Fatalf("third line %q", l)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range lines { // drain until the child closes stdout
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGINT: %v, stderr %q", err, errOut.String())
	}
}
