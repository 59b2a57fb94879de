// Package broker wires Brokkr's parts into a Kafka broker: one handler per
// Kafka API (the NN_name.go files, numbered by API key), the partition logs
// (core/log), the topic metadata (core/controller over a coord.Backend) and
// the network (netio).
//
// Registering a handler is what advertises it in ApiVersions. Handlers never
// turn a Go error into a dropped connection: every condition a client can act
// on is answered with its Kafka error code, per topic or partition. Only an
// unknown API key, a version outside the advertised range (other than
// ApiVersions, answered per KIP-511) or a body that does not parse close the
// one connection that sent it, as Kafka does.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/plugins"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker is one Brokkr broker. Set the fields, then call Start.
type Broker struct {
	// Config is the broker configuration (config.DefaultConfig plus changes).
	Config config.Config
	// Coord is the coordination backend, already opened (cmd/brokkr and the
	// root brokkr package open it from Config.CoordinationSpec()).
	Coord coord.Backend
	// Logger receives the broker's log; nil discards.
	Logger *slog.Logger
	// RetentionPolicy decides which segments may go (plugins/builtin's
	// time and size retention by default, set by the brokkr package); nil
	// keeps everything.
	RetentionPolicy plugins.RetentionPolicy
	// CompactionPolicy is the built-in compaction for cleanup.policy=compact
	// topics (plugins/builtin's keep-latest-per-key, set by the brokkr
	// package); nil: only topics naming a compaction plugin are cleaned.
	CompactionPolicy plugins.CompactionPolicy
	// Policies resolves the plugin policies topic configs name
	// (brokkr.retention.plugin, brokkr.compaction.plugin); it is the
	// allow-list. Nil (brokkr.plugin.dir unset): such configs are refused.
	Policies PolicySource

	log       *slog.Logger
	clusterID string
	meta      *controller.Metadata // writes fenced by leadership when controller

	mu         sync.RWMutex
	brokers    []coord.BrokerInfo // live brokers, sorted by ID
	leadership coord.Leadership   // non-nil while this broker is the controller

	pmu   sync.RWMutex
	parts map[tp]*partition

	logs       logStore
	srv        *netio.Server
	advertised []netio.Listener
	reg        coord.Registration
	cancel     context.CancelFunc
	done       chan struct{} // closed when Close begins
	closeOnce  sync.Once
	readyIn    time.Duration
	groups     *groupCoord // the group coordinator (groups.go)

	pids  pidAllocator
	stats Stats
	pol   policyState // policy status, faults, cleaner state (policies.go)
}

// Stats are the broker's request counters.
type Stats struct {
	UnknownAPIKey      atomic.Int64 // requests with an API key we do not serve
	UnsupportedVersion atomic.Int64 // versions outside the advertised range
	MalformedRequest   atomic.Int64 // bodies that did not parse

	RetentionFailures        atomic.Int64 // policy calls that failed or answered nonsense (nothing deleted)
	RetentionSegmentsDeleted atomic.Int64
}

// dispatch decodes and serves one request. closeConn says the connection
// must be closed (unknown key, unsupported version, malformed body).
func (b *Broker) dispatch(ctx context.Context, rc *reqCtx, key int16, body []byte) (resp response, closeConn bool, err error) {
	a, req, early, err := decodeRequest(key, rc.version, body)
	switch {
	case errors.Is(err, errUnknownKey):
		b.stats.UnknownAPIKey.Add(1)
	case errors.Is(err, errUnsupportedVersion):
		b.stats.UnsupportedVersion.Add(1)
	case errors.Is(err, errMalformed):
		b.stats.MalformedRequest.Add(1)
	}
	if early != nil {
		return response{msg: early}, false, nil
	}
	if err != nil {
		return response{}, true, err
	}
	return a.handle(ctx, b, rc, req), false, nil
}

var (
	errUnknownKey         = errors.New("unknown API key")
	errUnsupportedVersion = errors.New("unsupported version")
	errMalformed          = errors.New("malformed request")
)

// decodeRequest finds the API and parses the body. early, when set, is the
// answer to send without calling a handler (KIP-511: an ApiVersions request
// of an unknown version or unparsable body still gets the v0 answer, so a
// newer client can downgrade). It is pure and must never panic, whatever
// the bytes (FuzzDecodeRequest).
func decodeRequest(key, version int16, body []byte) (a *api, req kmsg.Request, early kmsg.Response, err error) {
	a, ok := apis[key]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w %d", errUnknownKey, key)
	}
	if version < a.min || version > a.max {
		err := fmt.Errorf("%w: %s v%d (v%d–v%d are served)", errUnsupportedVersion, a.name, version, a.min, a.max)
		if key == 18 {
			return a, nil, unsupportedApiVersions(), err
		}
		return a, nil, nil, err
	}
	req = kmsg.RequestForKey(key)
	req.SetVersion(version)
	if err := req.ReadFrom(body); err != nil {
		err = fmt.Errorf("%w: %s v%d: %v", errMalformed, a.name, version, err)
		if key == 18 {
			return a, nil, unsupportedApiVersions(), err
		}
		return a, nil, nil, err
	}
	return a, req, nil, nil
}

