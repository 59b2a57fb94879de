package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/brokkr/brokkr/coord"
)

// registration is a broker key bound to the session's lease.
type registration struct {
	b      *Backend
	key    string
	lease  clientv3.LeaseID
	lost   chan struct{}
	closed chan struct{}
	once   sync.Once
}

// Register puts <prefix>/brokers/ids/<id> with the session's lease: it
// disappears when the lease expires (the process died or was cut off for
// the session time-out) or is revoked (Close). A broker ID registered by
// another live session gives ErrConflict.
func (b *Backend) Register(ctx context.Context, info coord.BrokerInfo) (coord.Registration, error) {
	id := strconv.Itoa(int(info.ID))
	if info.ID < 0 {
		return nil, fmt.Errorf("coord/etcd: register: %w: broker id %d is negative", ErrInvalidKey, info.ID)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("coord/etcd: register %s: %w", id, coord.ErrClosed)
	}
	val, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("coord/etcd: register %s: %w", id, err)
	}
	s, err := b.getSession(ctx)
	if err != nil {
		return nil, b.mapErr("register", id, err)
	}
	key := b.pfxBrokers + id
	lease := s.s.Lease()
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	resp, err := b.cli.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, b.mapErr("register", id, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("coord/etcd: register: broker %s is already registered by a live session: %w", id, coord.ErrConflict)
	}
	r := &registration{b: b, key: key, lease: lease, lost: make(chan struct{}), closed: make(chan struct{})}
	b.spawn(func() {
		select {
		case <-s.lost:
			r.once.Do(func() { close(r.lost) })
		case <-r.closed:
		}
	})
	return r, nil
}

func (r *registration) Lost() <-chan struct{} { return r.lost }

// Close deletes the broker key if it is still this session's.
func (r *registration) Close(ctx context.Context) error {
	select {
	case <-r.closed:
		return nil
	default:
	}
	close(r.closed)
	if r.b.isClosed() || isClosedChan(r.lost) {
		return nil
	}
	octx, cancel := r.b.opCtx(ctx)
	defer cancel()
	_, err := r.b.cli.Txn(octx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", r.lease)).
		Then(clientv3.OpDelete(r.key)).Commit()
	return r.b.mapErr("unregister", r.key, err)
}

// WatchBrokers delivers the sorted live set now and after every change.
// A slow reader gets the newest set, never a stale one.
func (b *Backend) WatchBrokers(ctx context.Context) (<-chan []coord.BrokerInfo, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("coord/etcd: watch brokers: %w", coord.ErrClosed)
	}
	out := make(chan []coord.BrokerInfo, 1)
	live := map[string]coord.BrokerInfo{}
	publish := func() {
		list := make([]coord.BrokerInfo, 0, len(live))
		for _, bi := range live {
			list = append(list, bi)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		for { // one sender: make room, then send the newest
			select {
			case out <- list:
				return
			default:
				select {
				case <-out:
				default:
				}
			}
		}
	}
	put := func(k string, v []byte) {
		var bi coord.BrokerInfo
		if err := json.Unmarshal(v, &bi); err != nil {
			b.log.Warn("coord/etcd: unreadable broker registration", "key", k, "err", err)
			return
		}
		live[k] = bi
	}
	err := b.follow(ctx, "watch brokers", b.pfxBrokers, func(kvs []kv) bool {
		clear(live)
		for _, x := range kvs {
			put(x.key, x.value)
		}
		publish()
		return true
	}, func(evs []kvEvent) bool {
		for _, e := range evs {
			if e.deleted {
				delete(live, e.key)
			} else {
				put(e.key, e.value)
			}
		}
		publish()
		return true
	}, func() { close(out) })
	if err != nil {
		return nil, err
	}
	return out, nil
}
