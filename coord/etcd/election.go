package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/brokkr/brokkr/coord"
)

// controllerInfo is the value of <prefix>/controller: who won, at which epoch.
type controllerInfo struct {
	BrokerID int32 `json:"brokerid"`
	Epoch    int64 `json:"epoch"`
}

// leadership is a won campaign.
type leadership struct {
	b         *Backend
	election  *concurrency.Election
	brokerID  int32
	epoch     int64
	leaderKey string // the election key this session created
	leaderRev int64  // its create revision
	epochRev  int64  // the revision at which this controller wrote the epoch
	lost      chan struct{}
	once      sync.Once
}

// Campaign waits in etcd's election (concurrency.Election: the oldest key
// under <prefix>/controller/election/ wins) until this session's key is the
// oldest, then, in one transaction that checks the key is still there,
// raises <prefix>/controller_epoch by one and writes <prefix>/controller.
// Every write through the Leadership's Store compares both keys, so a
// controller whose lease expired, or that a newer epoch replaced, cannot
// write (Jepsen's etcd 3.4.3 analysis: a lock alone does not fence).
// One Backend campaigns for one broker at a time.
func (b *Backend) Campaign(ctx context.Context, brokerID int32) (coord.Leadership, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("coord/etcd: campaign: %w", coord.ErrClosed)
	}
	b.mu.Lock()
	if b.campaigning {
		b.mu.Unlock()
		return nil, fmt.Errorf("coord/etcd: campaign for broker %d: this backend already campaigns or leads: %w", brokerID, coord.ErrConflict)
	}
	b.campaigning = true
	b.mu.Unlock()
	l, err := b.campaign(ctx, brokerID)
	if err != nil {
		b.mu.Lock()
		b.campaigning = false
		b.mu.Unlock()
		return nil, err
	}
	return l, nil
}

func (b *Backend) campaign(ctx context.Context, brokerID int32) (*leadership, error) {
	id := strconv.Itoa(int(brokerID))
	for attempt := 0; ; attempt++ {
		s, err := b.getSession(ctx)
		if err != nil {
			return nil, b.mapErr("campaign", id, err)
		}
		e := concurrency.NewElection(s.s, b.pfxElection)
		// Campaign returns early if the session ends; cancel it then.
		cctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(s.s.Ctx(), cancel)
		err = e.Campaign(cctx, id)
		stop()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, b.mapErr("campaign", id, ctx.Err())
			}
			if isClosedChan(s.lost) || isClosedChan(s.s.Done()) {
				if attempt < 3 {
					continue // the session ended while waiting: a new one
				}
				return nil, fmt.Errorf("coord/etcd: campaign %s: %w", id, coord.ErrSessionLost)
			}
			return nil, b.mapErr("campaign", id, err)
		}
		l, err := b.takeOffice(ctx, s, e, brokerID)
		if errors.Is(err, coord.ErrSessionLost) && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return l, err
	}
}

