package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// codecLine is input line i of the codec test: most lines have a key, every
// 100th has an empty key, every 250th (+7) has no separator (null key), and
// every 333rd an empty value.
func codecLine(i int) string {
	switch {
	case i%100 == 0:
		return fmt.Sprintf("|value-%d", i)
	case i%250 == 7:
		return fmt.Sprintf("plain-%d", i)
	case i%333 == 5:
		return fmt.Sprintf("key-%d-empty|", i)
	}
	return fmt.Sprintf("key-%d|value-%d", i, i)
}

// expectedFormatted is what --format '%p %o %k|%v [%h] %K %S\n' must print
// for line i stored at partition p, offset o.
func expectedFormatted(i int, p int32, o int64) string {
	line := codecLine(i)
	key, value, ok := strings.Cut(line, "|")
	klen := len(key)
	if !ok {
		key, value, klen = "", line, -1
	}
	return fmt.Sprintf("%d %d %s|%s [a=1,b=x=y] %d %d", p, o, key, value, klen, len(value))
}

var lineIndex = regexp.MustCompile(`(?:key|value|plain)-(\d+)`)

// TestProduceConsumeCodecs produces 1,000 lines with keys and headers with
// every codec, then consumes them back with a --format string and checks the
// exact output, the order per partition and the offsets, the codec of the
// stored batches, and the --json form.
func TestProduceConsumeCodecs(t *testing.T) {
	b := startFake(t)
	const n = 1000
	var in strings.Builder
	for i := range n {
		in.WriteString(codecLine(i))
		in.WriteByte('\n')
	}
	codecs := map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "codec-" + codec
			mustRun(t, "", "topic", "create", topic, "-p", "3", "--brokers", b)
			before := time.Now().UnixMilli()
			r := mustRun(t, in.String(), "produce", topic, "--key-sep", "|", "-H", "a=1", "-H", "b=x=y", "--compression", codec, "--json", "--brokers", b)
			after := time.Now().UnixMilli()
			var sum produceSummary
			decodeJSON(t, r.stdout, &sum)
			if sum.Records != n || sum.Failed != 0 || sum.Topic != topic {
				t.Fatalf("summary: %+v", sum)
			}
			perPart := map[int32]producedPartition{}
			var total int64
			for _, p := range sum.Partitions {
				if p.FirstOffset != 0 || p.LastOffset != p.Records-1 {
					t.Fatalf("partition %d summary: %+v", p.Partition, p)
				}
				perPart[p.Partition] = p
				total += p.Records
			}
			if total != n || len(perPart) < 2 {
				t.Fatalf("summary partitions: %+v", sum.Partitions)
			}

			r = mustRun(t, "", "consume", topic, "--to", "end", "--format", `%p %o %k|%v [%h] %K %S\n`, "--brokers", b)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(lines) != n {
				t.Fatalf("consumed %d lines, want %d", len(lines), n)
			}
			seen := make([]bool, n)
			nextOffset := map[int32]int64{}
			lastIndex := map[int32]int{}
			for _, l := range lines {
				f := strings.SplitN(l, " ", 3)
				p64, err1 := strconv.ParseInt(f[0], 10, 32)
				o, err2 := strconv.ParseInt(f[1], 10, 64)
				m := lineIndex.FindStringSubmatch(l)
				if err1 != nil || err2 != nil || m == nil {
					t.Fatalf("unparsable line %q", l)
				}
				p := int32(p64)
				i, _ := strconv.Atoi(m[1])
				if want := expectedFormatted(i, p, o); l != want {
					t.Fatalf("line\n got %q\nwant %q", l, want)
				}
				if seen[i] {
					t.Fatalf("line %d consumed twice", i)
				}
				seen[i] = true
				if o != nextOffset[p] {
					t.Fatalf("partition %d: offset %d after %d", p, o, nextOffset[p]-1)
				}
				nextOffset[p] = o + 1
				if last, ok := lastIndex[p]; ok && i <= last {
					t.Fatalf("partition %d: line %d after line %d: order lost", p, i, last)
				}
				lastIndex[p] = i
			}
			for p, s := range perPart {
				if nextOffset[p] != s.Records {
					t.Fatalf("partition %d: consumed %d, produced %d", p, nextOffset[p], s.Records)
				}
			}

			// The stored batches carry the requested codec.
			cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b, ",")...),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()}}))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for got := 0; got < n; {
				fs := cl.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					t.Fatalf("direct read: %d of %d records before the deadline", got, n)
				}
				fs.EachRecord(func(rec *kgo.Record) {
					got++
					if c := rec.Attrs.CompressionType(); c != codecs[codec] {
						t.Fatalf("record %d/%d stored with codec %d, want %d", rec.Partition, rec.Offset, c, codecs[codec])
					}
				})
			}

			// --json: one object per record with the same content.
			r = mustRun(t, "", "consume", topic, "--to", "end", "--json", "--brokers", b)
			jl := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(jl) != n {
				t.Fatalf("--json: %d lines, want %d", len(jl), n)
			}
			for _, l := range jl {
				var jr jsonRecord
				decodeJSON(t, l, &jr)
				if jr.Topic != topic || jr.Timestamp < before || jr.Timestamp > after || jr.Value == nil ||
					len(jr.Headers) != 2 || jr.Headers[1].Key != "b" || *jr.Headers[1].Value != "x=y" {
					t.Fatalf("--json record: %s", l)
				}
				i, _ := strconv.Atoi(lineIndex.FindStringSubmatch(*jr.Value + " " + strPtr(jr.Key))[1])
				key, value, ok := strings.Cut(codecLine(i), "|")
				if !ok {
					if jr.Key != nil || *jr.Value != codecLine(i) {
						t.Fatalf("--json null-key record: %s", l)
					}
				} else if jr.Key == nil || *jr.Key != key || *jr.Value != value {
					t.Fatalf("--json record %d: %s", i, l)
				}
			}
		})
	}
}

