package broker

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	readyRE  = regexp.MustCompile(`ready in ([0-9.]+[a-zµ]+)`)
	listenRE = regexp.MustCompile(`listening on PLAINTEXT://([^ ,]+)`)
)

// TestZeroConfigServe: `brokkr serve` with only listeners and log.dirs set
// is ready within 5 s of exec (measured and logged), auto-creates a topic
// on first produce, and exits 0 on SIGTERM.
func TestZeroConfigServe(t *testing.T) {
	bin := testbroker.Binary(t) // built before the clock starts
	dir := t.TempDir()
	cmd := exec.Command(bin, "serve",
		"--override", "listeners=PLAINTEXT://127.0.0.1:0",
		"--override", "log.dirs="+filepath.Join(dir, "data"))
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ready struct {
		at         time.Time
		addr, says string
	}
	readyc := make(chan ready, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var addr string
		for sc.Scan() {
			line := sc.Text()
			if m := listenRE.FindStringSubmatch(line); m != nil && addr == "" {
				addr = m[1]
			}
			if m := readyRE.FindStringSubmatch(line); m != nil {
				readyc <- ready{time.Now(), addr, m[1]}
			}
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	var r ready
	select {
	case r = <-readyc:
	case err := <-exited:
		stopped = true
		t.Fatalf("brokkr serve exited before it was ready: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("brokkr serve not ready within 30 s:\n%s", stderr.String())
	}
	took := r.at.Sub(start)
	t.Logf("zero-config brokkr serve: %v from exec to the ready line (the broker says \"ready in %s\")", took.Round(time.Millisecond), r.says)
	if took > 5*time.Second {
		t.Errorf("ready %v after exec, want < 5 s", took)
	}
	if r.addr == "" {
		t.Fatal("no \"listening on PLAINTEXT://\" line before the ready line")
	}

	// Topics are auto-created: produce to a topic nobody created.
	cl := newClient(t, r.addr, kgo.DefaultProduceTopic("auto-created"), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")})
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce to an auto-created topic: %v", err)
	}
	if rec := res[0].Record; rec.Offset != 0 {
		t.Errorf("first record of an auto-created topic at offset %d", rec.Offset)
	}
	if vals := consumeValues(t, r.addr, "auto-created"); len(vals) != 1 || len(vals[0]) != 1 || vals[0][0] != "hello" {
		t.Errorf("auto-created topic holds %v, want [hello] in partition 0", vals)
	}
	cl.Close()

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("no exit within 20 s of SIGTERM")
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("broker output contains \"panic\":\n%s", stderr.String())
	}
}
