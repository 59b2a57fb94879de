package zk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
)

// ErrInvalidKey: a key is not a slash-separated absolute path ZooKeeper
// accepts, or it names a znode the backend owns (/controller,
// /controller_epoch, /brokers/ids/...), which are not Store records.
var ErrInvalidKey = errors.New("coord/zk: invalid key")

// Backend is a coord.Backend over one ZooKeeper session. The session is
// replaced when ZooKeeper expires it; see the package doc.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	conn *zk.Conn
	root string // chroot without trailing slash; "" for the root

	closeCh   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	recoverCh chan struct{} // cap 1: the session came back (after a disconnect or an expiry)
	firstCh   chan struct{} // closed at the first session

	mu          sync.Mutex
	closed      bool
	hadSession  bool
	connected   bool  // a session is established now
	expired     bool  // the session expired since the last recovery
	gen         int64 // incremented at every disconnect or expiry
	watchers    map[*watcher]struct{}
	regs        map[*registration]struct{}
	leaders     map[*leadership]struct{}
	lastSession int64
}

var _ coord.Backend = (*Backend)(nil)

type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(f string, a ...any) { z.l.Debug("zookeeper client: " + fmt.Sprintf(f, a...)) }

// Open connects to the ensemble and waits for a session (at most
// cfg.ConnectionTimeout or until ctx ends). When no server accepts a TCP
// connection it fails at once with a one-line error wrapping
// coord.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coord/zk: invalid config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := probe(ctx, cfg); err != nil {
		return nil, err
	}
	b := &Backend{
		cfg:       cfg,
		log:       log,
		root:      strings.TrimSuffix(cfg.Chroot, "/"),
		closeCh:   make(chan struct{}),
		recoverCh: make(chan struct{}, 1),
		firstCh:   make(chan struct{}),
		watchers:  map[*watcher]struct{}{},
		regs:      map[*registration]struct{}{},
		leaders:   map[*leadership]struct{}{},
	}
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithLogger(zkLogger{log}), zk.WithLogInfo(false), zk.WithEventCallback(b.onEvent))
	if err != nil {
		return nil, fmt.Errorf("coord/zk: connect %s: %w: %w", strings.Join(cfg.Servers, ","), coord.ErrUnavailable, err)
	}
	b.conn = conn
	t := time.NewTimer(cfg.ConnectionTimeout)
	defer t.Stop()
	select {
	case <-b.firstCh:
	case <-t.C:
		conn.Close()
		return nil, fmt.Errorf("coord/zk: no ZooKeeper session from %s within zookeeper.connection.timeout.ms=%d: %w",
			strings.Join(cfg.Servers, ","), cfg.ConnectionTimeout.Milliseconds(), coord.ErrUnavailable)
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("coord/zk: waiting for a ZooKeeper session from %s: %w: %w", strings.Join(cfg.Servers, ","), coord.ErrUnavailable, ctx.Err())
	}
	if b.root != "" {
		if err := b.call(ctx, func() error { return b.ensurePath(b.root) }); err != nil {
			b.Close()
			return nil, b.mapErr("create chroot", b.root, err)
		}
	}
	b.wg.Add(1)
	go b.recoverLoop()
	log.Info("coord/zk: connected", "servers", cfg.Servers, "chroot", cfg.Chroot,
		"session", fmt.Sprintf("0x%x", conn.SessionID()), "session_timeout", cfg.SessionTimeout)
	return b, nil
}