func strPtr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// consumeLines runs consume with a %p/%v format and returns the values per
// partition in output order.
func consumeLines(t *testing.T, b, topic string, args ...string) map[string][]string {
	t.Helper()
	r := mustRun(t, "", append([]string{"consume", topic, "--format", `%p/%v\n`, "--brokers", b}, args...)...)
	return splitByPartition(r.stdout)
}

// splitByPartition groups "p/value" lines by partition, keeping their order.
func splitByPartition(out string) map[string][]string {
	got := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		p, v, _ := strings.Cut(l, "/")
		got[p] = append(got[p], v)
	}
	return got
}

func flatten(m map[string][]string) []string {
	var all []string
	for _, vs := range m {
		all = append(all, vs...)
	}
	sort.Strings(all)
	return all
}

// TestConsumeByTimestamp reads from and up to a time between two produce
// runs, in milliseconds and as RFC 3339.
func TestConsumeByTimestamp(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "ts", "-p", "2", "--brokers", b)
	var first, second strings.Builder
	var wantA, wantB []string
	for i := range 20 {
		fmt.Fprintf(&first, "a-%02d\n", i)
		fmt.Fprintf(&second, "b-%02d\n", i)
		wantA = append(wantA, fmt.Sprintf("a-%02d", i))
		wantB = append(wantB, fmt.Sprintf("b-%02d", i))
	}
	mustRun(t, first.String(), "produce", "ts", "--brokers", b)
	time.Sleep(5 * time.Millisecond)
	boundary := time.Now()
	time.Sleep(5 * time.Millisecond)
	mustRun(t, second.String(), "produce", "ts", "--brokers", b)
	ms := strconv.FormatInt(boundary.UnixMilli(), 10)

	check := func(name string, got map[string][]string, want []string) {
		t.Helper()
		if all := flatten(got); strings.Join(all, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: got %v, want %v", name, all, want)
		}
		for p, vs := range got {
			if !sort.StringsAreSorted(vs) {
				t.Fatalf("%s: partition %s out of order: %v", name, p, vs)
			}
		}
	}
	check("--offset @ms", consumeLines(t, b, "ts", "--offset", "@"+ms, "--to", "end"), wantB)
	check("--offset @rfc3339", consumeLines(t, b, "ts", "--offset", "@"+boundary.UTC().Format(time.RFC3339Nano), "--to", "end"), wantB)
	check("--to @ms", consumeLines(t, b, "ts", "--to", "@"+ms), wantA)
	future := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	check("--offset @future", consumeLines(t, b, "ts", "--offset", "@"+future, "--to", "end"), nil)
}

