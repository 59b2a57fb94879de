package main

// The client side of the binary: rpk-style noun-verb commands (topic,
// produce, consume, cluster) that speak the Kafka protocol through franz-go
// (kgo for records, kadm for administration), so they work against Brokkr and
// against any other Kafka-protocol broker.
//
// Conventions shared by every command here:
//   - --brokers (default $BROKKR_BROKERS, else localhost:9092), --timeout and
//     --json are persistent flags of each noun command;
//   - human output is an aligned table on stdout, --json prints JSON instead;
//   - an error is one line naming what failed (topic "x": CODE: text); when
//     several topics are given, each gets its own row and the command exits
//     non-zero if any of them failed.
//
// The verbs live in cli_topic.go, cli_produce.go, cli_consume.go and
// cli_cluster.go; cli_format.go holds the kcat-style --format compiler.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokersEnv names the environment variable that supplies the default for
// --brokers.
const brokersEnv = "BROKKR_BROKERS"

// defaultBrokers is used when neither --brokers nor $BROKKR_BROKERS is set.
const defaultBrokers = "localhost:9092"

// clientOpts are the flags every client command shares.
type clientOpts struct {
	brokers []string
	timeout time.Duration
	json    bool
}

// defaultBrokerList returns the --brokers default: $BROKKR_BROKERS when set,
// else localhost:9092.
func defaultBrokerList() []string {
	if v := strings.TrimSpace(os.Getenv(brokersEnv)); v != "" {
		return splitList(v)
	}
	return []string{defaultBrokers}
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// addClientFlags registers the shared flags on a noun command so that all of
// its verbs inherit them.
func addClientFlags(cmd *cobra.Command, o *clientOpts) {
	f := cmd.PersistentFlags()
	f.StringSliceVar(&o.brokers, "brokers", defaultBrokerList(),
		"seed brokers host:port,... ($"+brokersEnv+", else "+defaultBrokers+")")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second,
		"time-out for reaching the cluster and for each request")
	f.BoolVar(&o.json, "json", false, "print JSON for scripts instead of tables")
}

// addAdminCommands adds the client commands to the root command.
func addAdminCommands(root *cobra.Command) {
	o := &clientOpts{}
	for _, c := range []*cobra.Command{
		newTopicCmd(o),
		newProduceCmd(o),
		newConsumeCmd(o),
		newClusterCmd(o),
	} {
		addClientFlags(c, o)
		root.AddCommand(c)
	}
}

// nounRun makes a noun command (topic, cluster) print its help when given no
// verb and fail on an unknown one, instead of printing help and exiting 0.
func nounRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return errors.New(msg)
}

// validate checks the shared flags.
func (o *clientOpts) validate() error {
	var bs []string
	for _, b := range o.brokers {
		bs = append(bs, splitList(b)...)
	}
	if len(bs) == 0 {
		return errors.New("--brokers: no broker address given")
	}
	for _, b := range bs {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("--brokers: %q has no port (want host:port)", b)
		}
	}
	o.brokers = bs
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout: must be positive, got %s", o.timeout)
	}
	return nil
}

// connect builds a kgo client from the shared flags plus extra options and
// checks within --timeout that some broker answers, so that a wrong address
// fails fast with a clear message instead of retrying silently.
func (o *clientOpts) connect(ctx context.Context, extra ...kgo.Opt) (*kgo.Client, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	dial := o.timeout
	if dial > 10*time.Second {
		dial = 10 * time.Second
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.brokers...),
		kgo.ClientID("brokkr-cli"),
		kgo.DialTimeout(dial),
		kgo.RetryTimeout(o.timeout),
		// The read deadline of every request (the connection's own
		// ApiVersions included) is its time-out plus this overhead; the
		// default of 10s would let a silent broker outlast --timeout.
		kgo.RequestTimeoutOverhead(o.timeout),
	}
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// kgo may finish a connection's handshake before it looks at the
	// context again; the answer must not wait for that.
	pinged := make(chan error, 1)
	go func() { pinged <- cl.Ping(pctx) }()
	select {
	case err = <-pinged:
	case <-pctx.Done():
		err = pctx.Err()
	}
	if err != nil {
		cl.Close()
		all := strings.Join(o.brokers, ",")
		var ne net.Error
		switch {
		case ctx.Err() != nil: // interrupted
			return nil, fmt.Errorf("cannot reach any broker of %s: %v", all, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("cannot reach any broker of %s: no answer within %s", all, o.timeout)
		case errors.As(err, &ne) && ne.Timeout():
			return nil, fmt.Errorf("cannot reach any broker of %s within %s: %s", all, o.timeout, oneLine(err.Error()))
		}
		return nil, fmt.Errorf("cannot reach any broker of %s: %s", all, oneLine(err.Error()))
	}
	return cl, nil
}

