package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetKind says how an --offset or --to value picks an offset.
type offsetKind int

const (
	offNone  offsetKind = iota // no --to: run until -n or interrupted
	offStart                   // the log start offset
	offEnd                     // the end offset (high watermark) when the command starts
	offExact                   // an absolute offset
	offBack                    // N records before the end offset (--offset -N)
	offTime                    // the first offset whose timestamp is >= a millisecond
)

// offsetSpec is a parsed --offset or --to value.
type offsetSpec struct {
	kind offsetKind
	n    int64 // offset, count back or timestamp in ms
}

// parseOffsetSpec parses start|end|N|-N|@ms|@RFC3339; allowBack allows -N
// (only meaningful for --offset) and allowStart allows start.
func parseOffsetSpec(flag, s string, allowStart, allowBack bool) (offsetSpec, error) {
	switch strings.ToLower(s) {
	case "start", "beginning", "oldest", "earliest":
		if !allowStart {
			return offsetSpec{}, fmt.Errorf("%s: %q makes no sense here (want end, N or @timestamp_ms)", flag, s)
		}
		return offsetSpec{kind: offStart}, nil
	case "end", "newest", "latest":
		return offsetSpec{kind: offEnd}, nil
	}
	if ts, ok := strings.CutPrefix(s, "@"); ok {
		if ms, err := strconv.ParseInt(ts, 10, 64); err == nil && ms >= 0 {
			return offsetSpec{kind: offTime, n: ms}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return offsetSpec{kind: offTime, n: t.UnixMilli()}, nil
		}
		return offsetSpec{}, fmt.Errorf("%s %q: want @milliseconds since the epoch or @RFC3339 time", flag, s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return offsetSpec{}, fmt.Errorf("%s %q: want start, end, an offset, -N or @timestamp_ms", flag, s)
	}
	if n < 0 {
		if !allowBack {
			return offsetSpec{}, fmt.Errorf("%s: offset must be >= 0, got %d", flag, n)
		}
		return offsetSpec{kind: offBack, n: -n}, nil
	}
	return offsetSpec{kind: offExact, n: n}, nil
}

// jsonRecord is one record in `consume --json` (one object per line). Keys,
// values and header values that are not UTF-8 are given in base64 in the
// *_base64 field instead, so no byte is lost.
type jsonRecord struct {
	Topic       string       `json:"topic"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Timestamp   int64        `json:"timestamp"`
	Key         *string      `json:"key"`
	KeyBase64   string       `json:"key_base64,omitempty"`
	Value       *string      `json:"value"`
	ValueBase64 string       `json:"value_base64,omitempty"`
	Headers     []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

// jsonBytes renders a nullable byte string for jsonRecord.
func jsonBytes(b []byte) (s *string, b64 string) {
	switch {
	case b == nil:
		return nil, ""
	case utf8.Valid(b):
		v := string(b)
		return &v, ""
	default:
		return nil, base64.StdEncoding.EncodeToString(b)
	}
}

func appendJSONRecord(dst []byte, r *kgo.Record) ([]byte, error) {
	jr := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Headers: []jsonHeader{}}
	jr.Key, jr.KeyBase64 = jsonBytes(r.Key)
	jr.Value, jr.ValueBase64 = jsonBytes(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueBase64 = jsonBytes(h.Value)
		jr.Headers = append(jr.Headers, jh)
	}
	b, err := json.Marshal(jr)
	if err != nil {
		return dst, err
	}
	return append(append(dst, b...), '\n'), nil
}

// partitionRange is where consuming one partition starts and stops.
type partitionRange struct {
	from      int64 // first offset to print
	fetchFrom int64 // where fetching starts: from, or the end offset if from is past it
	until     int64 // exclusive; -1 means no end
}

func newConsumeCmd(o *clientOpts) *cobra.Command {
	var (
		offset     string
		to         string
		num        int64
		partitions []int32
		format     string
	)
	c := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print records of a topic (direct partition reads, no consumer group)",
		Long: `Consume reads partitions directly (no consumer group, nothing committed)
and prints each record with --format or as one JSON object per line (--json).

--offset picks where each partition starts: start, end, an offset N, -N (N
records before the end) or @timestamp_ms (the first record at or after it).
--to picks where it stops (exclusive): N, end (the end offset when the
command started) or @timestamp_ms; -n stops after that many records in all.
With neither, consume runs until interrupted.

--format directives (kcat -f style): %t topic, %p partition, %o offset,
%T timestamp ms, %k key, %v or %s value, %K key length, %S value length
(-1 for null), %h headers as k=v,k=v, %% percent; escapes \n \r \t \\ \xHH.`,
		Example: `  brokkr consume orders --to end
  brokkr consume orders --offset @1700000000000 -n 10 --format '%p/%o %k=%v\n'
  brokkr consume orders --partitions 0,1 --offset -5 --to end --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			from, err := parseOffsetSpec("--offset", offset, true, true)
			if err != nil {
				return err
			}
			until := offsetSpec{kind: offNone}
			if to != "" {
				if until, err = parseOffsetSpec("--to", to, false, false); err != nil {
					return err
				}
			}
			if from.kind == offExact && until.kind == offExact && until.n <= from.n {
				return fmt.Errorf("--to %d is not after --offset %d (--to is exclusive)", until.n, from.n)
			}
			if num < 0 {
				return fmt.Errorf("-n/--num: must be >= 0, got %d", num)
			}
			var rf recordFormat
			if !o.json {
				if rf, err = compileFormat(format); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			ranges, err := resolveRanges(ctx, o, topic, partitions, from, until)
			if err != nil {
				return err
			}
			start := map[int32]kgo.Offset{}
			for p, r := range ranges {
				if r.until < 0 || r.from < r.until {
					start[p] = kgo.NewOffset().At(r.fetchFrom)
				}
			}
			if len(start) == 0 {
				return nil // every partition is already at its --to
			}
			cl, err := o.connect(ctx,
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
				kgo.KeepControlRecords(),
			)
			if err != nil {
				return err
			}
			defer cl.Close()
			return consumeLoop(ctx, cl, cmd.OutOrStdout(), topic, ranges, start, num, rf, o.json)
		},
	}
	f := c.Flags()
	f.StringVarP(&offset, "offset", "o", "start", "where to start: start, end, N, -N or @timestamp_ms")
	f.StringVar(&to, "to", "", "where to stop (exclusive): N, end or @timestamp_ms")
	f.Int64VarP(&num, "num", "n", 0, "stop after this many records (0: no limit)")
	f.Int32SliceVarP(&partitions, "partitions", "p", nil, "only these partitions, e.g. 0,1 (default: all)")
	f.StringVarP(&format, "format", "f", `%v\n`, "output format, kcat -f style (see above)")
	return c
}