// probe fails fast when no server of the ensemble accepts a TCP connection.
func probe(ctx context.Context, cfg Config) error {
	limit := min(cfg.ConnectionTimeout, 3*time.Second)
	var errs []string
	for _, s := range cfg.Servers {
		d := net.Dialer{Timeout: limit}
		c, err := d.DialContext(ctx, "tcp", s)
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("coord/zk: cannot reach ZooKeeper at %s (%s): %w",
		strings.Join(cfg.Servers, ","), strings.Join(errs, "; "), coord.ErrUnavailable)
}

// onEvent is the ZooKeeper client's callback: it runs on the client's
// receive goroutine and must not block. Session events drive recovery; node
// events are routed to the watchers whose subtree holds the path.
func (b *Backend) onEvent(ev zk.Event) {
	if ev.Type == zk.EventSession {
		b.onSession(ev.State)
		return
	}
	if ev.Type == zk.EventNotWatching || ev.Path == "" {
		return
	}
	b.mu.Lock()
	for w := range b.watchers {
		if w.covers(ev.Path) {
			w.mark(ev.Path, ev.Type)
		}
	}
	b.mu.Unlock()
}

func (b *Backend) onSession(st zk.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch st {
	case zk.StateHasSession:
		first := !b.hadSession
		b.hadSession, b.connected = true, true
		if first {
			close(b.firstCh)
			return
		}
		select {
		case b.recoverCh <- struct{}{}:
		default:
		}
	case zk.StateDisconnected, zk.StateExpired:
		if st == zk.StateExpired {
			b.expired = true
		}
		if b.connected || st == zk.StateExpired {
			b.gen++
			b.connected = false
			// A leader that cannot reach ZooKeeper cannot know whether its
			// session still lives: give leadership up now, before the
			// server can expire the session and elect someone else.
			for l := range b.leaders {
				l.loseLocked(fmt.Sprintf("zookeeper %s", st))
			}
			for w := range b.watchers {
				w.markResync()
			}
		}
	}
}

// recoverLoop brings registrations, the controller znode and watches back
// after the session came back, retrying until it succeeds or Close.
func (b *Backend) recoverLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.closeCh:
			return
		case <-b.recoverCh:
		}
		for attempt := 0; ; attempt++ {
			if err := b.recoverOnce(); err == nil {
				break
			} else {
				b.log.Warn("coord/zk: recovery after reconnect failed; retrying", "err", err)
			}
			select {
			case <-b.closeCh:
				return
			case <-b.recoverCh:
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

func (b *Backend) recoverOnce() error {
	b.mu.Lock()
	expired := b.expired
	sid := b.conn.SessionID()
	regs := make([]*registration, 0, len(b.regs))
	for r := range b.regs {
		regs = append(regs, r)
	}
	for w := range b.watchers {
		w.markResync()
	}
	b.mu.Unlock()
	if expired {
		b.log.Warn("coord/zk: session expired; re-registering on the new session", "session", fmt.Sprintf("0x%x", sid), "registrations", len(regs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.SessionTimeout)
	defer cancel()
	for _, r := range regs {
		if err := r.reregister(ctx); err != nil {
			return err
		}
	}
	// A controller znode of ours that no live Leadership stands behind
	// (leadership was given up on disconnect, the session survived) must go
	// so that the next campaign can run.
	if err := b.dropStaleController(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	if b.conn.SessionID() == sid {
		b.expired = false
	}
	b.mu.Unlock()
	return nil
}

// Capabilities: writes are linearizable (ZooKeeper orders all writes through
// its leader); Get, List and Controller call sync first so that they see
// every write that completed before they started. See the package doc for
// the limits.
func (b *Backend) Capabilities() coord.Capabilities {
	return coord.Capabilities{Linearizable: true, SingleController: true, FencedWrites: true}
}

// Close ends the session: ZooKeeper deletes the ephemeral znodes at once,
// leaderships are lost and watches end. Close is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		for l := range b.leaders {
			l.loseLocked("backend closed")
		}
		for r := range b.regs {
			delete(b.regs, r)
		}
		b.mu.Unlock()
		close(b.closeCh)
		if b.conn != nil {
			b.conn.Close()
		}
		b.wg.Wait()
	})
	return nil
}

func (b *Backend) isClosed() bool {
	select {
	case <-b.closeCh:
		return true
	default:
		return false
	}
}

// call runs one blocking client call so that ctx and Close can cut the wait
// short (the client's calls take no context).
func (b *Backend) call(ctx context.Context, fn func() error) error {
	if b.isClosed() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.closeCh:
		return errClosed
	}
}

var errClosed = errors.New("closed")

