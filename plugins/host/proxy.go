package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
)

// retentionProxy is a plugins.RetentionPolicy served by a plugin process.
type retentionProxy struct{ p *proc }

// Info returns the plugin's Info with Name set to the plugin's file name
// (what topic configs name). When the plugin cannot be reached it returns
// just the name.
func (r *retentionProxy) Info() plugins.Info { return r.p.infoOrName(true) }

// Decide implements plugins.RetentionPolicy. An answer that plugins.Validate
// refuses counts as a fault and comes back as an error wrapping
// plugins.ErrRefused, with the decision (for the audit log).
func (r *retentionProxy) Decide(ctx context.Context, in plugins.RetentionInput) (plugins.RetentionDecision, error) {
	var d plugins.RetentionDecision
	err := r.p.call(ctx, 0, "Decide", func(ctx context.Context, inc *incarnation) error {
		resp, err := inc.ret.Decide(ctx, pluginpb.RetentionInputToPB(in))
		if err != nil {
			return err
		}
		d = pluginpb.RetentionDecisionFromPB(resp)
		return nil
	})
	if err != nil {
		return plugins.RetentionDecision{}, err
	}
	if plugins.CheckInput(in) == nil {
		if _, err := plugins.Validate(in, d); err != nil {
			return d, r.p.refused(fmt.Errorf("Decide answered log start offset %d: %w", d.LogStartOffset, err))
		}
	}
	return d, nil
}

// infoOrName is the plugin's Info for one kind, or just its name when the
// plugin cannot be reached.
func (p *proc) infoOrName(retention bool) plugins.Info {
	i, err := p.info(context.Background(), retention)
	if err != nil {
		return plugins.Info{Name: p.name}
	}
	return i
}

// refused records an answer that plugins.Validate or ValidateSurvivors
// refused as a fault (without a restart) and returns the caller's error.
func (p *proc) refused(err error) error {
	p.fault(0, false, err)
	return fmt.Errorf("plugin %s: %w", p.name, err)
}

// info fetches and caches (per incarnation) the plugin's Info for one kind.
func (p *proc) info(ctx context.Context, retention bool) (plugins.Info, error) {
	var out plugins.Info
	err := p.call(ctx, 0, "Info", func(ctx context.Context, inc *incarnation) error {
		inc.infoMu.Lock()
		defer inc.infoMu.Unlock()
		cached := &inc.cInfo
		if retention {
			cached = &inc.rInfo
		}
		if *cached != nil {
			out = **cached
			return nil
		}
		var resp *pluginpb.PolicyInfo
		var err error
		if retention {
			resp, err = inc.ret.Info(ctx, &pluginpb.Empty{})
		} else {
			resp, err = inc.cmp.Info(ctx, &pluginpb.Empty{})
		}
		if err != nil {
			return err
		}
		out = plugins.Info{Name: p.name, NeedsValues: resp.GetNeedsValues()}
		*cached = &out
		return nil
	})
	return out, err
}

// compactionProxy is a plugins.CompactionPolicy served by a plugin process.
type compactionProxy struct{ p *proc }

// FullScan implements plugins.FullScanner: a plugin's Scan sees every
// cleanable record, not only the dirty section, since the broker cannot
// know whether the plugin's answer for an old record depends on newer ones.
func (c *compactionProxy) FullScan() bool { return true }

// Info is as retentionProxy.Info.
func (c *compactionProxy) Info() plugins.Info { return c.p.infoOrName(false) }

