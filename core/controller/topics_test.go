package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/core/config"
	"github.com/twmb/franz-go/pkg/kerr"
)

// memStore is an in-memory coord.Store for testing the metadata logic alone;
// the real backends are tested by coord/coordtest and by the broker's tests.
type memStore struct {
	mu   sync.Mutex
	m    map[string]coord.Record
	next coord.Version
	// failAfter makes the Nth mutation fail, to interrupt a multi-step change.
	failAfter int
}

func newMem() *memStore { return &memStore{m: map[string]coord.Record{}, failAfter: -1} }

func (s *memStore) mutate() error {
	if s.failAfter == 0 {
		return fmt.Errorf("injected: %w", coord.ErrUnavailable)
	}
	if s.failAfter > 0 {
		s.failAfter--
	}
	s.next++
	return nil
}

func (s *memStore) Get(_ context.Context, k string) (coord.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[k]
	if !ok {
		return coord.Record{}, coord.ErrNotFound
	}
	return r, nil
}

func (s *memStore) List(_ context.Context, prefix string) ([]coord.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []coord.Record
	for k, r := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *memStore) Create(_ context.Context, k string, v []byte) (coord.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		return 0, coord.ErrConflict
	}
	if err := s.mutate(); err != nil {
		return 0, err
	}
	s.m[k] = coord.Record{Key: k, Value: v, Version: s.next}
	return s.next, nil
}

func (s *memStore) CompareAndSet(_ context.Context, k string, v []byte, expect coord.Version) (coord.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[k]
	if !ok {
		return 0, coord.ErrNotFound
	}
	if r.Version != expect {
		return 0, coord.ErrConflict
	}
	if err := s.mutate(); err != nil {
		return 0, err
	}
	s.m[k] = coord.Record{Key: k, Value: v, Version: s.next}
	return s.next, nil
}

func (s *memStore) Delete(_ context.Context, k string, expect coord.Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[k]
	if !ok {
		return coord.ErrNotFound
	}
	if expect != coord.NoVersion && r.Version != expect {
		return coord.ErrConflict
	}
	if err := s.mutate(); err != nil {
		return err
	}
	delete(s.m, k)
	return nil
}

func (s *memStore) Watch(context.Context, string) (<-chan coord.Event, error) {
	return nil, errors.New("memStore: no watch")
}

func kafkaCode(t *testing.T, err error) *kerr.Error {
	t.Helper()
	var ke *Error
	if !errors.As(err, &ke) {
		t.Fatalf("error %v is not a *controller.Error", err)
	}
	return ke.Err
}

func TestCreateTopicLayoutAndErrors(t *testing.T) {
	ctx := context.Background()
	cfg := config.DefaultConfig()
	s := newMem()
	m := &Metadata{Store: s, ControllerEpoch: 7}
	top, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "orders", NumPartitions: 3, ReplicationFactor: -1, Configs: map[string]string{"retention.ms": "1000"}}, []int32{1})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Partitions) != 3 || top.Partitions[2].Leader != 1 {
		t.Fatalf("partitions: %+v", top.Partitions)
	}
	rec, err := s.Get(ctx, "/brokers/topics/orders")
	if err != nil || !strings.Contains(string(rec.Value), `"topic_id":"`+top.ID.String()+`"`) || !strings.Contains(string(rec.Value), `"partitions":{"0":[1],"1":[1],"2":[1]}`) {
		t.Errorf("topic record %s (%v)", rec.Value, err)
	}
	st, _ := s.Get(ctx, "/brokers/topics/orders/partitions/1/state")
	if string(st.Value) != `{"version":1,"leader":1,"leader_epoch":0,"controller_epoch":7,"isr":[1]}` {
		t.Errorf("state record %s", st.Value)
	}
	got, err := m.Topic(ctx, "orders")
	if err != nil || got.ID != top.ID || got.Configs["retention.ms"] != "1000" || len(got.Partitions) != 3 || got.Partitions[1].ISR[0] != 1 {
		t.Errorf("read back %+v %v", got, err)
	}

	cases := []struct {
		name string
		req  CreateTopicRequest
		want *kerr.Error
	}{
		{"exists", CreateTopicRequest{Name: "orders", NumPartitions: 1, ReplicationFactor: 1}, kerr.TopicAlreadyExists},
		{"bad name", CreateTopicRequest{Name: "a/b", NumPartitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException},
		{"reserved prefix", CreateTopicRequest{Name: "__brokkr_etcd", NumPartitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException},
		{"long name", CreateTopicRequest{Name: strings.Repeat("x", 250), NumPartitions: 1, ReplicationFactor: 1}, kerr.InvalidTopicException},
		{"zero partitions", CreateTopicRequest{Name: "z", NumPartitions: 0, ReplicationFactor: 1}, kerr.InvalidPartitions},
		{"rf too big", CreateTopicRequest{Name: "r", NumPartitions: 1, ReplicationFactor: 3}, kerr.InvalidReplicationFactor},
		{"bad config", CreateTopicRequest{Name: "c", NumPartitions: 1, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "x"}}, kerr.InvalidConfig},
		{"bad assignment", CreateTopicRequest{Name: "a", NumPartitions: -1, ReplicationFactor: -1, Assignment: map[int32][]int32{0: {9}}}, kerr.InvalidReplicaAssignment},
	}
	for _, c := range cases {
		if _, err := m.CreateTopic(ctx, &cfg, c.req, []int32{1}); err == nil || kafkaCode(t, err) != c.want {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "dry", NumPartitions: 2, ReplicationFactor: 1, ValidateOnly: true}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "/brokers/topics/dry"); !errors.Is(err, coord.ErrNotFound) {
		t.Errorf("validate-only created the topic: %v", err)
	}
}

