package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brokkr/brokkr/coord"
)

// ErrInvalidKey: a key or prefix that does not start with "/", or a value
// etcd refuses (larger than its request limit).
var ErrInvalidKey = errors.New("coord/etcd: invalid key or value")

// requestTimeout bounds one call when the caller's context allows longer,
// so that a call made while etcd is unreachable fails with ErrUnavailable
// instead of hanging in the client's retries.
const requestTimeout = 5 * time.Second

var _ coord.Backend = (*Backend)(nil)

// Backend is the coord.Backend over etcd v3.
type Backend struct {
	cfg Config
	log *slog.Logger
	srv *Server // embedded member owned by this Backend; nil for a client only
	cli *clientv3.Client
	ttl int64

	pfxBrokers, pfxElection, keyEpoch, keyController, pfxData string

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessMu sync.Mutex // serialises session creation (a network call)

	mu          sync.Mutex
	closed      bool
	sess        *session
	campaigning bool

	closeOnce sync.Once
	m         metrics
}

type metrics struct {
	sessionsLost prometheus.Counter
	resyncs      prometheus.Counter
	fenced       prometheus.Counter
}

func newMetrics(r prometheus.Registerer) metrics {
	m := metrics{
		sessionsLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "brokkr", Subsystem: "coord_etcd", Name: "sessions_lost_total", Help: "etcd leases that expired or could not be kept alive."}),
		resyncs:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: "brokkr", Subsystem: "coord_etcd", Name: "watch_resyncs_total", Help: "Watches restarted from a fresh snapshot (compaction, lost leader)."}),
		fenced:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: "brokkr", Subsystem: "coord_etcd", Name: "fenced_writes_total", Help: "Controller writes refused because a newer controller epoch exists."}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.sessionsLost, m.resyncs, m.fenced} {
			_ = r.Register(c)
		}
	}
	return m
}

// session is one etcd lease kept alive by the client.
type session struct {
	s     *concurrency.Session
	lost  chan struct{} // closed when the lease ended
	users []func()      // called (once) when the session ends without Close
}

// Open connects to etcd (starting the embedded member first when
// cfg.Embed is set) and checks that the cluster answers within
// cfg.DialTimeout. A cluster that cannot be reached gives one error wrapping
// coord.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, log: log, ttl: cfg.ttlSeconds(), m: newMetrics(cfg.Metrics)}
	b.pfxBrokers = cfg.Prefix + "/brokers/ids/"
	b.pfxElection = cfg.Prefix + "/controller/election/"
	b.keyEpoch = cfg.Prefix + "/controller_epoch"
	b.keyController = cfg.Prefix + "/controller"
	b.pfxData = cfg.Prefix + "/data"

	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	endpoints := make([]string, 0, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		u, _ := normalizeURL(e)
		endpoints = append(endpoints, u)
	}
	if cfg.Embed != nil {
		srv, err := StartServer(dctx, *cfg.Embed, log)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		if len(endpoints) == 0 {
			endpoints = []string{srv.ClientURL()}
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zapToSlog(cfg.Logger, "etcd-client"),
		PermitWithoutStream:  true,
	})
	if err != nil {
		b.stopServer()
		return nil, fmt.Errorf("%w: etcd client for %s: %w", coord.ErrUnavailable, strings.Join(endpoints, ","), err)
	}
	b.cli = cli
	// Probe with a linearizable read: it needs a leader and a quorum.
	if _, err := cli.Get(dctx, b.keyEpoch); err != nil {
		cli.Close()
		b.stopServer()
		return nil, fmt.Errorf("coord/etcd: cannot reach etcd at %s within %v (%v): %w", strings.Join(endpoints, ","), cfg.DialTimeout, err, coord.ErrUnavailable)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

func (b *Backend) stopServer() {
	if b.srv != nil {
		b.srv.Stop()
	}
}

// Server returns the embedded member this Backend runs, or nil.
func (b *Backend) Server() *Server { return b.srv }

// Client returns the etcd client (for tools and tests; Brokkr's core uses
// only the coord interface).
func (b *Backend) Client() *clientv3.Client { return b.cli }

// Capabilities: every call is a linearizable etcd request; one leader key
// at a time exists, and every controller write is a transaction that
// compares the leader key and the epoch key.
func (b *Backend) Capabilities() coord.Capabilities {
	return coord.Capabilities{Linearizable: true, SingleController: true, FencedWrites: true}
}

// Close revokes the lease (registrations and leadership disappear at
// once), ends watches, closes the client and stops the embedded member.
// Idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		sess := b.sess
		b.sess = nil
		b.mu.Unlock()
		if sess != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := b.cli.Revoke(ctx, sess.s.Lease()); err != nil {
				b.log.Warn("coord/etcd: revoking the lease on close failed; it expires by itself", "ttl_s", b.ttl, "err", err)
			}
			cancel()
			sess.s.Orphan()
			close(sess.lost)
		}
		b.cancel()
		b.cli.Close()
		b.wg.Wait()
		b.stopServer()
	})
	return nil
}