// mapErr turns a client error into one wrapping a coord sentinel.
func (b *Backend) mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var s error
	switch {
	case errors.Is(err, errClosed):
		return fmt.Errorf("coord/zk: %s %s: %w", op, key, coord.ErrClosed)
	case errors.Is(err, coord.ErrNotFound), errors.Is(err, coord.ErrConflict), errors.Is(err, coord.ErrFenced),
		errors.Is(err, coord.ErrUnavailable), errors.Is(err, coord.ErrClosed), errors.Is(err, coord.ErrSessionLost),
		errors.Is(err, ErrInvalidKey):
		return fmt.Errorf("coord/zk: %s %s: %w", op, key, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		s = coord.ErrUnavailable
	case errors.Is(err, zk.ErrNoNode):
		s = coord.ErrNotFound
	case errors.Is(err, zk.ErrNodeExists), errors.Is(err, zk.ErrBadVersion):
		s = coord.ErrConflict
	case errors.Is(err, zk.ErrClosing):
		if b.isClosed() {
			s = coord.ErrClosed
		} else {
			s = coord.ErrUnavailable
		}
	case errors.Is(err, zk.ErrInvalidPath), errors.Is(err, zk.ErrNoChildrenForEphemerals):
		s = ErrInvalidKey
	default:
		// connection closed, no server, session expired or moved, ...:
		// the call may succeed when retried.
		s = coord.ErrUnavailable
	}
	return fmt.Errorf("coord/zk: %s %s: %w: %w", op, key, s, err)
}

// path maps a coord key to its znode path under the chroot.
func (b *Backend) path(key string) string {
	if key == "/" {
		if b.root == "" {
			return "/"
		}
		return b.root
	}
	return b.root + key
}

// key maps a znode path under the chroot back to a coord key.
func (b *Backend) key(p string) string {
	if b.root == "" {
		return p
	}
	k := strings.TrimPrefix(p, b.root)
	if k == "" {
		return "/"
	}
	return k
}

// checkKey validates a record key. The backend's own znodes are not Store
// records: Get and the writes refuse them (List and Watch leave them out).
func checkKey(key string) error {
	if key == "/" {
		return fmt.Errorf("%w: %q is the root, not a record", ErrInvalidKey, key)
	}
	if err := checkPath(key); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidKey, key, err)
	}
	if reserved(key) {
		return fmt.Errorf("%w: %q is managed by the backend (registration, controller)", ErrInvalidKey, key)
	}
	return nil
}

func reserved(key string) bool {
	return key == controllerKey || key == epochKey || key == brokersKey || strings.HasPrefix(key, brokersKey+"/") ||
		key == "/zookeeper" || strings.HasPrefix(key, "/zookeeper/")
}

// prefixDir is the deepest znode that holds every key starting with prefix.
func prefixDir(prefix string) string {
	i := strings.LastIndexByte(prefix, '/')
	if i <= 0 {
		return "/"
	}
	return prefix[:i]
}

// ensurePath creates p and its missing ancestors as directory znodes (null
// data: not records).
func (b *Backend) ensurePath(p string) error {
	if p == "/" || p == "" {
		return nil
	}
	if ok, _, err := b.conn.Exists(p); err != nil {
		return err
	} else if ok {
		return nil
	}
	if err := b.ensurePath(p[:max(strings.LastIndexByte(p, '/'), 1)]); err != nil {
		return err
	}
	if _, err := b.conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return err
	}
	return nil
}

func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// version is the coord.Version of a znode: its mzxid, the zxid of the
// transaction that last wrote its data (or created it). See the package doc.
func version(st *zk.Stat) coord.Version { return coord.Version(st.Mzxid) }

// nonNil keeps an empty value a record: a znode with null data is a
// directory.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// --- Store ---

// Get returns the record at key after a sync, so it sees every write that
// completed before the call.
func (b *Backend) Get(ctx context.Context, key string) (coord.Record, error) {
	if err := checkKey(key); err != nil {
		return coord.Record{}, b.mapErr("get", key, err)
	}
	p := b.path(key)
	var rec coord.Record
	err := b.call(ctx, func() error {
		if _, err := b.conn.Sync(p); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		data, st, err := b.conn.Get(p)
		if err != nil {
			return err
		}
		if data == nil {
			return coord.ErrNotFound
		}
		rec = coord.Record{Key: key, Value: data, Version: version(st)}
		return nil
	})
	return rec, b.mapErr("get", key, err)
}

