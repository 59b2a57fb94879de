package main

// brokkr bench consume: reading a topic from its start. --raw builds Fetch
// requests itself (kmsg through kgo's broker connection) and walks only the
// v2 batch headers (base offset, length, last offset delta, record count),
// so the client does almost nothing per record and the broker is what is
// measured; without --raw the franz-go consumer decodes every record.
// Latency is per Fetch round trip (raw) or per PollFetches (consumer).
//
// The topic is filled first (not measured) when it holds fewer records
// than a round needs: --records, else --fill-bytes. Rounds wrap to the
// start when they reach the end, so a round of --duration reads the same
// cached data again; --to-end reads it once per round instead.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partRange is one partition's readable range and its leader.
type partRange struct {
	partition  int32
	leader     int32
	epoch      int32
	start, end int64
}

// topicRanges returns the topic's ID and every partition's range.
func (o *benchOpts) topicRanges(ctx context.Context, cl *kgo.Client) ([16]byte, []partRange, error) {
	var id [16]byte
	adm := kadm.NewClient(cl)
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	md, err := adm.Metadata(cctx, o.topic)
	if err != nil {
		return id, nil, fmt.Errorf("metadata of %q: %v", o.topic, err)
	}
	td, ok := md.Topics[o.topic]
	if !ok || td.Err != nil {
		return id, nil, fmt.Errorf("topic %q: %v", o.topic, td.Err)
	}
	starts, err := adm.ListStartOffsets(cctx, o.topic)
	if err != nil {
		return id, nil, fmt.Errorf("start offsets of %q: %v", o.topic, err)
	}
	ends, err := adm.ListEndOffsets(cctx, o.topic)
	if err != nil {
		return id, nil, fmt.Errorf("end offsets of %q: %v", o.topic, err)
	}
	var out []partRange
	for _, p := range td.Partitions.Sorted() {
		if p.Err != nil {
			return id, nil, fmt.Errorf("%s/%d: %v", o.topic, p.Partition, p.Err)
		}
		s, ok1 := starts.Lookup(o.topic, p.Partition)
		e, ok2 := ends.Lookup(o.topic, p.Partition)
		if !ok1 || !ok2 || s.Err != nil || e.Err != nil {
			return id, nil, fmt.Errorf("%s/%d: no offsets (%v, %v)", o.topic, p.Partition, s.Err, e.Err)
		}
		out = append(out, partRange{partition: p.Partition, leader: p.Leader, epoch: p.LeaderEpoch, start: s.Offset, end: e.Offset})
	}
	return td.ID, out, nil
}

func totalRecords(ps []partRange) int64 {
	var n int64
	for _, p := range ps {
		n += p.end - p.start
	}
	return n
}

// batchWalk walks the v2 batches in b for a partition read from pos up to
// end: it returns the records with offsets in [pos, end), their batches'
// bytes, and the offset after the last whole batch. A partial batch at the
// end (the broker cut at max bytes) is left for the next fetch.
func batchWalk(b []byte, pos, end int64) (records, bytes, next int64, err error) {
	next = pos
	for len(b) >= 61 {
		base := int64(binary.BigEndian.Uint64(b[0:8]))
		n := 12 + int64(int32(binary.BigEndian.Uint32(b[8:12])))
		if n < 61 {
			return 0, 0, 0, fmt.Errorf("batch at offset %d: length %d", base, n-12)
		}
		if n > int64(len(b)) {
			break
		}
		if magic := b[16]; magic != 2 {
			return 0, 0, 0, fmt.Errorf("batch at offset %d: magic %d", base, magic)
		}
		last := base + int64(int32(binary.BigEndian.Uint32(b[23:27])))
		lo, hi := max(base, pos), min(last+1, end)
		if hi > lo {
			records += hi - lo
			bytes += n
		}
		if last+1 > next {
			next = last + 1
		}
		b = b[n:]
	}
	return records, bytes, next, nil
}

// consumeLimits says when a round stops.
type consumeLimits struct {
	toEnd    bool
	records  int64
	deadline time.Time
}

func (l consumeLimits) done(m *meter) bool {
	if l.records > 0 {
		return m.records.Load() >= l.records
	}
	return !l.toEnd && !time.Now().Before(l.deadline)
}

// rawTarget is where --raw sends its Fetch requests: each leader's address
// and the Fetch version both sides support.
type rawTarget struct {
	addrs   map[int32]string
	version int16
}