// spawn runs fn in a goroutine that Close waits for; after Close it runs
// nothing (and reports false).
func (b *Backend) spawn(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
	return true
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// opCtx applies requestTimeout unless the caller's deadline is sooner.
func (b *Backend) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < requestTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestTimeout)
}

// mapErr turns an etcd/gRPC/context error into one wrapping a coord sentinel.
func (b *Backend) mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{coord.ErrConflict, coord.ErrNotFound, coord.ErrSessionLost, coord.ErrFenced, coord.ErrUnavailable, coord.ErrClosed, ErrInvalidKey} {
		if errors.Is(err, s) {
			return fmt.Errorf("coord/etcd: %s %s: %w", op, key, err)
		}
	}
	if b.isClosed() {
		return fmt.Errorf("coord/etcd: %s %s: %w", op, key, coord.ErrClosed)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrEmptyKey) {
		return fmt.Errorf("coord/etcd: %s %s: %w: %v", op, key, ErrInvalidKey, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("coord/etcd: %s %s: %w: %w", op, key, coord.ErrUnavailable, err)
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.InvalidArgument:
		return fmt.Errorf("coord/etcd: %s %s: %w: %v", op, key, ErrInvalidKey, err)
	}
	// No leader, leader changed, time-outs, connection refused, too many
	// requests, no space: all may pass; the caller may retry.
	return fmt.Errorf("coord/etcd: %s %s: %w: %v", op, key, coord.ErrUnavailable, err)
}

func checkKey(key string) error {
	if !strings.HasPrefix(key, "/") || len(key) < 2 {
		return fmt.Errorf("%w: key %q must start with / and name something", ErrInvalidKey, key)
	}
	return nil
}

func checkPrefix(prefix string) error {
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("%w: prefix %q must start with /", ErrInvalidKey, prefix)
	}
	return nil
}

func (b *Backend) precheck(op, key string, check func(string) error) error {
	if b.isClosed() {
		return fmt.Errorf("coord/etcd: %s %s: %w", op, key, coord.ErrClosed)
	}
	if err := check(key); err != nil {
		return fmt.Errorf("coord/etcd: %s: %w", op, err)
	}
	return nil
}

// Get returns the record at key.
func (b *Backend) Get(ctx context.Context, key string) (coord.Record, error) {
	if err := b.precheck("get", key, checkKey); err != nil {
		return coord.Record{}, err
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.pfxData+key)
	if err != nil {
		return coord.Record{}, b.mapErr("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return coord.Record{}, fmt.Errorf("coord/etcd: get %s: %w", key, coord.ErrNotFound)
	}
	return b.record(resp.Kvs[0]), nil
}

func (b *Backend) record(kv *mvccpb.KeyValue) coord.Record {
	return coord.Record{Key: strings.TrimPrefix(string(kv.Key), b.pfxData), Value: kv.Value, Version: coord.Version(kv.ModRevision)}
}

// List returns the records under prefix, sorted by key, as of one revision.
func (b *Backend) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	recs, _, err := b.list(ctx, prefix)
	return recs, err
}

func (b *Backend) list(ctx context.Context, prefix string) ([]coord.Record, int64, error) {
	if err := b.precheck("list", prefix, checkPrefix); err != nil {
		return nil, 0, err
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.pfxData+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, b.mapErr("list", prefix, err)
	}
	recs := make([]coord.Record, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		recs[i] = b.record(kv)
	}
	return recs, resp.Header.Revision, nil
}

// fence is what a controller's writes are conditioned on: its election key
// still exists with the revision it was created at, and the epoch key still
// holds the epoch this controller wrote.
type fence struct {
	l *leadership
}

// outcome of a conditional write.
type outcome struct {
	ok  bool
	rev int64
	cur *mvccpb.KeyValue // the key's state when the condition failed
}

