package broker

// DeleteGroups (key 42), v0–v2.
//
// Deletes groups without members, with their committed offsets: tombstones
// for every offset and for the group metadata are appended to the group's
// __consumer_offsets partition, then the group is forgotten. Per group:
// INVALID_GROUP_ID, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR,
// GROUP_ID_NOT_FOUND for an unknown group, NON_EMPTY_GROUP while it has
// members (or members asked to rejoin with an id, v4+ joins), as Kafka.

import (
	"context"
	"time"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(42, 0, 2, handleDeleteGroups) }

func handleDeleteGroups(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group, rg.ErrorCode = id, b.deleteGroup(id)
		resp.Groups = append(resp.Groups, rg)
	}
	return response{msg: resp}
}

func (b *Broker) deleteGroup(id string) int16 {
	if id == "" {
		return kerr.InvalidGroupID.Code
	}
	s, code := b.groups.lock(id)
	if code != 0 {
		return code
	}
	defer s.mu.Unlock()
	now := time.Now()
	e := s.entry(id, false, now)
	if e == nil {
		return kerr.GroupIDNotFound.Code
	}
	if e.g.State() == group.Dead {
		return kerr.GroupIDNotFound.Code
	}
	if e.g.State() != group.Empty || !e.g.IsEmpty() {
		return kerr.NonEmptyGroup.Code
	}
	var kvs [][2][]byte
	var keys []group.OffsetKey
	for t, ps := range s.offsets.Group(id) {
		for p := range ps {
			k := group.OffsetKey{Group: id, Topic: t, Partition: p}
			key, val := group.OffsetCommitRecord(k, nil)
			kvs = append(kvs, [2][]byte{key, val})
			keys = append(keys, k)
		}
	}
	key, val := group.GroupMetadataRecord(id, nil, now.UnixMilli())
	kvs = append(kvs, [2][]byte{key, val})
	if err := s.appendRecords(now, kvs); err != nil {
		b.log.Error("writing group deletion tombstones failed", "group", id, "err", err)
		return appendErrCode(err, false)
	}
	if code := e.g.Delete(now); code != 0 {
		return code
	}
	s.offsets.DeleteGroup(id)
	s.c.touched(keys, false)
	s.drop(e)
	b.log.Info("group deleted", "group", id, "offsets", len(keys))
	return 0
}