func (o *benchOpts) rawTarget(ctx context.Context, cl *kgo.Client) (rawTarget, error) {
	rt := rawTarget{addrs: map[int32]string{}}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(cctx, o.topic)
	if err != nil {
		return rt, fmt.Errorf("metadata: %v", err)
	}
	for _, b := range md.Brokers {
		rt.addrs[b.NodeID] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	kresp, err := cl.Request(cctx, kmsg.NewPtrApiVersionsRequest())
	if err != nil {
		return rt, fmt.Errorf("ApiVersions: %v", err)
	}
	rt.version = -1
	for _, k := range kresp.(*kmsg.ApiVersionsResponse).ApiKeys {
		if k.ApiKey == 1 {
			rt.version = min(k.MaxVersion, kmsg.NewPtrFetchRequest().MaxVersion())
		}
	}
	if rt.version < 4 {
		return rt, fmt.Errorf("the broker serves Fetch only up to v%d; --raw needs v4 or later", rt.version)
	}
	return rt, nil
}

// rawRound reads the topic with hand-built Fetch requests on connections
// of its own, one request in flight per leader broker.
func (o *benchOpts) rawRound(ctx context.Context, tgt rawTarget, id [16]byte, parts []partRange, lim consumeLimits, m *meter) error {
	byLeader := map[int32][]partRange{}
	for _, p := range parts {
		byLeader[p.leader] = append(byLeader[p.leader], p)
	}
	errs := make(chan error, len(byLeader))
	for leader, ps := range byLeader {
		addr, ok := tgt.addrs[leader]
		if !ok {
			return fmt.Errorf("leader %d of %s is not in the metadata's brokers", leader, o.topic)
		}
		go func() {
			rc, err := dialRaw(ctx, addr, o.timeout)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			errs <- o.rawLeader(rc, tgt.version, id, ps, lim, m)
		}()
	}
	var err error
	for range byLeader {
		err = errors.Join(err, <-errs)
	}
	return err
}

func (o *benchOpts) rawLeader(rc *rawConn, version int16, id [16]byte, ps []partRange, lim consumeLimits, m *meter) error {
	pos := make([]int64, len(ps))
	for i, p := range ps {
		pos[i] = p.start
	}
	resp := kmsg.NewPtrFetchResponse()
	empty := 0
	for !lim.done(m) {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(version)
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 500, 1, o.fetchMaxBytes
		req.SessionID, req.SessionEpoch = 0, -1
		t := kmsg.NewFetchRequestTopic()
		t.Topic, t.TopicID = o.topic, id
		idx := map[int32]int{}
		for i, p := range ps {
			if pos[i] >= p.end {
				if lim.toEnd || p.end == p.start {
					continue
				}
				pos[i] = p.start // wrap: read the cached data again
			}
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition, fp.FetchOffset, fp.CurrentLeaderEpoch = p.partition, pos[i], -1
			fp.LogStartOffset, fp.PartitionMaxBytes = -1, o.partitionMaxBytes
			t.Partitions = append(t.Partitions, fp)
			idx[p.partition] = i
		}
		if len(t.Partitions) == 0 {
			return nil // every partition read to its end
		}
		req.Topics = append(req.Topics, t)
		t0 := time.Now()
		if err := rc.request(req, resp, o.timeout); err != nil {
			return fmt.Errorf("fetch: %v", err)
		}
		m.hist.Record(time.Since(t0))
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return fmt.Errorf("fetch: %v", err)
		}
		progress := false
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				i, ok := idx[rp.Partition]
				if !ok {
					return fmt.Errorf("fetch: answer for partition %d, which was not asked for", rp.Partition)
				}
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return fmt.Errorf("fetch %s/%d at %d: %v", o.topic, rp.Partition, pos[i], err)
				}
				n, nb, next, err := batchWalk(rp.RecordBatches, pos[i], ps[i].end)
				if err != nil {
					return fmt.Errorf("fetch %s/%d at %d: %v", o.topic, rp.Partition, pos[i], err)
				}
				if next > pos[i] {
					progress = true
				}
				pos[i] = next
				m.records.Add(n)
				m.bytes.Add(nb)
			}
		}
		if progress {
			empty = 0
		} else if empty++; empty > 20 {
			return fmt.Errorf("fetch: 20 answers in a row without data below the end offsets %v", pos)
		}
	}
	return nil
}

// consumerRound reads the topic with the franz-go consumer from the start,
// passing over it again (a new client) until the limits are reached.
func (o *benchOpts) consumerRound(ctx context.Context, brokers []string, parts []partRange, lim consumeLimits, m *meter) error {
	for {
		offsets := map[int32]kgo.Offset{}
		left := 0
		for _, p := range parts {
			if p.end > p.start {
				offsets[p.partition] = kgo.NewOffset().At(p.start)
				left++
			}
		}
		if left == 0 {
			return errors.New("the topic is empty")
		}
		cl, err := o.client(ctx, brokers, 10*time.Millisecond,
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: offsets}))
		if err != nil {
			return err
		}
		end := map[int32]int64{}
		for _, p := range parts {
			end[p.partition] = p.end
		}
		for left > 0 && !lim.done(m) {
			pctx, cancel := context.WithTimeout(ctx, o.timeout)
			t0 := time.Now()
			fs := cl.PollFetches(pctx)
			cancel()
			m.hist.Record(time.Since(t0))
			if err := fs.Err0(); err != nil {
				cl.Close()
				return fmt.Errorf("poll: %v", err)
			}
			fs.EachPartition(func(fp kgo.FetchTopicPartition) {
				for _, r := range fp.Records {
					if r.Offset < end[fp.Partition] {
						m.records.Add(1)
						m.bytes.Add(int64(len(r.Value)))
					}
				}
				if n := len(fp.Records); n > 0 && fp.Records[n-1].Offset+1 >= end[fp.Partition] && end[fp.Partition] > 0 {
					end[fp.Partition] = -1 // done; counted once
					left--
				}
			})
		}
		cl.Close()
		if lim.toEnd || lim.done(m) {
			return nil
		}
	}
}