// resolveRanges turns the --offset/--to specs into per-partition offsets,
// asking the cluster once for start, end and (if needed) by-time offsets.
func resolveRanges(ctx context.Context, o *clientOpts, topic string, only []int32, from, until offsetSpec) (map[int32]partitionRange, error) {
	rctx, adm, done, err := o.adminRequest(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	md, err := adm.Metadata(rctx, topic)
	if err != nil {
		return nil, o.requestErr("metadata", err)
	}
	td, ok := md.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("topic %q: %s", topic, describeErr(kerr.UnknownTopicOrPartition, ""))
	}
	if td.Err != nil {
		return nil, fmt.Errorf("topic %q: %s", topic, describeErr(td.Err, ""))
	}
	parts := td.Partitions.Numbers()
	if len(only) > 0 {
		seen := map[int32]bool{}
		for _, p := range only {
			if _, ok := td.Partitions[p]; !ok {
				return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", topic, p, len(parts))
			}
			if seen[p] {
				return nil, fmt.Errorf("--partitions: %d given twice", p)
			}
			seen[p] = true
		}
		parts = append([]int32(nil), only...)
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	}
	list := func(what string, fn func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		l, err := fn()
		if err != nil {
			return nil, o.requestErr("list "+what+" offsets", err)
		}
		m := map[int32]int64{}
		for _, p := range parts {
			lo, ok := l.Lookup(topic, p)
			if !ok {
				return nil, fmt.Errorf("topic %q partition %d: no %s offset in the broker's answer", topic, p, what)
			}
			if lo.Err != nil {
				return nil, fmt.Errorf("topic %q partition %d: %s offset: %s", topic, p, what, describeErr(lo.Err, ""))
			}
			m[p] = lo.Offset
		}
		return m, nil
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(rctx, topic) })
	if err != nil {
		return nil, err
	}
	ends, err := list("end", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(rctx, topic) })
	if err != nil {
		return nil, err
	}
	byTime := func(ms int64) (map[int32]int64, error) {
		return list("by-timestamp", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(rctx, ms, topic) })
	}
	var fromTS, untilTS map[int32]int64
	if from.kind == offTime {
		if fromTS, err = byTime(from.n); err != nil {
			return nil, err
		}
	}
	if until.kind == offTime {
		if untilTS, err = byTime(until.n); err != nil {
			return nil, err
		}
	}
	ranges := make(map[int32]partitionRange, len(parts))
	for _, p := range parts {
		r := partitionRange{until: -1}
		switch from.kind {
		case offStart:
			r.from = starts[p]
		case offEnd:
			r.from = ends[p]
		case offExact:
			// Past the end, fetch from the end and print from N on, as
			// records arrive (the broker would refuse a fetch at N).
			r.from = max(from.n, starts[p])
			r.fetchFrom = min(r.from, ends[p])
		case offBack:
			r.from = max(ends[p]-from.n, starts[p])
		case offTime:
			r.from = fromTS[p]
			if r.from < 0 { // no record at or after the time yet
				r.from = ends[p]
			}
		}
		switch until.kind {
		case offEnd:
			r.until = ends[p]
		case offExact:
			r.until = until.n
		case offTime:
			r.until = untilTS[p]
			if r.until < 0 {
				r.until = ends[p]
			}
		}
		if from.kind != offExact {
			r.fetchFrom = r.from
		}
		ranges[p] = r
	}
	return ranges, nil
}