// TestConsumeBounds covers --partitions, -n, --offset N/-N/end, --to N, an
// empty range, non-UTF-8 data in --json, and bad flags.
func TestConsumeBounds(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "b", "-p", "3", "--brokers", b)
	var in strings.Builder
	for i := range 30 {
		fmt.Fprintf(&in, "%02d\n", i)
	}
	mustRun(t, in.String(), "produce", "b", "--partition", "1", "--acks", "1", "--brokers", b)
	seq := func(from, to int) []string {
		var s []string
		for i := from; i < to; i++ {
			s = append(s, fmt.Sprintf("%02d", i))
		}
		return s
	}
	eq := func(name string, got map[string][]string, want []string) {
		t.Helper()
		if len(got) > 1 || strings.Join(got["1"], ",") != strings.Join(want, ",") {
			t.Fatalf("%s: got %v, want partition 1: %v", name, got, want)
		}
	}
	eq("-n 5", consumeLines(t, b, "b", "-n", "5"), seq(0, 5))
	eq("-n 30 unbounded", consumeLines(t, b, "b", "-n", "30"), seq(0, 30))
	eq("--offset 10 --to 15", consumeLines(t, b, "b", "--partitions", "1", "--offset", "10", "--to", "15"), seq(10, 15))
	eq("--offset -3", consumeLines(t, b, "b", "--offset", "-3", "--to", "end"), seq(27, 30))
	eq("--offset end --to end", consumeLines(t, b, "b", "--offset", "end", "--to", "end"), nil)
	eq("--partitions 0,2 --to end", consumeLines(t, b, "b", "--partitions", "0,2", "--to", "end"), nil)
	eq("--to 1000 -n 4 --offset 26", consumeLines(t, b, "b", "--offset", "26", "--to", "1000", "-n", "4"), seq(26, 30))

	// Bytes that are not UTF-8 survive --json as base64, and %S counts bytes.
	mustRun(t, "k\xff:\xfe\xfd\n", "produce", "b", "--partition", "2", "--key-sep", ":", "--brokers", b)
	r := mustRun(t, "", "consume", "b", "--partitions", "2", "--to", "end", "--json", "--brokers", b)
	var jr jsonRecord
	decodeJSON(t, r.stdout, &jr)
	if jr.Key != nil || jr.KeyBase64 != "a/8=" || jr.Value != nil || jr.ValueBase64 != "/v0=" || jr.Partition != 2 || jr.Offset != 0 {
		t.Fatalf("non-UTF-8 --json: %s", r.stdout)
	}
	r = mustRun(t, "", "consume", "b", "--partitions", "2", "--to", "end", "--format", `%t:%K:%S%%\x41\t\\\n`, "--brokers", b)
	if r.stdout != "b:2:2%A\t\\\n" {
		t.Fatalf("format escapes: %q", r.stdout)
	}

	// An offset past the end waits for that offset: records before it that
	// arrive meanwhile are not printed.
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(t, "", "consume", "b", "--partitions", "1", "--offset", "32", "-n", "2", "--format", `%p/%v\n`, "--brokers", b)
	}()
	time.Sleep(200 * time.Millisecond)
	mustRun(t, "30\n31\n32\n33\n", "produce", "b", "--partition", "1", "--brokers", b)
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("consume --offset past the end: exit %d, %s", r.code, r.stderr)
		}
		eq("--offset past the end", splitByPartition(r.stdout), []string{"32", "33"})
	case <-time.After(30 * time.Second):
		t.Fatal("consume --offset past the end -n 2 did not finish within 30s")
	}
	mustFail(t, []string{"--to 5 is not after --offset 10"}, "", "consume", "b", "--offset", "10", "--to", "5", "--brokers", b)
	mustFail(t, []string{`topic "b" has no partition 7`}, "", "consume", "b", "--partitions", "7", "--brokers", b)
	mustFail(t, []string{`topic "zz": UNKNOWN_TOPIC_OR_PARTITION`}, "", "consume", "zz", "--to", "end", "--brokers", b)
	mustFail(t, []string{"unknown directive %q"}, "", "consume", "b", "--format", "%q", "--brokers", b)
	mustFail(t, []string{`--offset "soon"`}, "", "consume", "b", "--offset", "soon", "--brokers", b)
	mustFail(t, []string{`--to: "start" makes no sense`}, "", "consume", "b", "--to", "start", "--brokers", b)
	mustFail(t, []string{`topic "b": 1 of 1 records failed, first: `, "partition"}, "x\n", "produce", "b", "--partition", "9", "--timeout", "3s", "--brokers", b)
	mustFail(t, []string{`--compression: unknown codec "brotli"`}, "x\n", "produce", "b", "--compression", "brotli", "--brokers", b)
	mustFail(t, []string{`--acks: want all, 1 or 0`}, "x\n", "produce", "b", "--acks", "2", "--brokers", b)
	mustFail(t, []string{`--header "nokey": want key=value`}, "x\n", "produce", "b", "-H", "nokey", "--brokers", b)
}

