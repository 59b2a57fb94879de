package gossip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// TestPartitionTwoControllersThenHeal splits five nodes 3/2 while the
// controller sits on the minority side. It checks, step by step, what
// docs/coordination.md promises:
//   - each side declares the other dead; the majority elects its own
//     controller with a higher epoch while the minority keeps the old one
//     (two controllers: SingleController is false);
//   - both sides win a compare-and-set on the same version (not
//     linearizable) and both controllers' fenced writes succeed on their side;
//   - after the heal, the old controller's leadership is Lost and its Store
//     refuses writes; every node names the higher-epoch controller; the
//     contended key converges everywhere on the higher-epoch write even
//     though the lower-epoch write is newer in wall time; a key written on
//     one side only is kept; a delete on one side wins over an older put.
func TestPartitionTwoControllersThenHeal(t *testing.T) {
	c := newCluster(t, TestConfig)
	var nodes []*Backend
	for i := 0; i < 5; i++ {
		nodes = append(nodes, c.add(nil))
	}
	waitMembers(t, 20*time.Second, nodes...)
	ctx := ctxT(t)
	_, worst := TestConfig().FailureDetection(5)
	limit := 3*worst + 10*time.Second

	// Broker 1 on nodes[0] is the controller; nodes[3] (broker 4) also campaigns.
	l1, err := nodes[0].Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	won4 := make(chan coord.Leadership, 1)
	go func() {
		l, err := nodes[3].Campaign(ctx, 4)
		if err != nil {
			t.Errorf("Campaign 4: %v", err)
		}
		won4 <- l
	}()
	v0, err := l1.Store().Create(ctx, "/p/contended", []byte("v0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Create(ctx, "/p/doomed", []byte("x")); err != nil {
		t.Fatal(err)
	}
	sameRecord(t, 10*time.Second, "/p/contended", nodes[0], nodes[1], nodes[2], nodes[3], nodes[4])
	doomed := sameRecord(t, 10*time.Second, "/p/doomed", nodes[0], nodes[1], nodes[2], nodes[3], nodes[4])

	minority, majority := nodes[:2], nodes[2:]
	c.f.split(minority, majority)
	eventually(t, limit, "the sides declare each other dead", func() error {
		for _, a := range minority {
			for _, b := range majority {
				if memberNames(a)[b.Name()] || memberNames(b)[a.Name()] {
					return fmt.Errorf("%s and %s still see each other", a.Name(), b.Name())
				}
			}
		}
		return nil
	})
	var l4 coord.Leadership
	select {
	case l4 = <-won4:
	case <-time.After(limit):
		t.Fatalf("the majority elected no controller")
	}
	if l4 == nil {
		t.FailNow()
	}
	if l4.Epoch() <= l1.Epoch() {
		t.Fatalf("majority controller epoch %d not above %d", l4.Epoch(), l1.Epoch())
	}
	select {
	case <-l1.Lost():
		t.Fatalf("the minority controller lost its leadership without hearing of the new one")
	default:
	}
	// Two controllers, each fenced only by what its side knows.
	if id, ep, err := nodes[1].Controller(ctx); err != nil || id != 1 || ep != l1.Epoch() {
		t.Fatalf("minority Controller() = %d, %d, %v", id, ep, err)
	}
	if id, ep, err := nodes[2].Controller(ctx); err != nil || id != 4 || ep != l4.Epoch() {
		t.Fatalf("majority Controller() = %d, %d, %v", id, ep, err)
	}

	// Both sides win a CAS on the same version; the minority writes last.
	if _, err := l4.Store().CompareAndSet(ctx, "/p/contended", []byte("majority"), v0); err != nil {
		t.Fatalf("majority CAS: %v", err)
	}
	if _, err := nodes[2].Create(ctx, "/p/majority-only", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := nodes[4].Delete(ctx, "/p/doomed", doomed.Version); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the minority's write is later in wall time
	if _, err := l1.Store().CompareAndSet(ctx, "/p/contended", []byte("minority"), v0); err != nil {
		t.Fatalf("minority CAS through the old controller: %v (it cannot know it is stale)", err)
	}
	if _, err := nodes[1].Create(ctx, "/p/minority-only", []byte("m")); err != nil {
		t.Fatal(err)
	}
	minStamp, _ := stampOf(nodes[0], "/p/contended")
	majStamp, _ := stampOf(nodes[3], "/p/contended") // l4 is on nodes[3]
	if minStamp.HLC <= majStamp.HLC || minStamp.Epoch >= majStamp.Epoch {
		t.Fatalf("setup: want the minority write newer in time but older in epoch: minority %+v, majority %+v", minStamp, majStamp)
	}

	healed := time.Now()
	c.f.heal()
	waitMembers(t, limit, nodes...)
	t.Logf("partition healed: all members see each other after %v", time.Since(healed).Round(time.Millisecond))
	if !closedWithin(l1.Lost(), limit) {
		t.Fatalf("the old controller's leadership was not signalled Lost after the heal")
	}
	_, err = l1.Store().Create(ctx, "/p/stale", []byte("x"))
	if !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("write through the old controller after the heal: %v, want ErrFenced", err)
	}
	eventually(t, limit, "every node names the higher-epoch controller", func() error {
		for i, n := range nodes {
			id, ep, err := n.Controller(ctx)
			if err != nil || id != 4 || ep != l4.Epoch() {
				return fmt.Errorf("node %d: Controller() = %d, %d, %v", i, id, ep, err)
			}
		}
		return nil
	})
	stores := make([]coord.Store, len(nodes))
	for i, n := range nodes {
		stores[i] = n
	}
	final := sameRecord(t, limit, "/p/contended", stores...)
	if string(final.Value) != "majority" || final.Version != majStamp.version() {
		t.Fatalf("contended key converged on %q@%d, want the higher epoch's %q@%d", final.Value, final.Version, "majority", majStamp.version())
	}
	sameRecord(t, limit, "/p/minority-only", stores...)
	sameRecord(t, limit, "/p/majority-only", stores...)
	eventually(t, limit, "the delete made on one side wins everywhere", func() error {
		for i, n := range nodes {
			if _, err := n.Get(ctx, "/p/doomed"); !errors.Is(err, coord.ErrNotFound) {
				return fmt.Errorf("node %d: %v", i, err)
			}
		}
		return nil
	})
	select {
	case <-l4.Lost():
		t.Fatalf("the higher-epoch controller lost its leadership at the heal")
	default:
	}
}

func closedWithin(ch <-chan struct{}, limit time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(limit):
		return false
	}
}

