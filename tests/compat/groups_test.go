package compat

// Consumer groups with three real clients in one group, against the real
// brokkr binary (issue 6).
//
// The mixed group (franz-go, librdkafka via python3-confluent-kafka,
// sarama) must agree on one assignor: JoinGroup picks a protocol every
// member offers, and a cooperative assignor cannot share a group with eager
// ones (librdkafka refuses to mix them in partition.assignment.strategy;
// franz-go acts eagerly as soon as one of its balancers is eager). So:
//   - franz-go offers [cooperative-sticky, range],
//   - sarama offers [range],
//   - librdkafka offers "range",
// and the vote picks "range", the only protocol common to all three (the
// test asserts that). Cooperative-sticky is covered by a franz-go-only
// group (TestGroupCooperativeFranz) whose members join while records flow,
// and by the static-membership test.
//
// Every consumer commits synchronously after each batch it processed and
// the test keeps a ledger: who read which record (partition, offset) and
// which commits the broker confirmed to whom, in one global order. The
// exactly-once rule it checks:
//   - every produced record is read at least once (nothing skipped), and
//   - a record read a second time is allowed only if the member that first
//     read it had no confirmed commit past it when the second read happened
//     (it was uncommitted when its reader died or lost the partition).
// While the group is stable (formed before any record is produced, no
// member killed) no record may be read twice at all.

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupOverrides make a new group form at once instead of after Kafka's
// 3 s initial rebalance delay.
var groupOverrides = []string{"group.initial.rebalance.delay.ms=0"}

// ledger records reads and confirmed commits of every member in one order.
type ledger struct {
	mu      sync.Mutex
	seq     int64
	reads   map[string][]readEv             // value -> reads
	commits map[string]map[int32][]commitEv // member -> partition -> commits
	byWho   map[string]int                  // member -> reads
}

type readEv struct {
	who string
	p   int32
	off int64
	seq int64
}

type commitEv struct {
	off int64
	seq int64
}

func newLedger() *ledger {
	return &ledger{reads: map[string][]readEv{}, commits: map[string]map[int32][]commitEv{}, byWho: map[string]int{}}
}

func (l *ledger) read(who string, p int32, off int64, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.reads[value] = append(l.reads[value], readEv{who, p, off, l.seq})
	l.byWho[who]++
}

func (l *ledger) commit(who string, p int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	if l.commits[who] == nil {
		l.commits[who] = map[int32][]commitEv{}
	}
	l.commits[who][p] = append(l.commits[who][p], commitEv{off, l.seq})
}

// distinct counts distinct values read among those named v<from>..v<to-1>.
func (l *ledger) distinct(from, to int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for i := from; i < to; i++ {
		if len(l.reads[val(i)]) > 0 {
			n++
		}
	}
	return n
}

func (l *ledger) readsBy(who string, from, to int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for i := from; i < to; i++ {
		for _, r := range l.reads[val(i)] {
			if r.who == who {
				n++
			}
		}
	}
	return n
}

// uncommitted counts who's reads at or past its highest confirmed commit.
func (l *ledger) uncommitted(who string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, rs := range l.reads {
		for _, r := range rs {
			if r.who == who && r.off >= l.lastCommit(who, r.p, l.seq+1) {
				n++
			}
		}
	}
	return n
}

// firstOffset is the lowest offset of p that any of whos read, -1 if none.
func (l *ledger) firstOffset(p int32, whos ...string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := int64(-1)
	for _, rs := range l.reads {
		for _, r := range rs {
			if r.p == p && slices.Contains(whos, r.who) && (first < 0 || r.off < first) {
				first = r.off
			}
		}
	}
	return first
}

// lastCommit is who's highest confirmed commit on p before seq.
func (l *ledger) lastCommit(who string, p int32, before int64) int64 {
	c := int64(-1)
	for _, e := range l.commits[who][p] {
		if e.seq < before && e.off > c {
			c = e.off
		}
	}
	return c
}

