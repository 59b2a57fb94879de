package group

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPartition: every value was computed by Java (OpenJDK 17:
// new String(bytes, UTF_8).hashCode(), then Kafka's Utils.abs and % n),
// independently of this code.
func TestPartition(t *testing.T) {
	for _, c := range []struct {
		group string
		n     int
		want  int32
	}{
		{"", 50, 0},
		{"hello", 50, 22}, // "hello".hashCode() = 99162322
		{"hello", 3, 1},
		{"my-group", 50, 12}, // hashCode -1906497762: abs, not & 0x7fffffff (which gives 36)
		{"my-group", 3, 0},
		{"console-consumer-41723", 50, 8},
		{"polygenelubricants", 50, 0}, // hashCode is MinInt32; Utils.abs gives 0
		{"grüppe", 50, 12},            // non-ASCII, negative hash
		{"grüppe", 3, 2},
		{"消费者组", 50, 38},
		{"group-😀", 50, 7}, // astral plane: two UTF-16 code units
		{"group-😀", 3, 0},
		{"connect-cluster", 50, 13},
		{"anything", 1, 0},
	} {
		if got := Partition(c.group, c.n); got != c.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", c.group, c.n, got, c.want)
		}
	}
}

func TestOffsetCommitRecordBytes(t *testing.T) {
	k := OffsetKey{Group: "g", Topic: "t", Partition: 3}
	key, val := OffsetCommitRecord(k, &Offset{Offset: 0x0102, LeaderEpoch: 5, Metadata: "m", CommitTimestamp: 0x10, ExpireTimestamp: -1})
	wantKey := "0001" + "0001" + "67" + "0001" + "74" + "00000003"
	wantVal := "0003" + "0000000000000102" + "00000005" + "0001" + "6d" + "0000000000000010"
	if hex.EncodeToString(key) != wantKey || hex.EncodeToString(val) != wantVal {
		t.Errorf("v3 commit:\n key %x want %s\n val %x want %s", key, wantKey, val, wantVal)
	}
	_, val = OffsetCommitRecord(k, &Offset{Offset: 1, LeaderEpoch: 5, CommitTimestamp: 2, ExpireTimestamp: 3})
	wantVal = "0001" + "0000000000000001" + "0000" + "0000000000000002" + "0000000000000003"
	if hex.EncodeToString(val) != wantVal {
		t.Errorf("v1 commit: val %x want %s", val, wantVal)
	}
	key, val = OffsetCommitRecord(k, nil)
	if hex.EncodeToString(key) != wantKey || val != nil {
		t.Errorf("tombstone: key %x val %x", key, val)
	}
	key, val = GroupMetadataRecord("g", nil, 0)
	if hex.EncodeToString(key) != "0002000167" || val != nil {
		t.Errorf("group tombstone: key %x val %x", key, val)
	}
}

func sampleSnapshot() *Snapshot {
	return &Snapshot{Generation: 7, ProtocolType: "consumer", Protocol: "range", Leader: "m1",
		Members: []MemberSnapshot{
			{MemberID: "m1", InstanceID: "static-1", ClientID: "c1", ClientHost: "/127.0.0.1", SessionTimeout: 45 * time.Second,
				RebalanceTimeout: 5 * time.Minute, Metadata: []byte{0, 1, 2}, Assignment: []byte{9}},
			{MemberID: "m2", ClientID: "c2", ClientHost: "/127.0.0.2", SessionTimeout: 10 * time.Second,
				RebalanceTimeout: 30 * time.Second, Metadata: []byte("sub"), Assignment: []byte("asg")},
		}}
}

// normalize makes empty byte slices nil so a decoded value compares with
// what was encoded (the wire does not tell them apart).
func normalize(s *Snapshot) *Snapshot {
	if s == nil {
		return nil
	}
	c := *s
	c.Members = nil
	for _, m := range s.Members {
		if len(m.Metadata) == 0 {
			m.Metadata = nil
		}
		if len(m.Assignment) == 0 {
			m.Assignment = nil
		}
		c.Members = append(c.Members, m)
	}
	return &c
}

