package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/brokkr/brokkr/core/broker"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Policy status travels over the Kafka protocol: a DescribeConfigs on the
// TOPIC resource naming brokkr.status.* keys answers read-only JSON
// entries, each broker for the partitions it hosts (docs/protocol.md). The
// CLI asks every broker and merges.

// adminClient is admin plus the underlying client, for requests sent to
// one broker at a time.
func (o *clientOpts) adminClient(ctx context.Context) (*kadm.Client, *kgo.Client, func(), error) {
	cl, err := o.connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(min(o.timeout.Milliseconds(), 1<<31-1)))
	return adm, cl, cl.Close, nil
}

// adminRequest is admin for one command: the context it returns bounds the
// command's requests by --timeout, and done ends it and closes the client.
func (o *clientOpts) adminRequest(parent context.Context) (context.Context, *kadm.Client, func(), error) {
	adm, done, err := o.admin(parent)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := o.requestCtx(parent)
	return ctx, adm, func() { cancel(); done() }, nil
}

// fetchStatus asks each broker for the named brokkr.status.* entries of
// topic and returns every value received, by name. A broker that fails is
// reported in the error; the others' answers are still returned.
func fetchStatus(ctx context.Context, cl *kgo.Client, brokers []int32, topic string, names ...string) (map[string][]string, error) {
	out := map[string][]string{}
	var errs []string
	for _, id := range brokers {
		req := kmsg.NewPtrDescribeConfigsRequest()
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName, r.ConfigNames = kmsg.ConfigResourceTypeTopic, topic, names
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, cl.Broker(int(id)))
		if err != nil {
			errs = append(errs, fmt.Sprintf("broker %d: %s", id, oneLine(err.Error())))
			continue
		}
		for _, res := range resp.Resources {
			if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
				msg := ""
				if res.ErrorMessage != nil {
					msg = *res.ErrorMessage
				}
				errs = append(errs, fmt.Sprintf("broker %d: %s", id, describeErr(err, msg)))
				continue
			}
			for _, c := range res.Configs {
				if c.Value != nil && strings.HasPrefix(c.Name, "brokkr.status.") {
					out[c.Name] = append(out[c.Name], *c.Value)
				}
			}
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("status: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

func brokerIDs(md kadm.Metadata) []int32 {
	var ids []int32
	for _, b := range md.Brokers {
		ids = append(ids, b.NodeID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// topicStatus is a topic's merged policy status.
type topicStatus struct {
	Policy     *broker.TopicPolicyStatus
	Partitions map[int32]broker.PartitionStatus
}

func fetchTopicStatus(ctx context.Context, cl *kgo.Client, brokers []int32, topic string) (topicStatus, error) {
	vals, err := fetchStatus(ctx, cl, brokers, topic, "brokkr.status.policy", "brokkr.status.partitions")
	ts := topicStatus{Partitions: map[int32]broker.PartitionStatus{}}
	for _, v := range vals["brokkr.status.policy"] {
		var p broker.TopicPolicyStatus
		if json.Unmarshal([]byte(v), &p) == nil && ts.Policy == nil {
			ts.Policy = &p
		}
	}
	for _, v := range vals["brokkr.status.partitions"] {
		var ps []broker.PartitionStatus
		if json.Unmarshal([]byte(v), &ps) == nil {
			for _, p := range ps {
				ts.Partitions[p.Partition] = p
			}
		}
	}
	return ts, err
}

// printPolicyStatus prints the policies section of `topic describe`.
func printPolicyStatus(w io.Writer, t describedTopic) error {
	if t.Policy == nil {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	row(tw, "CLEANUP POLICY", t.Policy.CleanupPolicy)
	row(tw, "RETENTION POLICY", t.Policy.Retention)
	row(tw, "COMPACTION POLICY", t.Policy.Compaction)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "PARTITION", "RETENTION", "LAST RETENTION", "RETENTION FAULT", "DIRTY BYTES", "DIRTY RATIO", "LAST CLEAN", "CLEAN ERROR")
	for _, p := range t.Partitions {
		st := p.Status
		if st == nil {
			row(tw, p.Partition, "-", "-", "-", "-", "-", "-", "(status not available)")
			continue
		}
		ret, lastRet, fault := "-", "-", "-"
		if r := st.Retention; r != nil {
			ret = r.Policy
			if r.LastDeleteMs > 0 {
				lastRet = fmt.Sprintf("%s: %d segments deleted", ago(r.LastDeleteMs), r.LastDeleted)
			} else if r.LastCheckMs > 0 {
				lastRet = ago(r.LastCheckMs) + ": nothing deleted"
			}
			if r.Fault != "" {
				fault = fmt.Sprintf("%s (%s, %d faults)", r.Fault, ago(r.FaultMs), r.Faults)
			}
		}
		dirty, ratio, last, cerr := "-", "-", "-", "-"
		if c := st.Cleaner; c != nil {
			dirty, ratio = fmt.Sprint(c.DirtyBytes), fmt.Sprintf("%.2f", c.DirtyRatio)
			if c.LastCleanMs > 0 {
				last = fmt.Sprintf("%s (%s): %s", c.Policy, ago(c.LastCleanMs), c.LastCleanResult)
			} else {
				last = c.Policy + ": never"
			}
			if c.LastError != "" {
				cerr = fmt.Sprintf("%s (%s", c.LastError, ago(c.LastErrorMs))
				if c.ConsecutiveFailures > 0 {
					cerr += fmt.Sprintf(", %d in a row, retry %s", c.ConsecutiveFailures, until(c.NextAttemptMs))
				} else {
					cerr += ", since recovered"
				}
				cerr += ")"
			}
		}
		row(tw, p.Partition, ret, lastRet, fault, dirty, ratio, last, cerr)
	}
	return tw.Flush()
}

func ago(ms int64) string {
	if ms <= 0 {
		return "never"
	}
	d := time.Since(time.UnixMilli(ms)).Round(time.Second)
	return time.UnixMilli(ms).UTC().Format(time.RFC3339) + ", " + d.String() + " ago"
}

func until(ms int64) string {
	d := time.Until(time.UnixMilli(ms)).Round(100 * time.Millisecond)
	if d <= 0 {
		return "now"
	}
	return "in " + d.String()
}

func newRetentionCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:   "retention",
		Short: "Inspect retention policies (dry runs)",
		Args:  cobra.ArbitraryArgs,
		RunE:  nounRun,
	}
	c.AddCommand(newRetentionPlanCmd(o))
	return c
}

func newRetentionPlanCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "plan TOPIC",
		Short: "Print what the topic's retention policy would delete now, and why; deletes nothing",
		Long: `Asks each broker to run the topic's current retention policy as a dry
run (the same checked decision the retention loop applies) and prints, per
partition, the segments that would be deleted (base and last offset, size,
largest timestamp), the new log start offset and the policy's reason, or
why nothing may be deleted (a policy fault or refused answer). Nothing is
deleted.`,
		Example: `  brokkr retention plan orders
  brokkr retention plan orders --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			adm, cl, done, err := o.adminClient(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := o.requestCtx(cmd.Context())
			defer cancel()
			md, err := adm.Metadata(ctx, topic)
			if err != nil {
				return o.requestErr("metadata", err)
			}
			td, ok := md.Topics[topic]
			if !ok {
				return fmt.Errorf("topic %q: %s", topic, describeErr(kerr.UnknownTopicOrPartition, ""))
			}
			if td.Err != nil {
				return fmt.Errorf("topic %q: %s", topic, describeErr(td.Err, ""))
			}
			vals, ferr := fetchStatus(ctx, cl, brokerIDs(md), topic, "brokkr.status.retention.plan")
			plans := map[int32]broker.RetentionPlan{}
			for _, v := range vals["brokkr.status.retention.plan"] {
				var ps []broker.RetentionPlan
				if err := json.Unmarshal([]byte(v), &ps); err != nil {
					return fmt.Errorf("retention plan: the broker answered something that is not a plan: %v", err)
				}
				for _, p := range ps {
					plans[p.Partition] = p
				}
			}
			var out []broker.RetentionPlan
			var missing []string
			for _, p := range td.Partitions.Sorted() {
				pl, ok := plans[p.Partition]
				if !ok {
					missing = append(missing, fmt.Sprint(p.Partition))
					continue
				}
				out = append(out, pl)
			}
			if o.json {
				if out == nil {
					out = []broker.RetentionPlan{}
				}
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else if err := printPlans(cmd.OutOrStdout(), topic, out); err != nil {
				return err
			}
			if len(missing) > 0 {
				msg := "no plan for partition(s) " + strings.Join(missing, ",") + " (their broker did not answer with one)"
				if ferr != nil {
					msg += ": " + ferr.Error()
				}
				return fmt.Errorf("%s", msg)
			}
			return nil
		},
	}
}

func printPlans(w io.Writer, topic string, plans []broker.RetentionPlan) error {
	for i, p := range plans {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s-%d: policy %s (cleanup.policy=%s), %d segments, log start %d, high watermark %d", topic, p.Partition, p.Policy, p.CleanupPolicy, p.Segments, p.LogStartOffset, p.HighWatermark)
		if p.MinCommittedOffset >= 0 {
			fmt.Fprintf(w, ", min committed %d", p.MinCommittedOffset)
		}
		fmt.Fprintln(w)
		switch {
		case p.Refused != "":
			fmt.Fprintf(w, "  nothing would be deleted: REFUSED: %s\n", p.Refused)
			continue
		case len(p.Delete) == 0:
			fmt.Fprintf(w, "  nothing would be deleted: %s\n", dash(p.Reason))
			continue
		}
		var bytes int64
		for _, s := range p.Delete {
			bytes += s.SizeBytes
		}
		fmt.Fprintf(w, "  would delete %d segments (%d bytes); new log start offset %d\n", len(p.Delete), bytes, p.NewLogStartOffset)
		fmt.Fprintf(w, "  reason: %s\n", dash(p.Reason))
		tw := newTable(w)
		row(tw, "  BASE", "LAST", "SIZE", "MAX TIMESTAMP")
		for _, s := range p.Delete {
			ts := "-"
			if s.MaxTimestampMs >= 0 {
				ts = time.UnixMilli(s.MaxTimestampMs).UTC().Format(time.RFC3339Nano)
			}
			row(tw, fmt.Sprintf("  %d", s.BaseOffset), s.LastOffset, s.SizeBytes, ts)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