// check applies the exactly-once rule of the file comment to records
// v0..v<total-1>, produced to partition i%parts; strict forbids any second
// read. It returns how many second reads there were.
func (l *ledger) check(t *testing.T, total, parts int, strict bool) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	dups := 0
	for i := 0; i < total; i++ {
		rs := l.reads[val(i)]
		if len(rs) == 0 {
			t.Fatalf("record %s (partition %d) was never consumed", val(i), i%parts)
		}
		first := rs[0]
		if first.p != int32(i%parts) {
			t.Fatalf("record %s read from partition %d, produced to %d", val(i), first.p, i%parts)
		}
		for _, r := range rs[1:] {
			dups++
			if strict {
				t.Fatalf("record %s (partition %d offset %d) read by %s and again by %s in a stable group", val(i), r.p, r.off, first.who, r.who)
			}
			if c := l.lastCommit(first.who, first.p, r.seq); c > first.off {
				t.Fatalf("record %s (partition %d offset %d) read by %s and again by %s although %s had committed %d before",
					val(i), r.p, r.off, first.who, r.who, first.who, c)
			}
		}
	}
	return dups
}

func val(i int) string { return "v" + strconv.Itoa(i) }

// produceRange writes v<from>..v<to-1> to partition i%parts, pacing
// batches of `batch` records `gap` apart.
func produceRange(t *testing.T, cl *kgo.Client, topic string, parts, from, to, batch int, gap time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := from; i < to; {
		var rs []*kgo.Record
		for j := 0; j < batch && i < to; j, i = j+1, i+1 {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(i % parts), Value: []byte(val(i))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Errorf("produce: %v", err)
			return
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
}

// poll calls cond every 200 ms until it holds, at most limit; it returns
// how long that took.
func poll(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

// groupView is DescribeGroups' view of a group: state, protocol and each
// member's assigned partitions of topic.
type groupView struct {
	state, protocol string
	members         map[string][]int32 // client id + " " + member id -> partitions
	instances       map[string]string  // instance id -> member id
}

func describeGroup(t *testing.T, adm *kadm.Client, group, topic string) groupView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := adm.DescribeGroups(ctx, group)
	v := groupView{members: map[string][]int32{}, instances: map[string]string{}}
	if err != nil {
		t.Logf("describe %s: %v", group, err)
		return v
	}
	d := ds[group]
	if d.Err != nil {
		t.Logf("describe %s: %v", group, d.Err)
		return v
	}
	v.state, v.protocol = d.State, d.Protocol
	for _, m := range d.Members {
		var ps []int32
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, at := range a.Topics {
				if at.Topic == topic {
					ps = append(ps, at.Partitions...)
				}
			}
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		v.members[m.ClientID+" "+m.MemberID] = ps
		if m.InstanceID != nil {
			v.instances[*m.InstanceID] = m.MemberID
		}
	}
	return v
}

// covers reports a Stable group of n members whose assignments partition
// 0..parts-1 exactly.
func (v groupView) covers(n, parts int) bool {
	if v.state != "Stable" || len(v.members) != n {
		return false
	}
	seen := map[int32]bool{}
	for _, ps := range v.members {
		if len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			if seen[p] || p < 0 || int(p) >= parts {
				return false
			}
			seen[p] = true
		}
	}
	return len(seen) == parts
}

// franzMember is an in-process franz-go group member that commits
// synchronously after each poll, before it lets a rebalance proceed.
type franzMember struct {
	name string
	cl   *kgo.Client

	mu       sync.Mutex
	assigned map[int32]bool
	assigns  int // OnPartitionsAssigned calls with partitions
	revokes  int // OnPartitionsRevoked / Lost calls with partitions

	cancel context.CancelFunc
	done   chan struct{}
}

func startFranz(t *testing.T, l *ledger, name, addr, group, topic string, opts ...kgo.Opt) *franzMember {
	t.Helper()
	m := &franzMember{name: name, assigned: map[int32]bool{}, done: make(chan struct{})}
	lose := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(ps[topic]) > 0 {
			m.revokes++
		}
		for _, p := range ps[topic] {
			delete(m.assigned, p)
		}
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(addr), kgo.ClientID(name), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.FetchMaxWait(100 * time.Millisecond), kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(ps[topic]) > 0 {
				m.assigns++
			}
			for _, p := range ps[topic] {
				m.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(lose), kgo.OnPartitionsLost(lose),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			last := map[int32]int64{}
			fs.EachRecord(func(r *kgo.Record) {
				l.read(name, r.Partition, r.Offset, string(r.Value))
				last[r.Partition] = r.Offset + 1
			})
			fs.EachError(func(tp string, p int32, err error) {
				if ctx.Err() == nil && err != context.Canceled {
					t.Logf("%s: fetch %s/%d: %v", name, tp, p, err)
				}
			})
			if len(last) > 0 {
				if err := cl.CommitUncommittedOffsets(ctx); err != nil {
					t.Logf("%s: commit: %v", name, err)
				} else {
					for p, o := range last {
						l.commit(name, p, o)
					}
				}
			}
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop ends the poll loop and closes the client (a dynamic member leaves
// the group; a static one does not).
func (m *franzMember) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
	}
	m.cl.AllowRebalance()
	m.cl.Close()
	m.cancel = nil
}

func (m *franzMember) partitions() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []int32
	for p := range m.assigned {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func (m *franzMember) counts() (assigns, revokes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.assigns, m.revokes
}

// saramaMember is an in-process sarama ConsumerGroup member with the range
// assignor that commits synchronously whenever it has drained a claim.
type saramaMember struct {
	l      *ledger
	group  sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	assigned []int32
}

func (s *saramaMember) Setup(sess sarama.ConsumerGroupSession) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assigned = nil
	for _, ps := range sess.Claims() {
		s.assigned = append(s.assigned, ps...)
	}
	return nil
}

func (s *saramaMember) Cleanup(sarama.ConsumerGroupSession) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assigned = nil
	return nil
}

func (s *saramaMember) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	n := 0
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			s.l.read("sarama", msg.Partition, msg.Offset, string(msg.Value))
			sess.MarkMessage(msg, "")
			n++
			if len(claim.Messages()) == 0 || n%100 == 0 {
				sess.Commit()
				s.l.commit("sarama", msg.Partition, msg.Offset+1)
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func startSarama(t *testing.T, l *ledger, addr, group, topic string) *saramaMember {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = "sarama-member"
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	g, err := sarama.NewConsumerGroup([]string{addr}, group, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &saramaMember{l: l, group: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		for err := range g.Errors() {
			t.Logf("sarama: %v", err)
		}
	}()
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, s); err != nil && ctx.Err() == nil {
				t.Logf("sarama consume: %v", err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *saramaMember) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
	}
	_ = s.group.Close()
	s.cancel = nil
}

func (s *saramaMember) partitions() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int32(nil), s.assigned...)
}