// cond runs "if cmp (and the fence holds) then op else read". The else
// branch reads the key and the fence's keys, so one round trip tells a
// conflict from a missing key from a newer controller.
func (b *Backend) cond(ctx context.Context, f *fence, key string, cmp clientv3.Cmp, op clientv3.Op) (outcome, error) {
	k := b.pfxData + key
	cmps := []clientv3.Cmp{cmp}
	elseOps := []clientv3.Op{clientv3.OpGet(k)}
	if f != nil {
		if isClosedChan(f.l.lost) {
			return outcome{}, fmt.Errorf("%w: leadership of epoch %d has ended", coord.ErrFenced, f.l.epoch)
		}
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(f.l.leaderKey), "=", f.l.leaderRev),
			clientv3.Compare(clientv3.ModRevision(b.keyEpoch), "=", f.l.epochRev))
		elseOps = append(elseOps, clientv3.OpGet(f.l.leaderKey), clientv3.OpGet(b.keyEpoch))
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(op).Else(elseOps...).Commit()
	if err != nil {
		return outcome{}, err
	}
	if resp.Succeeded {
		return outcome{ok: true, rev: resp.Header.Revision}, nil
	}
	var out outcome
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		out.cur = kvs[0]
	}
	if f != nil {
		lk := resp.Responses[1].GetResponseRange().Kvs
		ek := resp.Responses[2].GetResponseRange().Kvs
		if len(lk) == 0 || lk[0].CreateRevision != f.l.leaderRev || len(ek) == 0 || ek[0].ModRevision != f.l.epochRev {
			b.m.fenced.Inc()
			why := "its election key is gone"
			if len(ek) > 0 && ek[0].ModRevision != f.l.epochRev {
				why = fmt.Sprintf("the epoch key now holds %s", ek[0].Value)
			}
			f.l.end("fenced: " + why)
			return outcome{}, fmt.Errorf("%w: controller epoch %d: %s", coord.ErrFenced, f.l.epoch, why)
		}
	}
	return out, nil
}

// Create writes key only if it does not exist.
func (b *Backend) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return b.create(ctx, nil, key, value)
}

func (b *Backend) create(ctx context.Context, f *fence, key string, value []byte) (coord.Version, error) {
	if err := b.precheck("create", key, checkKey); err != nil {
		return coord.NoVersion, err
	}
	k := b.pfxData + key
	o, err := b.cond(ctx, f, key, clientv3.Compare(clientv3.CreateRevision(k), "=", 0), clientv3.OpPut(k, string(value)))
	if err != nil {
		return coord.NoVersion, b.mapErr("create", key, err)
	}
	if !o.ok {
		return coord.NoVersion, fmt.Errorf("coord/etcd: create %s: exists at version %d: %w", key, o.cur.ModRevision, coord.ErrConflict)
	}
	return coord.Version(o.rev), nil
}

// CompareAndSet writes key only if its version is expect.
func (b *Backend) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return b.cas(ctx, nil, key, value, expect)
}

func (b *Backend) cas(ctx context.Context, f *fence, key string, value []byte, expect coord.Version) (coord.Version, error) {
	if err := b.precheck("compare-and-set", key, checkKey); err != nil {
		return coord.NoVersion, err
	}
	k := b.pfxData + key
	o, err := b.cond(ctx, f, key, clientv3.Compare(clientv3.ModRevision(k), "=", int64(expect)), clientv3.OpPut(k, string(value)))
	if err != nil {
		return coord.NoVersion, b.mapErr("compare-and-set", key, err)
	}
	switch {
	case o.ok:
		return coord.Version(o.rev), nil
	case o.cur == nil:
		return coord.NoVersion, fmt.Errorf("coord/etcd: compare-and-set %s: %w", key, coord.ErrNotFound)
	}
	return coord.NoVersion, fmt.Errorf("coord/etcd: compare-and-set %s: version is %d, expected %d: %w", key, o.cur.ModRevision, expect, coord.ErrConflict)
}

// Delete removes key if its version is expect (any version for NoVersion).
func (b *Backend) Delete(ctx context.Context, key string, expect coord.Version) error {
	return b.del(ctx, nil, key, expect)
}

func (b *Backend) del(ctx context.Context, f *fence, key string, expect coord.Version) error {
	if err := b.precheck("delete", key, checkKey); err != nil {
		return err
	}
	k := b.pfxData + key
	cmp := clientv3.Compare(clientv3.ModRevision(k), "=", int64(expect))
	if expect == coord.NoVersion {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), ">", 0)
	}
	o, err := b.cond(ctx, f, key, cmp, clientv3.OpDelete(k))
	if err != nil {
		return b.mapErr("delete", key, err)
	}
	switch {
	case o.ok:
		return nil
	case o.cur == nil:
		return fmt.Errorf("coord/etcd: delete %s: %w", key, coord.ErrNotFound)
	}
	return fmt.Errorf("coord/etcd: delete %s: version is %d, expected %d: %w", key, o.cur.ModRevision, expect, coord.ErrConflict)
}