// TestProduceFailures: records that cannot be delivered are counted and the
// command exits non-zero with one line.
func TestProduceFailures(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "small", "-p", "1", "-c", "max.message.bytes=100", "--brokers", b)
	in := strings.Repeat("x", 500) + "\nshort\n"
	r := runCLI(t, in, "produce", "small", "--acks", "1", "--timeout", "5s", "--json", "--brokers", b)
	if r.code == 0 || !strings.HasPrefix(r.stderr, `brokkr: topic "small": `) || !strings.Contains(r.stderr, "MESSAGE_TOO_LARGE") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("oversized record: exit %d stderr %q", r.code, r.stderr)
	}
	var sum produceSummary
	decodeJSON(t, r.stdout, &sum)
	// Both lines may share the rejected batch; the oversized one always fails.
	if sum.Failed < 1 || sum.Records+sum.Failed != 2 || !strings.Contains(sum.Error, "MESSAGE_TOO_LARGE") {
		t.Fatalf("summary: %+v", sum)
	}
	end := describeJSON(t, b, "small").Partitions[0].EndOffset
	if end != sum.Records {
		t.Fatalf("the log holds %d records, the summary says %d were delivered", end, sum.Records)
	}
}

// TestProduceMissingTopic: without auto-creation the records fail within
// --timeout with the broker's error; with it the topic appears.
func TestProduceMissingTopic(t *testing.T) {
	b := startFake(t)
	r := runCLI(t, "a\nb\n", "produce", "missing", "--timeout", "2s", "--brokers", b)
	if r.code == 0 || !strings.Contains(r.stderr, `brokkr: topic "missing": 2 of 2 records failed, first: UNKNOWN_TOPIC_OR_PARTITION`) {
		t.Fatalf("missing topic: exit %d stderr %q", r.code, r.stderr)
	}
	if r.elapsed > 2*time.Second+5*time.Second {
		t.Fatalf("missing topic: took %s with --timeout 2s", r.elapsed)
	}

	auto := startFake(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	mustRun(t, "a\nb\n", "produce", "fresh", "--brokers", auto)
	if got := flatten(consumeLines(t, auto, "fresh", "--to", "end")); strings.Join(got, ",") != "a,b" {
		t.Fatalf("auto-created topic holds %v", got)
	}
	// Only produce asks for auto-creation: a typo in describe or consume
	// must not create a topic.
	mustFail(t, []string{`topic "ghost": UNKNOWN_TOPIC_OR_PARTITION`}, "", "topic", "describe", "ghost", "--brokers", auto)
	mustFail(t, []string{`topic "ghost": UNKNOWN_TOPIC_OR_PARTITION`}, "", "consume", "ghost", "--to", "end", "--brokers", auto)
	ls := listJSON(t, auto)
	if ls["fresh"].Partitions != 2 || len(ls) != 1 {
		t.Fatalf("auto-create cluster topics: %+v", ls)
	}
}

// TestConsumeOverTransactions: a committed and an aborted transaction end in
// control records, which are never printed but still let --to end finish.
func TestConsumeOverTransactions(t *testing.T) {
	b := startFake(t)
	mustRun(t, "", "topic", "create", "tx", "-p", "1", "--brokers", b)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b, ",")...), kgo.TransactionalID("cli-test"), kgo.DefaultProduceTopic("tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("t%d-%d", i, j))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	// 9 data records and 3 control records: the log ends at 12 with a marker.
	r := mustRun(t, "", "consume", "tx", "--to", "end", "--format", `%o:%v\n`, "--brokers", b)
	want := "0:t0-0\n1:t0-1\n2:t0-2\n4:t1-0\n5:t1-1\n6:t1-2\n8:t2-0\n9:t2-1\n10:t2-2\n"
	if r.stdout != want {
		t.Fatalf("consume over transactions:\n got %q\nwant %q", r.stdout, want)
	}
}