// takeOffice raises the epoch while this session's election key still
// exists (waitDeletes in Campaign cannot tell whether the own key vanished
// with an expired lease while waiting).
func (b *Backend) takeOffice(ctx context.Context, s *session, e *concurrency.Election, brokerID int32) (*leadership, error) {
	leaderKey, leaderRev := e.Key(), e.Rev()
	for try := 0; try < 20; try++ {
		octx, cancel := b.opCtx(ctx)
		g, err := b.cli.Get(octx, b.keyEpoch)
		if err != nil {
			cancel()
			b.resignQuietly(e)
			return nil, b.mapErr("campaign", "read epoch", err)
		}
		var cur, curRev int64
		if len(g.Kvs) > 0 {
			curRev = g.Kvs[0].ModRevision
			if cur, err = strconv.ParseInt(string(g.Kvs[0].Value), 10, 64); err != nil {
				cancel()
				b.resignQuietly(e)
				return nil, fmt.Errorf("coord/etcd: campaign: %s holds %q, not an epoch: %w", b.keyEpoch, g.Kvs[0].Value, coord.ErrUnavailable)
			}
		}
		next := cur + 1
		info, _ := json.Marshal(controllerInfo{BrokerID: brokerID, Epoch: next})
		resp, err := b.cli.Txn(octx).
			If(clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", leaderRev),
				clientv3.Compare(clientv3.ModRevision(b.keyEpoch), "=", curRev)).
			Then(clientv3.OpPut(b.keyEpoch, strconv.FormatInt(next, 10)),
				clientv3.OpPut(b.keyController, string(info), clientv3.WithLease(s.s.Lease()))).
			Else(clientv3.OpGet(leaderKey)).Commit()
		cancel()
		if err != nil {
			b.resignQuietly(e)
			return nil, b.mapErr("campaign", "raise epoch", err)
		}
		if resp.Succeeded {
			l := &leadership{b: b, election: e, brokerID: brokerID, epoch: next, leaderKey: leaderKey, leaderRev: leaderRev, epochRev: resp.Header.Revision, lost: make(chan struct{})}
			if !b.spawn(func() { l.guard(s) }) {
				l.end("backend closed")
				return nil, fmt.Errorf("coord/etcd: campaign: %w", coord.ErrClosed)
			}
			b.log.Info("coord/etcd: elected controller", "broker", brokerID, "epoch", next)
			return l, nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != leaderRev {
			return nil, fmt.Errorf("coord/etcd: campaign: the election key vanished before taking office: %w", coord.ErrSessionLost)
		}
		// The epoch moved between the read and the transaction: read again.
	}
	b.resignQuietly(e)
	return nil, fmt.Errorf("coord/etcd: campaign: the epoch key kept changing: %w", coord.ErrUnavailable)
}

func (b *Backend) resignQuietly(e *concurrency.Election) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = e.Resign(ctx)
}

// guard ends the leadership when the session ends, the election key is
// deleted, or another epoch is written; it re-checks after a broken watch.
func (l *leadership) guard(s *session) {
	b := l.b
	// Everything below stops when the session ends: a Watch call or a read
	// made while etcd is unreachable blocks until its context ends.
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	stop := context.AfterFunc(s.s.Ctx(), cancel)
	defer stop()
	sessionOver := func() string {
		if b.ctx.Err() != nil {
			return "backend closed"
		}
		return "session lost (lease expired or could not be kept alive)"
	}
	rev := l.epochRev
	for {
		wctx, wcancel := context.WithCancel(ctx)
		lk := b.cli.Watch(wctx, l.leaderKey, clientv3.WithRev(rev+1))
		ek := b.cli.Watch(wctx, b.keyEpoch, clientv3.WithRev(rev+1))
		why := ""
		for why == "" {
			select {
			case <-l.lost:
				wcancel()
				return
			case <-s.lost:
				why = sessionOver()
			case <-ctx.Done():
				why = sessionOver()
			case wr, ok := <-lk:
				if !ok || wr.Err() != nil || wr.CompactRevision != 0 {
					why = "recheck"
				} else {
					for _, e := range wr.Events {
						if e.Type == clientv3.EventTypeDelete {
							why = "election key deleted"
						}
					}
					rev = max(rev, wr.Header.Revision)
				}
			case wr, ok := <-ek:
				if !ok || wr.Err() != nil || wr.CompactRevision != 0 {
					why = "recheck"
				} else {
					for _, e := range wr.Events {
						if e.Kv.ModRevision != l.epochRev {
							why = "a newer epoch " + string(e.Kv.Value) + " was written"
						}
					}
					rev = max(rev, wr.Header.Revision)
				}
			}
		}
		wcancel()
		if why != "recheck" {
			l.end(why)
			return
		}
		// A watch broke (member lost its leader, compaction): look directly.
		for ctx.Err() == nil {
			octx, ocancel := b.opCtx(ctx)
			resp, err := b.cli.Txn(octx).Then(clientv3.OpGet(l.leaderKey), clientv3.OpGet(b.keyEpoch)).Commit()
			ocancel()
			if err == nil {
				lkv := resp.Responses[0].GetResponseRange().Kvs
				ekv := resp.Responses[1].GetResponseRange().Kvs
				if len(lkv) == 0 || lkv[0].CreateRevision != l.leaderRev || len(ekv) == 0 || ekv[0].ModRevision != l.epochRev {
					l.end("election key or epoch changed while the watch was broken")
					return
				}
				rev = resp.Header.Revision
				break
			}
			select {
			case <-ctx.Done():
			case <-s.lost:
			case <-time.After(200 * time.Millisecond):
			}
			if isClosedChan(s.lost) {
				l.end("session lost")
				return
			}
		}
		if ctx.Err() != nil {
			l.end(sessionOver())
			return
		}
	}
}

