package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
)

// proc is one plugin binary and its current process (incarnation).
type proc struct {
	h    *Host
	name string

	startMu sync.Mutex // serializes starts

	mu           sync.Mutex
	path         string
	cur          *incarnation // nil when no process is up
	gen          uint64       // generation of the latest incarnation
	everStarted  bool
	backoff      time.Duration // the next wait after a fault
	backoffUntil time.Time
	restarts     int64
	faults       int64
	calls        int64
	lastErr      string
	lastFault    time.Time
}

// incarnation is one running process.
type incarnation struct {
	gen     uint64
	client  *plugin.Client
	conn    *grpc.ClientConn
	ret     pluginpb.RetentionClient
	cmp     pluginpb.CompactionClient
	started time.Time
	stop    chan struct{} // closed when the incarnation ends

	infoMu sync.Mutex
	rInfo  *plugins.Info
	cInfo  *plugins.Info
}

func (p *proc) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{Name: p.name, Path: p.path, Running: p.cur != nil && !p.cur.client.Exited(),
		Restarts: p.restarts, Faults: p.faults, Calls: p.calls, LastError: p.lastErr,
		LastFault: p.lastFault, BackoffUntil: p.backoffUntil}
}

// acquire returns the running incarnation, starting one if none is up and
// the back-off has passed.
func (p *proc) acquire() (*incarnation, error) {
	if inc, err := p.live(); inc != nil || err != nil {
		return inc, err
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if inc, err := p.live(); inc != nil || err != nil {
		return inc, err
	}
	if p.h.isClosed() {
		return nil, fmt.Errorf("%w: plugin %s: plugin host closed", ErrUnavailable, p.name)
	}
	path, err := p.h.Resolve(p.name)
	if err != nil {
		p.policyError(err.Error()) // the binary went away or changed: no process, no fault
		return nil, err
	}
	inc, err := p.start(path)
	if err != nil {
		p.mu.Lock()
		p.path = path
		p.mu.Unlock()
		p.fault(0, true, err)
		return nil, fmt.Errorf("%w: plugin %s: %w", ErrUnavailable, p.name, err)
	}
	p.mu.Lock()
	p.path = path
	if p.everStarted {
		p.restarts++
	}
	p.everStarted = true
	p.gen++
	inc.gen = p.gen
	p.cur = inc
	p.mu.Unlock()
	p.h.mu.Lock()
	if p.h.closed { // Close ran while we started
		p.h.mu.Unlock()
		p.shutdown()
		return nil, fmt.Errorf("%w: plugin %s: plugin host closed", ErrUnavailable, p.name)
	}
	p.h.wg.Add(1) // under h.mu: Close sets closed under it before it waits
	p.h.mu.Unlock()
	go p.healthLoop(inc)
	return inc, nil
}

// live returns the current incarnation, or an ErrUnavailable error while
// backing off, or (nil, nil) when a start is due.
func (p *proc) live() (*incarnation, error) {
	p.mu.Lock()
	inc := p.cur
	until, last := p.backoffUntil, p.lastErr
	p.mu.Unlock()
	if inc != nil {
		if !inc.client.Exited() {
			return inc, nil
		}
		p.fault(inc.gen, true, errors.New("plugin process exited"))
		return nil, fmt.Errorf("%w: plugin %s: process exited", ErrUnavailable, p.name)
	}
	if time.Now().Before(until) {
		return nil, fmt.Errorf("%w: plugin %s backing off until %s after: %s", ErrUnavailable, p.name, until.Format(time.RFC3339Nano), last)
	}
	return nil, nil
}

func (p *proc) start(path string) (*incarnation, error) {
	o := p.h.o
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins: plugin.PluginSet{
			pluginpb.NameRetention:  &pluginpb.Plugin{Kind: pluginpb.NameRetention},
			pluginpb.NameCompaction: &pluginpb.Plugin{Kind: pluginpb.NameCompaction},
		},
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHclog(o.Logger, "plugin."+p.name),
		StartTimeout:     o.StartTimeout,
		GRPCDialOptions:  pluginpb.GRPCDialOptions(),
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	raw, err := rpc.Dispense(pluginpb.NameRetention)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("start %s: unexpected client %T", path, raw)
	}
	return &incarnation{client: client, conn: conn, ret: pluginpb.NewRetentionClient(conn),
		cmp: pluginpb.NewCompactionClient(conn), started: time.Now(), stop: make(chan struct{})}, nil
}

func (p *proc) healthLoop(inc *incarnation) {
	defer p.h.wg.Done()
	t := time.NewTicker(p.h.o.HealthInterval)
	defer t.Stop()
	hc := healthpb.NewHealthClient(inc.conn)
	for {
		select {
		case <-inc.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.h.o.CallTimeout)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
		cancel()
		select {
		case <-inc.stop:
			return
		default:
		}
		switch {
		case inc.client.Exited():
			err = errors.New("plugin process exited")
		case err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			err = fmt.Errorf("health status %s", resp.GetStatus())
		}
		if err != nil {
			p.fault(inc.gen, true, fmt.Errorf("health check: %w", err))
			return
		}
	}
}