// pythonMember is testdata/group_member.py run by /usr/bin/python3.
type pythonMember struct {
	cmd     *exec.Cmd
	done    chan struct{} // stdout fully read
	mu      sync.Mutex
	parts   []int32
	errs    []string
	pending map[int32]int64 // "committing" without its "commit" yet
	stderr  strings.Builder
}

func startPython(t *testing.T, l *ledger, addr, group, topic, assignor string) *pythonMember {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "group_member.py"))
	if err != nil {
		t.Fatal(err)
	}
	pm := &pythonMember{done: make(chan struct{}), pending: map[int32]int64{}}
	pm.cmd = exec.Command("/usr/bin/python3", script, addr, topic, group, assignor, "120", "0.2")
	pm.cmd.Stderr = &lockedWriter{mu: &pm.mu, b: &pm.stderr}
	out, err := pm.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pm.cmd.Process.Kill()
		<-pm.done
		_ = pm.cmd.Wait()
	})
	go func() {
		defer close(pm.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "rec":
				p, _ := strconv.Atoi(f[1])
				o, _ := strconv.ParseInt(f[2], 10, 64)
				l.read("python", int32(p), o, f[3])
			case "committing", "commit":
				pm.mu.Lock()
				clear(pm.pending)
				pm.mu.Unlock()
				for _, po := range strings.Split(f[1], ",") {
					ps, os, _ := strings.Cut(po, ":")
					p, _ := strconv.Atoi(ps)
					o, _ := strconv.ParseInt(os, 10, 64)
					if f[0] == "commit" {
						l.commit("python", int32(p), o)
					} else {
						pm.mu.Lock()
						pm.pending[int32(p)] = o
						pm.mu.Unlock()
					}
				}
			case "assigned":
				var ps []int32
				if len(f) > 1 {
					for _, s := range strings.Split(f[1], ",") {
						p, _ := strconv.Atoi(s)
						ps = append(ps, int32(p))
					}
				}
				pm.mu.Lock()
				pm.parts = ps
				pm.mu.Unlock()
			case "revoked":
				pm.mu.Lock()
				pm.parts = nil
				pm.mu.Unlock()
			case "error":
				pm.mu.Lock()
				clear(pm.pending)
				pm.errs = append(pm.errs, sc.Text())
				pm.mu.Unlock()
			}
		}
	}()
	return pm
}