// TestOpenSeeds: a node that can join no seed fails with one line wrapping
// ErrUnavailable, unless Bootstrap lets it start alone; a late joiner gets
// every record (and no deleted one) from the push/pull at join.
func TestOpenSeeds(t *testing.T) {
	cfg := TestConfig()
	cfg.Seeds = []string{"127.0.0.1:1"} // nothing listens on port 1
	cfg.JoinTimeout = 500 * time.Millisecond
	_, err := Open(context.Background(), cfg)
	if err == nil || !errors.Is(err, coord.ErrUnavailable) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open with an unreachable seed: %q, want one line naming the seed and wrapping ErrUnavailable", err)
	}
	cfg.Bootstrap = true
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open with Bootstrap: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := ctxT(t)
	for i := 0; i < 50; i++ {
		if _, err := b.Create(ctx, fmt.Sprintf("/late/k%02d", i), []byte(strings.Repeat("x", i*40))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, "/late/k07", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	cfg2 := TestConfig()
	cfg2.BindAddr = "127.0.0.2"
	cfg2.Seeds = []string{b.Addr()}
	late, err := Open(context.Background(), cfg2)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	t.Cleanup(func() { _ = late.Close() })
	want, _ := b.List(ctx, "/late/")
	got, _ := late.List(ctx, "/late/") // no waiting: the join's push/pull carried it
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 49 {
		t.Fatalf("late joiner has %d records, want the %d of the seed", len(got), len(want))
	}
	if _, ok := stampOf(late, "/late/k07"); !ok {
		t.Fatalf("late joiner has no tombstone for the deleted key: an old copy could bring it back")
	}
	// A big record (beyond a gossip packet) still spreads, over TCP.
	big := []byte(strings.Repeat("b", 64<<10))
	if _, err := late.Create(ctx, "/late/big", big); err != nil {
		t.Fatal(err)
	}
	sameRecord(t, 10*time.Second, "/late/big", b, late)
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "Bootstrap") {
		t.Fatalf("DefaultConfig without seeds: %v, want the seeds/Bootstrap problem", err)
	}
	c := DefaultConfig()
	c.Bootstrap = true
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig with Bootstrap: %v", err)
	}
	c = DefaultConfig()
	c.Seeds = []string{"nohost", "h:99999"}
	c.BindAddr = "not-an-ip"
	c.ProbeInterval = 0
	c.SuspicionMult = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{`seed "nohost"`, `seed "h:99999"`, "BindAddr", "ProbeInterval", "SuspicionMult"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q: %v", want, err)
		}
	}
	typ, worst := DefaultConfig().FailureDetection(5)
	if typ != 5500*time.Millisecond || worst != 27*time.Second {
		t.Errorf("LAN failure detection for 5 nodes = %v, %v; want 5.5s, 27s", typ, worst)
	}
	if s, err := ParseSeeds("gossip://a:1, b:2"); err != nil || fmt.Sprint(s) != "[a:1 b:2]" {
		t.Errorf("ParseSeeds = %v, %v", s, err)
	}
	if _, err := ParseSeeds("gossip://a"); err == nil {
		t.Errorf("ParseSeeds accepted a seed without a port")
	}
}

