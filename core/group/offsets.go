package group

import (
	"cmp"
	"slices"
)

// Offsets holds the committed offsets of one coordinator shard (one
// __consumer_offsets partition): group -> topic -> partition -> Offset.
// It is a plain data structure, not safe for concurrent use.
type Offsets struct {
	groups map[string]map[string]*partOffsets
	n      int
	// The loader's last group and topic: a batch holds one group's
	// commits, mostly of one topic. Cleared by every delete.
	lastGroup  string
	lastTopics map[string]*partOffsets
	lastTopic  string
	lastParts  *partOffsets
}

// denseMax: partitions below it are kept in a slice indexed by partition
// (Kafka's partitions are numbered from 0 up), the others in a map. Walks
// (Expired, Group, DeleteGroup) visit a topic's slots up to its highest
// dense partition.
const denseMax = 1024

// partOffsets are one topic's offsets of one group.
type partOffsets struct {
	dense  []slot
	sparse map[int32]Offset
	n      int
}

type slot struct {
	v  Offset
	ok bool
}

func (ps *partOffsets) get(p int32) (Offset, bool) {
	if p >= 0 && int(p) < len(ps.dense) {
		return ps.dense[p].v, ps.dense[p].ok
	}
	v, ok := ps.sparse[p]
	return v, ok
}

// put stores v and reports whether p is new.
func (ps *partOffsets) put(p int32, v Offset) bool {
	if p >= 0 && p < denseMax {
		if int(p) >= len(ps.dense) {
			nd := make([]slot, min(max(int(p)+1, 2*len(ps.dense), 4), denseMax))
			copy(nd, ps.dense)
			ps.dense = nd
		}
		s := &ps.dense[p]
		added := !s.ok
		s.v, s.ok = v, true
		if added {
			ps.n++
		}
		return added
	}
	if ps.sparse == nil {
		ps.sparse = make(map[int32]Offset)
	}
	n := len(ps.sparse)
	ps.sparse[p] = v
	added := len(ps.sparse) != n
	if added {
		ps.n++
	}
	return added
}

func (ps *partOffsets) del(p int32) bool {
	if p >= 0 && int(p) < len(ps.dense) {
		if !ps.dense[p].ok {
			return false
		}
		ps.dense[p] = slot{}
		ps.n--
		return true
	}
	if _, ok := ps.sparse[p]; !ok {
		return false
	}
	delete(ps.sparse, p)
	ps.n--
	return true
}

// each calls fn for every offset, the dense partitions in order first.
func (ps *partOffsets) each(fn func(p int32, v Offset)) {
	for i := range ps.dense {
		if ps.dense[i].ok {
			fn(int32(i), ps.dense[i].v)
		}
	}
	for p, v := range ps.sparse {
		fn(p, v)
	}
}

// NewOffsets returns an empty set.
func NewOffsets() *Offsets {
	return &Offsets{groups: make(map[string]map[string]*partOffsets)}
}

// Len is the number of committed offsets.
func (o *Offsets) Len() int { return o.n }

// Commit stores v under k, replacing what was there.
func (o *Offsets) Commit(k OffsetKey, v Offset) {
	topics := o.groups[k.Group]
	if topics == nil {
		topics = make(map[string]*partOffsets, 2)
		o.groups[k.Group] = topics
	}
	ps := topics[k.Topic]
	if ps == nil {
		ps = &partOffsets{}
		topics[k.Topic] = ps
	}
	if ps.put(k.Partition, v) {
		o.n++
	}
}

// commitBytes is Commit for a key still in record bytes: the strings are
// allocated only for a group or topic not seen before (the loader's path).
func (o *Offsets) commitBytes(group, topic []byte, p int32, v Offset) {
	if o.lastTopics == nil || string(group) != o.lastGroup {
		topics := o.groups[string(group)]
		if topics == nil {
			topics = make(map[string]*partOffsets, 2)
			o.groups[string(group)] = topics
		}
		o.lastGroup, o.lastTopics, o.lastParts = string(group), topics, nil
	}
	if o.lastParts == nil || string(topic) != o.lastTopic {
		ps := o.lastTopics[string(topic)]
		if ps == nil {
			ps = &partOffsets{}
			o.lastTopics[string(topic)] = ps
		}
		o.lastTopic, o.lastParts = string(topic), ps
	}
	if o.lastParts.put(p, v) {
		o.n++
	}
}

// forget drops the loader's cached maps (they may be removed).
func (o *Offsets) forget() {
	o.lastGroup, o.lastTopics, o.lastTopic, o.lastParts = "", nil, "", nil
}