func TestDeleteIsFinishedAfterAnInterruption(t *testing.T) {
	ctx := context.Background()
	cfg := config.DefaultConfig()
	s := newMem()
	m := &Metadata{Store: s}
	top, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "t", NumPartitions: 4, ReplicationFactor: 1, Configs: map[string]string{"segment.ms": "100"}}, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.BeginDelete(ctx, "t", NewTopicID()); err == nil || kafkaCode(t, err) != kerr.UnknownTopicID {
		t.Errorf("delete by a wrong id: %v", err)
	}
	if _, err := m.BeginDelete(ctx, "t", top.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "t", NumPartitions: 1, ReplicationFactor: 1}, []int32{0}); err == nil {
		t.Error("recreated a topic whose deletion is under way")
	}
	s.failAfter = 2 // crash after two deletions
	if err := m.FinishDelete(ctx, "t"); err == nil {
		t.Fatal("the injected failure did not interrupt FinishDelete")
	}
	pending, _ := m.PendingDeletes(ctx)
	if len(pending) != 1 || pending[0] != "t" {
		t.Fatalf("pending deletes after a crash: %v", pending)
	}
	s.failAfter = -1
	if err := m.FinishDelete(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.List(ctx, "/"); len(left) != 0 {
		t.Errorf("records left after delete: %v", left)
	}
	again, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "t", NumPartitions: 1, ReplicationFactor: 1}, []int32{0})
	if err != nil || again.ID == top.ID {
		t.Errorf("recreate: %v, same id %v", err, again.ID == top.ID)
	}
}

func TestAddPartitionsAndAssign(t *testing.T) {
	ctx := context.Background()
	cfg := config.DefaultConfig()
	m := &Metadata{Store: newMem()}
	if _, err := m.CreateTopic(ctx, &cfg, CreateTopicRequest{Name: "g", NumPartitions: 2, ReplicationFactor: 2}, []int32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := m.AddPartitions(ctx, "g", 2, nil, []int32{1, 2, 3}, false); err == nil || kafkaCode(t, err) != kerr.InvalidPartitions {
		t.Errorf("shrinking/equal count: %v", err)
	}
	if err := m.AddPartitions(ctx, "g", 5, nil, []int32{1, 2, 3}, false); err != nil {
		t.Fatal(err)
	}
	top, _ := m.Topic(ctx, "g")
	if len(top.Partitions) != 5 || len(top.Partitions[4].Replicas) != 2 {
		t.Fatalf("after add: %+v", top.Partitions)
	}
	leaders := map[int32]int{}
	for _, p := range Assign(6, 3, []int32{3, 1, 2}, 0) {
		leaders[p[0]]++
		if len(p) != 3 || p[0] == p[1] || p[1] == p[2] || p[0] == p[2] {
			t.Errorf("replicas %v", p)
		}
	}
	if leaders[1] != 2 || leaders[2] != 2 || leaders[3] != 2 {
		t.Errorf("leaders unbalanced: %v", leaders)
	}
}

func TestTopicIDString(t *testing.T) {
	for i := 0; i < 100; i++ {
		id := NewTopicID()
		back, err := ParseTopicID(id.String())
		if err != nil || back != id || len(id.String()) != 22 || strings.HasPrefix(id.String(), "-") {
			t.Fatalf("id %s round trip %v %v", id, back, err)
		}
	}
}