func TestRegisterLimits(t *testing.T) {
	c := newCluster(t, TestConfig)
	a, b := c.add(nil), c.add(nil)
	waitMembers(t, 10*time.Second, a, b)
	ctx := ctxT(t)
	if _, err := a.Register(ctx, coord.BrokerInfo{ID: 7, Endpoints: []string{"PLAINTEXT://h:1"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b sees broker 7", func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, x := range b.liveBrokersLocked() {
			if x.ID == 7 {
				return nil
			}
		}
		return errors.New("not yet")
	})
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: 7}); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("registering a live broker ID twice: %v, want ErrConflict", err)
	}
	huge := coord.BrokerInfo{ID: 8, Meta: map[string]string{"k": strings.Repeat("v", 600)}}
	if _, err := a.Register(ctx, huge); err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("oversized registration: %v, want the metadata limit named", err)
	}
	if _, err := a.Register(ctx, coord.BrokerInfo{ID: -1}); err == nil {
		t.Fatalf("negative broker id accepted")
	}
	for _, k := range []string{"", "rel/key", "/bad\x00key"} {
		if _, err := a.Create(ctx, k, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Create(%q): %v, want ErrInvalidKey", k, err)
		}
	}
}

// TestThreeWaySplitEqualEpochs: with the controller alone in one part, the
// two other parts both elect epoch E+1. After the heal the lower broker ID's
// claim wins, and so do its records: on a key both new controllers wrote,
// the lower ID's write survives although the other was written later.
func TestThreeWaySplitEqualEpochs(t *testing.T) {
	c := newCluster(t, TestConfig)
	var nodes []*Backend
	for i := 0; i < 5; i++ {
		nodes = append(nodes, c.add(nil))
	}
	waitMembers(t, 20*time.Second, nodes...)
	ctx := ctxT(t)
	_, worst := TestConfig().FailureDetection(5)
	limit := 3*worst + 10*time.Second
	l1, err := nodes[0].Campaign(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Store().Create(ctx, "/3way/k", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	sameRecord(t, 10*time.Second, "/3way/k", nodes[0], nodes[1], nodes[2], nodes[3], nodes[4])
	won := make(chan coord.Leadership, 2)
	for _, x := range []struct {
		n  *Backend
		id int32
	}{{nodes[1], 2}, {nodes[3], 3}} {
		go func() {
			l, err := x.n.Campaign(ctx, x.id)
			if err != nil {
				t.Errorf("Campaign %d: %v", x.id, err)
			}
			won <- l
		}()
	}
	eventually(t, 10*time.Second, "both candidacies are visible", func() error {
		nodes[4].mu.Lock()
		defer nodes[4].mu.Unlock()
		if len(nodes[4].members[nodes[1].Name()].meta.Cands) == 0 || len(nodes[4].members[nodes[3].Name()].meta.Cands) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	c.f.split(nodes[:1], nodes[1:3], nodes[3:])
	var l2, l3 coord.Leadership
	for i := 0; i < 2; i++ {
		select {
		case l := <-won:
			if l == nil {
				t.FailNow()
			}
			if lc, ok := l.(*leadership); ok && lc.c.BrokerID == 2 {
				l2 = l
			} else {
				l3 = l
			}
		case <-time.After(limit):
			t.Fatalf("the two parts did not both elect a controller")
		}
	}
	if l2.Epoch() != l1.Epoch()+1 || l3.Epoch() != l1.Epoch()+1 {
		t.Fatalf("epochs %d and %d, want both %d", l2.Epoch(), l3.Epoch(), l1.Epoch()+1)
	}
	r, err := nodes[1].Get(ctx, "/3way/k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Store().CompareAndSet(ctx, "/3way/k", []byte("broker2"), r.Version); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // broker 3 writes later in wall time
	if _, err := l3.Store().CompareAndSet(ctx, "/3way/k", []byte("broker3"), r.Version); err != nil {
		t.Fatal(err)
	}
	c.f.heal()
	waitMembers(t, limit, nodes...)
	if !closedWithin(l3.Lost(), limit) || !closedWithin(l1.Lost(), limit) {
		t.Fatalf("after the heal the overtaken leaderships are not Lost (broker 3: %v, broker 1: %v)", isDone(l3.Lost()), isDone(l1.Lost()))
	}
	stores := make([]coord.Store, len(nodes))
	for i, n := range nodes {
		stores[i] = n
	}
	eventually(t, limit, "every node holds broker 2's write and names broker 2", func() error {
		for i, n := range nodes {
			r, err := n.Get(ctx, "/3way/k")
			if err != nil || string(r.Value) != "broker2" {
				return fmt.Errorf("node %d: %q, %v", i, r.Value, err)
			}
			if id, _, err := n.Controller(ctx); err != nil || id != 2 {
				return fmt.Errorf("node %d: controller %d, %v", i, id, err)
			}
		}
		return nil
	})
	if isDone(l2.Lost()) {
		t.Fatalf("the winning controller lost its leadership")
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