func TestRecordsRoundTrip(t *testing.T) {
	for _, o := range []*Offset{
		{Offset: 42, LeaderEpoch: 3, Metadata: "meta", CommitTimestamp: 1_700_000_000_000, ExpireTimestamp: -1},
		{Offset: 0, LeaderEpoch: -1, CommitTimestamp: 1, ExpireTimestamp: -1},
		{Offset: 1 << 50, LeaderEpoch: -1, Metadata: "ü", CommitTimestamp: 5, ExpireTimestamp: 86_400_005}, // v1: no epoch
		nil,
	} {
		k := OffsetKey{Group: "grüppe", Topic: "orders", Partition: 11}
		r, err := DecodeRecord(OffsetCommitRecord(k, o))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != KindOffset || r.Key != k || !reflect.DeepEqual(r.Offset, o) {
			t.Errorf("offset %+v: decoded %+v (%+v)", o, r, r.Offset)
		}
	}
	for _, s := range []*Snapshot{sampleSnapshot(), {ProtocolType: "consumer"}, nil} {
		r, err := DecodeRecord(GroupMetadataRecord("g1", s, 1234))
		if err != nil {
			t.Fatal(err)
		}
		wantTS := int64(1234)
		if s == nil {
			wantTS = -1
		}
		if r.Kind != KindGroup || r.Group != "g1" || r.CurrentStateTimestamp != wantTS || !reflect.DeepEqual(normalize(r.Snapshot), normalize(s)) {
			t.Errorf("group %+v: decoded %+v (%+v)", s, r, r.Snapshot)
		}
	}
}