// admin connects and wraps the client for admin requests, whose broker-side
// time-out is --timeout as well.
func (o *clientOpts) admin(ctx context.Context) (*kadm.Client, func(), error) {
	adm, _, done, err := o.adminClient(ctx)
	return adm, done, err
}

// requestCtx bounds one admin exchange by --timeout.
func (o *clientOpts) requestCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, o.timeout)
}

// requestErr turns an error from a whole request into one line; a deadline
// is named as the time-out it is.
func (o *clientOpts) requestErr(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: no answer within %s", what, o.timeout)
	}
	return fmt.Errorf("%s: %s", what, oneLine(err.Error()))
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// describeErr renders a Kafka error with the broker's own message, if any:
// "TOPIC_ALREADY_EXISTS: The topic has already been created. (broker: ...)".
func describeErr(err error, brokerMsg string) string {
	s := oneLine(err.Error())
	var ke *kerr.Error
	if !errors.As(err, &ke) && s == "" {
		s = "unknown error"
	}
	if m := oneLine(brokerMsg); m != "" && !strings.Contains(s, m) {
		s += " (broker: " + m + ")"
	}
	return s
}

// itemErrors collects per-item failures of a command given several items
// (topics, records) and becomes its one-line error.
type itemErrors struct {
	kind  string // "topic", "record"
	total int
	errs  []string
}

// fail records a failed topic both in the summary error and in its row.
func (e *itemErrors) fail(res *topicResult, err error, brokerMsg string) {
	e.add(res.Topic, err, brokerMsg)
	res.Status, res.Error = "failed", describeErr(err, brokerMsg)
}

func (e *itemErrors) add(name string, err error, brokerMsg string) {
	e.errs = append(e.errs, fmt.Sprintf("%s %q: %s", e.kind, name, describeErr(err, brokerMsg)))
}

// err returns nil when nothing failed, the single failure as is, or a count
// with every failure on one line.
func (e *itemErrors) err() error {
	switch len(e.errs) {
	case 0:
		return nil
	case 1:
		return errors.New(e.errs[0])
	}
	return fmt.Errorf("%d of %d %ss failed: %s", len(e.errs), e.total, e.kind, strings.Join(e.errs, "; "))
}

// newTable returns an aligned table writer; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated table row.
func row(w io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}

// writeJSON prints v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// topicIDString renders a topic ID the way Kafka's tools do (URL-safe base64
// without padding); the zero ID (a broker without topic IDs) is "".
func topicIDString(id kadm.TopicID) string {
	if id == (kadm.TopicID{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// dash shows an empty table cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// int32List renders broker lists as "1,2,3".
func int32List(xs []int32) string {
	if len(xs) == 0 {
		return "-"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}

// parseKV parses "key=value" flag values. Keys must be non-empty and unique;
// the value may be empty.
func parseKV(flag string, items []string) ([]string, map[string]string, error) {
	var keys []string
	m := make(map[string]string, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, nil, fmt.Errorf("%s %q: want key=value", flag, it)
		}
		if _, dup := m[k]; dup {
			return nil, nil, fmt.Errorf("%s: key %q given twice", flag, k)
		}
		keys = append(keys, k)
		m[k] = v
	}
	return keys, m, nil
}

// uniqueNames rejects a name given twice (Kafka would fail the whole request).
func uniqueNames(kind string, names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("%s name must not be empty", kind)
		}
		if seen[n] {
			return fmt.Errorf("%s %q given twice", kind, n)
		}
		seen[n] = true
	}
	return nil
}
