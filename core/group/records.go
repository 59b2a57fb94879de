package group

// The records of __consumer_offsets, as Kafka writes them (the schemas are
// kmsg's OffsetCommitKey/Value and GroupMetadataKey/Value). Each key and
// value starts with an int16 version; the key's version is the record type:
//
//	key v0, v1  offset commit   group, topic, partition
//	key v2      group metadata  group
//	key v3+     KIP-848 / share-group records: not read here (an error)
//
//	offset commit value  v0 offset, metadata, commit ts
//	                     v1 + expire ts (written while a client asks for a retention)
//	                     v2 - expire ts
//	                     v3 + leader epoch (written otherwise)
//	                     v4 flexible (tagged fields, Kafka 4)
//	group metadata value v0 protocol type, generation, protocol, leader, members
//	                     v1 + member rebalance time-out
//	                     v2 + current state timestamp
//	                     v3 + member group.instance.id (written)
//	                     v4 flexible
//
// A null value is a tombstone: the offset was deleted or the group removed.

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Partition is the __consumer_offsets partition of a group among n, as
// Kafka: Utils.abs(groupId.hashCode()) % n, with Java's String.hashCode
// over UTF-16 code units and Utils.abs mapping MinInt32 to 0. A group id
// that is not valid UTF-8 hashes Go's decoding (U+FFFD per bad byte),
// which can differ from Java's (one U+FFFD for some bad sequences).
func Partition(groupID string, n int) int32 {
	if n <= 0 {
		return 0
	}
	var h int32
	for _, r := range groupID {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			h = 31*h + r1
			h = 31*h + r2
			continue
		}
		h = 31*h + r
	}
	var a int64
	if h != -1<<31 {
		a = int64(h)
		if a < 0 {
			a = -a
		}
	}
	return int32(a % int64(n))
}

// OffsetKey names one committed offset.
type OffsetKey struct {
	Group     string
	Topic     string
	Partition int32
}

// Offset is one committed offset.
type Offset struct {
	Offset          int64
	LeaderEpoch     int32 // -1: none
	Metadata        string
	CommitTimestamp int64
	ExpireTimestamp int64 // -1: none (the retention applies)
}

// Key versions (the record type) and the value versions this file writes.
const (
	offsetKeyVersion   = 1
	groupKeyVersion    = 2
	groupValueVersion  = 3
	maxOffsetValueVers = 4
	maxGroupValueVers  = 4
)

// OffsetCommitRecord returns the key and value Kafka writes for a commit;
// o == nil gives a tombstone (nil value). The value is v1 when o carries an
// expire timestamp, else v3.
func OffsetCommitRecord(k OffsetKey, o *Offset) (key, value []byte) {
	kk := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: k.Group, Topic: k.Topic, Partition: k.Partition}
	key = kk.AppendTo(make([]byte, 0, 2+2+len(k.Group)+2+len(k.Topic)+4))
	if o == nil {
		return key, nil
	}
	v := kmsg.OffsetCommitValue{Version: 3, Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata,
		CommitTimestamp: o.CommitTimestamp, ExpireTimestamp: o.ExpireTimestamp}
	if o.ExpireTimestamp != -1 {
		v.Version = 1
	}
	value = v.AppendTo(make([]byte, 0, 2+8+4+2+len(o.Metadata)+8+8))
	return key, value
}

// GroupMetadataRecord returns the key and value Kafka writes for a group's
// metadata (value v3); s == nil gives a tombstone (nil value). An empty
// Protocol, Leader or member InstanceID is written as null, as Kafka does
// for an Empty group and a dynamic member.
func GroupMetadataRecord(group string, s *Snapshot, currentStateTimestamp int64) (key, value []byte) {
	kk := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: group}
	key = kk.AppendTo(make([]byte, 0, 4+len(group)))
	if s == nil {
		return key, nil
	}
	v := kmsg.GroupMetadataValue{Version: groupValueVersion, ProtocolType: s.ProtocolType, Generation: s.Generation,
		Protocol: nullable(s.Protocol), Leader: nullable(s.Leader), CurrentStateTimestamp: currentStateTimestamp,
		Members: make([]kmsg.GroupMetadataValueMember, len(s.Members))}
	for i, m := range s.Members {
		v.Members[i] = kmsg.GroupMetadataValueMember{MemberID: m.MemberID, InstanceID: nullable(m.InstanceID),
			ClientID: m.ClientID, ClientHost: m.ClientHost,
			RebalanceTimeoutMillis: millis(m.RebalanceTimeout), SessionTimeoutMillis: millis(m.SessionTimeout),
			Subscription: m.Metadata, Assignment: m.Assignment}
	}
	return key, v.AppendTo(nil)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func millis(d time.Duration) int32 {
	ms := d.Milliseconds()
	if ms > 1<<31-1 {
		return 1<<31 - 1
	}
	return int32(ms)
}

