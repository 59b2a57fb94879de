package main

// brokkr bench e2e: a fixed offered load (--rate records/s) through the
// broker, latency measured from each record's *scheduled* send time (its
// first 8 bytes) to its arrival at a franz-go consumer in this process, so
// a stalled producer or broker cannot hide its delay (no coordinated
// omission). Never run at maximum throughput.

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func (o *benchOpts) e2eRound(ctx context.Context, rate float64, m *meter) (outcome, error) {
	prod, err := o.client(ctx, o.brokers, 0)
	if err != nil {
		return outcome{}, err
	}
	defer prod.Close()
	_, parts, err := o.topicRanges(ctx, prod)
	if err != nil {
		return outcome{}, err
	}
	offsets := map[int32]kgo.Offset{}
	for _, p := range parts {
		offsets[p.partition] = kgo.NewOffset().At(p.end)
	}
	cons, err := o.client(ctx, o.brokers, 0,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: offsets}),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return outcome{}, err
	}
	defer cons.Close()

	n := o.records
	if n == 0 {
		n = int64(rate * o.duration.Seconds())
	}
	if n < 1 {
		return outcome{}, fmt.Errorf("a round of %s at %.0f records/s has no records", o.duration, rate)
	}
	var consumed atomic.Int64
	cctx, stopCons := context.WithCancel(ctx)
	defer stopCons()
	consDone := make(chan error, 1)
	warm := make(chan struct{})
	var warmOnce sync.Once
	go func() {
		for consumed.Load() < n {
			fs := cons.PollFetches(cctx)
			if cctx.Err() != nil {
				consDone <- nil
				return
			}
			if err := fs.Err0(); err != nil {
				consDone <- err
				return
			}
			now := time.Now().UnixNano()
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) < 8 {
					warmOnce.Do(func() { close(warm) }) // the warm-up record
					return
				}
				sched := int64(binary.BigEndian.Uint64(r.Value))
				m.hist.Record(time.Duration(now - sched))
				m.bytes.Add(int64(len(r.Value)))
				m.records.Add(1)
				consumed.Add(1)
			})
		}
		consDone <- nil
	}()

	// Warm both clients up (metadata, connections, a fetch in flight)
	// with one short record before the schedule starts: a round measures
	// the broker at a steady load, not the clients' start.
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: o.topic, Value: []byte("warm")}).FirstErr(); err != nil {
		return outcome{}, fmt.Errorf("warm-up record: %v", err)
	}
	select {
	case <-warm:
	case err := <-consDone:
		return outcome{}, fmt.Errorf("consumer stopped before the warm-up record arrived: %v", err)
	case <-time.After(o.timeout):
		return outcome{}, fmt.Errorf("the warm-up record did not arrive within %s", o.timeout)
	}

	var prodErr atomic.Pointer[error]
	var acks histogram // scheduled send time to the producer's ack
	cb := func(r *kgo.Record, err error) {
		if err != nil {
			prodErr.CompareAndSwap(nil, &err)
			return
		}
		acks.Record(time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(r.Value))))
	}
	interval := float64(time.Second) / rate
	start := time.Now()
	for i := int64(0); i < n; {
		now := time.Now()
		// Send every record whose scheduled time has come.
		for ; i < n; i++ {
			due := start.Add(time.Duration(float64(i) * interval))
			if due.After(now) {
				break
			}
			v := make([]byte, o.recordSize)
			copy(v, o.payloads[i%int64(len(o.payloads))])
			binary.BigEndian.PutUint64(v, uint64(due.UnixNano()))
			prod.Produce(ctx, &kgo.Record{Topic: o.topic, Value: v}, cb)
		}
		if e := prodErr.Load(); e != nil {
			stopCons()
			return outcome{}, fmt.Errorf("produce: %v", *e)
		}
		if err := ctx.Err(); err != nil {
			stopCons()
			return outcome{}, err
		}
		if i < n {
			time.Sleep(time.Until(start.Add(time.Duration(float64(i) * interval))))
		}
	}
	sent := time.Since(start)
	wait := time.NewTimer(o.timeout)
	defer wait.Stop()
	select {
	case err := <-consDone:
		stopCons()
		if err != nil {
			return outcome{}, fmt.Errorf("consume: %v", err)
		}
	case <-wait.C:
		stopCons()
		<-consDone
		return outcome{}, fmt.Errorf("consumed %d of %d records within %s after the last send", consumed.Load(), n, o.timeout)
	}
	if err := prod.Flush(ctx); err != nil {
		return outcome{}, err
	}
	if e := prodErr.Load(); e != nil {
		return outcome{}, fmt.Errorf("produce: %v", *e)
	}
	return outcome{elapsed: sent, senderCPU: -1, ackP99: acks.Quantile(0.99)}, nil
}

func newBenchE2ECmd(o *benchOpts) *cobra.Command {
	var rate float64
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "End-to-end latency at a fixed offered load (--rate), from each record's scheduled send time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rate <= 0 || rate > 10_000_000 {
				return fmt.Errorf("--rate: want 1 to 10,000,000 records/s, got %g", rate)
			}
			stop, err := o.prepare(cmd, true)
			if err != nil {
				return err
			}
			defer stop()
			ctx := cmd.Context()
			cl, err := o.client(ctx, o.brokers, 0)
			if err != nil {
				return err
			}
			err = o.ensureTopic(ctx, cl)
			cl.Close()
			if err != nil {
				return err
			}
			eb := &bench{name: fmt.Sprintf("e2e at %.0f records/s (acks=%d)", rate, o.acks), broker: true, latency: true,
				run: func(ctx context.Context, m *meter) (outcome, error) { return o.e2eRound(ctx, rate, m) }}
			if err := o.runRounds(ctx, []*bench{eb}); err != nil {
				return err
			}
			rep := &report{Command: "e2e", Brokers: o.brokers, Topic: o.topic, Partitions: o.partitions, Started: time.Now()}
			rep.Extra = map[string]string{"rate": fmt.Sprint(rate)}
			s := summarize(eb)
			if s.P99ms != nil {
				rep.Ratios = map[string]ratio{"e2e p99 ms / 5 ms": newRatio(s.P99ms.Median, 5, false, 1, fmt.Sprintf("p99 %.2f ms at %.0f records/s", s.P99ms.Median, rate))}
			}
			return o.finish(rep, []*bench{eb})
		},
	}
	cmd.Flags().Float64Var(&rate, "rate", 20000, "offered load, records per second")
	return cmd
}
