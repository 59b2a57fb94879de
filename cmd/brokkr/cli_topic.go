package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/brokkr/brokkr/core/broker"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newTopicCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter and delete topics",
		Args:  cobra.ArbitraryArgs,
		RunE:  nounRun,
	}
	c.AddCommand(
		newTopicCreateCmd(o),
		newTopicListCmd(o),
		newTopicDescribeCmd(o),
		newTopicDeleteCmd(o),
		newTopicAlterConfigCmd(o),
		newTopicAddPartitionsCmd(o),
	)
	return c
}

// errNotMentioned fails a topic the broker's answer left out.
var errNotMentioned = errors.New("the broker's answer did not mention this topic")

// topicResult is one row of a multi-topic command's answer.
type topicResult struct {
	Topic      string `json:"topic"`
	ID         string `json:"id,omitempty"`
	Partitions int32  `json:"partitions,omitempty"`
	Replicas   int16  `json:"replicas,omitempty"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
}

// topicResults makes one row per topic, in order: each fills in the row of
// a topic that succeeded, or returns the error (and the broker's message)
// that failed it, which marks the row failed and joins the summary error.
func topicResults(topics []string, each func(res *topicResult) (brokerMsg string, err error)) ([]topicResult, *itemErrors) {
	fails := &itemErrors{kind: "topic", total: len(topics)}
	var rs []topicResult
	for _, t := range topics {
		res := topicResult{Topic: t}
		if msg, err := each(&res); err != nil {
			fails.fail(&res, err, msg)
		}
		rs = append(rs, res)
	}
	return rs, fails
}

// reportTopicResults prints per-topic rows (withCounts adds the ID,
// partition and replica columns), then returns the failures' summary error.
func reportTopicResults(cmd *cobra.Command, o *clientOpts, rs []topicResult, fails *itemErrors, withCounts bool) error {
	if err := printTopicResults(cmd, o, rs, withCounts); err != nil {
		return err
	}
	return fails.err()
}

func printTopicResults(cmd *cobra.Command, o *clientOpts, rs []topicResult, withCounts bool) error {
	if o.json {
		return writeJSON(cmd.OutOrStdout(), rs)
	}
	tw := newTable(cmd.OutOrStdout())
	if withCounts {
		row(tw, "TOPIC", "ID", "PARTITIONS", "REPLICAS", "STATUS")
	} else {
		row(tw, "TOPIC", "STATUS")
	}
	for _, r := range rs {
		status := r.Status
		if r.Error != "" {
			status = r.Error
		}
		if withCounts {
			p, rf := "-", "-"
			if r.Partitions > 0 {
				p = fmt.Sprint(r.Partitions)
			}
			if r.Replicas > 0 {
				rf = fmt.Sprint(r.Replicas)
			}
			row(tw, r.Topic, dash(r.ID), p, rf, status)
		} else {
			row(tw, r.Topic, status)
		}
	}
	return tw.Flush()
}

func newTopicCreateCmd(o *clientOpts) *cobra.Command {
	var (
		partitions  int32
		replicas    int16
		configs     []string
		dryRun      bool
		ifNotExists bool
	)
	c := &cobra.Command{
		Use:   "create NAME...",
		Short: "Create topics",
		Example: `  brokkr topic create orders -p 6 -r 3 -c cleanup.policy=compact -c retention.ms=86400000
  brokkr topic create a b c --if-not-exists
  brokkr topic create orders -p 6 --dry-run`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if err := uniqueNames("topic", topics); err != nil {
				return err
			}
			if partitions == 0 || partitions < -1 {
				return fmt.Errorf("--partitions: must be positive (or -1 for the broker default), got %d", partitions)
			}
			if replicas == 0 || replicas < -1 {
				return fmt.Errorf("--replicas: must be positive (or -1 for the broker default), got %d", replicas)
			}
			keys, kv, err := parseKV("--config", configs)
			if err != nil {
				return err
			}
			cfg := make(map[string]*string, len(keys))
			for _, k := range keys {
				cfg[k] = kadm.StringPtr(kv[k])
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var resp kadm.CreateTopicResponses
			if dryRun {
				resp, err = adm.ValidateCreateTopics(ctx, partitions, replicas, cfg, topics...)
			} else {
				resp, err = adm.CreateTopics(ctx, partitions, replicas, cfg, topics...)
			}
			if err != nil {
				return o.requestErr("create topics", err)
			}
			rs, fails := topicResults(topics, func(res *topicResult) (string, error) {
				r, ok := resp[res.Topic]
				switch {
				case !ok:
					return "", errNotMentioned
				case r.Err == nil:
					res.ID, res.Partitions, res.Replicas = topicIDString(r.ID), r.NumPartitions, r.ReplicationFactor
					res.Status = "created"
					if dryRun {
						res.Status = "valid (dry run, nothing created)"
					}
				case ifNotExists && errors.Is(r.Err, kerr.TopicAlreadyExists):
					res.Status = "exists (skipped)"
				default:
					return r.ErrMessage, r.Err
				}
				return "", nil
			})
			return reportTopicResults(cmd, o, rs, fails, true)
		},
	}
	f := c.Flags()
	f.Int32VarP(&partitions, "partitions", "p", -1, "number of partitions (-1: the broker's num.partitions)")
	f.Int16VarP(&replicas, "replicas", "r", -1, "replication factor (-1: the broker's default.replication.factor)")
	f.StringArrayVarP(&configs, "config", "c", nil, "topic config key=value (repeatable)")
	f.BoolVar(&dryRun, "dry-run", false, "only validate the request; create nothing")
	f.BoolVar(&ifNotExists, "if-not-exists", false, "succeed when a topic already exists")
	// kafka-topics.sh spells it --replication-factor.
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "replication-factor" {
			name = "replicas"
		}
		return pflag.NormalizedName(name)
	})
	return c
}

// listedTopic is one topic in `topic list --json`.
type listedTopic struct {
	Name       string `json:"name"`
	ID         string `json:"id,omitempty"`
	Partitions int    `json:"partitions"`
	Replicas   int    `json:"replicas"`
	Internal   bool   `json:"internal"`
	Error      string `json:"error,omitempty"`
}

func newTopicListCmd(o *clientOpts) *cobra.Command {
	var internal bool
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List topics",
		Example: `  brokkr topic list
  brokkr topic list --internal --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var tds kadm.TopicDetails
			if internal {
				tds, err = adm.ListTopicsWithInternal(ctx)
			} else {
				tds, err = adm.ListTopics(ctx)
			}
			if err != nil {
				return o.requestErr("list topics", err)
			}
			ls := []listedTopic{}
			anyErr := false
			for _, td := range tds.Sorted() {
				lt := listedTopic{
					Name:       td.Topic,
					ID:         topicIDString(td.ID),
					Partitions: len(td.Partitions),
					Replicas:   td.Partitions.NumReplicas(),
					Internal:   td.IsInternal,
				}
				if td.Err != nil {
					lt.Error = describeErr(td.Err, "")
					anyErr = true
				}
				ls = append(ls, lt)
			}
			if o.json {
				return writeJSON(cmd.OutOrStdout(), ls)
			}
			tw := newTable(cmd.OutOrStdout())
			hdr := []any{"NAME", "ID", "PARTITIONS", "REPLICAS"}
			if internal {
				hdr = append(hdr, "INTERNAL")
			}
			if anyErr {
				hdr = append(hdr, "ERROR")
			}
			row(tw, hdr...)
			for _, lt := range ls {
				cols := []any{lt.Name, dash(lt.ID), lt.Partitions, lt.Replicas}
				if internal {
					cols = append(cols, lt.Internal)
				}
				if anyErr {
					cols = append(cols, dash(lt.Error))
				}
				row(tw, cols...)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVarP(&internal, "internal", "i", false, "include internal topics (__consumer_offsets, ...)")
	return c
}

// describedPartition is one partition in `topic describe --json`.
type describedPartition struct {
	Partition       int32   `json:"partition"`
	Leader          int32   `json:"leader"`
	LeaderEpoch     int32   `json:"leader_epoch"`
	Replicas        []int32 `json:"replicas"`
	ISR             []int32 `json:"isr"`
	OfflineReplicas []int32 `json:"offline_replicas"`
	StartOffset     int64   `json:"start_offset"`
	EndOffset       int64   `json:"end_offset"`
	Error           string  `json:"error,omitempty"`
	// Status is the partition's retention and cleaner state (policy,
	// faults, dirty bytes, last cleaning) from its broker.
	Status *broker.PartitionStatus `json:"status,omitempty"`
}

// describedConfig is one config entry in `topic describe -c --json`.
type describedConfig struct {
	Key       string  `json:"key"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive,omitempty"`
}

// describedTopic is one topic in `topic describe --json`.
type describedTopic struct {
	Name       string               `json:"name"`
	ID         string               `json:"id,omitempty"`
	Internal   bool                 `json:"internal"`
	Partitions []describedPartition `json:"partitions"`
	Configs    []describedConfig    `json:"configs,omitempty"`
	// Policy names the topic's cleanup.policy and retention and compaction
	// policies; absent when the brokers do not report policy status.
	Policy *broker.TopicPolicyStatus `json:"policy,omitempty"`
}

func newTopicDescribeCmd(o *clientOpts) *cobra.Command {
	var withConfigs bool
	c := &cobra.Command{
		Use:   "describe NAME...",
		Short: "Show partitions (leader, replicas, ISR, offsets) and optionally configs",
		Example: `  brokkr topic describe orders
  brokkr topic describe orders -c
  brokkr topic describe orders --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if err := uniqueNames("topic", topics); err != nil {
				return err
			}
			adm, cl, done, err := o.adminClient(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := o.requestCtx(cmd.Context())
			defer cancel()
			md, err := adm.Metadata(ctx, topics...)
			if err != nil {
				return o.requestErr("metadata", err)
			}
			fails := &itemErrors{kind: "topic", total: len(topics)}
			var found []string
			for _, t := range topics {
				td, ok := md.Topics[t]
				switch {
				case !ok:
					fails.add(t, kerr.UnknownTopicOrPartition, "")
				case td.Err != nil:
					fails.add(t, td.Err, "")
				default:
					found = append(found, t)
				}
			}
			var out []describedTopic
			if len(found) > 0 {
				starts, err := adm.ListStartOffsets(ctx, found...)
				if err != nil {
					return o.requestErr("list start offsets", err)
				}
				ends, err := adm.ListEndOffsets(ctx, found...)
				if err != nil {
					return o.requestErr("list end offsets", err)
				}
				var cfgs kadm.ResourceConfigs
				if withConfigs {
					if cfgs, err = adm.DescribeTopicConfigs(ctx, found...); err != nil {
						return o.requestErr("describe configs", err)
					}
				}
				for _, t := range found {
					td := md.Topics[t]
					dt := describedTopic{Name: t, ID: topicIDString(td.ID), Internal: td.IsInternal, Partitions: []describedPartition{}}
					// Policy status is best effort: a broker without it
					// (or down) leaves the fields out.
					ts, _ := fetchTopicStatus(ctx, cl, brokerIDs(md), t)
					dt.Policy = ts.Policy
					for _, p := range td.Partitions.Sorted() {
						dp := describedPartition{
							Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
							Replicas: nonNil(p.Replicas), ISR: nonNil(p.ISR), OfflineReplicas: nonNil(p.OfflineReplicas),
							StartOffset: -1, EndOffset: -1,
						}
						var errs []string
						if p.Err != nil {
							errs = append(errs, describeErr(p.Err, ""))
						}
						if lo, ok := starts.Lookup(t, p.Partition); ok {
							if lo.Err != nil {
								errs = append(errs, "start offset: "+describeErr(lo.Err, ""))
							} else {
								dp.StartOffset = lo.Offset
							}
						}
						if lo, ok := ends.Lookup(t, p.Partition); ok {
							if lo.Err != nil {
								errs = append(errs, "end offset: "+describeErr(lo.Err, ""))
							} else {
								dp.EndOffset = lo.Offset
							}
						}
						if len(errs) > 0 {
							dp.Error = fmt.Sprint(errs)
						}
						if st, ok := ts.Partitions[p.Partition]; ok {
							dp.Status = &st
						}
						dt.Partitions = append(dt.Partitions, dp)
					}
					if withConfigs {
						rc, err := cfgs.On(t, nil)
						if err == nil && rc.Err != nil {
							err = rc.Err
						}
						if err != nil {
							fails.add(t, err, rc.ErrMessage)
						} else {
							dt.Configs = []describedConfig{}
							for _, c := range rc.Configs {
								dt.Configs = append(dt.Configs, describedConfig{Key: c.Key, Value: c.Value, Source: c.Source.String(), Sensitive: c.Sensitive})
							}
							sort.Slice(dt.Configs, func(i, j int) bool { return dt.Configs[i].Key < dt.Configs[j].Key })
						}
					}
					out = append(out, dt)
				}
			}
			if o.json {
				if out == nil {
					out = []describedTopic{}
				}
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else if err := printDescribed(cmd, out, withConfigs); err != nil {
				return err
			}
			return fails.err()
		},
	}
	c.Flags().BoolVarP(&withConfigs, "configs", "c", false, "also print the topic's configs with their sources")
	return c
}

func nonNil(xs []int32) []int32 {
	if xs == nil {
		return []int32{}
	}
	return xs
}

func printDescribed(cmd *cobra.Command, ts []describedTopic, withConfigs bool) error {
	w := cmd.OutOrStdout()
	for i, t := range ts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := newTable(w)
		row(tw, "NAME", t.Name)
		row(tw, "ID", dash(t.ID))
		row(tw, "INTERNAL", t.Internal)
		row(tw, "PARTITIONS", len(t.Partitions))
		if len(t.Partitions) > 0 {
			row(tw, "REPLICAS", len(t.Partitions[0].Replicas))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		anyErr := false
		for _, p := range t.Partitions {
			anyErr = anyErr || p.Error != ""
		}
		tw = newTable(w)
		hdr := []any{"PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE", "START", "END"}
		if anyErr {
			hdr = append(hdr, "ERROR")
		}
		row(tw, hdr...)
		for _, p := range t.Partitions {
			cols := []any{p.Partition, p.Leader, p.LeaderEpoch, int32List(p.Replicas), int32List(p.ISR), int32List(p.OfflineReplicas), p.StartOffset, p.EndOffset}
			if anyErr {
				cols = append(cols, dash(p.Error))
			}
			row(tw, cols...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if err := printPolicyStatus(w, t); err != nil {
			return err
		}
		if withConfigs && t.Configs != nil {
			fmt.Fprintln(w)
			tw = newTable(w)
			row(tw, "KEY", "VALUE", "SOURCE")
			for _, c := range t.Configs {
				v := "-"
				switch {
				case c.Sensitive:
					v = "(sensitive)"
				case c.Value != nil:
					v = *c.Value
				}
				row(tw, c.Key, v, c.Source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func newTopicDeleteCmd(o *clientOpts) *cobra.Command {
	var ifExists bool
	c := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete topics and their data",
		Example: `  brokkr topic delete orders
  brokkr topic delete a b c --if-exists`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if err := uniqueNames("topic", topics); err != nil {
				return err
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.DeleteTopics(ctx, topics...)
			if err != nil {
				return o.requestErr("delete topics", err)
			}
			rs, fails := topicResults(topics, func(res *topicResult) (string, error) {
				r, ok := resp[res.Topic]
				switch {
				case !ok:
					return "", errNotMentioned
				case r.Err == nil:
					res.Status = "deleted"
				case ifExists && errors.Is(r.Err, kerr.UnknownTopicOrPartition):
					res.Status = "does not exist (skipped)"
				default:
					return r.ErrMessage, r.Err
				}
				return "", nil
			})
			return reportTopicResults(cmd, o, rs, fails, false)
		},
	}
	c.Flags().BoolVar(&ifExists, "if-exists", false, "succeed when a topic does not exist")
	return c
}

func newTopicAlterConfigCmd(o *clientOpts) *cobra.Command {
	var (
		sets    []string
		deletes []string
		dryRun  bool
	)
	c := &cobra.Command{
		Use:   "alter-config NAME... --set k=v... --delete k...",
		Short: "Set or delete topic configs (IncrementalAlterConfigs)",
		Example: `  brokkr topic alter-config orders --set retention.ms=3600000 --set cleanup.policy=compact
  brokkr topic alter-config orders --delete retention.ms`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if err := uniqueNames("topic", topics); err != nil {
				return err
			}
			if len(sets) == 0 && len(deletes) == 0 {
				return errors.New("nothing to change: give --set key=value or --delete key")
			}
			keys, kv, err := parseKV("--set", sets)
			if err != nil {
				return err
			}
			var alters []kadm.AlterConfig
			for _, k := range keys {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(kv[k])})
			}
			seenDel := map[string]bool{}
			for _, k := range deletes {
				if k == "" {
					return errors.New("--delete: empty key")
				}
				if _, ok := kv[k]; ok {
					return fmt.Errorf("config %q is both set and deleted", k)
				}
				if seenDel[k] {
					return fmt.Errorf("--delete: key %q given twice", k)
				}
				seenDel[k] = true
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var resp kadm.AlterConfigsResponses
			if dryRun {
				resp, err = adm.ValidateAlterTopicConfigs(ctx, alters, topics...)
			} else {
				resp, err = adm.AlterTopicConfigs(ctx, alters, topics...)
			}
			if err != nil {
				return o.requestErr("alter configs", err)
			}
			rs, fails := topicResults(topics, func(res *topicResult) (string, error) {
				r, err := resp.On(res.Topic, nil)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					return r.ErrMessage, err
				}
				res.Status = "altered"
				if dryRun {
					res.Status = "valid (dry run, nothing changed)"
				}
				return "", nil
			})
			return reportTopicResults(cmd, o, rs, fails, false)
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&sets, "set", "s", nil, "set config key=value (repeatable)")
	f.StringArrayVarP(&deletes, "delete", "d", nil, "delete a config override so the default applies (repeatable)")
	f.BoolVar(&dryRun, "dry-run", false, "only validate the change")
	return c
}

func newTopicAddPartitionsCmd(o *clientOpts) *cobra.Command {
	var (
		num    int
		dryRun bool
	)
	c := &cobra.Command{
		Use:     "add-partitions NAME... --num N",
		Short:   "Add N partitions to topics",
		Example: `  brokkr topic add-partitions orders --num 3`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if err := uniqueNames("topic", topics); err != nil {
				return err
			}
			if num <= 0 {
				return fmt.Errorf("--num: must be a positive number of partitions to add, got %d", num)
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var resp kadm.CreatePartitionsResponses
			if dryRun {
				resp, err = adm.ValidateCreatePartitions(ctx, num, topics...)
			} else {
				resp, err = adm.CreatePartitions(ctx, num, topics...)
			}
			if err != nil {
				return o.requestErr("create partitions", err)
			}
			var ok []string
			rs, fails := topicResults(topics, func(res *topicResult) (string, error) {
				r, err := resp.On(res.Topic, nil)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					return r.ErrMessage, err
				}
				res.Status = fmt.Sprintf("added %d", num)
				if dryRun {
					res.Status = fmt.Sprintf("valid to add %d (dry run)", num)
				}
				ok = append(ok, res.Topic)
				return "", nil
			})
			// Report the partition counts the broker now has.
			if len(ok) > 0 {
				if md, err := adm.Metadata(ctx, ok...); err == nil {
					for i := range rs {
						if td, found := md.Topics[rs[i].Topic]; found && rs[i].Error == "" && td.Err == nil {
							rs[i].ID = topicIDString(td.ID)
							rs[i].Partitions = int32(len(td.Partitions))
							rs[i].Replicas = int16(td.Partitions.NumReplicas())
						}
					}
				}
			}
			return reportTopicResults(cmd, o, rs, fails, true)
		},
	}
	f := c.Flags()
	f.IntVarP(&num, "num", "n", 0, "number of partitions to add")
	f.BoolVar(&dryRun, "dry-run", false, "only validate the request")
	_ = c.MarkFlagRequired("num")
	return c
}
