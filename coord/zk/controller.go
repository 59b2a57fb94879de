package zk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
)

// controllerZNode is Kafka's /controller JSON (version 2).
type controllerZNode struct {
	Version              int    `json:"version"`
	BrokerID             int32  `json:"brokerid"`
	Timestamp            string `json:"timestamp"`
	KRaftControllerEpoch int    `json:"kraftControllerEpoch"`
}

// leadership is a won campaign: our ephemeral /controller plus the
// zkVersion /controller_epoch got in the same transaction, which every
// fenced write checks.
type leadership struct {
	b              *Backend
	brokerID       int32
	epoch          int64
	epochZkVersion int32
	czxid          int64 // of our /controller znode

	lostOnce sync.Once
	lost     chan struct{}
}

var _ coord.Leadership = (*leadership)(nil)

func (l *leadership) Epoch() int64          { return l.epoch }
func (l *leadership) Lost() <-chan struct{} { return l.lost }
func (l *leadership) Store() coord.Store    { return &fencedStore{b: l.b, f: &fence{l: l}} }

func (l *leadership) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// loseLocked ends the leadership; b.mu must be held.
func (l *leadership) loseLocked(why string) {
	l.lostOnce.Do(func() {
		delete(l.b.leaders, l)
		close(l.lost)
		l.b.log.Warn("coord/zk: controller leadership lost", "broker", l.brokerID, "epoch", l.epoch, "why", why)
	})
}

func (l *leadership) lose(why string) {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	l.loseLocked(why)
}

// Resign ends the leadership and deletes /controller if it is still ours.
func (l *leadership) Resign(ctx context.Context) error {
	l.lose("resigned")
	b := l.b
	err := b.call(ctx, func() error { return b.deleteController(l.czxid) })
	return b.mapErr("resign", controllerKey, err)
}

// deleteController deletes /controller if this session owns it and, when
// czxid is not 0, it is the znode created at czxid.
func (b *Backend) deleteController(czxid int64) error {
	_, st, err := b.conn.Get(b.path(controllerKey))
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.EphemeralOwner != b.conn.SessionID() || (czxid != 0 && st.Czxid != czxid) {
		return nil
	}
	if err := b.conn.Delete(b.path(controllerKey), st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
		return err
	}
	return nil
}

// dropStaleController deletes a /controller of this session that no live
// leadership stands behind (after leadership was given up on a disconnect
// and the session survived).
func (b *Backend) dropStaleController(ctx context.Context) error {
	b.mu.Lock()
	n := len(b.leaders)
	b.mu.Unlock()
	if n > 0 {
		return nil
	}
	return b.mapErr("drop stale controller", controllerKey, b.call(ctx, func() error { return b.deleteController(0) }))
}

// Campaign blocks until brokerID is the controller: it creates the
// ephemeral /controller and bumps /controller_epoch in one transaction (as
// Kafka does); when /controller exists it waits for it to go.
func (b *Backend) Campaign(ctx context.Context, brokerID int32) (coord.Leadership, error) {
	if brokerID < 0 {
		return nil, b.mapErr("campaign", controllerKey, fmt.Errorf("%w: broker id %d is negative", ErrInvalidKey, brokerID))
	}
	cp, ep := b.path(controllerKey), b.path(epochKey)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, b.mapErr("campaign", controllerKey, err)
		}
		b.mu.Lock()
		gen, closed := b.gen, b.closed
		b.mu.Unlock()
		if closed {
			return nil, b.mapErr("campaign", controllerKey, errClosed)
		}
		var (
			l       *leadership
			waitFor <-chan zk.Event
		)
		err := b.call(ctx, func() error {
			data, err := json.Marshal(controllerZNode{Version: 2, BrokerID: brokerID,
				Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10), KRaftControllerEpoch: -1})
			if err != nil {
				return err
			}
			if ok, _, ch, err := b.conn.ExistsW(cp); err != nil {
				return err
			} else if ok {
				waitFor = ch
				return nil
			}
			raw, st, err := b.conn.Get(ep)
			var epoch int64
			var bump any
			switch {
			case errors.Is(err, zk.ErrNoNode):
				epoch = 1
				if err := b.ensurePath(parentPath(ep)); err != nil {
					return err
				}
				bump = &zk.CreateRequest{Path: ep, Data: []byte("1"), Acl: zk.WorldACL(zk.PermAll)}
			case err != nil:
				return err
			default:
				prev, perr := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
				if perr != nil {
					return fmt.Errorf("%s holds %q, not an epoch", epochKey, raw)
				}
				epoch = prev + 1
				bump = &zk.SetDataRequest{Path: ep, Data: []byte(strconv.FormatInt(epoch, 10)), Version: st.Version}
			}
			res, err := b.conn.Multi(
				&zk.CreateRequest{Path: cp, Data: data, Acl: zk.WorldACL(zk.PermAll), Flags: zk.FlagEphemeral},
				bump)
			if errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrBadVersion) {
				return nil // lost the race: look again
			}
			if err != nil {
				return err
			}
			l = &leadership{b: b, brokerID: brokerID, epoch: epoch, lost: make(chan struct{})}
			// Our /controller's czxid is the transaction's zxid, which is
			// also /controller_epoch's new mzxid.
			if len(res) == 2 && res[1].Stat != nil {
				l.epochZkVersion = res[1].Stat.Version
				l.czxid = res[1].Stat.Mzxid
			} else if _, cst, err := b.conn.Get(cp); err == nil && cst.EphemeralOwner == b.conn.SessionID() {
				l.czxid = cst.Czxid // the epoch znode was created (version 0): no stat in the reply
			}
			return nil
		})
		if err != nil {
			if b.isClosed() || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, b.mapErr("campaign", controllerKey, err)
			}
			b.log.Debug("coord/zk: campaign step failed; retrying", "err", err)
			select {
			case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
			case <-ctx.Done():
			case <-b.closeCh:
			}
			continue
		}
		if l != nil {
			b.mu.Lock()
			b.leaders[l] = struct{}{}
			if b.gen != gen || b.closed {
				l.loseLocked("connection lost during the campaign")
			}
			b.mu.Unlock()
			b.log.Info("coord/zk: elected controller", "broker", brokerID, "epoch", l.epoch)
			b.wg.Add(2)
			go l.follow()
			go l.sweepLoop()
			return l, nil
		}
		if waitFor != nil {
			select {
			case <-waitFor:
			case <-ctx.Done():
			case <-b.closeCh:
			}
		}
	}
}

