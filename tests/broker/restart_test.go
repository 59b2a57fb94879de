package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// restartAfterKill9 restarts a broker that was killed with SIGKILL. A
// restart that fails is a test failure (the broker must come back after a
// crash), but so that the data checks that follow still run, it then
// revokes the dead process's registration by hand and restarts again.
//
// This was a real bug (found 2026-11-23, fixed in f288099): with the
// embedded etcd, the killed process's broker key stayed registered under
// its lease, every restart attempt renewed that lease when the member
// started, and registration always failed with "broker 0 is already
// registered by a live session". Should it come back, the subtest fails and
// the data checks still run.
func restartAfterKill9(t *testing.T, b *testbroker.Broker) {
	t.Helper()
	start := time.Now()
	if t.Run("restart right after kill -9", func(t *testing.T) { b.Restart(t) }) {
		t.Logf("restart after kill -9: ready %v after exec", time.Since(start).Round(time.Millisecond))
		return
	}
	t.Errorf("BUG: the broker does not restart after kill -9 (see the subtest); revoking the stale registration by hand to check the data")
	revokeStaleRegistration(t, b.DataDir)
	b.Restart(t)
}

// revokeStaleRegistration runs a helper broker (node 1, with no partition
// logs of its own) on the same embedded etcd data, and through it revokes
// the lease that holds broker 0's registration.
func revokeStaleRegistration(t *testing.T, dataDir string) {
	t.Helper()
	etcdDir := filepath.Join(dataDir, "logs", "__brokkr_etcd")
	helperLogs := t.TempDir()
	if err := os.Symlink(etcdDir, filepath.Join(helperLogs, "__brokkr_etcd")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testbroker.Binary(t), "serve",
		"--override", "listeners=PLAINTEXT://127.0.0.1:0",
		"--override", "log.dirs="+helperLogs,
		"--override", "node.id=1")
	cmd.Dir = helperLogs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready in") {
				close(ready)
			}
		}
		done <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("helper broker exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("helper broker not ready within 30 s")
	}

	raw, err := os.ReadFile(filepath.Join(etcdDir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ports struct {
		ClientURL string `json:"client_url"`
	}
	if err := json.Unmarshal(raw, &ports); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ports.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/brokkr/brokers/ids/0")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Logf("broker 0's registration had already expired")
		return
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatalf("revoking lease %x: %v", lease, err)
	}
	t.Logf("revoked the dead broker's lease %x", lease)
}
