package zk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
)

// Znodes the backend owns (under the chroot), as Kafka's ZooKeeper mode.
const (
	brokersKey    = "/brokers/ids"
	controllerKey = "/controller"
	epochKey      = "/controller_epoch"
)

// brokerZNode is Kafka's /brokers/ids/<id> JSON (version 5), plus
// Brokkr's metadata under "brokkr_meta". The id is the znode's name.
type brokerZNode struct {
	Features    map[string]any    `json:"features"`
	ProtocolMap map[string]string `json:"listener_security_protocol_map"`
	Endpoints   []string          `json:"endpoints"`
	Rack        *string           `json:"rack"`
	JMXPort     int               `json:"jmx_port"`
	Port        int               `json:"port"`
	Host        *string           `json:"host"`
	Version     int               `json:"version"`
	Timestamp   string            `json:"timestamp"`
	BrokkrMeta  map[string]string `json:"brokkr_meta,omitempty"`
}

// encodeBroker renders b as Kafka does: host and port are those of the
// PLAINTEXT endpoint (null and -1 when there is none).
func encodeBroker(b coord.BrokerInfo, now time.Time) ([]byte, error) {
	z := brokerZNode{
		Features:    map[string]any{},
		ProtocolMap: map[string]string{},
		Endpoints:   b.Endpoints,
		JMXPort:     -1,
		Port:        -1,
		Version:     5,
		Timestamp:   strconv.FormatInt(now.UnixMilli(), 10),
		BrokkrMeta:  b.Meta,
	}
	if z.Endpoints == nil {
		z.Endpoints = []string{}
	}
	if b.Rack != "" {
		z.Rack = &b.Rack
	}
	for _, ep := range b.Endpoints {
		name, addr, ok := strings.Cut(ep, "://")
		if !ok || name == "" {
			return nil, fmt.Errorf("endpoint %q: want LISTENER://host:port", ep)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %v", ep, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("endpoint %q: bad port", ep)
		}
		proto := name
		switch name {
		case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
		default:
			proto = "PLAINTEXT"
		}
		z.ProtocolMap[name] = proto
		if name == "PLAINTEXT" && z.Host == nil {
			h := host
			z.Host, z.Port = &h, p
		}
	}
	return json.Marshal(z)
}

func decodeBroker(key string, data []byte) (coord.BrokerInfo, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(key, brokersKey+"/"), 10, 32)
	if err != nil {
		return coord.BrokerInfo{}, fmt.Errorf("broker znode %s: id is not a number", key)
	}
	var z brokerZNode
	if err := json.Unmarshal(data, &z); err != nil {
		return coord.BrokerInfo{}, fmt.Errorf("broker znode %s: %v", key, err)
	}
	info := coord.BrokerInfo{ID: int32(id), Endpoints: z.Endpoints, Meta: z.BrokkrMeta}
	if z.Rack != nil {
		info.Rack = *z.Rack
	}
	if len(info.Endpoints) == 0 && z.Host != nil && z.Port >= 0 { // a pre-v2 registration
		info.Endpoints = []string{fmt.Sprintf("PLAINTEXT://%s", net.JoinHostPort(*z.Host, strconv.Itoa(z.Port)))}
	}
	return info, nil
}

// registration is an ephemeral /brokers/ids/<id> znode, created again on
// the new session after an expiry.
type registration struct {
	b    *Backend
	id   int32
	path string
	data []byte

	lostOnce sync.Once
	lost     chan struct{}
}

func (r *registration) Lost() <-chan struct{} { return r.lost }

func (r *registration) markLost() { r.lostOnce.Do(func() { close(r.lost) }) }