// end closes Lost once and lets the Backend campaign again.
func (l *leadership) end(why string) {
	l.once.Do(func() {
		close(l.lost)
		l.b.mu.Lock()
		l.b.campaigning = false
		l.b.mu.Unlock()
		l.b.log.Info("coord/etcd: controllership ended", "broker", l.brokerID, "epoch", l.epoch, "why", why)
	})
}

func (l *leadership) Epoch() int64          { return l.epoch }
func (l *leadership) Lost() <-chan struct{} { return l.lost }
func (l *leadership) Store() coord.Store    { return fencedStore{b: l.b, f: &fence{l: l}} }

// Resign deletes <prefix>/controller (if still this epoch's) and the
// election key, and ends the leadership.
func (l *leadership) Resign(ctx context.Context) error {
	if isClosedChan(l.lost) {
		return nil
	}
	b := l.b
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	_, err := b.cli.Txn(octx).
		If(clientv3.Compare(clientv3.ModRevision(b.keyController), "=", l.epochRev)).
		Then(clientv3.OpDelete(b.keyController)).Commit()
	if err == nil {
		err = l.election.Resign(octx)
	}
	l.end("resigned")
	return b.mapErr("resign", strconv.Itoa(int(l.brokerID)), err)
}

// Controller reads <prefix>/controller.
func (b *Backend) Controller(ctx context.Context) (int32, int64, error) {
	if b.isClosed() {
		return 0, 0, fmt.Errorf("coord/etcd: controller: %w", coord.ErrClosed)
	}
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	resp, err := b.cli.Get(octx, b.keyController)
	if err != nil {
		return 0, 0, b.mapErr("controller", "", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, fmt.Errorf("coord/etcd: controller: none elected: %w", coord.ErrNotFound)
	}
	var ci controllerInfo
	if err := json.Unmarshal(resp.Kvs[0].Value, &ci); err != nil {
		return 0, 0, fmt.Errorf("coord/etcd: controller: %s holds %q: %w", b.keyController, resp.Kvs[0].Value, coord.ErrUnavailable)
	}
	return ci.BrokerID, ci.Epoch, nil
}

// fencedStore is a Leadership's Store: reads and watches as the Backend's,
// writes conditioned on the fence.
type fencedStore struct {
	b *Backend
	f *fence
}

func (s fencedStore) Get(ctx context.Context, key string) (coord.Record, error) {
	return s.b.Get(ctx, key)
}

func (s fencedStore) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	return s.b.List(ctx, prefix)
}

func (s fencedStore) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	return s.b.Watch(ctx, prefix)
}

func (s fencedStore) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return s.b.create(ctx, s.f, key, value)
}

func (s fencedStore) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return s.b.cas(ctx, s.f, key, value, expect)
}

func (s fencedStore) Delete(ctx context.Context, key string, expect coord.Version) error {
	return s.b.del(ctx, s.f, key, expect)
}