// Get returns the offset committed under k.
func (o *Offsets) Get(k OffsetKey) (Offset, bool) {
	ps := o.groups[k.Group][k.Topic]
	if ps == nil {
		return Offset{}, false
	}
	return ps.get(k.Partition)
}

// Group returns a copy of a group's offsets by topic and partition, nil
// when the group has none.
func (o *Offsets) Group(group string) map[string]map[int32]Offset {
	topics := o.groups[group]
	if len(topics) == 0 {
		return nil
	}
	c := make(map[string]map[int32]Offset, len(topics))
	for t, ps := range topics {
		pc := make(map[int32]Offset, ps.n)
		ps.each(func(p int32, v Offset) { pc[p] = v })
		c[t] = pc
	}
	return c
}

// Each calls fn for every committed offset of group, without copying
// them (Group copies).
func (o *Offsets) Each(group string, fn func(topic string, p int32, v Offset)) {
	for t, ps := range o.groups[group] {
		ps.each(func(p int32, v Offset) { fn(t, p, v) })
	}
}

// Count is the number of partitions group has committed.
func (o *Offsets) Count(group string) int {
	n := 0
	for _, ps := range o.groups[group] {
		n += ps.n
	}
	return n
}

// Groups returns the groups with offsets, sorted.
func (o *Offsets) Groups() []string {
	gs := make([]string, 0, len(o.groups))
	for g := range o.groups {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	return gs
}

// Delete removes the offset under k and reports whether there was one.
func (o *Offsets) Delete(k OffsetKey) bool {
	topics := o.groups[k.Group]
	ps := topics[k.Topic]
	if ps == nil || !ps.del(k.Partition) {
		return false
	}
	o.n--
	o.forget()
	if ps.n == 0 {
		delete(topics, k.Topic)
		if len(topics) == 0 {
			delete(o.groups, k.Group)
		}
	}
	return true
}

// deleteBytes is Delete for a key still in record bytes.
func (o *Offsets) deleteBytes(group, topic []byte, p int32) bool {
	ps := o.groups[string(group)][string(topic)]
	if ps == nil {
		return false
	}
	if _, ok := ps.get(p); !ok {
		return false
	}
	return o.Delete(OffsetKey{Group: string(group), Topic: string(topic), Partition: p})
}

// DeleteGroup removes every offset of group and returns their keys,
// sorted by topic and partition.
func (o *Offsets) DeleteGroup(group string) []OffsetKey {
	topics := o.groups[group]
	if topics == nil {
		return nil
	}
	var keys []OffsetKey
	for t, ps := range topics {
		ps.each(func(p int32, _ Offset) {
			keys = append(keys, OffsetKey{Group: group, Topic: t, Partition: p})
		})
	}
	o.n -= len(keys)
	o.forget()
	delete(o.groups, group)
	slices.SortFunc(keys, compareKeys)
	return keys
}

func compareKeys(a, b OffsetKey) int {
	if c := cmp.Compare(a.Group, b.Group); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// Expired returns the keys of the offsets that have expired at nowMs, in
// no particular order; it removes nothing (the caller writes tombstones
// and then calls Delete). As Kafka's GroupMetadata.removeExpiredOffsets
// (KIP-211), offsets expire only in a group that is empty: emptySince
// reports empty=true and the time it became empty, or ms=-1 when that time
// is unknown (no group metadata: a group that only commits, or metadata
// from before value v2). Then an offset expires when
//
//   - it carries an ExpireTimestamp (a v1 record): nowMs >= ExpireTimestamp;
//   - otherwise: nowMs - base >= retentionMs, where base is the time the
//     group became empty, or the offset's commit timestamp when ms = -1.
//
// emptySince is called once per group. Offsets of a group with members
// never expire here (Kafka's one further case, a Stable consumer group
// whose subscription is known, is left to the caller).
func (o *Offsets) Expired(nowMs, retentionMs int64, emptySince func(group string) (ms int64, empty bool)) []OffsetKey {
	var out []OffsetKey
	for g, topics := range o.groups {
		since, empty := emptySince(g)
		if !empty {
			continue
		}
		for t, ps := range topics {
			ps.each(func(p int32, v Offset) {
				var expired bool
				switch {
				case v.ExpireTimestamp != -1:
					expired = nowMs >= v.ExpireTimestamp
				case since != -1:
					expired = nowMs-since >= retentionMs
				default:
					expired = nowMs-v.CommitTimestamp >= retentionMs
				}
				if expired {
					out = append(out, OffsetKey{Group: g, Topic: t, Partition: p})
				}
			})
		}
	}
	return out
}