// List returns the records under prefix after a sync. It is not an atomic
// snapshot (ZooKeeper has none across znodes): each record is at least as
// new as the moment List began.
func (b *Backend) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	if prefix != "" && prefix[0] != '/' {
		return nil, b.mapErr("list", prefix, fmt.Errorf("%w: prefix %q must start with /", ErrInvalidKey, prefix))
	}
	dir := b.path(prefixDir(prefix))
	var out []coord.Record
	err := b.call(ctx, func() error {
		if _, err := b.conn.Sync(dir); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		nodes, err := b.walk(dir, nil)
		if err != nil {
			return err
		}
		out = b.records(nodes, prefix, false)
		return nil
	})
	if err != nil {
		return nil, b.mapErr("list", prefix, err)
	}
	return out, nil
}

// records turns walked znodes into the sorted records under prefix;
// internal includes the backend's own znodes.
func (b *Backend) records(nodes map[string]*znode, prefix string, internal bool) []coord.Record {
	out := []coord.Record{}
	for p, n := range nodes {
		if n.data == nil {
			continue
		}
		k := b.key(p)
		if k == "/" || !strings.HasPrefix(k, prefix) || (!internal && reserved(k)) {
			continue
		}
		out = append(out, coord.Record{Key: k, Value: n.data, Version: version(n.stat)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// znode is one node read by walk.
type znode struct {
	data     []byte
	stat     *zk.Stat
	children []string
}

// walk reads the subtree at dir (the znodes and their data), with up to 16
// requests in flight. arm, when set, decides which watches to set on the way;
// a missing dir then gets an exists watch. Znodes that vanish during the
// walk are left out. The ZooKeeper-internal /zookeeper subtree is skipped.
func (b *Backend) walk(dir string, arm *watcher) (map[string]*znode, error) {
	nodes := map[string]*znode{}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		sem      = make(chan struct{}, 16)
	)
	var visit func(p string)
	visit = func(p string) {
		defer wg.Done()
		sem <- struct{}{}
		n, err := b.readNode(p, arm)
		<-sem
		if err != nil {
			if !errors.Is(err, zk.ErrNoNode) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			return
		}
		mu.Lock()
		nodes[p] = n
		mu.Unlock()
		for _, c := range n.children {
			cp := joinPath(p, c)
			if cp == "/zookeeper" {
				continue
			}
			wg.Add(1)
			go visit(cp)
		}
	}
	wg.Add(1)
	visit(dir)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if _, ok := nodes[dir]; !ok && arm != nil {
		ok, _, _, err := b.conn.ExistsW(dir)
		if err != nil {
			return nil, err
		}
		if ok { // created in between: read it again
			return b.walk(dir, arm)
		}
	}
	return nodes, nil
}

// readNode reads one znode's data, stat and children, setting the watches
// arm asks for.
func (b *Backend) readNode(p string, arm *watcher) (n *znode, err error) {
	var armData, armChild bool
	if arm != nil {
		armData, armChild = arm.arm(p)
		defer func() {
			if err != nil {
				arm.unarm(p) // no watch is set on a failed read
			}
		}()
	}
	n = &znode{}
	if armData {
		n.data, n.stat, _, err = b.conn.GetW(p)
	} else {
		n.data, n.stat, err = b.conn.Get(p)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case armChild:
		n.children, _, _, err = b.conn.ChildrenW(p)
	case n.stat.NumChildren > 0 || arm != nil:
		n.children, _, err = b.conn.Children(p)
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(n.children)
	return n, nil
}

// Create writes key only if it is absent. It creates missing parents as
// directory znodes, then creates and sets the znode in one multi so that the
// reply carries the new record's stat (and hence its Version).
func (b *Backend) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return b.create(ctx, key, value, nil)
}

func (b *Backend) create(ctx context.Context, key string, value []byte, f *fence) (coord.Version, error) {
	if err := checkKey(key); err != nil {
		return coord.NoVersion, b.mapErr("create", key, err)
	}
	p := b.path(key)
	value = nonNil(value)
	var v coord.Version
	err := b.call(ctx, func() error {
		for attempt := 0; ; attempt++ {
			if err := b.ensurePath(parentPath(p)); err != nil {
				return err
			}
			st, err := b.multi(f, 1,
				&zk.CreateRequest{Path: p, Data: value, Acl: zk.WorldACL(zk.PermAll)},
				&zk.SetDataRequest{Path: p, Data: value, Version: 0})
			switch {
			case err == nil:
				v = version(st)
				return nil
			case errors.Is(err, zk.ErrNoNode) && attempt < 10:
				continue // a parent was cleaned up concurrently
			case errors.Is(err, zk.ErrNodeExists):
				// A directory znode becomes a record by a conditional set.
				data, st, gerr := b.conn.Get(p)
				if errors.Is(gerr, zk.ErrNoNode) && attempt < 10 {
					continue
				}
				if gerr != nil {
					return gerr
				}
				if data != nil {
					return fmt.Errorf("%w: key exists", coord.ErrConflict)
				}
				st, err = b.multi(f, 0, &zk.SetDataRequest{Path: p, Data: value, Version: st.Version})
				if err != nil {
					return err
				}
				v = version(st)
				return nil
			default:
				return err
			}
		}
	})
	if err != nil {
		return coord.NoVersion, b.mapErr("create", key, err)
	}
	return v, nil
}

// CompareAndSet reads the znode's stat to map expect (an mzxid) to the
// zkVersion, then sets the data conditional on that zkVersion.
func (b *Backend) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return b.cas(ctx, key, value, expect, nil)
}

func (b *Backend) cas(ctx context.Context, key string, value []byte, expect coord.Version, f *fence) (coord.Version, error) {
	if err := checkKey(key); err != nil {
		return coord.NoVersion, b.mapErr("compare-and-set", key, err)
	}
	p := b.path(key)
	value = nonNil(value)
	var v coord.Version
	err := b.call(ctx, func() error {
		data, st, err := b.conn.Get(p)
		if err != nil {
			return err
		}
		if data == nil {
			return coord.ErrNotFound
		}
		if version(st) != expect {
			return fmt.Errorf("%w: version is %d, expected %d", coord.ErrConflict, version(st), expect)
		}
		st, err = b.multi(f, 0, &zk.SetDataRequest{Path: p, Data: value, Version: st.Version})
		if errors.Is(err, zk.ErrBadVersion) {
			return b.lostRace(p)
		}
		if err != nil {
			return err
		}
		v = version(st)
		return nil
	})
	if err != nil {
		return coord.NoVersion, b.mapErr("compare-and-set", key, err)
	}
	return v, nil
}

// Delete removes the record by setting its znode's data to null: the znode
// stays as a tombstone (a directory znode) so that its zkVersion never
// restarts, which is what makes CompareAndSet safe against a delete and
// re-create in between its read and its write. Create on a tombstone
// continues its zkVersion. The controller's sweeper deletes tombstones and
// empty directories older than Config.TombstoneTTL.
func (b *Backend) Delete(ctx context.Context, key string, expect coord.Version) error {
	return b.del(ctx, key, expect, nil)
}

func (b *Backend) del(ctx context.Context, key string, expect coord.Version, f *fence) error {
	if err := checkKey(key); err != nil {
		return b.mapErr("delete", key, err)
	}
	p := b.path(key)
	err := b.call(ctx, func() error {
		for attempt := 0; ; attempt++ {
			data, st, err := b.conn.Get(p)
			if err != nil {
				return err
			}
			if data == nil {
				return coord.ErrNotFound
			}
			if expect != coord.NoVersion && version(st) != expect {
				return fmt.Errorf("%w: version is %d, expected %d", coord.ErrConflict, version(st), expect)
			}
			_, err = b.multi(f, -1, &zk.SetDataRequest{Path: p, Data: nil, Version: st.Version})
			if errors.Is(err, zk.ErrBadVersion) {
				if expect == coord.NoVersion && attempt < 10 {
					continue // changed in between; "whatever its version": again
				}
				return b.lostRace(p)
			}
			return err
		}
	})
	return b.mapErr("delete", key, err)
}

// lostRace classifies a conditional write that lost to a concurrent one by
// reading the znode again: if the record is gone now (a tombstone or no
// znode) the answer is ErrNotFound, else ErrConflict. Either holds at the
// moment of that read, inside the call, and the write did not apply.
func (b *Backend) lostRace(p string) error {
	data, _, err := b.conn.Get(p)
	switch {
	case errors.Is(err, zk.ErrNoNode), err == nil && data == nil:
		return fmt.Errorf("%w: deleted concurrently", coord.ErrNotFound)
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: written concurrently", coord.ErrConflict)
}

// sweep deletes tombstones and empty directory znodes last written before
// now-ttl, deepest first, each conditional on its zkVersion (a re-created
// record is left alone). The backend's own znodes are not touched.
func (b *Backend) sweep(ttl time.Duration) (int, error) {
	root := b.path("/")
	nodes, err := b.walk(root, nil)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-ttl).UnixMilli()
	var paths []string
	for p, n := range nodes {
		k := b.key(p)
		if p == root || k == "/" || reserved(k) || k == "/brokers" || n.data != nil || len(n.children) > 0 || n.stat.Mtime > cutoff {
			continue
		}
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	removed := 0
	for _, p := range paths {
		if err := b.conn.Delete(p, nodes[p].stat.Version); err == nil {
			removed++
			b.pruneDirs(parentPath(p), cutoff)
		} else if !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNotEmpty) {
			return removed, err
		}
	}
	return removed, nil
}

// pruneDirs deletes empty directory znodes from p upwards that were last
// written before cutoff, stopping at the chroot, at a record, at a non-empty
// or young znode, or at the first error.
func (b *Backend) pruneDirs(p string, cutoff int64) {
	for p != "/" && p != b.root && len(p) > len(b.root) {
		if k := b.key(p); reserved(k) || k == "/brokers" {
			return
		}
		data, st, err := b.conn.Get(p)
		if err != nil || data != nil || st.NumChildren > 0 || st.Mtime > cutoff {
			return
		}
		if err := b.conn.Delete(p, st.Version); err != nil {
			return
		}
		p = parentPath(p)
	}
}

// fence is a controller epoch check added to a write: the write applies
// only while /controller_epoch still has the zkVersion the leader set.
type fence struct {
	l *leadership
}

// multi runs ops (plus the fence check when f is set) as one transaction
// and returns the stat of op statOp (-1: none). A failed fence check comes
// back as coord.ErrFenced.
func (b *Backend) multi(f *fence, statOp int, ops ...any) (*zk.Stat, error) {
	if f == nil && len(ops) == 1 {
		switch op := ops[0].(type) {
		case *zk.SetDataRequest:
			return b.conn.Set(op.Path, op.Data, op.Version)
		case *zk.DeleteRequest:
			return nil, b.conn.Delete(op.Path, op.Version)
		}
	}
	off := 0
	if f != nil {
		if f.l.isLost() {
			return nil, fmt.Errorf("%w: leadership of epoch %d ended", coord.ErrFenced, f.l.epoch)
		}
		ops = append([]any{&zk.CheckVersionRequest{Path: b.path(epochKey), Version: f.l.epochZkVersion}}, ops...)
		off = 1
	}
	res, err := b.conn.Multi(ops...)
	if err != nil {
		if f != nil && b.fenceFailed(res, err, f) {
			f.l.lose("a newer controller epoch exists")
			return nil, fmt.Errorf("%w: controller epoch %d was superseded (%v)", coord.ErrFenced, f.l.epoch, err)
		}
		return nil, err // the client reports the first failed op's error
	}
	if statOp >= 0 && statOp+off < len(res) && res[statOp+off].Stat != nil {
		return res[statOp+off].Stat, nil
	}
	if statOp >= 0 {
		return nil, fmt.Errorf("coord/zk: multi reply without stat for op %d", statOp)
	}
	return nil, nil
}

func isRealOpErr(err error) bool {
	return errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNotEmpty)
}

// fenceFailed says whether a failed fenced multi failed on the epoch check.
func (b *Backend) fenceFailed(res []zk.MultiResponse, err error, f *fence) bool {
	if len(res) > 0 {
		return res[0].Error != nil && isRealOpErr(res[0].Error)
	}
	if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
		return false
	}
	// No per-op results: look at the epoch znode itself. Its zkVersion
	// only grows, so if it moved now, the check failed (or would have).
	_, st, gerr := b.conn.Get(b.path(epochKey))
	return gerr == nil && st.Version != f.l.epochZkVersion
}