// consumeLoop prints records until every partition reached its end, num
// records were printed, or ctx ends (an interrupt is a normal stop).
func consumeLoop(ctx context.Context, cl *kgo.Client, out io.Writer, topic string, ranges map[int32]partitionRange, active map[int32]kgo.Offset, num int64, rf recordFormat, asJSON bool) error {
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	var (
		printed int64
		buf     []byte
		err     error
	)
	open := len(active)
	isOpen := make(map[int32]bool, len(active))
	for p := range active {
		isOpen[p] = true
	}
	closePartition := func(p int32) {
		if isOpen[p] {
			isOpen[p] = false
			open--
			cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
		}
	}
	for open > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return w.Flush() // interrupted: what was printed stands
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("topic %q partition %d: %s", t, p, describeErr(err, ""))
			}
		})
		if fetchErr != nil {
			_ = w.Flush()
			return fetchErr
		}
		stop := false
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if stop || fp.Topic != topic || !isOpen[fp.Partition] {
				return
			}
			r := ranges[fp.Partition]
			for _, rec := range fp.Records {
				if r.until >= 0 && rec.Offset >= r.until {
					closePartition(fp.Partition)
					return
				}
				if !rec.Attrs.IsControl() && rec.Offset >= r.from {
					buf = buf[:0]
					if asJSON {
						if buf, err = appendJSONRecord(buf, rec); err != nil {
							stop = true
							return
						}
					} else {
						buf = rf.appendRecord(buf, rec)
					}
					if _, err = w.Write(buf); err != nil {
						stop = true
						return
					}
					printed++
					if num > 0 && printed >= num {
						stop = true
						return
					}
				}
				if r.until >= 0 && rec.Offset+1 >= r.until {
					closePartition(fp.Partition)
					return
				}
			}
		})
		if err != nil {
			return fmt.Errorf("writing output: %v", err)
		}
		if stop {
			break
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing output: %v", err)
		}
	}
	return w.Flush()
}
