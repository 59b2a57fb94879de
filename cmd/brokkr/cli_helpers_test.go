package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// startFake starts an in-process fake Kafka cluster (kfake, test-only) of
// three brokers on 127.0.0.1 with ports chosen by the kernel and returns its
// comma-separated addresses. It stands in for `brokkr serve` until that
// exists; every command under test speaks only the Kafka protocol to it.
func startFake(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// cliResult is what one command run printed and how it exited.
type cliResult struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// runCLI executes the real command tree (newRoot, as main does) in process
// with args and stdin, and reports stdout, stderr and the exit code that
// main would have used (main prints "brokkr: <err>" and exits non-zero).
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := root.ExecuteContext(ctx)
	res := cliResult{elapsed: time.Since(start)}
	if err != nil {
		fmt.Fprintln(&errOut, "brokkr:", err)
		res.code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			res.code = ee.code
		}
	}
	res.stdout, res.stderr = out.String(), errOut.String()
	return res
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("brokkr %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// mustFail runs a command that must fail with a one-line error containing
// every string in want; it returns that line.
func mustFail(t *testing.T, want []string, stdin string, args ...string) string {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code == 0 {
		t.Fatalf("brokkr %s: exit 0, want failure\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "brokkr: ") {
		t.Fatalf("brokkr %s: want one error line starting with \"brokkr: \", got %q", strings.Join(args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Fatalf("brokkr %s: error %q does not contain %q", strings.Join(args, " "), lines[0], w)
		}
	}
	return lines[0]
}

// decodeJSON decodes a command's --json output into v.
func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON (%v):\n%s", err, s)
	}
}

// TestCLIHelperProcess is not a test: when run as a child by runBinary it
// becomes the brokkr binary (main with os.Args), so exit codes and stderr are
// exactly what a user sees.
func TestCLIHelperProcess(t *testing.T) {
	if os.Getenv("BROKKR_CLI_HELPER") != "1" {
		return
	}
	args := []string{"brokkr"}
	for i, a := range os.Args {
		if a == "--" {
			args = append(args, os.Args[i+1:]...)
			break
		}
	}
	os.Args = args
	main()
	os.Exit(0)
}

// runBinary runs main() in a child process with args, stdin and extra
// environment, bounded by a time limit.
func runBinary(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestCLIHelperProcess$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), "BROKKR_CLI_HELPER=1"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errOut.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("running the binary: %v", err)
	}
	return res
}

// closedPort returns a 127.0.0.1 address whose port was free a moment ago,
// so connecting to it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