// getSession returns the live session, granting a new lease if there is none.
func (b *Backend) getSession(ctx context.Context) (*session, error) {
	b.sessMu.Lock()
	defer b.sessMu.Unlock()
	b.mu.Lock()
	s, closed := b.sess, b.closed
	b.mu.Unlock()
	if closed {
		return nil, coord.ErrClosed
	}
	if s != nil && !isClosedChan(s.lost) {
		return s, nil
	}
	granted := time.Now() // etcd's expiry is at least this + TTL
	gctx, cancel := b.opCtx(ctx)
	grant, err := b.cli.Grant(gctx, b.ttl)
	cancel()
	if err != nil {
		return nil, b.mapErr("grant lease", "", err)
	}
	if grant.TTL != b.ttl {
		b.log.Warn("coord/etcd: the server changed the session time-out (lease TTL)", "asked_s", b.ttl, "granted_s", grant.TTL)
	}
	cs, err := concurrency.NewSession(b.cli, concurrency.WithLease(grant.ID), concurrency.WithContext(b.ctx))
	if err != nil {
		return nil, b.mapErr("keep lease alive", "", err)
	}
	s = &session{s: cs, lost: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cs.Orphan()
		return nil, coord.ErrClosed
	}
	b.sess = s
	b.mu.Unlock()
	ttl := time.Duration(grant.TTL) * time.Second
	b.spawn(func() {
		select {
		case <-cs.Done():
			b.sessionLost(s, "the client's keep-alive gave up")
		case <-s.lost: // Close, or the watchdog
		}
	})
	b.spawn(func() { b.watchdog(s, granted, ttl) })
	b.log.Debug("coord/etcd: new session", "lease", fmt.Sprintf("%x", int64(grant.ID)), "ttl_s", grant.TTL)
	return s, nil
}

// watchdog renews the lease itself every TTL/6 (besides the client's own
// keep-alive every TTL/3) and remembers when it sent the last renewal that
// etcd acknowledged: etcd cannot expire the lease before that moment + TTL.
// When TTL - TTL/4 has passed since then (checked every 50 ms), the session
// is declared lost, so that this broker gives up its registration and
// controllership (Lost closes) before etcd can expire the lease and elect
// another controller, unless this process stalls for longer than about
// TTL/4 at the wrong moment.
func (b *Backend) watchdog(s *session, granted time.Time, ttl time.Duration) {
	guard, every := ttl/4, ttl/6
	var mu sync.Mutex
	lastSent := granted
	b.spawn(func() { // renewer
		for {
			select {
			case <-s.lost:
				return
			case <-b.ctx.Done():
				return
			case <-time.After(every):
			}
			sent := time.Now()
			ctx, cancel := context.WithTimeout(b.ctx, ttl/3)
			_, err := b.cli.KeepAliveOnce(ctx, s.s.Lease())
			cancel()
			switch {
			case err == nil:
				mu.Lock()
				if sent.After(lastSent) {
					lastSent = sent
				}
				mu.Unlock()
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				b.sessionLost(s, "etcd expired the lease")
				return
			}
		}
	})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.lost:
			return
		case <-b.ctx.Done():
			return
		case <-tick.C:
		}
		mu.Lock()
		since := time.Since(lastSent)
		mu.Unlock()
		if since > ttl-guard {
			b.sessionLost(s, fmt.Sprintf("no lease renewal acknowledged for %v (session time-out %v)", since.Round(time.Millisecond), ttl))
			return
		}
	}
}

// sessionLost ends session s once: its registrations' and leaderships'
// Lost channels close, the next Register or Campaign grants a new lease,
// and the old lease is revoked once etcd is reachable.
func (b *Backend) sessionLost(s *session, why string) {
	b.mu.Lock()
	if b.closed || b.sess != s || isClosedChan(s.lost) {
		b.mu.Unlock()
		return
	}
	b.sess = nil
	close(s.lost)
	b.mu.Unlock()
	b.m.sessionsLost.Inc()
	lease := s.s.Lease()
	b.log.Warn("coord/etcd: session lost; registrations and controllership on it are gone", "why", why, "lease", fmt.Sprintf("%x", int64(lease)), "ttl_s", b.ttl)
	s.s.Orphan()
	// If etcd kept the lease (a renewal got through late; no quorum: leases
	// do not expire without a leader, and a new leader extends them),
	// revoke it once reachable so that its keys do not outlive Lost.
	b.spawn(func() {
		rctx, cancel := context.WithTimeout(b.ctx, time.Duration(b.ttl)*time.Second*4)
		defer cancel()
		for rctx.Err() == nil {
			_, err := b.cli.Revoke(rctx, lease)
			if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return
			}
			select {
			case <-rctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
}

func isClosedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