func (pm *pythonMember) partitions() []int32 {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return append([]int32(nil), pm.parts...)
}

// inDoubt is the commit python had sent when it died, with no answer yet.
func (pm *pythonMember) inDoubt() map[int32]int64 {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	m := map[int32]int64{}
	for p, o := range pm.pending {
		m[p] = o
	}
	return m
}

func (pm *pythonMember) errors() []string {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return append([]string(nil), pm.errs...)
}

func (pm *pythonMember) stderrText() string {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return pm.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestGroupThreeClients runs franz-go, librdkafka (python) and sarama in
// one group over a 6-partition topic: exactly once while stable; after the
// python member is killed with SIGKILL the other two take its partitions
// within the session time-out and consume everything, re-reading only what
// python had not committed; the committed offsets survive a broker restart
// and a new member resumes exactly there.
func TestGroupThreeClients(t *testing.T) {
	const (
		parts = 6
		n1    = 6000 // while the group is stable
		n2    = 3000 // while the python member is being killed
		n3    = 3000 // after the kill
		n4    = 600  // after the broker restart
		group = "mixed"
		topic = "groups"
	)
	b := testbroker.Start(t, groupOverrides...)
	createTopic(t, b.Addr, topic, parts, nil)
	adm := kadm.NewClient(newClient(t, b.Addr))
	prod := newClient(t, b.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	l := newLedger()

	// Form the group before any record exists, so no rebalance overlaps
	// the first batch.
	fr := startFranz(t, l, "franz", b.Addr, group, topic, kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.RangeBalancer()))
	py := startPython(t, l, b.Addr, group, topic, "range")
	sa := startSarama(t, l, b.Addr, group, topic)
	formed := poll(t, 45*time.Second, "three members Stable with 2 partitions each", func() bool {
		v := describeGroup(t, adm, group, topic)
		ok := v.covers(3, parts) && len(fr.partitions()) == 2 && len(py.partitions()) == 2 && len(sa.partitions()) == 2
		if ok && v.protocol != "range" {
			t.Fatalf("group protocol %q, want range (the only assignor all three offer)", v.protocol)
		}
		return ok
	})
	t.Logf("group of three formed in %v: franz %v, python %v, sarama %v", formed.Round(time.Millisecond), fr.partitions(), py.partitions(), sa.partitions())

	start := time.Now()
	produceRange(t, prod, topic, parts, 0, n1, 500, 0)
	poll(t, 30*time.Second, fmt.Sprintf("all %d records consumed by the group", n1), func() bool { return l.distinct(0, n1) == n1 })
	time.Sleep(300 * time.Millisecond) // let a wrong second read show up
	l.check(t, n1, parts, true)
	t.Logf("stable group: %d records consumed exactly once in %v (franz %d, python %d, sarama %d)", n1,
		time.Since(start).Round(time.Millisecond), l.readsBy("franz", 0, n1), l.readsBy("python", 0, n1), l.readsBy("sarama", 0, n1))
	for _, who := range []string{"franz", "python", "sarama"} {
		if l.readsBy(who, 0, n1) != n1/3 {
			t.Fatalf("%s read %d records, want its 2 partitions' %d", who, l.readsBy(who, 0, n1), n1/3)
		}
	}
	if errs := py.errors(); len(errs) > 0 {
		t.Fatalf("python member: %v", errs)
	}

	// Kill python in the middle of the second batch.
	pyParts := py.partitions()
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		produceRange(t, prod, topic, parts, n1, n1+n2, 60, 50*time.Millisecond)
	}()
	// Kill it while it holds records it has not committed (it waits
	// 0.2 s between a batch and its commit), so the survivors must
	// re-read exactly those.
	testbroker.Eventually(t, 30*time.Second, "python to read part of the second batch and hold uncommitted records", func() bool {
		return l.readsBy("python", n1, n1+n2) >= 100 && l.uncommitted("python") > 0
	})
	if err := py.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-py.done
	pyRead := l.readsBy("python", n1, n1+n2)
	<-producing
	produceRange(t, prod, topic, parts, n1+n2, n1+n2+n3, 500, 0)
	poll(t, 40*time.Second, "franz and sarama to own all 6 partitions", func() bool {
		return describeGroup(t, adm, group, topic).covers(2, parts) && len(fr.partitions())+len(sa.partitions()) == parts
	})
	took := time.Since(killed)
	t.Logf("python (partitions %v) killed after reading %d of the second batch; franz %v and sarama %v own all partitions %v after the kill (session.timeout.ms 6000)",
		pyParts, pyRead, fr.partitions(), sa.partitions(), took.Round(time.Millisecond))
	if took > 6*time.Second+20*time.Second {
		t.Fatalf("partitions taken over %v after the kill, want within the 6 s session time-out plus 20 s", took)
	}
	total := n1 + n2 + n3
	poll(t, 30*time.Second, fmt.Sprintf("all %d records consumed", total), func() bool { return l.distinct(0, total) == total })
	time.Sleep(300 * time.Millisecond)
	dups := l.check(t, total, parts, false)
	t.Logf("after the kill: all %d records consumed, %d read twice (uncommitted when their reader died or lost the partition); survivors read %d after the kill",
		total, dups, l.readsBy("franz", n1+n2, total)+l.readsBy("sarama", n1+n2, total))
	if got := l.readsBy("python", n1+n2, total); got != 0 {
		t.Fatalf("the killed member read %d records produced after its death", got)
	}
	// The survivors resume python's partitions exactly at its last
	// commit: the one it saw confirmed, or the one in flight when it died.
	doubt := py.inDoubt()
	for _, p := range pyParts {
		l.mu.Lock()
		c := l.lastCommit("python", p, l.seq+1)
		l.mu.Unlock()
		first := l.firstOffset(p, "franz", "sarama")
		d, inFlight := doubt[p]
		if first != c && (!inFlight || first != d) {
			t.Fatalf("partition %d: the survivors started at offset %d; python's last confirmed commit was %d (in flight: %v %d)", p, first, c, inFlight, d)
		}
		t.Logf("partition %d: python committed %d (in flight at the kill: %v %d), the survivors resumed at %d", p, c, inFlight, d, first)
	}

	// Committed offsets survive a restart: stop the members (they have
	// committed everything they read), restart, and resume.
	stopping := time.Now()
	fr.stop()
	sa.stop()
	t.Logf("franz and sarama closed in %v", time.Since(stopping).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	before, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		c, _ := before.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		if c.Err != nil || c.At != e.Offset {
			t.Fatalf("partition %d: committed %d (%v), log end %d: the members did not commit all they read", p, c.At, c.Err, e.Offset)
		}
	}
	stopped, clean := b.Stop()
	b.Restart(t)
	restarted := time.Now()
	adm = kadm.NewClient(newClient(t, b.Addr))
	// Right after a start FindCoordinator may answer the retriable
	// COORDINATOR_NOT_AVAILABLE (as Kafka does until the offsets
	// partition has a leader), which kadm returns instead of retrying.
	var after kadm.OffsetResponses
	for {
		after, err = adm.FetchOffsets(ctx, group)
		if err == nil || !kerr.IsRetriable(err) || time.Since(restarted) > 20*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		out := b.Output()
		t.Fatalf("OffsetFetch %v after the restart (stop took %v, clean exit %v): %v\nbroker output (tail):\n%s",
			time.Since(restarted).Round(time.Millisecond), stopped.Round(time.Millisecond), clean, err, out[max(0, len(out)-4000):])
	}
	t.Logf("broker stopped in %v, committed offsets fetched %v after the restart", stopped.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	for p := int32(0); p < parts; p++ {
		c, _ := before.Lookup(topic, p)
		a, _ := after.Lookup(topic, p)
		if a.Err != nil || a.At != c.At {
			t.Fatalf("partition %d: committed %d before the restart, %d (%v) after", p, c.At, a.At, a.Err)
		}
	}
	prod = newClient(t, b.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	produceRange(t, prod, topic, parts, total, total+n4, 300, 0)
	l2 := newLedger()
	resumed := startFranz(t, l2, "resumed", b.Addr, group, topic)
	took = poll(t, 30*time.Second, fmt.Sprintf("the %d records produced after the restart", n4), func() bool { return l2.distinct(total, total+n4) == n4 })
	t.Logf("a new member of the group read the %d new records in %v", n4, took.Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // anything re-read would arrive now
	resumed.stop()
	l2.mu.Lock()
	defer l2.mu.Unlock()
	if len(l2.reads) != n4 {
		t.Fatalf("the resumed member read %d distinct records, want only the %d new ones", len(l2.reads), n4)
	}
	for v, rs := range l2.reads {
		i, _ := strconv.Atoi(strings.TrimPrefix(v, "v"))
		c, _ := before.Lookup(topic, int32(i%parts))
		if len(rs) != 1 || i < total || rs[0].off < c.At {
			t.Fatalf("resumed member read %s at partition %d offset %d (%d times); committed offset was %d", v, rs[0].p, rs[0].off, len(rs), c.At)
		}
	}
	if s := py.stderrText(); strings.Contains(s, "Traceback") {
		t.Fatalf("python member:\n%s", s)
	}
}

// TestGroupStaticMember restarts a static member (KIP-345,
// group.instance.id) within its session time-out: the group must not
// rebalance, so the generation stays, the other member is neither revoked
// nor reassigned, and the restarted member gets its old partitions back.
//
// The restarted member is the follower: the first member to join leads,
// and the leader keeps leading while it stays. A restarted static *leader*
// gets JoinGroup v9's SkipAssignment with the members' last join metadata
// (KIP-814), and franz-go recomputes the cooperative-sticky plan from it
// and forces a rebalance when that plan differs from the stored one, which
// it does because the metadata predates the partitions the follower owns
// now. Apache Kafka sends the same answer, so that rebalance is the
// client's choice, not the broker's.
func TestGroupStaticMember(t *testing.T) {
	const (
		parts = 6
		group = "static"
		topic = "static"
	)
	b := testbroker.Start(t, groupOverrides...)
	createTopic(t, b.Addr, topic, parts, nil)
	adm := kadm.NewClient(newClient(t, b.Addr))
	l := newLedger()
	coop := kgo.Balancers(kgo.CooperativeStickyBalancer())
	other := startFranz(t, l, "other", b.Addr, group, topic, coop, kgo.InstanceID("static-b"), kgo.SessionTimeout(20*time.Second))
	poll(t, 30*time.Second, "the first member (the leader) to own every partition", func() bool { return len(other.partitions()) == parts })
	a := startFranz(t, l, "static-a", b.Addr, group, topic, coop, kgo.InstanceID("static-a"), kgo.SessionTimeout(20*time.Second))
	poll(t, 30*time.Second, "two static members Stable with 3 partitions each", func() bool {
		return describeGroup(t, adm, group, topic).covers(2, parts) && len(a.partitions()) == 3 && len(other.partitions()) == 3
	})
	time.Sleep(time.Second) // let a trailing cooperative rebalance finish, if any
	v := describeGroup(t, adm, group, topic)
	if v.protocol != "cooperative-sticky" || v.instances["static-a"] == "" || v.instances["static-b"] == "" {
		t.Fatalf("group before the restart: %+v", v)
	}
	_, genBefore := other.cl.GroupMetadata()
	otherParts, aParts := other.partitions(), a.partitions()
	assignsBefore, revokesBefore := other.counts()

	// Restart a (no LeaveGroup: a static member does not leave on close).
	a.stop()
	restarted := time.Now()
	a2 := startFranz(t, l, "static-a", b.Addr, group, topic, coop, kgo.InstanceID("static-a"), kgo.SessionTimeout(20*time.Second))
	took := poll(t, 15*time.Second, "the restarted static member to get its partitions", func() bool { return len(a2.partitions()) == 3 })
	// Heartbeats every 500 ms: a rebalance would reach the other member
	// well within this.
	time.Sleep(3 * time.Second)
	memberID, genAfter := other.cl.GroupMetadata()
	_, gen2 := a2.cl.GroupMetadata()
	assignsAfter, revokesAfter := other.counts()
	v2 := describeGroup(t, adm, group, topic)
	t.Logf("static member back with %v after %v; generation %d -> %d (other member %s)", a2.partitions(), took.Round(time.Millisecond), genBefore, genAfter, memberID)
	if genAfter != genBefore || gen2 != genBefore {
		t.Fatalf("generation changed across a static restart: %d before, other member sees %d, restarted member %d", genBefore, genAfter, gen2)
	}
	if revokesAfter != revokesBefore || assignsAfter != assignsBefore {
		t.Fatalf("the other member was revoked or reassigned: assigns %d -> %d, revokes %d -> %d", assignsBefore, assignsAfter, revokesBefore, revokesAfter)
	}
	if fmt.Sprint(other.partitions()) != fmt.Sprint(otherParts) || fmt.Sprint(a2.partitions()) != fmt.Sprint(aParts) {
		t.Fatalf("assignments changed: other %v -> %v, static-a %v -> %v", otherParts, other.partitions(), aParts, a2.partitions())
	}
	if !v2.covers(2, parts) || v2.instances["static-a"] == "" || v2.instances["static-b"] != v.instances["static-b"] {
		t.Fatalf("group after the restart: %+v (before %+v)", v2, v)
	}
	if time.Since(restarted) > 20*time.Second {
		t.Fatalf("the check outlasted the session time-out (%v): it proves nothing", time.Since(restarted))
	}
}

// TestGroupCooperativeFranz covers the cooperative-sticky protocol: three
// franz-go members join one after another while records are produced;
// with incremental rebalances and a commit before each revocation every
// record is consumed exactly once.
func TestGroupCooperativeFranz(t *testing.T) {
	const (
		parts = 6
		n     = 3000
		group = "coop"
		topic = "coop"
	)
	b := testbroker.Start(t, groupOverrides...)
	createTopic(t, b.Addr, topic, parts, nil)
	adm := kadm.NewClient(newClient(t, b.Addr))
	prod := newClient(t, b.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	l := newLedger()
	coop := kgo.Balancers(kgo.CooperativeStickyBalancer())
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		produceRange(t, prod, topic, parts, 0, n, 60, 60*time.Millisecond)
	}()
	m1 := startFranz(t, l, "coop-1", b.Addr, group, topic, coop)
	poll(t, 20*time.Second, "the first member to consume", func() bool { return l.readsBy("coop-1", 0, n) > 0 })
	m2 := startFranz(t, l, "coop-2", b.Addr, group, topic, coop)
	poll(t, 20*time.Second, "the second member to consume", func() bool { return l.readsBy("coop-2", 0, n) > 0 })
	m3 := startFranz(t, l, "coop-3", b.Addr, group, topic, coop)
	<-producing
	poll(t, 30*time.Second, fmt.Sprintf("all %d records consumed", n), func() bool { return l.distinct(0, n) == n })
	poll(t, 20*time.Second, "three members Stable with 2 partitions each", func() bool {
		return describeGroup(t, adm, group, topic).covers(3, parts) && len(m1.partitions()) == 2 && len(m2.partitions()) == 2 && len(m3.partitions()) == 2
	})
	time.Sleep(300 * time.Millisecond)
	l.check(t, n, parts, true)
	if v := describeGroup(t, adm, group, topic); v.protocol != "cooperative-sticky" {
		t.Fatalf("protocol %q, want cooperative-sticky", v.protocol)
	}
	_, rev1 := m1.counts()
	if rev1 == 0 {
		t.Fatal("the first member never gave up a partition: no incremental rebalance was exercised")
	}
	t.Logf("cooperative-sticky: %d records exactly once across members joining mid-stream (coop-1 %d, coop-2 %d, coop-3 %d; coop-1 revoked %d times)",
		n, l.readsBy("coop-1", 0, n), l.readsBy("coop-2", 0, n), l.readsBy("coop-3", 0, n), rev1)
}
