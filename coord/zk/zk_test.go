package zk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

// testSession is the session time-out most tests use: short, so expiry
// tests run quickly, yet ample for a shared 2-core machine.
const testSession = 3 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ZK_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func open(t testing.TB, addr, chroot string, session time.Duration) *Backend {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Servers = []string{addr}
	cfg.Chroot = chroot
	cfg.SessionTimeout = session
	cfg.ConnectionTimeout = 20 * time.Second
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextEvent waits for one watch event.
func nextEvent(t testing.TB, ch <-chan coord.Event, limit time.Duration) coord.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed")
		}
		return ev
	case <-time.After(limit):
		t.Fatalf("no watch event within %v", limit)
	}
	return coord.Event{}
}

func TestConfig(t *testing.T) {
	servers, chroot, err := ParseConnect("zk1:2181,zk2:2182/brokkr/prod")
	if err != nil || len(servers) != 2 || servers[1] != "zk2:2182" || chroot != "/brokkr/prod" {
		t.Fatalf("ParseConnect = %v %q %v", servers, chroot, err)
	}
	if s, c, err := ParseConnect("zk://127.0.0.1:2181"); err != nil || c != "" || s[0] != "127.0.0.1:2181" {
		t.Fatalf("ParseConnect zk:// = %v %q %v", s, c, err)
	}
	for _, bad := range []string{"", "zk1", "zk1:0", "zk1:2181/a//b", "zk1:2181/a/", ":2181", "zk1:2181/a/../b"} {
		if _, _, err := ParseConnect(bad); err == nil {
			t.Errorf("ParseConnect(%q) accepted", bad)
		}
	}
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "no servers") {
		t.Fatalf("Validate of config without servers = %v", err)
	}
	c := Config{Servers: []string{"x"}, Chroot: "noslash", SessionTimeout: time.Millisecond}
	err = c.Validate()
	for _, want := range []string{"host:port", "chroot", "zookeeper.session.timeout.ms", "zookeeper.connection.timeout.ms", "tombstone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate should report %q at once, got %v", want, err)
		}
	}
	d := DefaultConfig()
	if d.SessionTimeout != 18*time.Second || d.ConnectionTimeout != 18*time.Second || d.TombstoneTTL != 10*time.Minute {
		t.Fatalf("defaults = %+v, want Kafka's 18000 ms", d)
	}
}

// TestOpenFailsFast: nothing listens on the port; Open says so in one line
// at once instead of waiting for the connection time-out.
func TestOpenFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := DefaultConfig()
	cfg.Servers = []string{addr}
	start := time.Now()
	_, err = Open(context.Background(), cfg)
	if err == nil || !errors.Is(err, coord.ErrUnavailable) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open to a dead port = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %v to fail (connection time-out %v)", d, cfg.ConnectionTimeout)
	}
	t.Logf("error: %v", err)
}

