package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
)

// Dirty flags: which kind of ZooKeeper event named a path.
const (
	fData    = 1 << iota // NodeDataChanged
	fChild               // NodeChildrenChanged
	fDeleted             // NodeDeleted
	fCreated             // NodeCreated
)

// errGap: the watcher saw a state it cannot reach from what it delivered by
// the changes it was told about, so it may have missed one: resync.
var errGap = errors.New("watch gap")

// watcher follows one znode subtree with one-shot data and child watches,
// re-armed after each fires. The client's event callback marks paths dirty;
// the watcher's goroutine re-reads them and turns the difference from what
// it delivered into Put/Delete events, or into an EventResync when it cannot
// prove it missed nothing. See the package doc.
type watcher struct {
	b      *Backend
	ctx    context.Context
	prefix string
	dir    string // znode path of the deepest directory holding the prefix
	out    chan coord.Event
	// internal watchers (WatchBrokers) also see the backend's own znodes.
	internal bool

	mu         sync.Mutex
	dirty      map[string]int
	resync     bool
	armedData  map[string]bool
	armedChild map[string]bool
	kick       chan struct{}

	nodes map[string]*znode // run goroutine only
	batch map[string]int    // the dirty paths being applied (run goroutine only)
}

// Watch delivers every change under prefix. See the package doc for how
// ZooKeeper's one-shot watches map onto the coord contract.
func (b *Backend) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	if prefix != "" && prefix[0] != '/' {
		return nil, b.mapErr("watch", prefix, fmt.Errorf("%w: prefix %q must start with /", ErrInvalidKey, prefix))
	}
	return b.watch(ctx, prefix, false)
}

func (b *Backend) watch(ctx context.Context, prefix string, internal bool) (<-chan coord.Event, error) {
	w := &watcher{
		b: b, ctx: ctx, prefix: prefix, dir: b.path(prefixDir(prefix)), internal: internal,
		out:        make(chan coord.Event, 1024),
		dirty:      map[string]int{},
		armedData:  map[string]bool{},
		armedChild: map[string]bool{},
		kick:       make(chan struct{}, 1),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.mapErr("watch", prefix, errClosed)
	}
	b.watchers[w] = struct{}{}
	b.mu.Unlock()
	// The first event, the snapshot, is in the channel before Watch
	// returns, and the watches are armed: nothing after the return is missed.
	if err := b.call(ctx, w.doResync); err != nil {
		b.mu.Lock()
		delete(b.watchers, w)
		b.mu.Unlock()
		return nil, b.mapErr("watch", prefix, err)
	}
	b.wg.Add(1)
	go w.run()
	return w.out, nil
}

func (w *watcher) covers(p string) bool {
	if w.dir == "/" {
		return p != "/zookeeper" && !strings.HasPrefix(p, "/zookeeper/")
	}
	return p == w.dir || strings.HasPrefix(p, w.dir+"/")
}

// mark records a node event; called from the client's callback (b.mu held).
func (w *watcher) mark(p string, t zk.EventType) {
	f := 0
	w.mu.Lock()
	switch t {
	case zk.EventNodeDataChanged:
		f = fData
		delete(w.armedData, p)
	case zk.EventNodeChildrenChanged:
		f = fChild
		delete(w.armedChild, p)
	case zk.EventNodeDeleted:
		f = fDeleted
		delete(w.armedData, p)
		delete(w.armedChild, p)
	case zk.EventNodeCreated:
		f = fCreated
	}
	w.dirty[p] |= f
	w.mu.Unlock()
	w.poke()
}

// markResync asks for a full resync (session lost or replaced); the watches
// the old connection set are no longer trusted.
func (w *watcher) markResync() {
	w.mu.Lock()
	w.resync = true
	clear(w.armedData)
	clear(w.armedChild)
	w.mu.Unlock()
	w.poke()
}

func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// arm decides which watches a read of p sets: each kind at most once until
// it fires, so that the client's watch table does not grow.
func (w *watcher) arm(p string) (data, child bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, child = !w.armedData[p], !w.armedChild[p]
	w.armedData[p], w.armedChild[p] = true, true
	return data, child
}

func (w *watcher) unarm(p string) {
	w.mu.Lock()
	delete(w.armedData, p)
	delete(w.armedChild, p)
	w.mu.Unlock()
}

func (w *watcher) run() {
	defer w.b.wg.Done()
	defer func() {
		w.b.mu.Lock()
		delete(w.b.watchers, w)
		w.b.mu.Unlock()
		close(w.out)
	}()
	backoff := time.Duration(0)
	for {
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-w.b.closeCh:
			return
		case <-w.kick:
		case <-retry:
		}
		w.mu.Lock()
		resync, dirty := w.resync, w.dirty
		w.resync, w.dirty = false, map[string]int{}
		w.mu.Unlock()
		var err error
		if resync {
			err = w.doResync()
		} else if len(dirty) > 0 {
			err = w.apply(dirty)
		}
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, errStop):
			return
		default:
			if !errors.Is(err, errGap) {
				w.b.log.Debug("coord/zk: watch refresh failed; resyncing", "prefix", w.prefix, "err", err)
			}
			w.mu.Lock()
			w.resync = true
			w.mu.Unlock()
			if errors.Is(err, errGap) {
				w.poke()
				backoff = 0
			} else {
				backoff = min(max(2*backoff, 100*time.Millisecond), 2*time.Second)
			}
		}
	}
}