// Register creates the ephemeral /brokers/ids/<id> znode. It fails with
// coord.ErrConflict when the id is registered by another session (as Kafka:
// a broker restarted within the session time-out of its previous life waits
// until ZooKeeper expires the old session, or the caller retries).
func (b *Backend) Register(ctx context.Context, info coord.BrokerInfo) (coord.Registration, error) {
	if info.ID < 0 {
		return nil, b.mapErr("register", "broker", fmt.Errorf("%w: broker id %d is negative", ErrInvalidKey, info.ID))
	}
	key := fmt.Sprintf("%s/%d", brokersKey, info.ID)
	data, err := encodeBroker(info, time.Now())
	if err != nil {
		return nil, b.mapErr("register", key, fmt.Errorf("%w: %v", ErrInvalidKey, err))
	}
	r := &registration{b: b, id: info.ID, path: b.path(key), data: data, lost: make(chan struct{})}
	// Added first, so that a session expiry during the create re-creates it.
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.mapErr("register", key, errClosed)
	}
	b.regs[r] = struct{}{}
	b.mu.Unlock()
	if err := b.call(ctx, func() error { return r.create() }); err != nil {
		b.mu.Lock()
		delete(b.regs, r)
		b.mu.Unlock()
		return nil, b.mapErr("register", key, err)
	}
	b.log.Info("coord/zk: broker registered", "id", info.ID, "endpoints", info.Endpoints)
	return r, nil
}

// create makes the ephemeral znode on the current session; one of ours is
// success.
func (r *registration) create() error {
	b := r.b
	if err := b.ensurePath(parentPath(r.path)); err != nil {
		return err
	}
	_, err := b.conn.Create(r.path, r.data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNodeExists) {
		_, st, gerr := b.conn.Get(r.path)
		if gerr != nil {
			return gerr
		}
		if st.EphemeralOwner == b.conn.SessionID() {
			return nil
		}
		return fmt.Errorf("%w: broker id %d is registered by session 0x%x (it goes when that session ends)",
			coord.ErrConflict, r.id, st.EphemeralOwner)
	}
	return err
}

// reregister runs after the session came back.
func (r *registration) reregister(ctx context.Context) error {
	err := r.b.call(ctx, r.create)
	if errors.Is(err, coord.ErrConflict) {
		r.b.log.Error("coord/zk: cannot re-register after session expiry", "id", r.id, "err", err)
		r.b.mu.Lock()
		delete(r.b.regs, r)
		r.b.mu.Unlock()
		r.markLost()
		return nil
	}
	return err
}

// Close deletes the znode if it is this session's.
func (r *registration) Close(ctx context.Context) error {
	b := r.b
	b.mu.Lock()
	_, live := b.regs[r]
	delete(b.regs, r)
	b.mu.Unlock()
	if !live {
		return nil
	}
	err := b.call(ctx, func() error {
		_, st, err := b.conn.Get(r.path)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.EphemeralOwner != b.conn.SessionID() {
			return nil
		}
		if err := b.conn.Delete(r.path, st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	})
	return b.mapErr("deregister", b.key(r.path), err)
}

// WatchBrokers follows /brokers/ids and sends the whole live set after every
// change; a slow reader gets the newest set, never a stale one.
func (b *Backend) WatchBrokers(ctx context.Context) (<-chan []coord.BrokerInfo, error) {
	events, err := b.watch(ctx, brokersKey+"/", true)
	if err != nil {
		return nil, err
	}
	out := make(chan []coord.BrokerInfo, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(out)
		live := map[int32]coord.BrokerInfo{}
		var pending []coord.BrokerInfo
		have := false
		for {
			var send chan []coord.BrokerInfo
			if have {
				send = out
			}
			select {
			case send <- pending:
				have = false
			case ev, ok := <-events:
				if !ok {
					return
				}
				switch ev.Kind {
				case coord.EventResync:
					clear(live)
					for _, rec := range ev.Snapshot {
						b.putBroker(live, rec.Key, rec.Value)
					}
				case coord.EventPut:
					b.putBroker(live, ev.Key, ev.Value)
				case coord.EventDelete:
					if id, err := strconv.ParseInt(strings.TrimPrefix(ev.Key, brokersKey+"/"), 10, 32); err == nil {
						delete(live, int32(id))
					}
				}
				pending = make([]coord.BrokerInfo, 0, len(live))
				for _, bi := range live {
					pending = append(pending, bi)
				}
				sort.Slice(pending, func(i, j int) bool { return pending[i].ID < pending[j].ID })
				have = true
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (b *Backend) putBroker(live map[int32]coord.BrokerInfo, key string, data []byte) {
	if strings.Count(key, "/") != 3 { // only /brokers/ids/<id>
		return
	}
	bi, err := decodeBroker(key, data)
	if err != nil {
		b.log.Warn("coord/zk: ignoring unreadable broker registration", "err", err)
		return
	}
	live[bi.ID] = bi
}
