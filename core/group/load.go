package group

import (
	"encoding/binary"
	"fmt"
)

// Loaded is a coordinator shard rebuilt from its __consumer_offsets
// partition: the last metadata of each group not deleted, and the offsets.
type Loaded struct {
	Groups  map[string]LoadedGroup
	Offsets *Offsets
}

// LoadedGroup is a group's last stored metadata.
type LoadedGroup struct {
	Snapshot              Snapshot
	CurrentStateTimestamp int64 // -1 when the record predates value v2
}

// Loader rebuilds a shard from its records, applied in log order: a later
// record for the same key wins and a tombstone removes its key (a group
// tombstone removes the group's metadata, not its offsets, which have
// their own tombstones). It does not know about transactions: the caller
// applies transactional offset commits only once their commit marker is
// read, and drops aborted ones.
type Loader struct {
	groups  map[string]LoadedGroup
	offsets *Offsets
}

// NewLoader returns an empty loader.
func NewLoader() *Loader {
	return &Loader{groups: make(map[string]LoadedGroup), offsets: NewOffsets()}
}

// Apply applies one record. A record that does not decode is an error and
// changes nothing; the caller logs and counts it and goes on.
func (l *Loader) Apply(key, value []byte) error {
	// Fast path: offset commit records (nearly all of the topic) are
	// decoded by hand, without allocating for known groups and topics.
	if len(key) >= 2 && key[0] == 0 && key[1] <= 1 {
		if group, topic, p, ok := parseOffsetKey(key); ok {
			if value == nil {
				l.offsets.deleteBytes(group, topic, p)
				return nil
			}
			if v, ok := parseOffsetValue(value); ok {
				l.offsets.commitBytes(group, topic, p, v)
				return nil
			}
		}
	}
	r, err := DecodeRecord(key, value)
	if err != nil {
		return err
	}
	switch r.Kind {
	case KindOffset:
		if r.Offset == nil {
			l.offsets.Delete(r.Key)
		} else {
			l.offsets.Commit(r.Key, *r.Offset)
		}
	case KindGroup:
		if r.Snapshot == nil {
			delete(l.groups, r.Group)
		} else {
			l.groups[r.Group] = LoadedGroup{Snapshot: *r.Snapshot, CurrentStateTimestamp: r.CurrentStateTimestamp}
		}
	default:
		return fmt.Errorf("record kind %d", r.Kind)
	}
	return nil
}

// Done returns what was loaded; the loader must not be used afterwards.
func (l *Loader) Done() Loaded {
	out := Loaded{Groups: l.groups, Offsets: l.offsets}
	l.groups, l.offsets = nil, nil
	return out
}

// str16 reads a Kafka string (int16 length, no null) at b[i:].
func str16(b []byte, i int) (s []byte, next int, ok bool) {
	if i+2 > len(b) {
		return nil, 0, false
	}
	n := int(int16(binary.BigEndian.Uint16(b[i:])))
	i += 2
	if n < 0 || i+n > len(b) {
		return nil, 0, false
	}
	return b[i : i+n], i + n, true
}

// parseOffsetKey decodes an offset commit key (v0/v1) as kmsg does; ok is
// false for anything DecodeRecord should look at.
func parseOffsetKey(key []byte) (group, topic []byte, p int32, ok bool) {
	group, i, ok := str16(key, 2)
	if !ok {
		return nil, nil, 0, false
	}
	topic, i, ok = str16(key, i)
	if !ok || i+4 > len(key) {
		return nil, nil, 0, false
	}
	return group, topic, int32(binary.BigEndian.Uint32(key[i:])), true
}

// parseOffsetValue decodes offset commit values v0-v3 as DecodeRecord
// does; ok is false for v4 and anything malformed (left to DecodeRecord,
// which names the problem).
func parseOffsetValue(b []byte) (Offset, bool) {
	if len(b) < 2 || b[0] != 0 || b[1] > 3 {
		return Offset{}, false
	}
	ver := b[1]
	o := Offset{LeaderEpoch: -1, ExpireTimestamp: -1}
	i := 2
	if i+8 > len(b) {
		return Offset{}, false
	}
	o.Offset = int64(binary.BigEndian.Uint64(b[i:]))
	i += 8
	if ver >= 3 {
		if i+4 > len(b) {
			return Offset{}, false
		}
		o.LeaderEpoch = int32(binary.BigEndian.Uint32(b[i:]))
		i += 4
	}
	md, i, ok := str16(b, i)
	if !ok || i+8 > len(b) {
		return Offset{}, false
	}
	if len(md) > 0 {
		o.Metadata = string(md)
	}
	o.CommitTimestamp = int64(binary.BigEndian.Uint64(b[i:]))
	i += 8
	if ver == 1 {
		if i+8 > len(b) {
			return Offset{}, false
		}
		o.ExpireTimestamp = int64(binary.BigEndian.Uint64(b[i:]))
	}
	return o, true
}
