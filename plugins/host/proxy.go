package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/internal/pluginpb"
)

// retentionProxy is a plugins.RetentionPolicy served by a plugin process.
type retentionProxy struct{ p *proc }

// Info returns the plugin's Info with Name set to the plugin's file name
// (what topic configs name). When the plugin cannot be reached it returns
// just the name.
func (r *retentionProxy) Info() plugins.Info {
	i, err := r.p.info(context.Background(), true)
	if err != nil {
		return plugins.Info{Name: r.p.name}
	}
	return i
}

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
		d = plugins.RetentionDecision{LogStartOffset: resp.GetLogStartOffset(), Reason: resp.GetReason()}
		return nil
	})
	if err != nil {
		return plugins.RetentionDecision{}, err
	}
	if plugins.CheckInput(in) == nil {
		if _, err := plugins.Validate(in, d); err != nil {
			err = fmt.Errorf("Decide answered log start offset %d: %w", d.LogStartOffset, err)
			r.p.fault(0, false, err)
			return d, fmt.Errorf("plugin %s: %w", r.p.name, err)
		}
	}
	return d, nil
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

// Info is as retentionProxy.Info.
func (c *compactionProxy) Info() plugins.Info {
	i, err := c.p.info(context.Background(), false)
	if err != nil {
		return plugins.Info{Name: c.p.name}
	}
	return i
}

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
	values bool // ship Record.Value
	closed bool
}

var errPassClosed = errors.New("compaction pass already closed")

// Scan implements plugins.CompactionPass; a batch larger than
// pluginpb.ChunkBytes goes as several calls.
func (s *passProxy) Scan(ctx context.Context, batch []plugins.Record) error {
	if s.closed {
		return errPassClosed
	}
	for _, chunk := range pluginpb.Chunks(batch, s.values, pluginpb.ChunkBytes) {
		err := s.p.call(ctx, s.gen, "Scan", func(ctx context.Context, inc *incarnation) error {
			_, err := inc.cmp.Scan(ctx, &pluginpb.Batch{PassId: s.id, Records: pluginpb.RecordsToPB(chunk, s.values)})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Survivors implements plugins.CompactionPass. Each chunk's answer must pass
// plugins.ValidateSurvivors; one that does not is a fault and an error
// wrapping plugins.ErrRefused (the caller keeps the whole batch).
func (s *passProxy) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	if s.closed {
		return nil, errPassClosed
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
			err = fmt.Errorf("Survivors: %w", err)
			s.p.fault(0, false, err)
			return nil, fmt.Errorf("plugin %s: %w", s.p.name, err)
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
	err := s.p.call(context.Background(), s.gen, "Close", func(ctx context.Context, inc *incarnation) error {
		_, err := inc.cmp.Close(ctx, &pluginpb.Pass{PassId: s.id})
		return err
	})
	if errors.Is(err, ErrUnavailable) {
		return nil
	}
	return err
}
