package group

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/brokkr/brokkr/core/codec"
)

// randomOffsetRecord encodes a commit in any key (0, 1) and value (0-4)
// version Kafka wrote, and returns what DecodeRecord must make of it.
func randomOffsetRecord(rng *rand.Rand, k OffsetKey) (key, value []byte, want Offset) {
	key = (&kmsg.OffsetCommitKey{Version: int16(rng.IntN(2)), Group: k.Group, Topic: k.Topic, Partition: k.Partition}).AppendTo(nil)
	v := kmsg.OffsetCommitValue{Version: int16(rng.IntN(5)), Offset: rng.Int64N(1 << 40), LeaderEpoch: rng.Int32N(10),
		CommitTimestamp: rng.Int64N(1 << 41), ExpireTimestamp: rng.Int64N(1 << 41)}
	if rng.IntN(2) == 0 {
		v.Metadata = fmt.Sprint("md", rng.IntN(100))
	}
	want = Offset{Offset: v.Offset, LeaderEpoch: -1, Metadata: v.Metadata, CommitTimestamp: v.CommitTimestamp, ExpireTimestamp: -1}
	if v.Version >= 3 {
		want.LeaderEpoch = v.LeaderEpoch
	}
	if v.Version == 1 {
		want.ExpireTimestamp = v.ExpireTimestamp
	}
	return key, v.AppendTo(nil), want
}

func randomGroupRecord(rng *rand.Rand, g string) (key, value []byte, want LoadedGroup) {
	key = (&kmsg.GroupMetadataKey{Version: 2, Group: g}).AppendTo(nil)
	ver := int16(rng.IntN(5))
	v := kmsg.GroupMetadataValue{Version: ver, ProtocolType: "consumer", Generation: rng.Int32N(100), CurrentStateTimestamp: rng.Int64N(1 << 41)}
	s := Snapshot{Generation: v.Generation, ProtocolType: "consumer"}
	want.CurrentStateTimestamp = -1
	if ver >= 2 {
		want.CurrentStateTimestamp = v.CurrentStateTimestamp
	}
	if n := rng.IntN(4); n > 0 {
		proto, leader := "range", "m0"
		v.Protocol, v.Leader = &proto, &leader
		s.Protocol, s.Leader = proto, leader
		for i := range n {
			inst := fmt.Sprint("i", i)
			m := kmsg.GroupMetadataValueMember{MemberID: fmt.Sprint("m", i), InstanceID: &inst, ClientID: "c", ClientHost: "/127.0.0.1",
				RebalanceTimeoutMillis: 60000, SessionTimeoutMillis: 45000, Subscription: []byte{byte(i)}, Assignment: []byte{1, byte(i)}}
			v.Members = append(v.Members, m)
			ms := MemberSnapshot{MemberID: m.MemberID, ClientID: "c", ClientHost: "/127.0.0.1", SessionTimeout: 45 * time.Second,
				RebalanceTimeout: time.Minute, Metadata: m.Subscription, Assignment: m.Assignment}
			if ver == 0 {
				ms.RebalanceTimeout = ms.SessionTimeout
			}
			if ver >= 3 {
				ms.InstanceID = inst
			}
			s.Members = append(s.Members, ms)
		}
	}
	want.Snapshot = s
	return key, v.AppendTo(nil), want
}

// TestLoaderRandom applies random commits, tombstones, group records and
// undecodable records and compares the result with a plain map model.
func TestLoaderRandom(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 99))
		l := NewLoader()
		offsets := map[OffsetKey]Offset{}
		groups := map[string]LoadedGroup{}
		bad := 0
		for range 5000 {
			g := fmt.Sprint("group-", rng.IntN(20))
			k := OffsetKey{Group: g, Topic: fmt.Sprint("topic-", rng.IntN(3)), Partition: int32(rng.IntN(5))}
			if rng.IntN(10) == 0 {
				k.Partition = []int32{denseMax, 4000, -2}[rng.IntN(3)] // kept outside the dense slots
			}
			var key, value []byte
			wantErr := false
			switch op := rng.IntN(20); {
			case op < 12:
				var o Offset
				key, value, o = randomOffsetRecord(rng, k)
				offsets[k] = o
			case op < 15:
				key, _ = OffsetCommitRecord(k, nil)
				delete(offsets, k)
			case op < 17:
				var lg LoadedGroup
				key, value, lg = randomGroupRecord(rng, g)
				groups[g] = lg
			case op < 18:
				key, _ = GroupMetadataRecord(g, nil, 0)
				delete(groups, g)
			default: // a good record, damaged
				key, value, _ = randomOffsetRecord(rng, k)
				if rng.IntN(2) == 0 {
					key, value, _ = randomGroupRecord(rng, g)
				}
				switch rng.IntN(4) {
				case 0:
					value = value[:rng.IntN(len(value))]
				case 1:
					key = key[:rng.IntN(len(key))]
				case 2:
					value[1] = 9 // unknown value version
				case 3:
					key[1] = 3 // a KIP-848 record
				}
				wantErr = true
			}
			err := l.Apply(key, value)
			if (err != nil) != wantErr {
				t.Fatalf("seed %d: Apply(%x, %x) = %v, want error %v", seed, key, value, err, wantErr)
			}
			if err != nil {
				bad++
			}
		}
		got := l.Done()
		if got.Offsets.Len() != len(offsets) {
			t.Fatalf("seed %d: %d offsets loaded, model has %d", seed, got.Offsets.Len(), len(offsets))
		}
		for k, v := range offsets {
			if g, ok := got.Offsets.Get(k); !ok || g != v {
				t.Fatalf("seed %d: offset %v = %+v %v, want %+v", seed, k, g, ok, v)
			}
		}
		if len(got.Groups) != len(groups) {
			t.Fatalf("seed %d: %d groups loaded, model has %d", seed, len(got.Groups), len(groups))
		}
		for g, want := range groups {
			lg := got.Groups[g]
			if lg.CurrentStateTimestamp != want.CurrentStateTimestamp || !reflect.DeepEqual(normalize(&lg.Snapshot), normalize(&want.Snapshot)) {
				t.Fatalf("seed %d: group %s = %+v, want %+v", seed, g, lg, want)
			}
		}
		if bad == 0 {
			t.Fatalf("seed %d: no damaged record was applied", seed)
		}
	}
}