// Begin opens a pass in the plugin process. The pass is bound to that
// process: if the plugin restarts, the pass's calls fail with
// ErrUnavailable.
func (c *compactionProxy) Begin(ctx context.Context, params plugins.CompactionParams) (plugins.CompactionPass, error) {
	info, err := c.p.info(ctx, false)
	if err != nil {
		return nil, err
	}
	pass := &passProxy{p: c.p, values: info.NeedsValues}
	err = c.p.call(ctx, 0, "Begin", func(ctx context.Context, inc *incarnation) error {
		resp, err := inc.cmp.Begin(ctx, pluginpb.CompactionParamsToPB(params))
		if err != nil {
			return err
		}
		pass.gen, pass.id = inc.gen, resp.GetPassId()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pass, nil
}

type passProxy struct {
	p      *proc
	gen    uint64
	id     uint64
	values bool        // ship Record.Value
	scan   *scanStream // the open Scan stream, nil before the first Scan and after the last
	err    error       // sticky: a failed Scan makes the pass unusable
	closed bool
}

// scanStream is the pass's client stream of Scan batches: batches are sent
// without waiting for the plugin (so it scans while the host reads the next
// batch), and the stream is closed, and its result awaited, before the first
// Survivors.
type scanStream struct {
	stream grpc.ClientStreamingClient[pluginpb.Batch, pluginpb.Empty]
	cancel context.CancelFunc
}

var errPassClosed = errors.New("compaction pass already closed")

// watch runs f (a step of the Scan stream) under the call time-out and the
// caller's context, both of which cancel the stream.
func (s *passProxy) watch(ctx context.Context, f func() error) (err error, timedOut bool) {
	var fired atomic.Bool
	cancel := s.scan.cancel
	t := time.AfterFunc(s.p.h.o.CallTimeout, func() { fired.Store(true); cancel() })
	stop := context.AfterFunc(ctx, cancel)
	err = f()
	t.Stop()
	stop()
	return err, fired.Load()
}

// closeAndRecv ends the Scan stream and awaits the plugin's status, under
// watch.
func (s *passProxy) closeAndRecv(ctx context.Context) (err error, timedOut bool) {
	return s.watch(ctx, func() error { _, err := s.scan.stream.CloseAndRecv(); return err })
}

func (s *passProxy) usable(ctx context.Context) error {
	switch {
	case s.closed:
		return errPassClosed
	case s.err != nil:
		return s.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plugin %s: %w", s.p.name, err)
	}
	return nil
}

// Scan implements plugins.CompactionPass. Batches go down one stream
// without waiting for an answer; a batch larger than pluginpb.ChunkBytes
// goes as several messages. An error of an earlier batch may surface at a
// later Scan or at the first Survivors.
func (s *passProxy) Scan(ctx context.Context, batch []plugins.Record) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	inc, err := s.p.incFor(s.gen, "Scan")
	if err != nil {
		return err
	}
	if s.scan == nil {
		sctx, cancel := context.WithCancel(context.Background())
		st, err := inc.cmp.Scan(sctx)
		if err != nil {
			cancel()
			return s.p.classify(ctx, inc, "Scan", err)
		}
		s.scan = &scanStream{stream: st, cancel: cancel}
	}
	for _, chunk := range pluginpb.Chunks(batch, s.values, pluginpb.ChunkBytes) {
		s.p.countCall()
		msg := &pluginpb.Batch{PassId: s.id, Records: pluginpb.RecordsToPB(chunk, s.values)}
		err, timedOut := s.watch(ctx, func() error { return s.scan.stream.Send(msg) })
		if err == io.EOF { // the plugin ended the stream: its status says why
			err, timedOut = s.closeAndRecv(ctx)
			if err == nil {
				err = status.Error(codes.Internal, "Scan stream ended early")
			}
		}
		if err != nil {
			return s.failScan(ctx, inc, err, timedOut)
		}
	}
	return nil
}

// finishScan closes the Scan stream and waits for the plugin to have
// scanned everything.
func (s *passProxy) finishScan(ctx context.Context, inc *incarnation) error {
	if s.scan == nil {
		return nil
	}
	err, timedOut := s.closeAndRecv(ctx)
	if err != nil {
		return s.failScan(ctx, inc, err, timedOut)
	}
	s.scan.cancel()
	s.scan = nil
	return nil
}

func (s *passProxy) failScan(ctx context.Context, inc *incarnation, err error, timedOut bool) error {
	s.scan.cancel()
	s.scan = nil
	if timedOut {
		err = status.Error(codes.DeadlineExceeded, err.Error())
	}
	s.err = s.p.classify(ctx, inc, "Scan", err)
	return s.err
}

// Survivors implements plugins.CompactionPass. Each chunk's answer must pass
// plugins.ValidateSurvivors; one that does not is a fault and an error
// wrapping plugins.ErrRefused (the caller keeps the whole batch).
func (s *passProxy) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	inc, err := s.p.incFor(s.gen, "Survivors")
	if err != nil {
		return nil, err
	}
	if err := s.finishScan(ctx, inc); err != nil {
		return nil, err
	}
	var all []int64
	for _, chunk := range pluginpb.Chunks(batch, s.values, pluginpb.ChunkBytes) {
		var offs []int64
		err := s.p.call(ctx, s.gen, "Survivors", func(ctx context.Context, inc *incarnation) error {
			resp, err := inc.cmp.Survivors(ctx, &pluginpb.Batch{PassId: s.id, Records: pluginpb.RecordsToPB(chunk, s.values)})
			offs = resp.GetOffsets()
			return err
		})
		if err != nil {
			return nil, err
		}
		if _, err := plugins.ValidateSurvivors(chunk, offs); err != nil {
			return nil, s.p.refused(fmt.Errorf("Survivors: %w", err))
		}
		all = append(all, offs...)
	}
	return all, nil
}

// Close implements plugins.CompactionPass. Closing a pass whose process is
// gone is not an error.
func (s *passProxy) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	if s.scan != nil {
		if inc, err := s.p.incFor(s.gen, "Close"); err == nil {
			first = s.finishScan(context.Background(), inc)
		} else {
			s.scan.cancel()
			s.scan = nil
		}
	}
	err := s.p.call(context.Background(), s.gen, "Close", func(ctx context.Context, inc *incarnation) error {
		_, err := inc.cmp.Close(ctx, &pluginpb.Pass{PassId: s.id})
		return err
	})
	err = errors.Join(first, err)
	if errors.Is(err, ErrUnavailable) {
		return nil
	}
	return err
}