// TestDecodeOlderVersions decodes every value version Kafka wrote, made
// with kmsg's encoder.
func TestDecodeOlderVersions(t *testing.T) {
	for _, kv := range []int16{0, 1} {
		key := (&kmsg.OffsetCommitKey{Version: kv, Group: "g", Topic: "t", Partition: 1}).AppendTo(nil)
		for vv := int16(0); vv <= 4; vv++ {
			v := kmsg.OffsetCommitValue{Version: vv, Offset: 10, LeaderEpoch: 4, Metadata: "x", CommitTimestamp: 20, ExpireTimestamp: 30}
			r, err := DecodeRecord(key, v.AppendTo(nil))
			if err != nil {
				t.Fatalf("key v%d value v%d: %v", kv, vv, err)
			}
			want := Offset{Offset: 10, LeaderEpoch: -1, Metadata: "x", CommitTimestamp: 20, ExpireTimestamp: -1}
			if vv >= 3 {
				want.LeaderEpoch = 4
			}
			if vv == 1 {
				want.ExpireTimestamp = 30
			}
			if r.Kind != KindOffset || r.Key != (OffsetKey{"g", "t", 1}) || *r.Offset != want {
				t.Errorf("key v%d value v%d: %+v %+v, want %+v", kv, vv, r, r.Offset, want)
			}
		}
	}
	key := (&kmsg.GroupMetadataKey{Version: 2, Group: "g"}).AppendTo(nil)
	proto, leader, inst := "range", "m1", "i1"
	for vv := int16(0); vv <= 4; vv++ {
		v := kmsg.GroupMetadataValue{Version: vv, ProtocolType: "consumer", Generation: 3, Protocol: &proto, Leader: &leader,
			CurrentStateTimestamp: 99, Members: []kmsg.GroupMetadataValueMember{{MemberID: "m1", InstanceID: &inst, ClientID: "c",
				ClientHost: "h", RebalanceTimeoutMillis: 60000, SessionTimeoutMillis: 10000, Subscription: []byte("s"), Assignment: []byte("a")}}}
		r, err := DecodeRecord(key, v.AppendTo(nil))
		if err != nil {
			t.Fatalf("group value v%d: %v", vv, err)
		}
		m := MemberSnapshot{MemberID: "m1", ClientID: "c", ClientHost: "h", SessionTimeout: 10 * time.Second,
			RebalanceTimeout: time.Minute, Metadata: []byte("s"), Assignment: []byte("a")}
		wantTS := int64(99)
		if vv == 0 {
			m.RebalanceTimeout = m.SessionTimeout
		}
		if vv < 2 {
			wantTS = -1
		}
		if vv >= 3 {
			m.InstanceID = "i1"
		}
		want := &Snapshot{Generation: 3, ProtocolType: "consumer", Protocol: "range", Leader: "m1", Members: []MemberSnapshot{m}}
		if r.Kind != KindGroup || r.Group != "g" || r.CurrentStateTimestamp != wantTS || !reflect.DeepEqual(r.Snapshot, want) {
			t.Errorf("group value v%d: %+v %+v", vv, r, r.Snapshot)
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	okKey, okVal := OffsetCommitRecord(OffsetKey{"group", "topic", 1}, &Offset{Offset: 1, LeaderEpoch: -1, Metadata: "md", ExpireTimestamp: -1})
	gKey, gVal := GroupMetadataRecord("group", sampleSnapshot(), 5)
	for _, c := range []struct {
		name       string
		key, value []byte
		want       string
	}{
		{"empty key", []byte{}, okVal, "shorter than its version"},
		{"one-byte key", []byte{0}, okVal, "shorter than its version"},
		{"key v3", []byte{0, 3, 0, 0}, okVal, "key version 3"},
		{"key v-1", []byte{0xff, 0xff}, okVal, "key version -1"},
		{"offset value v5", okKey, append([]byte{0, 5}, okVal[2:]...), "unknown value version 5"},
		{"offset value v-1", okKey, append([]byte{0xff, 0xff}, okVal[2:]...), "unknown value version -1"},
		{"group value v5", gKey, append([]byte{0, 5}, gVal[2:]...), "unknown value version 5"},
		{"empty offset value", okKey, []byte{}, "shorter than its version"},
		{"empty group value", gKey, []byte{}, "shorter than its version"},
	} {
		_, err := DecodeRecord(c.key, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// Every strict prefix of a valid key or value is an error.
	for _, pair := range [][2][]byte{{okKey, okVal}, {gKey, gVal}} {
		for i := range len(pair[0]) {
			if _, err := DecodeRecord(pair[0][:i], pair[1]); err == nil {
				t.Errorf("key %x truncated to %d bytes decoded", pair[0], i)
			}
		}
		for i := range len(pair[1]) {
			if _, err := DecodeRecord(pair[0], pair[1][:i]); err == nil {
				t.Errorf("value of key %x truncated to %d bytes decoded", pair[0], i)
			}
		}
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	key, val := GroupMetadataRecord("g", sampleSnapshot(), 1)
	r, err := DecodeRecord(key, val)
	if err != nil {
		t.Fatal(err)
	}
	for i := range val {
		val[i] = 0xAA
	}
	if !reflect.DeepEqual(r.Snapshot, sampleSnapshot()) {
		t.Errorf("decoded snapshot changed with the value's bytes: %+v", r.Snapshot)
	}
}

// FuzzDecodeRecord: DecodeRecord never panics, and what it decodes
// re-encodes (in the versions this package writes) to the same record.
func FuzzDecodeRecord(f *testing.F) {
	add := func(k, v []byte) { f.Add(k, v) }
	add(OffsetCommitRecord(OffsetKey{"g", "t", 1}, &Offset{Offset: 5, LeaderEpoch: 2, Metadata: "m", ExpireTimestamp: -1}))
	add(OffsetCommitRecord(OffsetKey{"g", "t", 1}, &Offset{Offset: 5, LeaderEpoch: -1, ExpireTimestamp: 9}))
	add(GroupMetadataRecord("g", sampleSnapshot(), 7))
	f.Add((&kmsg.GroupMetadataKey{Version: 2, Group: "g"}).AppendTo(nil), (&kmsg.GroupMetadataValue{Version: 4, ProtocolType: "consumer"}).AppendTo(nil))
	f.Add((&kmsg.OffsetCommitKey{Version: 0, Group: "g"}).AppendTo(nil), (&kmsg.OffsetCommitValue{Version: 4, Offset: 3}).AppendTo(nil))
	f.Add([]byte{0, 2, 0, 1, 'g'}, []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := DecodeRecord(key, value)
		if err != nil {
			return
		}
		var k2, v2 []byte
		switch r.Kind {
		case KindOffset:
			k2, v2 = OffsetCommitRecord(r.Key, r.Offset)
		case KindGroup:
			k2, v2 = GroupMetadataRecord(r.Group, r.Snapshot, r.CurrentStateTimestamp)
		default:
			t.Fatalf("kind %d", r.Kind)
		}
		r2, err := DecodeRecord(k2, v2)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if r.Kind == KindGroup && r.Snapshot != nil && r.CurrentStateTimestamp == -1 {
			r.CurrentStateTimestamp = r2.CurrentStateTimestamp // v0/v1 have none; v3 writes what it was given
		}
		r.Snapshot, r2.Snapshot = normalize(r.Snapshot), normalize(r2.Snapshot)
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, r2)
		}
	})
}
