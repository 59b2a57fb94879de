package group

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func off(o, ts int64) Offset {
	return Offset{Offset: o, LeaderEpoch: -1, CommitTimestamp: ts, ExpireTimestamp: -1}
}

func TestOffsetsBasics(t *testing.T) {
	o := NewOffsets()
	o.Commit(OffsetKey{"b", "t1", 0}, off(1, 10))
	o.Commit(OffsetKey{"b", "t1", 1}, off(2, 10))
	o.Commit(OffsetKey{"b", "t0", 5}, off(3, 10))
	o.Commit(OffsetKey{"a", "t1", 0}, off(4, 10))
	o.Commit(OffsetKey{"b", "t1", 0}, off(9, 11)) // replaces
	if o.Len() != 4 {
		t.Fatalf("Len %d, want 4", o.Len())
	}
	if v, ok := o.Get(OffsetKey{"b", "t1", 0}); !ok || v != off(9, 11) {
		t.Errorf("Get: %+v %v", v, ok)
	}
	if _, ok := o.Get(OffsetKey{"b", "t1", 7}); ok {
		t.Error("Get of an absent partition found one")
	}
	if g := o.Groups(); !slices.Equal(g, []string{"a", "b"}) {
		t.Errorf("Groups %v", g)
	}
	g := o.Group("b")
	want := map[string]map[int32]Offset{"t1": {0: off(9, 11), 1: off(2, 10)}, "t0": {5: off(3, 10)}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("Group(b) = %v", g)
	}
	g["t1"][0] = off(100, 0)
	delete(g, "t0")
	if v, _ := o.Get(OffsetKey{"b", "t1", 0}); v.Offset != 9 || o.Group("b")["t0"] == nil {
		t.Error("changing Group's copy changed the set")
	}
	if o.Group("nope") != nil {
		t.Error("Group of an unknown group is not nil")
	}
	if !o.Delete(OffsetKey{"a", "t1", 0}) || o.Delete(OffsetKey{"a", "t1", 0}) || o.Len() != 3 {
		t.Error("Delete did not report once")
	}
	if g := o.Groups(); !slices.Equal(g, []string{"b"}) {
		t.Errorf("after deleting a's last offset, Groups %v", g)
	}
	keys := o.DeleteGroup("b")
	if !slices.Equal(keys, []OffsetKey{{"b", "t0", 5}, {"b", "t1", 0}, {"b", "t1", 1}}) || o.Len() != 0 || len(o.Groups()) != 0 {
		t.Errorf("DeleteGroup: %v, Len %d", keys, o.Len())
	}
	if o.DeleteGroup("b") != nil {
		t.Error("second DeleteGroup removed something")
	}
}

func TestOffsetsExpired(t *testing.T) {
	o := NewOffsets()
	o.Commit(OffsetKey{"active", "t", 0}, Offset{Offset: 1, LeaderEpoch: -1, CommitTimestamp: 0, ExpireTimestamp: 5}) // members: never
	o.Commit(OffsetKey{"empty", "t", 0}, off(1, 500))                                                                 // base: emptied at 1000
	o.Commit(OffsetKey{"empty", "t", 1}, off(1, 2000))                                                                // committed after emptying: still the state time
	o.Commit(OffsetKey{"empty", "u", 0}, Offset{Offset: 1, LeaderEpoch: -1, CommitTimestamp: 0, ExpireTimestamp: 1050})
	o.Commit(OffsetKey{"standalone", "t", 0}, off(1, 1000)) // no metadata: commit time
	o.Commit(OffsetKey{"standalone", "t", 1}, off(1, 1010))
	since := func(g string) (int64, bool) {
		switch g {
		case "active":
			return 0, false
		case "empty":
			return 1000, true
		}
		return -1, true
	}
	calls := map[string]int{}
	counted := func(g string) (int64, bool) { calls[g]++; return since(g) }
	for _, c := range []struct {
		now  int64
		want []OffsetKey
	}{
		{1049, nil},
		{1050, []OffsetKey{{"empty", "u", 0}}}, // explicit expire time, before the retention
		{1099, []OffsetKey{{"empty", "u", 0}}},
		{1100, []OffsetKey{{"empty", "t", 0}, {"empty", "t", 1}, {"empty", "u", 0}, {"standalone", "t", 0}}}, // 1000 + 100: the boundary expires
		{1110, []OffsetKey{{"empty", "t", 0}, {"empty", "t", 1}, {"empty", "u", 0}, {"standalone", "t", 0}, {"standalone", "t", 1}}},
	} {
		got := o.Expired(c.now, 100, since)
		slices.SortFunc(got, compareKeys)
		if !slices.Equal(got, c.want) {
			t.Errorf("now %d, retention 100: %v, want %v", c.now, got, c.want)
		}
	}
	got := o.Expired(1999, 1000, counted)
	slices.SortFunc(got, compareKeys)
	if want := []OffsetKey{{"empty", "u", 0}}; !slices.Equal(got, want) {
		t.Errorf("now 1999, retention 1000: %v, want %v", got, want)
	}
	for g, n := range calls {
		if n != 1 {
			t.Errorf("emptySince(%q) called %d times", g, n)
		}
	}
	if len(calls) != 3 {
		t.Errorf("emptySince called for %v", calls)
	}
	if o.Len() != 6 {
		t.Error("Expired removed offsets")
	}
}