func TestStoreBasics(t *testing.T) {
	srv := zktest.Start(t)
	b := open(t, srv.Addr(), "/brokkr", testSession)
	ctx := ctxT(t)

	v1, err := b.Create(ctx, "/brokers/topics/orders/partitions/0/state", []byte(`{"leader":1}`))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := b.Create(ctx, "/brokers/topics/orders/partitions/0/state", []byte("x")); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("second Create = %v, want ErrConflict", err)
	}
	// The implicit parent is a directory, not a record.
	if _, err := b.Get(ctx, "/brokers/topics/orders"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a parent = %v, want ErrNotFound", err)
	}
	// ...which can become a record.
	vt, err := b.Create(ctx, "/brokers/topics/orders", []byte(`{"partitions":{"0":[1]}}`))
	if err != nil {
		t.Fatalf("Create over a directory znode: %v", err)
	}
	rec, err := b.Get(ctx, "/brokers/topics/orders/partitions/0/state")
	if err != nil || string(rec.Value) != `{"leader":1}` || rec.Version != v1 {
		t.Fatalf("Get = %+v %v, want version %d", rec, err, v1)
	}
	// An empty value is a record.
	ve, err := b.Create(ctx, "/admin/delete_topics/orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := b.Get(ctx, "/admin/delete_topics/orders"); err != nil || len(rec.Value) != 0 || rec.Version != ve {
		t.Fatalf("Get empty = %+v %v", rec, err)
	}

	v2, err := b.CompareAndSet(ctx, "/brokers/topics/orders/partitions/0/state", []byte(`{"leader":2}`), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("CAS = %d %v", v2, err)
	}
	if _, err := b.CompareAndSet(ctx, "/brokers/topics/orders/partitions/0/state", []byte("stale"), v1); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("stale CAS = %v, want ErrConflict", err)
	}
	if _, err := b.CompareAndSet(ctx, "/nope", []byte("x"), v1); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("CAS of missing = %v", err)
	}

	recs, err := b.List(ctx, "/brokers/topics/")
	if err != nil || len(recs) != 2 || recs[0].Key != "/brokers/topics/orders" || recs[0].Version != vt ||
		recs[1].Key != "/brokers/topics/orders/partitions/0/state" || recs[1].Version != v2 {
		t.Fatalf("List = %+v %v", recs, err)
	}
	if recs, err := b.List(ctx, "/brokers/topics/or"); err != nil || len(recs) != 2 {
		t.Fatalf("List by a string prefix = %+v %v", recs, err)
	}
	if recs, err := b.List(ctx, "/nothing/"); err != nil || len(recs) != 0 {
		t.Fatalf("List of nothing = %+v %v", recs, err)
	}

	// Delete of a record with children keeps the children.
	if err := b.Delete(ctx, "/brokers/topics/orders", vt+12345); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("Delete with a wrong version = %v", err)
	}
	if err := b.Delete(ctx, "/brokers/topics/orders", vt); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "/brokers/topics/orders"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get after delete = %v", err)
	}
	if _, err := b.Get(ctx, "/brokers/topics/orders/partitions/0/state"); err != nil {
		t.Fatalf("child gone with its parent record: %v", err)
	}
	// Delete + re-create gives a Version never seen before.
	if err := b.Delete(ctx, "/brokers/topics/orders/partitions/0/state", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "/brokers/topics/orders/partitions/0/state", coord.NoVersion); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Delete of missing = %v", err)
	}
	v3, err := b.Create(ctx, "/brokers/topics/orders/partitions/0/state", []byte(`{"leader":1}`))
	if err != nil || v3 == v1 || v3 == v2 {
		t.Fatalf("re-created version %d (earlier %d, %d), %v", v3, v1, v2, err)
	}
	if _, err := b.CompareAndSet(ctx, "/brokers/topics/orders/partitions/0/state", []byte("x"), v1); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("CAS with the previous incarnation's version = %v", err)
	}

	// The layout is Kafka's, under the chroot, seen with a plain client.
	raw, _, err := b.conn.Get("/brokkr/brokers/topics/orders/partitions/0/state")
	if err != nil || string(raw) != `{"leader":1}` {
		t.Fatalf("raw znode = %q %v", raw, err)
	}
	// A deleted record stays as a tombstone: null data, zkVersion going on.
	_, before, _ := b.conn.Get("/brokkr/admin/delete_topics/orders")
	if err := b.Delete(ctx, "/admin/delete_topics/orders", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	d, tomb, err := b.conn.Get("/brokkr/admin/delete_topics/orders")
	if err != nil || d != nil || tomb.Version != before.Version+1 {
		t.Fatalf("tombstone = %q %+v %v", d, tomb, err)
	}
	if recs, _ := b.List(ctx, "/admin/"); len(recs) != 0 {
		t.Fatalf("a tombstone listed as a record: %+v", recs)
	}

	for _, bad := range []string{"", "x", "/a/", "/a//b", "/controller", "/brokers/ids/1", "/a/./b"} {
		if _, err := b.Create(ctx, bad, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Create(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}

// TestMultiErrors pins the client behaviour the fenced store relies on: a
// failed multi names the failing op.
func TestMultiErrors(t *testing.T) {
	srv := zktest.Start(t)
	b := open(t, srv.Addr(), "", testSession)
	if _, err := b.conn.Create("/m", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	res, err := b.conn.Multi(&zk.CheckVersionRequest{Path: "/m", Version: 5}, &zk.SetDataRequest{Path: "/m", Data: []byte("y"), Version: 0})
	if !errors.Is(err, zk.ErrBadVersion) {
		t.Fatalf("multi err = %v", err)
	}
	t.Logf("multi results: %+v", res)
	if len(res) > 0 && !errors.Is(res[0].Error, zk.ErrBadVersion) {
		t.Fatalf("first op error = %v", res[0].Error)
	}
	// Null data stays null, empty stays empty.
	if _, err := b.conn.Create("/n", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := b.conn.Get("/n"); d != nil {
		t.Fatalf("null data read back as %q", d)
	}
	if d, _, _ := b.conn.Get("/m"); d == nil {
		t.Fatalf("data read back as null")
	}
}

func TestWatch(t *testing.T) {
	srv := zktest.Start(t)
	b := open(t, srv.Addr(), "/w", testSession)
	ctx := ctxT(t)
	if _, err := b.Create(ctx, "/t/a", []byte("a0")); err != nil {
		t.Fatal(err)
	}
	ch, err := b.Watch(ctx, "/t/")
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ch, 10*time.Second)
	if ev.Kind != coord.EventResync || len(ev.Snapshot) != 1 || ev.Snapshot[0].Key != "/t/a" {
		t.Fatalf("first event = %+v", ev)
	}
	va := ev.Snapshot[0].Version
	vb, err := b.Create(ctx, "/t/b/c", []byte("c0"))
	if err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Kind != coord.EventPut || ev.Key != "/t/b/c" || string(ev.Value) != "c0" || ev.Version != vb {
		t.Fatalf("event = %+v, want put /t/b/c", ev)
	}
	va2, err := b.CompareAndSet(ctx, "/t/a", []byte("a1"), va)
	if err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Kind != coord.EventPut || ev.Key != "/t/a" || ev.Version != va2 {
		t.Fatalf("event = %+v, want put /t/a", ev)
	}
	if err := b.Delete(ctx, "/t/b/c", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Kind != coord.EventDelete || ev.Key != "/t/b/c" {
		t.Fatalf("event = %+v, want delete /t/b/c", ev)
	}
	// A watch on a prefix whose directory does not exist yet.
	ch2, err := b.Watch(ctx, "/later/x")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch2, 10*time.Second); ev.Kind != coord.EventResync || len(ev.Snapshot) != 0 {
		t.Fatalf("first event = %+v", ev)
	}
	if _, err := b.Create(ctx, "/later/y", []byte("no")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/later/xx", []byte("yes")); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch2, 10*time.Second); ev.Kind != coord.EventPut || ev.Key != "/later/xx" {
		t.Fatalf("event = %+v, want put /later/xx", ev)
	}
	// A watch ends when its context does, and all of them when the backend closes.
	wctx, cancel := context.WithCancel(ctx)
	ch3, err := b.Watch(wctx, "/t/")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ch3, 10*time.Second)
	cancel()
	waitClosed(t, ch3)
	b.Close()
	waitClosed(t, ch)
	waitClosed(t, ch2)
	if _, err := b.Get(ctx, "/t/a"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Watch(ctx, "/t/"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
}

func waitClosed(t *testing.T, ch <-chan coord.Event) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel not closed")
		}
	}
}

// TestWatchSequence: one writer's many CAS steps reach the watcher in order,
// each version once, or with an explicit resync, and the last state always.
func TestWatchSequence(t *testing.T) {
	srv := zktest.Start(t)
	b := open(t, srv.Addr(), "", testSession)
	w := open(t, srv.Addr(), "", testSession)
	ctx := ctxT(t)
	ch, err := w.Watch(ctx, "/seq/")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ch, 10*time.Second)
	const n = 200
	var versions []coord.Version
	v, err := b.Create(ctx, "/seq/k", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	versions = append(versions, v)
	for i := 1; i < n; i++ {
		v, err = b.CompareAndSet(ctx, "/seq/k", []byte(fmt.Sprint(i)), v)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	pos := map[coord.Version]int{}
	for i, v := range versions {
		pos[v] = i
	}
	last, resyncs, puts := -1, 0, 0
	for last != n-1 {
		ev := nextEvent(t, ch, 20*time.Second)
		switch ev.Kind {
		case coord.EventResync:
			resyncs++
			if len(ev.Snapshot) != 1 {
				t.Fatalf("snapshot = %+v", ev.Snapshot)
			}
			last = pos[ev.Snapshot[0].Version]
		case coord.EventPut:
			puts++
			i, ok := pos[ev.Version]
			if !ok || i != last+1 || string(ev.Value) != fmt.Sprint(i) {
				t.Fatalf("put %+v at step %d after %d: out of order or skipped without a resync", ev, i, last)
			}
			last = i
		default:
			t.Fatalf("unexpected %+v", ev)
		}
	}
	t.Logf("%d writes seen as %d puts and %d resyncs", n, puts, resyncs)
}

// TestNoABA: what CompareAndSet does (read the stat, then set conditionally
// on its zkVersion) cannot land on a record deleted and created again in
// between, because Delete leaves a tombstone and Create continues its
// zkVersion. With a real znode delete the re-created record would be at
// the same zkVersion and the stale write would succeed.
func TestNoABA(t *testing.T) {
	srv := zktest.Start(t)
	b := open(t, srv.Addr(), "", testSession)
	ctx := ctxT(t)
	if _, err := b.Create(ctx, "/aba", []byte("one")); err != nil {
		t.Fatal(err)
	}
	_, st, err := b.conn.Get("/aba") // the CAS's read
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "/aba", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/aba", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Set("/aba", []byte("stale"), st.Version); !errors.Is(err, zk.ErrBadVersion) {
		t.Fatalf("the CAS's write after delete + create = %v, want a version conflict", err)
	}
	// The same with a plain znode delete shows what the tombstone prevents.
	if _, err := b.conn.Create("/plain", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	_, st, _ = b.conn.Get("/plain")
	if err := b.conn.Delete("/plain", -1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Create("/plain", []byte("y"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Set("/plain", []byte("stale"), st.Version); err != nil {
		t.Fatalf("expected the ABA on a plain znode (this test's premise): %v", err)
	}
}

// TestTombstoneSweep: the controller removes tombstones and empty
// directories once they are older than TombstoneTTL, and nothing younger or
// live.
func TestTombstoneSweep(t *testing.T) {
	srv := zktest.Start(t)
	cfg := DefaultConfig()
	cfg.Servers, cfg.Chroot = []string{srv.Addr()}, "/sw"
	cfg.SessionTimeout, cfg.TombstoneTTL = testSession, 4*time.Second
	cfg.Logger = testLogger(t)
	b, err := Open(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := ctxT(t)
	if _, err := b.Create(ctx, "/brokers/topics/gone/partitions/0/state", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/brokers/topics/kept/partitions/0/state", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "/brokers/topics/gone/partitions/0/state", coord.NoVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://h:1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Campaign(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := b.conn.Exists("/sw/brokers/topics/gone/partitions/0/state"); !ok {
		t.Fatalf("tombstone swept before its TTL")
	}
	eventually(t, 30*time.Second, "tombstone and its empty parents swept", func() bool {
		ok, _, _ := b.conn.Exists("/sw/brokers/topics/gone")
		return !ok
	})
	if _, err := b.Get(ctx, "/brokers/topics/kept/partitions/0/state"); err != nil {
		t.Fatalf("live record: %v", err)
	}
	for _, p := range []string{"/sw/brokers/ids/1", "/sw/controller", "/sw/controller_epoch"} {
		if ok, _, _ := b.conn.Exists(p); !ok {
			t.Fatalf("%s swept", p)
		}
	}
}
