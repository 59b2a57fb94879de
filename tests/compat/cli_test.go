package compat

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
)

// TestCLIAgainstBrokkr runs the brokkr client commands against a real
// brokkr broker: create with configs, describe them back, produce keyed
// lines, consume them with a format, alter a config, grow, delete.
func TestCLIAgainstBrokkr(t *testing.T) {
	b := testbroker.Start(t)
	bin := testbroker.Binary(t)
	cli := func(stdin string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "BROKKR_BROKERS="+b.Addr)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String() + errb.String(), err
	}
	mustCLI := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cli(stdin, args...)
		if err != nil {
			t.Fatalf("brokkr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := mustCLI("", "topic", "create", "orders", "-p", "3", "-c", "retention.ms=3600000", "-c", "cleanup.policy=compact")
	if !strings.Contains(out, "created") {
		t.Fatalf("create: %s", out)
	}
	if out, err := cli("", "topic", "create", "orders"); err == nil || !strings.Contains(out, "TOPIC_ALREADY_EXISTS") {
		t.Errorf("creating it again: err %v\n%s", err, out)
	}
	out = mustCLI("", "topic", "describe", "orders", "-c")
	for _, want := range []string{"retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG", "compact"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	var in strings.Builder
	for i := 0; i < 100; i++ {
		in.WriteString("k" + string(rune('a'+i%5)) + ":v" + strings.Repeat("x", i%7) + "\n")
	}
	mustCLI(in.String(), "produce", "orders", "--key-sep", ":", "-H", "src=cli", "--compression", "zstd")
	out = mustCLI("", "consume", "orders", "--offset", "start", "-n", "100", "--format", "%k=%v %h\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 100 {
		t.Fatalf("consumed %d lines, want 100:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "k") || !strings.Contains(l, "=v") || !strings.Contains(l, "src=cli") {
			t.Fatalf("line %q", l)
		}
	}
	mustCLI("", "topic", "alter-config", "orders", "--set", "retention.ms=60000")
	if out := mustCLI("", "topic", "describe", "orders", "-c"); !strings.Contains(out, "60000") {
		t.Errorf("alter-config did not show in describe:\n%s", out)
	}
	mustCLI("", "topic", "add-partitions", "orders", "--num", "2")
	if out := mustCLI("", "topic", "list"); !strings.Contains(out, "orders") || !strings.Contains(out, " 5 ") {
		t.Errorf("list after add-partitions:\n%s", out)
	}
	mustCLI("", "topic", "delete", "orders")
	if out := mustCLI("", "topic", "list"); strings.Contains(out, "orders") {
		t.Errorf("deleted topic still listed:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(b.DataDir, "logs", "orders-*")); len(m) != 0 {
		t.Errorf("partition directories left after delete: %v", m)
	}
}