// TestOffsetsRandom checks Offsets against a plain map with random
// operations, Expired included.
func TestOffsetsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	o := NewOffsets()
	model := map[OffsetKey]Offset{}
	// Partitions both in the dense range and outside it (kept in a map).
	parts := []int32{0, 1, 2, 3, 17, denseMax - 1, denseMax, 5000, -1, 1<<31 - 1}
	key := func() OffsetKey {
		p := int32(rng.IntN(4))
		if rng.IntN(3) == 0 {
			p = parts[rng.IntN(len(parts))]
		}
		return OffsetKey{Group: fmt.Sprint("g", rng.IntN(8)), Topic: fmt.Sprint("t", rng.IntN(3)), Partition: p}
	}
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 6:
			k, v := key(), off(rng.Int64N(1000), rng.Int64N(1000))
			if rng.IntN(4) == 0 {
				v.ExpireTimestamp = rng.Int64N(2000)
			}
			o.Commit(k, v)
			model[k] = v
		case op < 8:
			k := key()
			_, had := model[k]
			if o.Delete(k) != had {
				t.Fatalf("step %d: Delete(%v) disagrees with the model", step, k)
			}
			delete(model, k)
		case op < 9 && rng.IntN(10) == 0:
			g := fmt.Sprint("g", rng.IntN(8))
			var want []OffsetKey
			for k := range model {
				if k.Group == g {
					want = append(want, k)
					delete(model, k)
				}
			}
			slices.SortFunc(want, compareKeys)
			if got := o.DeleteGroup(g); !slices.Equal(got, want) {
				t.Fatalf("step %d: DeleteGroup(%s) = %v, want %v", step, g, got, want)
			}
		default:
			now, ret := rng.Int64N(3000), rng.Int64N(1000)
			emptyAt := map[string]int64{}
			since := func(g string) (int64, bool) {
				h := int64(len(g)*31+int(g[1])) % 4
				switch h {
				case 0:
					return 0, false
				case 1:
					return -1, true
				}
				emptyAt[g] = h * 300
				return h * 300, true
			}
			var want []OffsetKey
			for k, v := range model {
				s, empty := since(k.Group)
				if !empty {
					continue
				}
				if (v.ExpireTimestamp != -1 && now >= v.ExpireTimestamp) ||
					(v.ExpireTimestamp == -1 && s != -1 && now >= s+ret) ||
					(v.ExpireTimestamp == -1 && s == -1 && now >= v.CommitTimestamp+ret) {
					want = append(want, k)
				}
			}
			got := o.Expired(now, ret, since)
			slices.SortFunc(got, compareKeys)
			slices.SortFunc(want, compareKeys)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Expired(%d, %d) = %v, want %v", step, now, ret, got, want)
			}
		}
		if o.Len() != len(model) {
			t.Fatalf("step %d: Len %d, model %d", step, o.Len(), len(model))
		}
	}
	for k, v := range model {
		if got, ok := o.Get(k); !ok || got != v {
			t.Fatalf("Get(%v) = %+v %v, want %+v", k, got, ok, v)
		}
	}
	groups := map[string]bool{}
	byGroup := map[string]map[string]map[int32]Offset{}
	for k, v := range model {
		groups[k.Group] = true
		if byGroup[k.Group] == nil {
			byGroup[k.Group] = map[string]map[int32]Offset{}
		}
		if byGroup[k.Group][k.Topic] == nil {
			byGroup[k.Group][k.Topic] = map[int32]Offset{}
		}
		byGroup[k.Group][k.Topic][k.Partition] = v
	}
	for g, want := range byGroup {
		if got := o.Group(g); !reflect.DeepEqual(got, want) {
			t.Errorf("Group(%s) = %v, want %v", g, got, want)
		}
	}
	for _, g := range o.Groups() {
		if !groups[g] {
			t.Errorf("Groups lists %s, which has no offsets", g)
		}
		delete(groups, g)
	}
	if len(groups) != 0 {
		t.Errorf("Groups misses %v", groups)
	}
}

func BenchmarkOffsetsExpired(b *testing.B) {
	o := NewOffsets()
	for g := range 10000 {
		for p := range 10 {
			o.Commit(OffsetKey{Group: fmt.Sprint("group-", g), Topic: "topic", Partition: int32(p)}, off(1, int64(g)))
		}
	}
	since := func(string) (int64, bool) { return -1, true }
	b.ReportAllocs()
	for b.Loop() {
		if n := len(o.Expired(5000+100, 100, since)); n != 10*5001 {
			b.Fatal(n)
		}
	}
}