// follow ends the leadership when /controller stops being ours (deleted by
// hand, or the session changed) or the epoch moves on.
func (l *leadership) follow() {
	b := l.b
	defer b.wg.Done()
	cp := b.path(controllerKey)
	for !l.isLost() {
		_, st, ch, err := b.conn.GetW(cp)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			l.lose("/controller was deleted")
			return
		case err == nil && st.Czxid != l.czxid && l.czxid != 0:
			l.lose("/controller belongs to another session")
			return
		case err != nil:
			select { // disconnected: onSession has ended the leadership
			case <-l.lost:
			case <-b.closeCh:
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		select {
		case <-ch:
		case <-l.lost:
		case <-b.closeCh:
			return
		}
	}
}

// sweepLoop removes old tombstones while this leadership lasts: one
// sweeper in the cluster, every TombstoneTTL/2.
func (l *leadership) sweepLoop() {
	b := l.b
	defer b.wg.Done()
	ttl := b.cfg.TombstoneTTL
	for {
		select {
		case <-l.lost:
			return
		case <-b.closeCh:
			return
		case <-time.After(ttl / 2):
		}
		n, err := b.sweep(ttl)
		if err != nil {
			b.log.Warn("coord/zk: tombstone sweep failed", "err", err)
		} else if n > 0 {
			b.log.Debug("coord/zk: tombstones swept", "removed", n)
		}
	}
}

// Controller returns the controller's broker id and epoch after a sync. The
// two znodes are read one after the other; a pair is accepted when
// /controller was created by the transaction that last wrote
// /controller_epoch.
func (b *Backend) Controller(ctx context.Context) (int32, int64, error) {
	var (
		id    int32
		epoch int64
	)
	err := b.call(ctx, func() error {
		cp, ep := b.path(controllerKey), b.path(epochKey)
		if _, err := b.conn.Sync(cp); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		for attempt := 0; ; attempt++ {
			raw, cst, err := b.conn.Get(cp)
			if err != nil {
				return err
			}
			var c controllerZNode
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("%s: %v", controllerKey, err)
			}
			eraw, est, err := b.conn.Get(ep)
			if err != nil {
				return err
			}
			e, err := strconv.ParseInt(strings.TrimSpace(string(eraw)), 10, 64)
			if err != nil {
				return fmt.Errorf("%s holds %q, not an epoch", epochKey, eraw)
			}
			id, epoch = c.BrokerID, e
			if cst.Czxid == est.Mzxid || attempt >= 5 {
				return nil
			}
		}
	})
	if err != nil {
		return 0, 0, b.mapErr("controller", controllerKey, err)
	}
	return id, epoch, nil
}

// fencedStore is a Leadership's Store: reads pass through; every write is a
// multi that first checks /controller_epoch's zkVersion.
type fencedStore struct {
	b *Backend
	f *fence
}

func (s *fencedStore) Get(ctx context.Context, key string) (coord.Record, error) {
	return s.b.Get(ctx, key)
}

func (s *fencedStore) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	return s.b.List(ctx, prefix)
}

func (s *fencedStore) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	return s.b.Watch(ctx, prefix)
}

func (s *fencedStore) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return s.b.create(ctx, key, value, s.f)
}

func (s *fencedStore) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return s.b.cas(ctx, key, value, expect, s.f)
}

func (s *fencedStore) Delete(ctx context.Context, key string, expect coord.Version) error {
	return s.b.del(ctx, key, expect, s.f)
}