func newBenchConsumeCmd(o *benchOpts) *cobra.Command {
	var (
		raw       bool
		toEnd     bool
		fillBytes int64
	)
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Consumer throughput; --raw: Fetch requests walked by batch header only (measures the broker)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fillBytes < 0 {
				return fmt.Errorf("--fill-bytes: must not be negative, got %d", fillBytes)
			}
			stop, err := o.prepare(cmd, true)
			if err != nil {
				return err
			}
			defer stop()
			ctx := cmd.Context()
			cl, err := o.client(ctx, o.brokers, 10*time.Millisecond)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := o.ensureTopic(ctx, cl); err != nil {
				return err
			}
			id, parts, err := o.topicRanges(ctx, cl)
			if err != nil {
				return err
			}
			need := o.records
			if need == 0 {
				need = fillBytes / int64(o.recordSize)
			}
			if have := totalRecords(parts); have < need {
				o.progressf("filling %s with %d records of %d bytes (not measured)", o.topic, need-have, o.recordSize)
				fm := &meter{}
				if _, err := o.produceRecords(ctx, cl, fm, 0, need-have); err != nil {
					return fmt.Errorf("filling: %v", err)
				}
				if id, parts, err = o.topicRanges(ctx, cl); err != nil {
					return err
				}
			}
			if totalRecords(parts) == 0 {
				return fmt.Errorf("topic %q is empty: give --fill-bytes or --records", o.topic)
			}
			var tgt rawTarget
			if raw {
				if tgt, err = o.rawTarget(ctx, cl); err != nil {
					return err
				}
			}
			name := "consume (franz-go consumer)"
			if raw {
				name = "consume --raw (Fetch requests, batch headers only)"
			}
			cb := &bench{name: name, broker: true, latency: true, run: func(ctx context.Context, m *meter) (outcome, error) {
				lim := consumeLimits{toEnd: toEnd, records: o.records, deadline: time.Now().Add(o.duration)}
				start := time.Now()
				var err error
				if raw {
					err = o.rawRound(ctx, tgt, id, parts, lim, m)
				} else {
					err = o.consumerRound(ctx, o.brokers, parts, lim, m)
				}
				return outcome{elapsed: time.Since(start), senderCPU: -1}, err
			}}
			benches := []*bench{cb}
			var ceil *ceilingSet
			if o.ceilings {
				if ceil, err = o.ceilingBenches(ctx); err != nil {
					return err
				}
				defer ceil.close()
				benches = append(ceil.benches, cb)
			}
			if err := o.runRounds(ctx, benches); err != nil {
				return err
			}
			rep := &report{Command: "consume", Brokers: o.brokers, Topic: o.topic, Partitions: int32(len(parts)), Started: time.Now()}
			rep.Extra = map[string]string{"records_in_topic": fmt.Sprint(totalRecords(parts)), "raw": fmt.Sprint(raw)}
			if raw {
				rep.Notes = append(rep.Notes, "--raw MB/s counts whole record batches as the broker sent them (headers included)")
			}
			return o.finishWithRatios(rep, benches, ceil, func(r map[string]ratio, get func(*bench) seriesSummary) {
				c, s, cp := get(cb), get(ceil.sendfile), get(ceil.copy)
				r["consume / sendfile ceiling"] = newRatio(c.MBps.Median, s.MBps.Median, true, 0.5,
					fmt.Sprintf("%.1f / %.1f MB/s", c.MBps.Median, s.MBps.Median))
				if c.BrokerCPUPerGB != nil && s.SenderCPUPerGB != nil {
					r["broker CPU/GB / sendfile sender's"] = newRatio(c.BrokerCPUPerGB.Median, s.SenderCPUPerGB.Median, false, 2,
						fmt.Sprintf("%.3f / %.3f s/GB", c.BrokerCPUPerGB.Median, s.SenderCPUPerGB.Median))
				}
				r["ceiling sendfile on / off (MB/s)"] = newRatio(s.MBps.Median, cp.MBps.Median, true, 1,
					fmt.Sprintf("%.0f / %.0f MB/s", s.MBps.Median, cp.MBps.Median))
			})
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "issue Fetch requests directly and walk batch headers only")
	cmd.Flags().BoolVar(&toEnd, "to-end", false, "each round reads the topic once, from its start to its end")
	cmd.Flags().Int64Var(&fillBytes, "fill-bytes", 1<<30, "fill the topic to this many bytes first when it holds less (with --records unset)")
	return cmd
}
