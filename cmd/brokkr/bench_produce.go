package main

// brokkr bench produce: the franz-go producer at full speed, acks and
// batching from flags; latency is each record's Produce call to its ack.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// client returns a franz-go client for brokers with the producer settings
// of the flags plus extra options, once some broker answers.
func (o *benchOpts) client(ctx context.Context, brokers []string, defaultLinger time.Duration, extra ...kgo.Opt) (*kgo.Client, error) {
	codec, err := compressionCodec(o.compression)
	if err != nil {
		return nil, err
	}
	linger := o.linger
	if linger < 0 {
		linger = defaultLinger
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("brokkr-bench"),
		kgo.RequestTimeoutOverhead(o.timeout),
		kgo.RetryTimeout(o.timeout),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchMaxBytes(o.batchMaxBytes),
		kgo.ProducerBatchCompression(codec),
		kgo.ProduceRequestTimeout(o.timeout),
		kgo.FetchMaxBytes(o.fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(o.partitionMaxBytes),
		kgo.BrokerMaxReadBytes(max(o.fetchMaxBytes+(1<<20), 100<<20)),
	}
	switch o.acks {
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	default:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if !o.idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(o.maxInflight))
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach %v: %v", brokers, oneLine(err.Error()))
	}
	return cl, nil
}

// ensureTopic creates the topic with --partitions unless it exists.
func (o *benchOpts) ensureTopic(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	res, err := adm.CreateTopic(cctx, o.partitions, 1, nil, o.topic)
	if err == nil {
		err = res.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %q: %v", o.topic, err)
	}
	return nil
}

// produceRecords produces for d (or n records when n > 0) as fast as the
// client takes them, then waits for every ack. Each ack adds to m.
func (o *benchOpts) produceRecords(ctx context.Context, cl *kgo.Client, m *meter, d time.Duration, n int64) (time.Duration, error) {
	var firstErr atomic.Pointer[error]
	cb := func(r *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		m.hist.Record(time.Since(r.Timestamp))
		m.bytes.Add(int64(len(r.Value)))
		m.records.Add(1)
	}
	start := time.Now()
	deadline := start.Add(d)
	for i := int64(0); ; i++ {
		if n > 0 {
			if i >= n {
				break
			}
		} else if i&63 == 0 && time.Now().After(deadline) {
			break
		}
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if e := firstErr.Load(); e != nil {
				break
			}
		}
		cl.Produce(ctx, &kgo.Record{Topic: o.topic, Value: o.payloads[i%int64(len(o.payloads))], Timestamp: time.Now()}, cb)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return 0, fmt.Errorf("produce: %v", *e)
	}
	return el, nil
}

// produceBench is the producer against brokers as a bench (name given);
// the client lives across rounds and is closed by the returned function.
func (o *benchOpts) produceBench(ctx context.Context, name string, brokers []string, isBroker bool) (*bench, func(), error) {
	cl, err := o.client(ctx, brokers, 10*time.Millisecond)
	if err != nil {
		return nil, nil, err
	}
	if err := o.ensureTopic(ctx, cl); err != nil {
		cl.Close()
		return nil, nil, err
	}
	b := &bench{name: name, broker: isBroker, latency: true,
		run: func(ctx context.Context, m *meter) (outcome, error) {
			el, err := o.produceRecords(ctx, cl, m, o.duration, o.records)
			return outcome{elapsed: el, senderCPU: -1}, err
		}}
	return b, cl.Close, nil
}

func newBenchProduceCmd(o *benchOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "produce",
		Short: "Producer throughput and ack latency (acks, linger, batch size from flags)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stop, err := o.prepare(cmd, true)
			if err != nil {
				return err
			}
			defer stop()
			ctx := cmd.Context()
			name := fmt.Sprintf("produce acks=%d", o.acks)
			pb, closeCl, err := o.produceBench(ctx, name, o.brokers, true)
			if err != nil {
				return err
			}
			defer closeCl()
			benches := []*bench{pb}
			var ceil *ceilingSet
			if o.ceilings {
				ceil, err = o.ceilingBenches(ctx)
				if err != nil {
					return err
				}
				defer ceil.close()
				benches = append(ceil.benches, pb)
			}
			if err := o.runRounds(ctx, benches); err != nil {
				return err
			}
			rep := &report{Command: "produce", Brokers: o.brokers, Topic: o.topic, Partitions: o.partitions, Started: time.Now()}
			if err := o.finishWithRatios(rep, benches, ceil, func(ratios map[string]ratio, get func(*bench) seriesSummary) {
				p, c := get(pb), get(ceil.client)
				ratios["produce / client ceiling"] = newRatio(p.MBps.Median, c.MBps.Median, true, 0.85,
					fmt.Sprintf("%.1f / %.1f MB/s", p.MBps.Median, c.MBps.Median))
			}); err != nil {
				return err
			}
			return nil
		},
	}
}
