package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxLineBytes bounds one input line, so that a file without newlines cannot
// exhaust memory; Kafka's default max.message.bytes is about 1 MiB anyway.
const maxLineBytes = 64 << 20

// compressionCodec maps a --compression value to kgo's codec.
func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression: unknown codec %q (want none, gzip, snappy, lz4 or zstd)", name)
}

// requiredAcks maps an --acks value to kgo's setting.
func requiredAcks(s string) (kgo.Acks, error) {
	switch strings.ToLower(s) {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1", "leader":
		return kgo.LeaderAck(), nil
	case "0", "none":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks: want all, 1 or 0, got %q", s)
}

// producedPartition summarises one partition in the produce report.
type producedPartition struct {
	Partition   int32 `json:"partition"`
	Records     int64 `json:"records"`
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
}

// produceSummary is what `produce` reports when stdin is done.
type produceSummary struct {
	Topic      string              `json:"topic"`
	Records    int64               `json:"records"`
	Bytes      int64               `json:"bytes"`
	Failed     int64               `json:"failed"`
	Acks       string              `json:"acks"`
	Partitions []producedPartition `json:"partitions"`
	Error      string              `json:"error,omitempty"`
}

func newProduceCmd(o *clientOpts) *cobra.Command {
	var (
		keySep      string
		headers     []string
		compression string
		partition   int32
		acks        string
	)
	c := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce one record per line of stdin",
		Long: `Produce reads stdin and sends one record per line (the newline is not part
of the record). With --key-sep, the text before the first separator is the
key and the rest the value; a line without the separator has no key. Every
record gets the --header pairs. A summary goes to stderr (stdout with --json).`,
		Example: `  printf 'k1:hello\nk2:world\n' | brokkr produce orders --key-sep : -H source=cli --compression zstd
  seq 1000 | brokkr produce numbers --partition 0 --acks 1 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			if topic == "" {
				return errors.New("topic name must not be empty")
			}
			codec, err := compressionCodec(compression)
			if err != nil {
				return err
			}
			ack, err := requiredAcks(acks)
			if err != nil {
				return err
			}
			if partition < -1 {
				return fmt.Errorf("--partition: must be >= 0, got %d", partition)
			}
			var hdrs []kgo.RecordHeader
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			opts := []kgo.Opt{
				kgo.DefaultProduceTopic(topic),
				kgo.ProducerBatchCompression(codec),
				kgo.RequiredAcks(ack),
				kgo.RecordDeliveryTimeout(o.timeout),
				// A missing topic is created if the broker allows it
				// (auto.create.topics.enable), as kcat and the Java
				// producer do.
				kgo.AllowAutoTopicCreation(),
			}
			if ack != kgo.AllISRAcks() {
				opts = append(opts, kgo.DisableIdempotentWrite())
			}
			if partition >= 0 {
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cl, err := o.connect(ctx, opts...)
			if err != nil {
				return err
			}
			defer cl.Close()

			sum := produceSummary{Topic: topic, Acks: acks}
			noAck := ack == kgo.NoAck()
			var (
				mu       sync.Mutex
				parts    = map[int32]*producedPartition{}
				firstErr error
			)
			promise := func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					sum.Failed++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				sum.Records++
				sum.Bytes += int64(len(r.Key) + len(r.Value))
				p := parts[r.Partition]
				if p == nil {
					p = &producedPartition{Partition: r.Partition, FirstOffset: r.Offset, LastOffset: r.Offset}
					parts[r.Partition] = p
				}
				p.Records++
				p.FirstOffset = min(p.FirstOffset, r.Offset)
				p.LastOffset = max(p.LastOffset, r.Offset)
			}

			in := bufio.NewReaderSize(cmd.InOrStdin(), 64<<10)
			var readErr error
			var lines int64
			for ctx.Err() == nil {
				line, err := readLine(in, maxLineBytes)
				if err != nil && err != io.EOF {
					readErr = fmt.Errorf("reading stdin after %d lines: %v", lines, err)
					break
				}
				if line == nil && err == io.EOF {
					break
				}
				lines++
				r := &kgo.Record{Headers: hdrs}
				if partition >= 0 {
					r.Partition = partition
				}
				if k, v, ok := cutBytes(line, keySep); ok {
					r.Key, r.Value = k, v
				} else {
					r.Value = line
				}
				cl.Produce(ctx, r, promise)
				if err == io.EOF {
					break
				}
			}
			if err := cl.Flush(ctx); err != nil && readErr == nil && ctx.Err() == nil {
				readErr = fmt.Errorf("flush: %v", err)
			}

			mu.Lock()
			defer mu.Unlock()
			for _, p := range parts {
				if noAck {
					// Without acknowledgements the broker reports no offsets.
					p.FirstOffset, p.LastOffset = -1, -1
				}
				sum.Partitions = append(sum.Partitions, *p)
			}
			sort.Slice(sum.Partitions, func(i, j int) bool { return sum.Partitions[i].Partition < sum.Partitions[j].Partition })
			if sum.Partitions == nil {
				sum.Partitions = []producedPartition{}
			}
			var runErr error
			switch {
			case readErr != nil:
				runErr = readErr
			case sum.Failed > 0:
				runErr = fmt.Errorf("topic %q: %d of %d records failed, first: %s", topic, sum.Failed, sum.Failed+sum.Records, describeErr(firstErr, ""))
			case ctx.Err() != nil && cmd.Context().Err() == nil:
				runErr = fmt.Errorf("interrupted after %d lines", lines)
			}
			if runErr != nil {
				sum.Error = runErr.Error()
			}
			if o.json {
				if err := writeJSON(cmd.OutOrStdout(), sum); err != nil {
					return err
				}
			} else if sum.Records > 0 || runErr == nil {
				// With nothing delivered, the error line says it all.
				printProduceSummary(cmd.ErrOrStderr(), sum)
			}
			return runErr
		},
	}
	f := c.Flags()
	f.StringVar(&keySep, "key-sep", "", "split each line at the first SEP into key and value")
	f.StringArrayVarP(&headers, "header", "H", nil, "header key=value added to every record (repeatable)")
	f.StringVarP(&compression, "compression", "z", "none", "batch compression: none, gzip, snappy, lz4, zstd")
	f.Int32VarP(&partition, "partition", "p", -1, "produce to this partition (default: by key hash, sticky for null keys)")
	f.StringVar(&acks, "acks", "all", "acknowledgements to wait for: all, 1 or 0")
	return c
}

// readLine returns the next line without its '\n', refusing lines longer
// than limit bytes. At the end of input it returns the last unterminated line
// with io.EOF, or nil and io.EOF.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if n := len(line) + len(frag); n > limit+1 || (n == limit+1 && frag[len(frag)-1] != '\n') {
			return nil, fmt.Errorf("a line is longer than %d bytes", limit)
		}
		switch err {
		case nil:
			if line == nil { // the common case: the whole line was buffered
				return append(make([]byte, 0, len(frag)-1), frag[:len(frag)-1]...), nil
			}
			return append(line, frag[:len(frag)-1]...), nil
		case bufio.ErrBufferFull:
			line = append(line, frag...)
		case io.EOF:
			line = append(line, frag...)
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, io.EOF
		default:
			return nil, err
		}
	}
}

// cutBytes splits line at the first sep; ok is false when sep is empty or
// absent. The halves are copies, as kgo keeps records until acknowledged.
func cutBytes(line []byte, sep string) (before, after []byte, ok bool) {
	if sep == "" {
		return nil, nil, false
	}
	b, a, ok := bytes.Cut(line, []byte(sep))
	if !ok {
		return nil, nil, false
	}
	return b, a, true
}

func printProduceSummary(w io.Writer, s produceSummary) {
	fmt.Fprintf(w, "produced %d records (%d bytes) to %q", s.Records, s.Bytes, s.Topic)
	if s.Failed > 0 {
		fmt.Fprintf(w, ", %d failed", s.Failed)
	}
	fmt.Fprintln(w)
	if len(s.Partitions) == 0 {
		return
	}
	tw := newTable(w)
	row(tw, "PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET")
	for _, p := range s.Partitions {
		first, last := fmt.Sprint(p.FirstOffset), fmt.Sprint(p.LastOffset)
		if p.FirstOffset < 0 {
			first, last = "? (acks=0)", "?"
		}
		row(tw, p.Partition, p.Records, first, last)
	}
	_ = tw.Flush()
}
