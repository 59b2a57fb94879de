// Package coord is the small interface between Brokkr's core and the
// coordination service that holds the truth about cluster metadata: which
// brokers are alive, which broker is the controller, and versioned metadata
// records (topics, partition state: leader, leader epoch, ISR).
//
// Three backends implement it: coord/etcd (embedded or external etcd),
// coord/zk (ZooKeeper) and coord/gossip (hashicorp/memberlist). The core never
// imports a backend; cmd/brokkr picks one from config and hands it over as a
// Backend. coord/coordtest holds the one conformance suite all of them pass.
//
// Keys are slash-separated paths such as
// "/brokers/topics/orders/partitions/0/state". Values are opaque bytes.
// A Version is opaque: compare two Versions for equality only. A record that
// is deleted and created again gets a Version different from every Version it
// had before (ZooKeeper's zkVersion restarts at 0, so coord/zk encodes the
// znode's creation zxid into it).
//
// Every call takes a context and fails with an error that wraps one of the
// sentinel errors below, so callers branch with errors.Is.
package coord

import (
	"context"
	"errors"
)

// Sentinel errors. Backends wrap them (fmt.Errorf("...: %w", coord.ErrConflict)).
var (
	// ErrConflict: a compare-and-set lost (the version moved on) or a Create
	// found the key already there.
	ErrConflict = errors.New("coord: conflict")
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("coord: not found")
	// ErrSessionLost: the session that backed a registration or a leadership
	// ended (lease expired, ZooKeeper session expired, gossip node declared dead).
	ErrSessionLost = errors.New("coord: session lost")
	// ErrFenced: a write through a Leadership's Store was refused because a
	// newer controller epoch exists or this leadership ended.
	ErrFenced = errors.New("coord: fenced by a newer controller epoch")
	// ErrUnavailable: the backend cannot be reached now; the call may succeed
	// if retried later.
	ErrUnavailable = errors.New("coord: backend unavailable")
	// ErrClosed: the Backend was closed.
	ErrClosed = errors.New("coord: closed")
)

// Version identifies one state of one record. Compare for equality only.
type Version int64

// NoVersion is the Version of a record that does not exist.
const NoVersion Version = -1

// Record is one metadata record.
type Record struct {
	Key     string
	Value   []byte
	Version Version
}

// EventKind says what a watch Event reports.
type EventKind int

const (
	// EventPut: Key was created or changed to Value at Version.
	EventPut EventKind = iota + 1
	// EventDelete: Key was deleted.
	EventDelete
	// EventResync: the watch may have missed changes (reconnect, compaction,
	// session expiry). Snapshot holds every record under the prefix now; the
	// receiver replaces its view with it. Later events follow the snapshot.
	EventResync
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventResync:
		return "resync"
	}
	return "unknown"
}

// Event is one change seen by a Watch.
type Event struct {
	Kind     EventKind
	Key      string
	Value    []byte
	Version  Version
	Snapshot []Record // EventResync only
}

// Store is versioned metadata: get, list, create, compare-and-set, delete and
// watch. Changes to one key are totally ordered; a Watch delivers them in that
// order, or an EventResync.
type Store interface {
	// Get returns the record at key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)
	// List returns every record whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Record, error)
	// Create writes key only if it does not exist (ErrConflict otherwise).
	Create(ctx context.Context, key string, value []byte) (Version, error)
	// CompareAndSet writes key only if its current version is expect
	// (ErrConflict otherwise; ErrNotFound if it does not exist).
	CompareAndSet(ctx context.Context, key string, value []byte, expect Version) (Version, error)
	// Delete removes key only if its current version is expect, or whatever
	// its version when expect is NoVersion.
	Delete(ctx context.Context, key string, expect Version) error
	// Watch delivers every change under prefix made after the call returns,
	// in order. The channel is closed when ctx ends or the Backend closes.
	// The first event is always an EventResync with the current snapshot, so
	// a caller needs no separate List and cannot miss a change in between.
	Watch(ctx context.Context, prefix string) (<-chan Event, error)
}

// BrokerInfo is what a broker registers about itself.
type BrokerInfo struct {
	ID        int32             `json:"id"`
	Rack      string            `json:"rack,omitempty"`
	Endpoints []string          `json:"endpoints"` // "PLAINTEXT://host:port"
	Meta      map[string]string `json:"meta,omitempty"`
}

// Registration is a live broker registration.
type Registration interface {
	// Lost is closed if the registration ended without Close (its session
	// expired and could not be re-established). Backends that can re-register
	// after a session expiry (coord/zk) do so and keep Lost open.
	Lost() <-chan struct{}
	// Close removes the registration at once.
	Close(ctx context.Context) error
}

// Leadership is a won controller campaign.
type Leadership interface {
	// Epoch is strictly greater than the epoch of every earlier winner.
	Epoch() int64
	// Lost is closed when this leadership ends for any reason.
	Lost() <-chan struct{}
	// Store is the metadata store whose writes are fenced by this epoch:
	// once a newer controller exists (or this leadership is lost) they fail
	// with ErrFenced. Reads and watches are not fenced.
	Store() Store
	// Resign gives leadership up.
	Resign(ctx context.Context) error
}

// Capabilities states what a backend guarantees, so that callers and the
// conformance suite know which promises hold. A backend that cannot keep a
// promise says so here rather than failing silently.
type Capabilities struct {
	// Linearizable: Get/CompareAndSet/Create/Delete are linearizable.
	Linearizable bool
	// SingleController: at most one Leadership is held at any instant, even
	// under a network partition (gossip cannot promise this; epochs fence the
	// loser's writes as far as the backend can).
	SingleController bool
	// FencedWrites: a Leadership's Store refuses every write after a newer
	// epoch won, atomically with the write.
	FencedWrites bool
}

// Backend is one coordination service client for one broker.
type Backend interface {
	Store

	// Register announces broker b as live. The registration disappears
	// within the backend's session time-out when this process dies or is cut
	// off from the backend.
	Register(ctx context.Context, b BrokerInfo) (Registration, error)
	// WatchBrokers delivers the full set of live brokers (sorted by ID) now
	// and after every change. The channel is closed when ctx ends.
	WatchBrokers(ctx context.Context) (<-chan []BrokerInfo, error)
	// Campaign blocks until brokerID becomes the controller or ctx ends.
	Campaign(ctx context.Context, brokerID int32) (Leadership, error)
	// Controller returns the current controller's broker ID and epoch, or
	// ErrNotFound when there is none.
	Controller(ctx context.Context) (brokerID int32, epoch int64, err error)
	// Capabilities states this backend's guarantees.
	Capabilities() Capabilities
	// Close ends the session: registrations and leadership go with it.
	Close() error
}
