package gossip

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/brokkr/brokkr/coord"
)

// Limits on what a record may be. Records travel in gossip messages and in
// every push/pull, so they are kept small.
const (
	maxKeyLen   = 1024
	maxValueLen = 1 << 20
)

// ErrInvalidKey wraps a key the backend refuses (empty, not starting with
// "/", too long, not UTF-8).
var ErrInvalidKey = errors.New("gossip: invalid key")

func checkKey(key string) error {
	switch {
	case key == "" || key[0] != '/':
		return fmt.Errorf("%w: %q must start with '/'", ErrInvalidKey, key)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidKey, len(key), maxKeyLen)
	case !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: %q is not valid UTF-8 without NUL", ErrInvalidKey, key)
	}
	return nil
}

// term is a controller epoch and the broker ID that holds it. At equal
// epochs (two sides of a partition can both elect epoch E+1) the lower
// broker ID is the better term, as in claim order, so that the winning
// controller's writes also win.
type term struct {
	Epoch int64
	Ctl   int32
}

// noCtl is the Ctl of a term with no known controller: the worst at its epoch.
const noCtl = math.MaxInt32

func (t term) less(o term) bool {
	if t.Epoch != o.Epoch {
		return t.Epoch < o.Epoch
	}
	return t.Ctl > o.Ctl
}

// stamp orders the writes of one key across the cluster: the controller
// term the writer had seen (or held), then a hybrid logical clock value,
// then the writer's node name. Every write gets a stamp greater than every
// stamp its writer has seen, so a write always beats the state it replaced
// on its own node, and any two replicas that have seen the same writes agree
// on the winner.
type stamp struct {
	Epoch int64  `json:"e"`
	Ctl   int32  `json:"c"`
	HLC   uint64 `json:"h"`
	Node  string `json:"n"`
}

func (s stamp) term() term { return term{s.Epoch, s.Ctl} }

func (s stamp) less(o stamp) bool {
	if s.term() != o.term() {
		return s.term().less(o.term())
	}
	if s.HLC != o.HLC {
		return s.HLC < o.HLC
	}
	return s.Node < o.Node
}

// version is the opaque coord.Version of a stamp: a 63-bit FNV-1a hash of
// all its parts, so a delete and re-create (a new stamp) never reuses a
// Version, and two writers with the same clock value still differ.
func (s stamp) version() coord.Version {
	h := fnv.New64a()
	var b [20]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.Epoch))
	binary.BigEndian.PutUint32(b[8:12], uint32(s.Ctl))
	binary.BigEndian.PutUint64(b[12:], s.HLC)
	h.Write(b[:])
	h.Write([]byte(s.Node))
	return coord.Version(h.Sum64() & math.MaxInt64)
}

// hlc is a hybrid logical clock: the high 48 bits are wall-clock
// milliseconds, the low 16 a counter. now() never returns the same value
// twice and is above every value passed to observe.
type hlc struct {
	last uint64
	wall func() time.Time
}

func (c *hlc) now() uint64 {
	p := uint64(c.wall().UnixMilli()) << 16
	if p <= c.last {
		p = c.last + 1
	}
	c.last = p
	return p
}

func (c *hlc) observe(v uint64) {
	if v > c.last {
		c.last = v
	}
}

// hlcTime is the wall-clock part of an HLC value.
func hlcTime(v uint64) time.Time { return time.UnixMilli(int64(v >> 16)) }

// entry is one replicated record or tombstone.
type entry struct {
	Key     string `json:"k"`
	Value   []byte `json:"v,omitempty"`
	Stamp   stamp  `json:"s"`
	Deleted bool   `json:"d,omitempty"`
}

func (e *entry) record() coord.Record {
	return coord.Record{Key: e.Key, Value: append([]byte(nil), e.Value...), Version: e.Stamp.version()}
}

// claim is a controller claim. The best claim (highest epoch; ties: lowest
// broker ID, then node name) is the only one kept; it is the controller while
// its holder node is alive and still advertises Token for BrokerID.
type claim struct {
	Epoch    int64  `json:"e"`
	BrokerID int32  `json:"b"`
	Node     string `json:"n"`
	Token    uint64 `json:"t"`
}