var errStop = errors.New("watch stopped")

func (w *watcher) send(ev coord.Event) error {
	if ev.Kind != coord.EventResync && (!strings.HasPrefix(ev.Key, w.prefix) || ev.Key == "/" || (!w.internal && reserved(ev.Key))) {
		return nil
	}
	select {
	case w.out <- ev:
		return nil
	case <-w.ctx.Done():
		return errStop
	case <-w.b.closeCh:
		return errStop
	}
}

// doResync walks the subtree again, re-arming what is not armed, and
// delivers the snapshot.
func (w *watcher) doResync() error {
	nodes, err := w.b.walk(w.dir, w)
	if err != nil {
		return err
	}
	w.nodes = nodes
	return w.send(coord.Event{Kind: coord.EventResync, Snapshot: w.b.records(nodes, w.prefix, w.internal)})
}

// apply re-reads the dirty paths, parents before children.
func (w *watcher) apply(dirty map[string]int) error {
	paths := make([]string, 0, len(dirty))
	for p := range dirty {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	w.batch = dirty
	defer func() { w.batch = nil }()
	for _, p := range paths {
		if err := w.refresh(p, dirty[p]); err != nil {
			return err
		}
	}
	return nil
}

func (w *watcher) refresh(p string, flags int) error {
	old := w.nodes[p]
	if old == nil && p != w.dir {
		if _, ok := w.nodes[parentPath(p)]; !ok {
			return nil // not in the followed tree (yet): its parent's child watch brings it
		}
	}
	n, err := w.b.readNode(p, w)
	if errors.Is(err, zk.ErrNoNode) {
		if flags&fData != 0 && old != nil && old.data != nil {
			return errGap // it changed, then went: the change is lost
		}
		if err := w.remove(p); err != nil {
			return err
		}
		if p == w.dir {
			ok, _, _, err := w.b.conn.ExistsW(p)
			if err != nil {
				return err
			}
			if ok {
				return w.refresh(p, fCreated)
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if old == nil {
		return w.discover(p)
	}
	switch {
	case n.stat.Czxid != old.stat.Czxid:
		return errGap // deleted and created again unseen
	case n.stat.Version == old.stat.Version:
	case n.stat.Version == old.stat.Version+1:
		k := w.b.key(p)
		switch {
		case n.data != nil:
			if err := w.send(coord.Event{Kind: coord.EventPut, Key: k, Value: n.data, Version: version(n.stat)}); err != nil {
				return err
			}
		case old.data != nil:
			if err := w.send(coord.Event{Kind: coord.EventDelete, Key: k, Version: coord.NoVersion}); err != nil {
				return err
			}
		}
	default:
		return errGap // more than one write since the last read
	}
	w.nodes[p] = n
	oldKids := map[string]bool{}
	for _, c := range old.children {
		oldKids[c] = true
	}
	newKids := map[string]bool{}
	for _, c := range n.children {
		newKids[c] = true
	}
	for _, c := range old.children {
		if !newKids[c] {
			if err := w.remove(joinPath(p, c)); err != nil {
				return err
			}
		}
	}
	for _, c := range n.children {
		cp := joinPath(p, c)
		if !oldKids[c] && cp != "/zookeeper" {
			if err := w.discover(cp); err != nil {
				return err
			}
		}
	}
	return nil
}

// discover reads a subtree new to the watcher and delivers its records. A
// record that was written after its creation may hide earlier writes: gap.
func (w *watcher) discover(p string) error {
	if _, ok := w.nodes[p]; ok {
		return nil
	}
	nodes, err := w.b.walk(p, w)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(nodes))
	for q, n := range nodes {
		if n.data != nil && n.stat.Mzxid != n.stat.Czxid {
			return errGap
		}
		paths = append(paths, q)
	}
	sort.Strings(paths)
	for _, q := range paths {
		n := nodes[q]
		w.nodes[q] = n
		if n.data != nil {
			if err := w.send(coord.Event{Kind: coord.EventPut, Key: w.b.key(q), Value: n.data, Version: version(n.stat)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove forgets the subtree at p and delivers a Delete per record in it.
// A record whose data changed (an event in this batch) before it went would
// hide that change behind the Delete: gap.
func (w *watcher) remove(p string) error {
	var gone, all []string
	for q, n := range w.nodes {
		if q == p || strings.HasPrefix(q, p+"/") {
			if n.data != nil {
				if w.batch[q]&fData != 0 {
					return errGap
				}
				gone = append(gone, q)
			}
			all = append(all, q)
		}
	}
	for _, q := range all {
		delete(w.nodes, q)
	}
	sort.Strings(gone)
	for _, q := range gone {
		if err := w.send(coord.Event{Kind: coord.EventDelete, Key: w.b.key(q), Version: coord.NoVersion}); err != nil {
			return err
		}
	}
	return nil
}