// FuzzLoaderApply: Apply's hand-written offset commit path agrees with
// DecodeRecord on every input: same records accepted, same result.
func FuzzLoaderApply(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 8 {
		k, v, _ := randomOffsetRecord(rng, OffsetKey{"g", "t", 3})
		f.Add(k, v)
	}
	k, v, _ := randomGroupRecord(rng, "g")
	f.Add(k, v)
	k, _ = OffsetCommitRecord(OffsetKey{"g", "t", 3}, nil)
	f.Add(k, []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		l := NewLoader()
		err := l.Apply(key, value)
		r, derr := DecodeRecord(key, value)
		got := l.Done()
		if (err != nil) != (derr != nil) {
			t.Fatalf("Apply: %v; DecodeRecord: %v", err, derr)
		}
		if err != nil || r.Kind != KindOffset {
			return
		}
		o, ok := got.Offsets.Get(r.Key)
		if r.Offset == nil {
			if ok || got.Offsets.Len() != 0 {
				t.Fatal("a tombstone on an empty loader left an offset")
			}
			return
		}
		if !ok || o != *r.Offset || got.Offsets.Len() != 1 {
			t.Fatalf("loaded %+v %v, decoded %+v", o, ok, *r.Offset)
		}
	})
}

// TestLoaderCopiesBytes: what a loader keeps does not alias the bytes it
// was given (the caller reuses its read buffer).
func TestLoaderCopiesBytes(t *testing.T) {
	l := NewLoader()
	k1, v1 := OffsetCommitRecord(OffsetKey{"grp", "top", 1}, &Offset{Offset: 5, LeaderEpoch: 1, Metadata: "meta", ExpireTimestamp: -1})
	k2, v2 := GroupMetadataRecord("grp", sampleSnapshot(), 7)
	for _, kv := range [][2][]byte{{k1, v1}, {k2, v2}} {
		if err := l.Apply(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
		for _, b := range kv {
			for i := range b {
				b[i] = 'X'
			}
		}
	}
	got := l.Done()
	if o, ok := got.Offsets.Get(OffsetKey{"grp", "top", 1}); !ok || o.Metadata != "meta" || o.Offset != 5 {
		t.Errorf("offset after the buffer was overwritten: %+v %v", o, ok)
	}
	if lg, ok := got.Groups["grp"]; !ok || !reflect.DeepEqual(lg.Snapshot, *sampleSnapshot()) {
		t.Errorf("group after the buffer was overwritten: %+v", lg)
	}
}

// TestLoadFromLog writes a __consumer_offsets partition into a real log
// on disk (uncompressed and compressed batches, as BenchmarkLoad does but
// smaller), loads it back the coordinator's way, and compares every
// offset and group with what was written last.
func TestLoadFromLog(t *testing.T) {
	for _, c := range []int{codec.None, codec.Zstd, codec.LZ4} {
		t.Run(codec.Name(c), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "__consumer_offsets-7")
			want, size := writeOffsetsLog(t, dir, offsetsLogSpec{Commits: 20_000, Groups: 200, Codec: c, Seed: uint64(c) + 1})
			got, st := loadOffsetsLog(t, dir)
			if st.Bad != 0 || st.Bytes != size || st.Records < 20_000 {
				t.Fatalf("load read %+v; log is %d bytes", st, size)
			}
			if got.Offsets.Len() != want.Offsets.Len() || want.Offsets.Len() == 0 {
				t.Fatalf("%d offsets loaded, want %d", got.Offsets.Len(), want.Offsets.Len())
			}
			if !slices.Equal(got.Offsets.Groups(), want.Offsets.Groups()) {
				t.Fatalf("groups with offsets differ: %d vs %d", len(got.Offsets.Groups()), len(want.Offsets.Groups()))
			}
			for _, g := range want.Offsets.Groups() {
				if !reflect.DeepEqual(got.Offsets.Group(g), want.Offsets.Group(g)) {
					t.Fatalf("group %s offsets:\n got %v\nwant %v", g, got.Offsets.Group(g), want.Offsets.Group(g))
				}
			}
			if len(got.Groups) != len(want.Groups) || len(want.Groups) == 0 {
				t.Fatalf("%d groups loaded, want %d", len(got.Groups), len(want.Groups))
			}
			for g, w := range want.Groups {
				if !reflect.DeepEqual(got.Groups[g], w) {
					t.Fatalf("group %s:\n got %+v\nwant %+v", g, got.Groups[g], w)
				}
			}
			if n := rawReadLog(t, dir); n != size {
				t.Errorf("raw read %d bytes, log is %d", n, size)
			}
		})
	}
}