// fault records a fault. With restart, the incarnation gen (if still
// current) is killed and the next start waits out the back-off; a fault of
// an incarnation that is already gone was counted when it went.
func (p *proc) fault(gen uint64, restart bool, err error) {
	now := time.Now()
	p.mu.Lock()
	var dead *incarnation
	if restart && gen != 0 {
		if p.cur == nil || p.cur.gen != gen {
			p.mu.Unlock()
			return
		}
		dead = p.cur
		p.cur = nil
	}
	p.faults++
	p.lastErr = err.Error()
	p.lastFault = now
	var wait time.Duration
	if restart {
		if dead != nil && now.Sub(dead.started) >= p.h.o.MaxBackoff {
			p.backoff = p.h.o.MinBackoff // it ran long enough: start over
		}
		wait = p.backoff
		p.backoffUntil = now.Add(wait)
		p.backoff = min(2*p.backoff, p.h.o.MaxBackoff)
	}
	faults := p.faults
	p.mu.Unlock()

	args := []any{"plugin", p.name, "err", err, "faults", faults}
	if restart {
		args = append(args, "restart_in", wait)
	}
	p.h.o.Logger.Warn("policy plugin fault; nothing is deleted", args...)
	if dead != nil {
		close(dead.stop)
		p.h.track(func() { killHard(dead.client) })
	}
}

// policyError records a policy's own error (no fault, no restart).
func (p *proc) policyError(msg string) {
	p.mu.Lock()
	p.lastErr = msg
	p.mu.Unlock()
}

// shutdown ends the current incarnation without counting a fault.
func (p *proc) shutdown() {
	p.mu.Lock()
	inc := p.cur
	p.cur = nil
	p.mu.Unlock()
	if inc == nil {
		return
	}
	close(inc.stop)
	done := make(chan struct{})
	go func() { inc.client.Kill(); close(done) }() // graceful, then forced after 2 s
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		killHard(inc.client) // a stopped process does not even answer the shutdown call
		<-done
	}
}

// killHard sends SIGKILL to the process, then lets go-plugin clean up.
func killHard(c *plugin.Client) {
	if rc := c.ReattachConfig(); rc != nil && rc.Pid > 0 {
		if pr, err := os.FindProcess(rc.Pid); err == nil {
			_ = pr.Kill()
		}
	}
	c.Kill()
}

// incFor returns the current incarnation for a call; with gen != 0 only
// that incarnation (a compaction pass lives in one process: never start
// another for it).
func (p *proc) incFor(gen uint64, op string) (*incarnation, error) {
	if gen == 0 {
		return p.acquire()
	}
	inc, err := p.live()
	if err != nil {
		return nil, err
	}
	if inc == nil || inc.gen != gen {
		return nil, fmt.Errorf("%w: plugin %s: %s: the plugin restarted during the compaction pass", ErrUnavailable, p.name, op)
	}
	return inc, nil
}

func (p *proc) countCall() {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
}

// call runs one RPC on the current incarnation (or, with gen != 0, only on
// that incarnation) under the call time-out, and classifies its error.
func (p *proc) call(ctx context.Context, gen uint64, op string, f func(context.Context, *incarnation) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plugin %s: %s: %w", p.name, op, err)
	}
	inc, err := p.incFor(gen, op)
	if err != nil {
		return err
	}
	p.countCall()
	cctx, cancel := context.WithTimeout(ctx, p.h.o.CallTimeout)
	defer cancel()
	if err := f(cctx, inc); err != nil {
		return p.classify(ctx, inc, op, err)
	}
	return nil
}

// classify turns an RPC error into the error the caller sees, recording a
// fault (and killing the process) where the plugin is to blame.
func (p *proc) classify(ctx context.Context, inc *incarnation, op string, err error) error {
	if ctx.Err() != nil { // the caller gave up; not the plugin's fault
		return fmt.Errorf("plugin %s: %s: %w", p.name, op, ctx.Err())
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.FailedPrecondition: // the policy's own error
		msg := fmt.Sprintf("%s: %s", op, st.Message())
		p.policyError(msg)
		return fmt.Errorf("%w: plugin %s: %s", plugins.ErrPolicyFailed, p.name, msg)
	case codes.NotFound: // a pass the plugin does not know (it restarted)
		return fmt.Errorf("%w: plugin %s: %s: %s", ErrUnavailable, p.name, op, st.Message())
	case codes.Unimplemented, codes.ResourceExhausted, codes.InvalidArgument:
		err = fmt.Errorf("%s: %s: %s", op, st.Code(), st.Message())
		if st.Code() == codes.Unimplemented {
			err = fmt.Errorf("%s: the plugin does not serve this kind of policy (%s)", op, st.Message())
		}
		p.fault(inc.gen, false, err)
		return fmt.Errorf("%w: plugin %s: %w", plugins.ErrPolicyFailed, p.name, err)
	case codes.DeadlineExceeded:
		err = fmt.Errorf("%s: no answer within %v", op, p.h.o.CallTimeout)
	default:
		err = fmt.Errorf("%s: %s: %s", op, st.Code(), st.Message())
	}
	p.fault(inc.gen, true, err)
	return fmt.Errorf("%w: %w: plugin %s: %w", ErrUnavailable, plugins.ErrPolicyFailed, p.name, err)
}