// Addrs are the live brokers, sorted by ID.
func (b *Broker) liveBrokers() []coord.BrokerInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.brokers
}

func (b *Broker) liveIDs() []int32 {
	var ids []int32
	for _, br := range b.liveBrokers() {
		ids = append(ids, br.ID)
	}
	return ids
}

// controllerID is this broker's ID when it is the controller, else the
// backend's current controller, else -1.
func (b *Broker) controllerID(ctx context.Context) int32 {
	b.mu.RLock()
	l := b.leadership
	b.mu.RUnlock()
	if l != nil {
		return b.Config.NodeID
	}
	id, _, err := b.Coord.Controller(ctx)
	if err != nil {
		return -1
	}
	return id
}

// controllerMeta returns the metadata writer fenced by this broker's
// leadership, or nil when this broker is not the controller.
func (b *Broker) controllerMeta() *controller.Metadata {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.leadership == nil {
		return nil
	}
	return &controller.Metadata{Store: b.leadership.Store(), ControllerEpoch: b.leadership.Epoch()}
}

// brokerOnListener is a live broker as clients on one listener reach it.
type brokerOnListener struct {
	id   int32
	host string
	port int32
	rack *string
}

// brokersOn lists the live brokers with their endpoint on the named
// listener (Kafka answers Metadata and DescribeCluster with the listener
// the request arrived on).
func (b *Broker) brokersOn(listener string) []brokerOnListener {
	var out []brokerOnListener
	for _, bi := range b.liveBrokers() {
		e, ok := brokerEndpoint(bi, listener)
		if !ok {
			continue
		}
		bl := brokerOnListener{id: bi.ID, host: e.host, port: e.port}
		if bi.Rack != "" {
			r := bi.Rack
			bl.rack = &r
		}
		out = append(out, bl)
	}
	return out
}

// endpoint is a host and port from a listener string.
type endpoint struct {
	name string
	host string
	port int32
}

func parseEndpoint(s string) (endpoint, error) {
	name, rest, ok := strings.Cut(s, "://")
	if !ok {
		return endpoint{}, fmt.Errorf("listener %q: want NAME://host:port", s)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return endpoint{}, fmt.Errorf("listener %q: %v", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return endpoint{}, fmt.Errorf("listener %q: bad port", s)
	}
	return endpoint{name: name, host: host, port: int32(p)}, nil
}

// brokerEndpoint picks, for a broker, the endpoint of the named listener
// (Kafka answers Metadata with the listener the request arrived on).
func brokerEndpoint(bi coord.BrokerInfo, listener string) (endpoint, bool) {
	var first *endpoint
	for _, s := range bi.Endpoints {
		e, err := parseEndpoint(s)
		if err != nil {
			continue
		}
		if e.name == listener {
			return e, true
		}
		if first == nil {
			first = &e
		}
	}
	if first != nil {
		return *first, true
	}
	return endpoint{}, false
}

// ensureClusterID reads /cluster/id or creates it.
func (b *Broker) ensureClusterID(ctx context.Context) error {
	type rec struct {
		Version string `json:"version"`
		ID      string `json:"id"`
	}
	for attempt := 0; attempt < 3; attempt++ {
		r, err := b.Coord.Get(ctx, "/cluster/id")
		if err == nil {
			var cr rec
			if err := json.Unmarshal(r.Value, &cr); err != nil || cr.ID == "" {
				return fmt.Errorf("/cluster/id holds %q, not a cluster id record", r.Value)
			}
			b.clusterID = cr.ID
			return nil
		}
		if !errors.Is(err, coord.ErrNotFound) {
			return err
		}
		var raw [16]byte
		_, _ = rand.Read(raw[:])
		v, _ := json.Marshal(rec{Version: "1", ID: base64.RawURLEncoding.EncodeToString(raw[:])})
		if _, err := b.Coord.Create(ctx, "/cluster/id", v); err != nil && !errors.Is(err, coord.ErrConflict) {
			return err
		}
	}
	return errors.New("could not read or create /cluster/id")
}

// watchBrokers keeps b.brokers current until ctx ends.
func (b *Broker) watchBrokers(ctx context.Context) error {
	ch, err := b.Coord.WatchBrokers(ctx)
	if err != nil {
		return err
	}
	select {
	case bs, ok := <-ch:
		if !ok {
			return errors.New("broker watch closed at start")
		}
		b.setBrokers(bs)
	case <-ctx.Done():
		return ctx.Err()
	}
	go func() {
		for bs := range ch {
			b.setBrokers(bs)
		}
	}()
	return nil
}

func (b *Broker) setBrokers(bs []coord.BrokerInfo) {
	bs = append([]coord.BrokerInfo(nil), bs...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
	b.mu.Lock()
	b.brokers = bs
	b.mu.Unlock()
}