func (c claim) better(o claim) bool {
	if c.Epoch != o.Epoch {
		return c.Epoch > o.Epoch
	}
	if c.BrokerID != o.BrokerID {
		return c.BrokerID < o.BrokerID
	}
	if c.Node != o.Node {
		return c.Node < o.Node
	}
	return c.Token < o.Token
}

// Message kinds on the wire (first byte of a gossip message).
const (
	msgEntry byte = 'r'
	msgClaim byte = 'c'
)

// pushState is what LocalState sends in a push/pull.
type pushState struct {
	Entries []*entry `json:"r"`
	Claim   *claim   `json:"c,omitempty"`
}

func encodeMsg(kind byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for these types
		panic(err)
	}
	return append([]byte{kind}, b...)
}

// store is the local replica: records, tombstones, the best controller
// claim. It is not safe for concurrent use; Backend guards it
// with its mutex.
type store struct {
	entries map[string]*entry
	claim   *claim
	maxTerm term // the best term in any claim or record seen
	clock   hlc
	gen     uint64 // counts changes, for the state file
}

func newStore(wall func() time.Time) *store {
	return &store{entries: map[string]*entry{}, maxTerm: term{0, noCtl}, clock: hlc{wall: wall}}
}

// live returns the live record at key, or nil.
func (s *store) live(key string) *entry {
	e := s.entries[key]
	if e == nil || e.Deleted {
		return nil
	}
	return e
}

// newStamp is a stamp for a local write in term t (nil: the best seen).
func (s *store) newStamp(node string, t *term) stamp {
	tt := s.maxTerm
	if t != nil {
		tt = *t
	}
	return stamp{Epoch: tt.Epoch, Ctl: tt.Ctl, HLC: s.clock.now(), Node: node}
}

func (s *store) observeTerm(t term) {
	if s.maxTerm.less(t) {
		s.maxTerm = t
	}
}

// apply merges e by last-writer-wins and reports the event it causes (nil
// when e lost or changed nothing visible).
func (s *store) apply(e *entry) (applied bool, ev *coord.Event) {
	s.clock.observe(e.Stamp.HLC)
	s.observeTerm(e.Stamp.term())
	old := s.entries[e.Key]
	if old != nil && !old.Stamp.less(e.Stamp) {
		return false, nil
	}
	s.entries[e.Key] = e
	s.gen++
	switch {
	case !e.Deleted:
		return true, &coord.Event{Kind: coord.EventPut, Key: e.Key, Value: append([]byte(nil), e.Value...), Version: e.Stamp.version()}
	case old != nil && !old.Deleted:
		return true, &coord.Event{Kind: coord.EventDelete, Key: e.Key}
	}
	return true, nil
}

// applyClaim keeps c if it is better than the current claim.
func (s *store) applyClaim(c claim) bool {
	s.observeTerm(term{c.Epoch, c.BrokerID})
	if s.claim != nil && !c.better(*s.claim) {
		return false
	}
	s.claim = &c
	s.gen++
	return true
}

// list returns the live records under prefix, sorted by key.
func (s *store) list(prefix string) []coord.Record {
	var out []coord.Record
	for k, e := range s.entries {
		if !e.Deleted && strings.HasPrefix(k, prefix) {
			out = append(out, e.record())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// gc drops tombstones older than ttl.
func (s *store) gc(now time.Time, ttl time.Duration) (dropped int) {
	for k, e := range s.entries {
		if e.Deleted && now.Sub(hlcTime(e.Stamp.HLC)) > ttl {
			delete(s.entries, k)
			dropped++
			s.gen++
		}
	}
	return dropped
}

func (s *store) snapshot() pushState {
	ps := pushState{Entries: make([]*entry, 0, len(s.entries))}
	for _, e := range s.entries {
		ps.Entries = append(ps.Entries, e)
	}
	if s.claim != nil {
		c := *s.claim
		ps.Claim = &c
	}
	return ps
}
