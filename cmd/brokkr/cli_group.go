package main

// brokkr group: list, describe, delete and seek consumer groups, in the
// manner of Kafka's kafka-consumer-groups.sh (--list, --describe, --delete,
// --reset-offsets). Everything goes through the Kafka protocol with kadm:
// ListGroups, DescribeGroups, OffsetFetch, ListOffsets, DeleteGroups and
// OffsetCommit (generation -1, empty member id: the "simple" commit Kafka's
// reset tool uses, which the coordinator accepts only for a group without
// members).

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newGroupCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:   "group",
		Short: "List, describe, delete consumer groups and seek their committed offsets",
		Args:  cobra.ArbitraryArgs,
		RunE:  nounRun,
	}
	c.AddCommand(
		newGroupListCmd(o),
		newGroupDescribeCmd(o),
		newGroupDeleteCmd(o),
		newGroupSeekCmd(o),
	)
	return c
}

// coordNotReady reports the retriable answers of a group coordinator that
// is not ready yet: no leader for its __consumer_offsets partition yet,
// still loading it, or moving.
func coordNotReady(err error) bool {
	return errors.Is(err, kerr.CoordinatorNotAvailable) || errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.NotCoordinator)
}

// coordRetry runs f again every 100 ms while it fails because the group
// coordinator is not ready (right after a broker starts), as Kafka's admin
// client does, until ctx (bounded by --timeout) ends.
func coordRetry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !coordNotReady(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describeGroups is DescribeGroups, retried while a coordinator is not
// ready.
func describeGroups(ctx context.Context, adm *kadm.Client, groups ...string) (kadm.DescribedGroups, error) {
	var ds kadm.DescribedGroups
	err := coordRetry(ctx, func() error {
		var err error
		if ds, err = adm.DescribeGroups(ctx, groups...); err != nil {
			return err
		}
		for _, d := range ds {
			if coordNotReady(d.Err) {
				return d.Err
			}
		}
		return nil
	})
	return ds, err
}

// fetchOffsets is OffsetFetch, retried while the coordinator is not ready.
func fetchOffsets(ctx context.Context, adm *kadm.Client, group string) (kadm.OffsetResponses, error) {
	var os kadm.OffsetResponses
	err := coordRetry(ctx, func() error {
		var err error
		os, err = adm.FetchOffsets(ctx, group)
		return err
	})
	return os, err
}

// groupStates are the classic group states, as ListGroups and
// DescribeGroups name them.
var groupStates = []string{"Empty", "Stable", "PreparingRebalance", "CompletingRebalance", "Dead"}

// canonicalState maps a --state value (any case, as Kafka's tool accepts it)
// to the state's proper name.
func canonicalState(s string) (string, error) {
	for _, st := range groupStates {
		if strings.EqualFold(s, st) {
			return st, nil
		}
	}
	return "", fmt.Errorf("--state: unknown group state %q (want one of %s)", s, strings.Join(groupStates, ", "))
}

// listedGroup is one row of `group list`.
type listedGroup struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

func newGroupListCmd(o *clientOpts) *cobra.Command {
	var states []string
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List consumer groups with their state and protocol type",
		Example: `  brokkr group list
  brokkr group list --state Empty --state Stable`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want := map[string]bool{}
			var filter []string
			for _, s := range states {
				for _, p := range splitList(s) {
					st, err := canonicalState(p)
					if err != nil {
						return err
					}
					if !want[st] {
						want[st] = true
						filter = append(filter, st)
					}
				}
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var listed kadm.ListedGroups
			err = coordRetry(ctx, func() error {
				var err error
				listed, err = adm.ListGroups(ctx, filter...)
				return err
			})
			if err != nil {
				return o.requestErr("list groups", err)
			}
			// ListGroups before v4 carries no state: ask DescribeGroups.
			var stateless []string
			for g, l := range listed {
				if l.State == "" {
					stateless = append(stateless, g)
				}
			}
			if len(stateless) > 0 {
				if ds, err := describeGroups(ctx, adm, stateless...); err == nil {
					for g, d := range ds {
						if l, ok := listed[g]; ok && d.Err == nil {
							l.State = d.State
							listed[g] = l
						}
					}
				}
			}
			out := []listedGroup{}
			for _, l := range listed.Sorted() {
				if len(want) > 0 && !want[l.State] {
					continue
				}
				out = append(out, listedGroup{Group: l.Group, State: l.State, ProtocolType: l.ProtocolType, Coordinator: l.Coordinator})
			}
			if o.json {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := newTable(cmd.OutOrStdout())
			row(tw, "GROUP", "STATE", "PROTOCOL-TYPE")
			for _, l := range out {
				row(tw, l.Group, dash(l.State), dash(l.ProtocolType))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringArrayVar(&states, "state", nil, "only groups in this state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead (repeatable, or comma-separated)")
	return c
}

// topicPartitions is one topic's partitions in an assignment.
type topicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// describedMember is one member in `group describe --json`.
type describedMember struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	// Assignment is the decoded consumer assignment; nil when the
	// protocol type is not "consumer" (then AssignmentBytes says how big
	// the opaque assignment is).
	Assignment      []topicPartitions `json:"assignment"`
	AssignmentBytes int               `json:"assignment_bytes,omitempty"`
}

// groupOffset is one partition row of `group describe`: the committed
// offset, the log end offset and their difference, as
// kafka-consumer-groups --describe prints them.
type groupOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is -1 when the group has committed nothing here.
	Committed int64 `json:"committed"`
	LogEnd    int64 `json:"log_end"`
	// Lag is LogEnd-Committed, or -1 when either is unknown.
	Lag      int64  `json:"lag"`
	MemberID string `json:"member_id,omitempty"`
	Host     string `json:"host,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// describedGroup is one group in `group describe --json`.
type describedGroup struct {
	Group        string            `json:"group"`
	State        string            `json:"state"`
	ProtocolType string            `json:"protocol_type"`
	Protocol     string            `json:"protocol"`
	Coordinator  int32             `json:"coordinator"`
	Members      []describedMember `json:"members"`
	Offsets      []groupOffset     `json:"offsets"`
}

// groupMissing reports whether DescribeGroups says the group does not
// exist: GROUP_ID_NOT_FOUND (newer brokers) or state Dead with no members
// (the classic coordinator's answer for an unknown group).
func groupMissing(d kadm.DescribedGroup) bool {
	return errors.Is(d.Err, kerr.GroupIDNotFound) || (d.Err == nil && d.State == "Dead" && len(d.Members) == 0)
}

// memberAssignment decodes a member's assignment when the group's protocol
// type is "consumer".
func memberAssignment(m kadm.DescribedGroupMember) ([]topicPartitions, int, bool) {
	if a, ok := m.Assigned.AsConsumer(); ok && a != nil {
		out := []topicPartitions{}
		for _, t := range a.Topics {
			ps := append([]int32(nil), t.Partitions...)
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			out = append(out, topicPartitions{Topic: t.Topic, Partitions: ps})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
		return out, 0, true
	}
	if b, ok := m.Assigned.Raw(); ok {
		return nil, len(b), false
	}
	return nil, 0, false
}

func newGroupDescribeCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Show a group's state, members and assignments, and per partition the committed offset, log end offset and lag",
		Example: `  brokkr group describe orders-app
  brokkr group describe orders-app billing --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			if err := uniqueNames("group", groups); err != nil {
				return err
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ds, err := describeGroups(ctx, adm, groups...)
			if err != nil {
				return o.requestErr("describe groups", err)
			}
			fails := &itemErrors{kind: "group", total: len(groups)}
			out := []describedGroup{}
			for _, g := range groups {
				d, ok := ds[g]
				switch {
				case !ok:
					fails.add(g, errors.New("the broker's answer did not mention this group"), "")
					continue
				case groupMissing(d):
					fails.errs = append(fails.errs, fmt.Sprintf("group %q does not exist", g))
					continue
				case d.Err != nil:
					fails.add(g, d.Err, d.ErrMessage)
					continue
				}
				dg, err := describeOne(ctx, adm, d)
				if err != nil {
					fails.errs = append(fails.errs, fmt.Sprintf("group %q: %s", g, oneLine(o.requestErr("offsets", err).Error())))
				}
				out = append(out, dg)
			}
			if o.json {
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else if err := printGroups(cmd, out); err != nil {
				return err
			}
			return fails.err()
		},
	}
	return c
}

// describeOne adds the members' assignments and the partition offsets to a
// described group. It returns what it has even when the offsets could not
// be fetched.
func describeOne(ctx context.Context, adm *kadm.Client, d kadm.DescribedGroup) (describedGroup, error) {
	dg := describedGroup{
		Group: d.Group, State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol,
		Coordinator: d.Coordinator.NodeID, Members: []describedMember{}, Offsets: []groupOffset{},
	}
	type tp struct {
		t string
		p int32
	}
	owner := map[tp]*describedMember{}
	for _, m := range d.Members {
		dm := describedMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
		if m.InstanceID != nil {
			dm.InstanceID = *m.InstanceID
		}
		dm.Assignment, dm.AssignmentBytes, _ = memberAssignment(m)
		dg.Members = append(dg.Members, dm)
	}
	for i := range dg.Members {
		for _, a := range dg.Members[i].Assignment {
			for _, p := range a.Partitions {
				owner[tp{a.Topic, p}] = &dg.Members[i]
			}
		}
	}
	committed, err := fetchOffsets(ctx, adm, d.Group)
	if err != nil {
		return dg, err
	}
	rows := map[tp]*groupOffset{}
	add := func(t string, p int32) *groupOffset {
		k := tp{t, p}
		if r, ok := rows[k]; ok {
			return r
		}
		r := &groupOffset{Topic: t, Partition: p, Committed: -1, LogEnd: -1, Lag: -1}
		if m := owner[k]; m != nil {
			r.MemberID, r.Host, r.ClientID = m.MemberID, m.Host, m.ClientID
		}
		rows[k] = r
		return r
	}
	for k := range owner {
		add(k.t, k.p)
	}
	for t, ps := range committed {
		for p, or := range ps {
			r := add(t, p)
			if or.Err != nil {
				r.Error = describeErr(or.Err, "")
			} else {
				r.Committed = or.At
			}
		}
	}
	topics := map[string]bool{}
	for k := range rows {
		topics[k.t] = true
	}
	if len(topics) > 0 {
		var ts []string
		for t := range topics {
			ts = append(ts, t)
		}
		sort.Strings(ts)
		ends, err := adm.ListEndOffsets(ctx, ts...)
		if err != nil {
			return dg, err
		}
		for k, r := range rows {
			lo, ok := ends.Lookup(k.t, k.p)
			switch {
			case !ok:
				if lt, bad := ends.Lookup(k.t, -1); bad && lt.Err != nil {
					r.Error = joinErr(r.Error, "log end: "+describeErr(lt.Err, ""))
				}
			case lo.Err != nil:
				r.Error = joinErr(r.Error, "log end: "+describeErr(lo.Err, ""))
			default:
				r.LogEnd = lo.Offset
				if r.Committed >= 0 {
					r.Lag = max(0, r.LogEnd-r.Committed)
				}
			}
		}
	}
	for _, r := range rows {
		dg.Offsets = append(dg.Offsets, *r)
	}
	sort.Slice(dg.Offsets, func(i, j int) bool {
		a, b := dg.Offsets[i], dg.Offsets[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return dg, nil
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// offsetCell prints -1 (unknown) as "-".
func offsetCell(v int64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}

// assignmentString renders an assignment as "orders:0,1,2 audit:4".
func assignmentString(m describedMember) string {
	if m.Assignment == nil {
		if m.AssignmentBytes > 0 {
			return fmt.Sprintf("(%d bytes, not a consumer assignment)", m.AssignmentBytes)
		}
		return "-"
	}
	var parts []string
	for _, a := range m.Assignment {
		parts = append(parts, a.Topic+":"+int32List(a.Partitions))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func printGroups(cmd *cobra.Command, gs []describedGroup) error {
	w := cmd.OutOrStdout()
	for i, g := range gs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tw := newTable(w)
		row(tw, "GROUP", g.Group)
		row(tw, "STATE", dash(g.State))
		row(tw, "PROTOCOL-TYPE", dash(g.ProtocolType))
		row(tw, "PROTOCOL", dash(g.Protocol))
		row(tw, "COORDINATOR", g.Coordinator)
		row(tw, "MEMBERS", len(g.Members))
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(g.Members) > 0 {
			fmt.Fprintln(w)
			tw = newTable(w)
			row(tw, "MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "ASSIGNMENT")
			for _, m := range g.Members {
				row(tw, m.MemberID, dash(m.InstanceID), dash(m.ClientID), dash(m.Host), assignmentString(m))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(g.Offsets) > 0 {
			fmt.Fprintln(w)
			anyErr := false
			for _, r := range g.Offsets {
				anyErr = anyErr || r.Error != ""
			}
			tw = newTable(w)
			hdr := []any{"TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "HOST", "CLIENT-ID"}
			if anyErr {
				hdr = append(hdr, "ERROR")
			}
			row(tw, hdr...)
			for _, r := range g.Offsets {
				cols := []any{r.Topic, r.Partition, offsetCell(r.Committed), offsetCell(r.LogEnd), offsetCell(r.Lag), dash(r.MemberID), dash(r.Host), dash(r.ClientID)}
				if anyErr {
					cols = append(cols, dash(r.Error))
				}
				row(tw, cols...)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// groupResult is one row of `group delete`.
type groupResult struct {
	Group  string `json:"group"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func newGroupDeleteCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:     "delete GROUP...",
		Aliases: []string{"rm"},
		Short:   "Delete empty groups and their committed offsets",
		Example: `  brokkr group delete orders-app
  brokkr group delete a b c`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			if err := uniqueNames("group", groups); err != nil {
				return err
			}
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var resp kadm.DeleteGroupResponses
			err = coordRetry(ctx, func() error {
				var err error
				if resp, err = adm.DeleteGroups(ctx, groups...); err != nil {
					return err
				}
				for _, r := range resp {
					if coordNotReady(r.Err) {
						return r.Err
					}
				}
				return nil
			})
			if err != nil && (resp == nil || !coordNotReady(err)) {
				return o.requestErr("delete groups", err)
			}
			fails := &itemErrors{kind: "group", total: len(groups)}
			rs := []groupResult{}
			for _, g := range groups {
				r, ok := resp[g]
				res := groupResult{Group: g, Status: "deleted"}
				var ferr error
				msg := ""
				switch {
				case !ok:
					ferr = errors.New("the broker's answer did not mention this group")
				case r.Err != nil:
					ferr, msg = r.Err, r.ErrMessage
				}
				if ferr != nil {
					fails.add(g, ferr, msg)
					res.Status, res.Error = "failed", describeErr(ferr, msg)
				}
				rs = append(rs, res)
			}
			if o.json {
				if err := writeJSON(cmd.OutOrStdout(), rs); err != nil {
					return err
				}
			} else {
				tw := newTable(cmd.OutOrStdout())
				row(tw, "GROUP", "STATUS")
				for _, r := range rs {
					st := r.Status
					if r.Error != "" {
						st = r.Error
					}
					row(tw, r.Group, st)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			return fails.err()
		},
	}
	return c
}

// seekTarget is where `group seek` moves offsets.
type seekTarget struct {
	earliest, latest bool
	timestamp        int64 // -1: not given
	offset           int64 // -1: not given
}

// parseTopicSpec parses a --topic value: "T" (every partition) or
// "T:0,1,2".
func parseTopicSpec(s string) (string, []int32, error) {
	t, ps, hasParts := strings.Cut(s, ":")
	t = strings.TrimSpace(t)
	if t == "" {
		return "", nil, fmt.Errorf("--topic %q: empty topic name", s)
	}
	if !hasParts {
		return t, nil, nil
	}
	var out []int32
	seen := map[int32]bool{}
	for _, p := range strings.Split(ps, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
		if err != nil || n < 0 {
			return "", nil, fmt.Errorf("--topic %q: %q is not a partition number", s, p)
		}
		if !seen[int32(n)] {
			seen[int32(n)] = true
			out = append(out, int32(n))
		}
	}
	return t, out, nil
}

// seekRow is one partition of `group seek`'s plan.
type seekRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Current is the committed offset before the seek, -1 if none.
	Current int64  `json:"current"`
	New     int64  `json:"new"`
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"`
}

// clampOffset keeps a target offset inside [start, end], as Kafka's reset
// tool does: below the log start it moves to the start, past the end to
// the end.
func clampOffset(want, start, end int64) int64 {
	if want < start {
		return start
	}
	if want > end {
		return end
	}
	return want
}

func newGroupSeekCmd(o *clientOpts) *cobra.Command {
	var (
		topics    []string
		allTopics bool
		earliest  bool
		latest    bool
		timestamp int64
		offset    int64
		dryRun    bool
	)
	c := &cobra.Command{
		Use:   "seek GROUP --topic T[:p,p] (--to-earliest|--to-latest|--to-timestamp MS|--to-offset N) [--dry-run]",
		Short: "Reset an inactive group's committed offsets (earliest, latest, timestamp, offset)",
		Example: `  brokkr group seek orders-app --topic orders --to-earliest --dry-run
  brokkr group seek orders-app --topic orders:0,2 --to-offset 1000
  brokkr group seek orders-app --all-topics --to-timestamp 1767225600000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			if group == "" {
				return errors.New("group name must not be empty")
			}
			f := cmd.Flags()
			n := 0
			for _, name := range []string{"to-earliest", "to-latest", "to-timestamp", "to-offset"} {
				if f.Changed(name) {
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --to-earliest, --to-latest, --to-timestamp MS, --to-offset N")
			}
			if f.Changed("to-timestamp") && timestamp < 0 {
				return fmt.Errorf("--to-timestamp: must be a non-negative Unix time in milliseconds, got %d", timestamp)
			}
			if f.Changed("to-offset") && offset < 0 {
				return fmt.Errorf("--to-offset: must not be negative, got %d", offset)
			}
			if len(topics) == 0 && !allTopics {
				return errors.New("name the partitions: --topic T[:p,p] (repeatable) or --all-topics")
			}
			if len(topics) > 0 && allTopics {
				return errors.New("--topic and --all-topics exclude each other")
			}
			target := seekTarget{earliest: earliest, latest: latest, timestamp: -1, offset: -1}
			if f.Changed("to-timestamp") {
				target.timestamp = timestamp
			}
			if f.Changed("to-offset") {
				target.offset = offset
			}
			spec := map[string][]int32{} // nil: every partition
			var order []string
			for _, s := range topics {
				t, ps, err := parseTopicSpec(s)
				if err != nil {
					return err
				}
				if _, dup := spec[t]; dup {
					return fmt.Errorf("--topic: topic %q given twice", t)
				}
				spec[t] = ps
				order = append(order, t)
			}

			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()

			// Kafka resets only an inactive group: one whose members
			// would otherwise overwrite the new offsets at once.
			ds, err := describeGroups(ctx, adm, group)
			if err != nil {
				return o.requestErr("describe group", err)
			}
			d, ok := ds[group]
			switch {
			case !ok:
				return fmt.Errorf("group %q: the broker's answer did not mention this group", group)
			case groupMissing(d):
				// No group yet: committing creates it, as in Kafka.
			case d.Err != nil:
				return fmt.Errorf("group %q: %s", group, describeErr(d.Err, d.ErrMessage))
			case d.State != "Empty" && d.State != "Dead":
				return fmt.Errorf("group %q is %s with %d member(s): offsets can only be reset for an inactive group (state Empty); stop its consumers first", group, d.State, len(d.Members))
			}

			current, err := fetchOffsets(ctx, adm, group)
			if err != nil {
				return o.requestErr("fetch offsets", err)
			}
			if allTopics {
				for _, t := range current.Sorted() {
					if _, ok := spec[t.Topic]; !ok {
						spec[t.Topic] = nil
						order = append(order, t.Topic)
					}
				}
				if len(order) == 0 {
					return fmt.Errorf("group %q has no committed offsets: name the partitions with --topic", group)
				}
			}
			md, err := adm.Metadata(ctx, order...)
			if err != nil {
				return o.requestErr("metadata", err)
			}
			type tp struct {
				t string
				p int32
			}
			var plan []seekRow
			for _, t := range order {
				td, ok := md.Topics[t]
				if !ok {
					return fmt.Errorf("topic %q: %s", t, describeErr(kerr.UnknownTopicOrPartition, ""))
				}
				if td.Err != nil {
					return fmt.Errorf("topic %q: %s", t, describeErr(td.Err, ""))
				}
				ps := spec[t]
				if ps == nil {
					for _, p := range td.Partitions.Sorted() {
						ps = append(ps, p.Partition)
					}
				}
				for _, p := range ps {
					if _, ok := td.Partitions[p]; !ok {
						return fmt.Errorf("topic %q has no partition %d (it has %d)", t, p, len(td.Partitions))
					}
					cur := int64(-1)
					if or, ok := current.Lookup(t, p); ok && or.Err == nil {
						cur = or.At
					}
					plan = append(plan, seekRow{Topic: t, Partition: p, Current: cur, New: -1})
				}
			}
			starts, err := adm.ListStartOffsets(ctx, order...)
			if err != nil {
				return o.requestErr("list start offsets", err)
			}
			ends, err := adm.ListEndOffsets(ctx, order...)
			if err != nil {
				return o.requestErr("list end offsets", err)
			}
			var atTime kadm.ListedOffsets
			if target.timestamp >= 0 {
				if atTime, err = adm.ListOffsetsAfterMilli(ctx, target.timestamp, order...); err != nil {
					return o.requestErr("list offsets by time", err)
				}
			}
			fails := &itemErrors{kind: "partition", total: len(plan)}
			lookup := func(lo kadm.ListedOffsets, r *seekRow, what string) (int64, bool) {
				l, ok := lo.Lookup(r.Topic, r.Partition)
				var err error
				switch {
				case !ok:
					err = errors.New("the broker's answer did not mention this partition")
				case l.Err != nil:
					err = l.Err
				default:
					return l.Offset, true
				}
				r.Status, r.Error = "failed", what+": "+describeErr(err, "")
				fails.errs = append(fails.errs, fmt.Sprintf("%s/%d: %s", r.Topic, r.Partition, r.Error))
				return 0, false
			}
			commit := kadm.Offsets{}
			for i := range plan {
				r := &plan[i]
				start, ok1 := lookup(starts, r, "log start")
				if !ok1 {
					continue
				}
				end, ok2 := lookup(ends, r, "log end")
				if !ok2 {
					continue
				}
				var want int64
				switch {
				case target.earliest:
					want = start
				case target.latest:
					want = end
				case target.offset >= 0:
					want = target.offset
				default:
					at, ok := lookup(atTime, r, "offset for time")
					if !ok {
						continue
					}
					if at < 0 { // no record at or after the time
						at = end
					}
					want = at
				}
				r.New = clampOffset(want, start, end)
				r.Status = "planned (dry run)"
				commit.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.New, LeaderEpoch: -1})
			}
			if !dryRun && len(commit) > 0 {
				var resp kadm.OffsetResponses
				err := coordRetry(ctx, func() error {
					var err error
					if resp, err = adm.CommitOffsets(ctx, group, commit); err != nil {
						return err
					}
					return resp.Error()
				})
				if err != nil && resp == nil {
					return o.requestErr("commit offsets", err)
				}
				for i := range plan {
					r := &plan[i]
					if r.Error != "" {
						continue
					}
					or, ok := resp.Lookup(r.Topic, r.Partition)
					switch {
					case !ok:
						r.Status, r.Error = "failed", "the broker's answer did not mention this partition"
					case or.Err != nil:
						r.Status, r.Error = "failed", describeErr(or.Err, "")
					default:
						r.Status = "committed"
						continue
					}
					fails.errs = append(fails.errs, fmt.Sprintf("%s/%d: %s", r.Topic, r.Partition, r.Error))
				}
			}
			if o.json {
				if err := writeJSON(cmd.OutOrStdout(), plan); err != nil {
					return err
				}
			} else {
				tw := newTable(cmd.OutOrStdout())
				row(tw, "TOPIC", "PARTITION", "CURRENT", "NEW", "STATUS")
				for _, r := range plan {
					st := r.Status
					if r.Error != "" {
						st = r.Error
					}
					row(tw, r.Topic, r.Partition, offsetCell(r.Current), offsetCell(r.New), st)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if err := fails.err(); err != nil {
				return fmt.Errorf("group %q: %w", group, err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&topics, "topic", "t", nil, "topic to seek, optionally with partitions: T or T:0,1,2 (repeatable)")
	f.BoolVar(&allTopics, "all-topics", false, "seek every topic the group has committed offsets for")
	f.BoolVar(&earliest, "to-earliest", false, "seek to the log start offset")
	f.BoolVar(&latest, "to-latest", false, "seek to the log end offset")
	f.Int64Var(&timestamp, "to-timestamp", -1, "seek to the first record with a timestamp at or after this Unix time in ms (log end if none)")
	f.Int64Var(&offset, "to-offset", -1, "seek to this offset, clamped to [log start, log end]")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and commit nothing")
	return c
}
