package etcd

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/brokkr/brokkr/coord"
)

type kv struct {
	key   string
	value []byte
	rev   int64 // ModRevision
}

type kvEvent struct {
	kv
	deleted bool
}

// follow reads everything under prefix at one revision R, hands it to
// snapshot, then watches prefix from R+1 so that nothing between the read
// and the watch is missed. etcd's client resumes a watch on another member
// after a disconnect from the last revision it delivered, so a reconnect
// loses nothing. When the watch cannot continue (the revision was
// compacted, or the member lost its leader: WithRequireLeader), follow
// reads a fresh snapshot and starts again: snapshot is called again, which
// Watch turns into an EventResync. The first read happens before follow
// returns; its error is returned. end is called when following stops (ctx
// ended or the Backend closed).
func (b *Backend) follow(ctx context.Context, op, prefix string, snapshot func([]kv) bool, events func([]kvEvent) bool, end func()) error {
	read := func(ctx context.Context) ([]kv, int64, error) {
		octx, cancel := b.opCtx(ctx)
		defer cancel()
		resp, err := b.cli.Get(octx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return nil, 0, err
		}
		out := make([]kv, len(resp.Kvs))
		for i, x := range resp.Kvs {
			out[i] = kv{key: string(x.Key), value: x.Value, rev: x.ModRevision}
		}
		return out, resp.Header.Revision, nil
	}
	first, rev, err := read(ctx)
	if err != nil {
		return b.mapErr(op, prefix, err)
	}
	// Stop with whichever ends first: the caller's ctx or the Backend.
	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	ok := b.spawn(func() {
		defer end()
		defer stop()
		defer cancel()
		if !snapshot(first) {
			return
		}
		backoff := 50 * time.Millisecond
		for fctx.Err() == nil {
			wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(fctx))
			wch := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			why := ""
			for wr := range wch {
				if wr.CompactRevision != 0 {
					why = fmt.Sprintf("revision %d compacted (now %d)", rev+1, wr.CompactRevision)
					break
				}
				if err := wr.Err(); err != nil {
					why = err.Error()
					break
				}
				if wr.IsProgressNotify() {
					continue
				}
				evs := make([]kvEvent, len(wr.Events))
				for i, e := range wr.Events {
					evs[i] = kvEvent{kv: kv{key: string(e.Kv.Key), value: e.Kv.Value, rev: e.Kv.ModRevision}, deleted: e.Type == clientv3.EventTypeDelete}
				}
				if len(evs) > 0 && !events(evs) {
					wcancel()
					return
				}
				rev = wr.Header.Revision
				backoff = 50 * time.Millisecond
			}
			wcancel()
			if fctx.Err() != nil {
				return
			}
			if why == "" {
				why = "watch channel closed"
			}
			// Resync: read a fresh snapshot, retrying while etcd is away.
			b.m.resyncs.Inc()
			b.log.Info("coord/etcd: watch interrupted; resyncing from a fresh snapshot", "prefix", prefix, "why", why)
			for fctx.Err() == nil {
				kvs, r, err := read(fctx)
				if err == nil {
					if !snapshot(kvs) {
						return
					}
					rev = r
					break
				}
				select {
				case <-fctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
			}
		}
	})
	if !ok {
		stop()
		cancel()
		end()
		return fmt.Errorf("coord/etcd: %s %s: %w", op, prefix, coord.ErrClosed)
	}
	return nil
}

// Watch delivers every change under prefix, in revision order, after an
// initial EventResync holding the records at the revision the watch starts
// from. A later EventResync follows a compaction or a member that lost its
// leader; the channel closes when ctx ends or the Backend closes.
func (b *Backend) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	if err := b.precheck("watch", prefix, checkPrefix); err != nil {
		return nil, err
	}
	out := make(chan coord.Event, 64)
	send := func(ev coord.Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-b.ctx.Done():
			return false
		}
	}
	strip := func(k string) string { return strings.TrimPrefix(k, b.pfxData) }
	err := b.follow(ctx, "watch", b.pfxData+prefix, func(kvs []kv) bool {
		snap := make([]coord.Record, len(kvs))
		for i, x := range kvs {
			snap[i] = coord.Record{Key: strip(x.key), Value: x.value, Version: coord.Version(x.rev)}
		}
		return send(coord.Event{Kind: coord.EventResync, Snapshot: snap})
	}, func(evs []kvEvent) bool {
		for _, e := range evs {
			ev := coord.Event{Kind: coord.EventPut, Key: strip(e.key), Value: e.value, Version: coord.Version(e.rev)}
			if e.deleted {
				ev = coord.Event{Kind: coord.EventDelete, Key: strip(e.key), Version: coord.NoVersion}
			}
			if !send(ev) {
				return false
			}
		}
		return true
	}, func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}
