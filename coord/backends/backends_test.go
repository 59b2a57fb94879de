package backends

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/etcd"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// use opens spec and checks that a record round-trips through it.
func use(t *testing.T, spec string, opts Options) coord.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := Open(ctx, spec, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", spec, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	key := fmt.Sprintf("/backends-test/%d", time.Now().UnixNano())
	v, err := b.Create(ctx, key, []byte("v"))
	if err != nil {
		t.Fatalf("%s: Create: %v", spec, err)
	}
	eventuallyGet(t, b, key, v)
	return b
}

func eventuallyGet(t *testing.T, b coord.Backend, key string, v coord.Version) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := b.Get(context.Background(), key)
		if err == nil && r.Version == v && string(r.Value) == "v" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get %s = %+v, %v; want v@%d", key, r, err, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEtcdEmbedded(t *testing.T) {
	dir := t.TempDir()
	b := use(t, "etcd-embedded", Options{DataDir: dir, SessionTimeout: 2 * time.Second})
	if _, err := os.Stat(filepath.Join(dir, etcd.DataDirName, "ports.json")); err != nil {
		t.Fatalf("embedded member's data is not in the data dir: %v", err)
	}
	if c := b.Capabilities(); !c.Linearizable || !c.FencedWrites {
		t.Fatalf("etcd capabilities %+v", c)
	}
	// The default spec is the same backend.
	if k, _ := Kind(""); k != "etcd-embedded" {
		t.Fatalf("Kind(\"\") = %s", k)
	}
}

func TestEtcdExternal(t *testing.T) {
	cu := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	pu := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := etcd.StartServer(ctx, etcd.EmbedConfig{Dir: t.TempDir(), Name: "ext", ClientURL: cu, PeerURL: pu, UnsafeNoFsync: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	use(t, "etcd://"+strings.TrimPrefix(cu, "http://"), Options{})
}

func TestZooKeeper(t *testing.T) {
	srv := zktest.Start(t)
	b := use(t, "zk://"+srv.Addr()+"/brokkr-backends", Options{ZKSessionTimeout: 6 * time.Second})
	if c := b.Capabilities(); !c.Linearizable {
		t.Fatalf("zk capabilities %+v", c)
	}
}

func TestGossip(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := use(t, "gossip://"+addr, Options{GossipBind: addr})
	if c := b.Capabilities(); c.Linearizable {
		t.Fatalf("gossip claims linearizability: %+v", c)
	}
}

func TestBadSpecs(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"consul://x:1", "want etcd-embedded"},
		{"etcd://", "no endpoints"},
		{"etcd://host", "host:port"},
		{"zk://", "empty"},
		{"gossip://", "none"},
		{"etcd-embedded", "data dir"},
	} {
		_, err := Open(context.Background(), c.spec, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want an error mentioning %q", c.spec, err, c.want)
		}
	}
}

// A ZooKeeper nobody listens on fails at once with ErrUnavailable.
func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), fmt.Sprintf("zk://127.0.0.1:%d", freePort(t)), Options{})
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("unreachable zk: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	t.Logf("unreachable zk failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