// RecordKind tells an offset commit from group metadata.
type RecordKind int8

const (
	KindOffset RecordKind = iota
	KindGroup
)

// Record is one decoded __consumer_offsets record. For KindOffset, Key and
// Offset (nil: tombstone) are set; for KindGroup, Group, Snapshot (nil:
// tombstone) and CurrentStateTimestamp (-1 when the value predates v2).
type Record struct {
	Kind                  RecordKind
	Key                   OffsetKey
	Offset                *Offset
	Group                 string
	Snapshot              *Snapshot
	CurrentStateTimestamp int64
}

// DecodeRecord decodes a record of __consumer_offsets (value nil: a
// tombstone). Key versions other than 0-2, value versions Kafka never
// wrote and short input are errors that name the problem.
func DecodeRecord(key, value []byte) (Record, error) {
	if len(key) < 2 {
		return Record{}, errors.New("__consumer_offsets key: shorter than its version")
	}
	kv := int16(uint16(key[0])<<8 | uint16(key[1]))
	switch kv {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return Record{}, fmt.Errorf("offset commit key v%d: %w", kv, err)
		}
		r := Record{Kind: KindOffset, Key: OffsetKey{Group: k.Group, Topic: k.Topic, Partition: k.Partition}}
		if value == nil {
			return r, nil
		}
		o, err := decodeOffsetValue(value)
		if err != nil {
			return Record{}, fmt.Errorf("offset commit value for group %q %s-%d: %w", k.Group, k.Topic, k.Partition, err)
		}
		r.Offset = &o
		return r, nil
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return Record{}, fmt.Errorf("group metadata key: %w", err)
		}
		r := Record{Kind: KindGroup, Group: k.Group, CurrentStateTimestamp: -1}
		if value == nil {
			return r, nil
		}
		s, ts, err := decodeGroupValue(value)
		if err != nil {
			return Record{}, fmt.Errorf("group metadata value for group %q: %w", k.Group, err)
		}
		r.Snapshot, r.CurrentStateTimestamp = s, ts
		return r, nil
	}
	return Record{}, fmt.Errorf("__consumer_offsets key version %d: not an offset commit (0, 1) or classic group metadata (2) record", kv)
}

func valueVersion(value []byte, max int16) (int16, error) {
	if len(value) < 2 {
		return 0, errors.New("shorter than its version")
	}
	v := int16(uint16(value[0])<<8 | uint16(value[1]))
	if v < 0 || v > max {
		return v, fmt.Errorf("unknown value version %d (known 0-%d)", v, max)
	}
	return v, nil
}

func decodeOffsetValue(value []byte) (Offset, error) {
	ver, err := valueVersion(value, maxOffsetValueVers)
	if err != nil {
		return Offset{}, err
	}
	var v kmsg.OffsetCommitValue
	if err := v.ReadFrom(value); err != nil {
		return Offset{}, fmt.Errorf("v%d: %w", ver, err)
	}
	o := Offset{Offset: v.Offset, LeaderEpoch: -1, Metadata: v.Metadata, CommitTimestamp: v.CommitTimestamp, ExpireTimestamp: -1}
	if ver >= 3 {
		o.LeaderEpoch = v.LeaderEpoch
	}
	if ver == 1 {
		o.ExpireTimestamp = v.ExpireTimestamp
	}
	return o, nil
}

func decodeGroupValue(value []byte) (*Snapshot, int64, error) {
	ver, err := valueVersion(value, maxGroupValueVers)
	if err != nil {
		return nil, 0, err
	}
	var v kmsg.GroupMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return nil, 0, fmt.Errorf("v%d: %w", ver, err)
	}
	s := &Snapshot{Generation: v.Generation, ProtocolType: v.ProtocolType}
	if v.Protocol != nil {
		s.Protocol = *v.Protocol
	}
	if v.Leader != nil {
		s.Leader = *v.Leader
	}
	if len(v.Members) > 0 {
		s.Members = make([]MemberSnapshot, len(v.Members))
	}
	for i, m := range v.Members {
		ms := MemberSnapshot{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			SessionTimeout:   time.Duration(m.SessionTimeoutMillis) * time.Millisecond,
			RebalanceTimeout: time.Duration(m.RebalanceTimeoutMillis) * time.Millisecond,
			// kmsg aliases the value's bytes; the caller may reuse them.
			Metadata: bytes.Clone(m.Subscription), Assignment: bytes.Clone(m.Assignment)}
		if ver == 0 { // Kafka: a v0 member's rebalance time-out is its session time-out
			ms.RebalanceTimeout = ms.SessionTimeout
		}
		if m.InstanceID != nil {
			ms.InstanceID = *m.InstanceID
		}
		s.Members[i] = ms
	}
	ts := int64(-1)
	if ver >= 2 {
		ts = v.CurrentStateTimestamp
	}
	return s, ts, nil
}
