// Package controller makes the cluster's metadata decisions: topic lifecycle
// (create, delete, add partitions, config changes) and partition assignment,
// stored as records in the coordination backend under Kafka's familiar
// layout:
//
//	/brokers/topics/<t>                      {"version":3,"topic_id":"…","partitions":{"0":[1]},…}
//	/brokers/topics/<t>/partitions/<p>/state {"version":1,"leader":1,"leader_epoch":0,"controller_epoch":1,"isr":[1]}
//	/config/topics/<t>                       {"version":1,"config":{"retention.ms":"1000"}}
//	/admin/delete_topics/<t>                 {"topic_id":"…"} while a deletion is under way
//
// A deletion is an intent record first, then the data, then the metadata,
// then the intent; whoever finds an intent (the same broker after a crash,
// or a new controller) finishes it. There is no "marked for deletion" state
// that can last: the intent is acted on at once and at every start.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/core/config"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicID is Kafka's 16-byte topic UUID.
type TopicID [16]byte

// String is Kafka's form: URL-safe base64 without padding.
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// ParseTopicID reads Kafka's string form.
func ParseTopicID(s string) (TopicID, error) {
	var id TopicID
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// NewTopicID returns a random id that is neither zero nor starts with '-' in
// its string form (Kafka avoids those, as the CLI would read them as flags).
func NewTopicID() TopicID {
	for {
		var id TopicID
		_, _ = rand.Read(id[:])
		if id != (TopicID{}) && !strings.HasPrefix(id.String(), "-") {
			return id
		}
	}
}

// Partition is one partition's assignment and state.
type Partition struct {
	Index       int32
	Replicas    []int32
	Leader      int32
	LeaderEpoch int32
	ISR         []int32
}

// Topic is a topic as the metadata holds it.
type Topic struct {
	Name       string
	ID         TopicID
	Partitions []Partition // by index
	Configs    map[string]string
	Internal   bool
	Deleting   bool // an unfinished deletion exists
	version    coord.Version
}

type topicRecord struct {
	Version          int                `json:"version"`
	TopicID          string             `json:"topic_id"`
	Partitions       map[string][]int32 `json:"partitions"`
	AddingReplicas   map[string][]int32 `json:"adding_replicas"`
	RemovingReplicas map[string][]int32 `json:"removing_replicas"`
}

type stateRecord struct {
	Version         int     `json:"version"`
	Leader          int32   `json:"leader"`
	LeaderEpoch     int32   `json:"leader_epoch"`
	ControllerEpoch int64   `json:"controller_epoch"`
	ISR             []int32 `json:"isr"`
}

type configRecord struct {
	Version int               `json:"version"`
	Config  map[string]string `json:"config"`
}

type deleteRecord struct {
	TopicID string `json:"topic_id"`
}

// Keys of the layout.
func topicKey(t string) string { return "/brokers/topics/" + t }
func stateKey(t string, p int32) string {
	return fmt.Sprintf("/brokers/topics/%s/partitions/%d/state", t, p)
}
func configKey(t string) string { return "/config/topics/" + t }
func deleteKey(t string) string { return "/admin/delete_topics/" + t }

const (
	topicsPrefix  = "/brokers/topics/"
	deletesPrefix = "/admin/delete_topics/"
)

// Error is a Kafka error code with a message for the client.
type Error struct {
	Err     *kerr.Error
	Message string
}

func (e *Error) Error() string { return e.Err.Message + ": " + e.Message }

func kafkaErr(code *kerr.Error, format string, a ...any) *Error {
	return &Error{Err: code, Message: fmt.Sprintf(format, a...)}
}

// ValidateTopicName applies Kafka's rules: 1–249 characters of [a-zA-Z0-9._-],
// not "." or "..".
func ValidateTopicName(name string) error {
	if name == "" {
		return errors.New("topic name is empty")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	if strings.HasPrefix(name, "__brokkr_") {
		return fmt.Errorf("topic name %q: the prefix __brokkr_ is reserved for Brokkr's own state in the log directories", name)
	}
	if len(name) > 249 {
		return fmt.Errorf("topic name is %d characters long, the limit is 249", len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q has the character %q; only a-z A-Z 0-9 . _ - are allowed", name, c)
		}
	}
	return nil
}

// Metadata reads and changes topic metadata in a coordination store. Writes
// should go through a Leadership's fenced Store when one exists.
type Metadata struct {
	Store coord.Store
	// ControllerEpoch is written into partition state records.
	ControllerEpoch int64
}

// CreateTopicRequest is a topic to create.
type CreateTopicRequest struct {
	Name              string
	NumPartitions     int32 // -1 = broker default
	ReplicationFactor int16 // -1 = broker default
	Assignment        map[int32][]int32
	Configs           map[string]string
	ValidateOnly      bool
	Internal          bool
}

// CreateTopic validates and (unless ValidateOnly) creates a topic on the
// given live brokers. Errors are *Error with the code CreateTopics answers.
func (m *Metadata) CreateTopic(ctx context.Context, cfg *config.Config, req CreateTopicRequest, brokers []int32) (Topic, error) {
	if err := ValidateTopicName(req.Name); err != nil {
		return Topic{}, kafkaErr(kerr.InvalidTopicException, "%v", err)
	}
	if err := config.CheckTopicConfigs(req.Configs); err != nil {
		return Topic{}, kafkaErr(kerr.InvalidConfig, "%v", err)
	}
	n, rf := req.NumPartitions, req.ReplicationFactor
	if n == -1 {
		n = cfg.NumPartitions
	}
	if rf == -1 {
		rf = cfg.DefaultReplicationFactor
	}
	assign := req.Assignment
	if len(assign) > 0 {
		if req.NumPartitions != -1 || req.ReplicationFactor != -1 {
			return Topic{}, kafkaErr(kerr.InvalidRequest, "both a replica assignment and a partition count or replication factor were given")
		}
		n = int32(len(assign))
		for p := int32(0); p < n; p++ {
			reps, ok := assign[p]
			if !ok || len(reps) == 0 {
				return Topic{}, kafkaErr(kerr.InvalidReplicaAssignment, "partitions must be numbered 0..%d; partition %d has no replicas", n-1, p)
			}
			if err := checkReplicas(reps, brokers); err != nil {
				return Topic{}, err
			}
		}
	} else {
		if n <= 0 {
			return Topic{}, kafkaErr(kerr.InvalidPartitions, "number of partitions must be at least 1, got %d", n)
		}
		if rf <= 0 {
			return Topic{}, kafkaErr(kerr.InvalidReplicationFactor, "replication factor must be at least 1, got %d", rf)
		}
		if int(rf) > len(brokers) {
			return Topic{}, kafkaErr(kerr.InvalidReplicationFactor, "replication factor %d is larger than the %d available broker(s)", rf, len(brokers))
		}
		assign = Assign(n, int(rf), brokers, 0)
	}
	if _, err := m.Store.Get(ctx, deleteKey(req.Name)); err == nil {
		return Topic{}, kafkaErr(kerr.TopicAlreadyExists, "topic %q is being deleted; retry in a moment", req.Name)
	}
	if _, err := m.Store.Get(ctx, topicKey(req.Name)); err == nil {
		return Topic{}, kafkaErr(kerr.TopicAlreadyExists, "topic %q already exists", req.Name)
	} else if !errors.Is(err, coord.ErrNotFound) {
		return Topic{}, kafkaErr(kerr.UnknownServerError, "reading topic metadata: %v", err)
	}
	t := Topic{Name: req.Name, ID: NewTopicID(), Configs: req.Configs, Internal: req.Internal}
	for p := int32(0); p < n; p++ {
		reps := assign[p]
		t.Partitions = append(t.Partitions, Partition{Index: p, Replicas: reps, Leader: reps[0], ISR: append([]int32(nil), reps...)})
	}
	if req.ValidateOnly {
		return t, nil
	}
	// Config first, then partition states, then the topic record: a topic
	// becomes visible (its record exists) only when everything it needs does.
	if len(req.Configs) > 0 {
		if err := m.putConfig(ctx, req.Name, req.Configs); err != nil {
			return Topic{}, err
		}
	}
	for _, p := range t.Partitions {
		if err := m.putState(ctx, req.Name, p); err != nil {
			return Topic{}, err
		}
	}
	rec := topicRecord{Version: 3, TopicID: t.ID.String(), Partitions: map[string][]int32{}, AddingReplicas: map[string][]int32{}, RemovingReplicas: map[string][]int32{}}
	for _, p := range t.Partitions {
		rec.Partitions[strconv.Itoa(int(p.Index))] = p.Replicas
	}
	b, _ := json.Marshal(rec)
	v, err := m.Store.Create(ctx, topicKey(req.Name), b)
	if errors.Is(err, coord.ErrConflict) {
		return Topic{}, kafkaErr(kerr.TopicAlreadyExists, "topic %q already exists", req.Name)
	}
	if err != nil {
		return Topic{}, storeErr(err)
	}
	t.version = v
	return t, nil
}

func checkReplicas(reps, brokers []int32) error {
	seen := map[int32]bool{}
	for _, r := range reps {
		if seen[r] {
			return kafkaErr(kerr.InvalidReplicaAssignment, "broker %d is listed twice for one partition", r)
		}
		seen[r] = true
		found := false
		for _, b := range brokers {
			found = found || b == r
		}
		if !found {
			return kafkaErr(kerr.InvalidReplicaAssignment, "broker %d is not a live broker", r)
		}
	}
	return nil
}

// Assign spreads n partitions with rf replicas over brokers round-robin,
// starting at start, so leaders are balanced (Kafka's rack-unaware layout).
func Assign(n int32, rf int, brokers []int32, start int) map[int32][]int32 {
	bs := append([]int32(nil), brokers...)
	sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
	out := map[int32][]int32{}
	for p := int32(0); p < n; p++ {
		reps := make([]int32, 0, rf)
		for r := 0; r < rf; r++ {
			reps = append(reps, bs[(start+int(p)+r)%len(bs)])
		}
		out[p] = reps
	}
	return out
}

func storeErr(err error) *Error {
	if errors.Is(err, coord.ErrFenced) {
		return kafkaErr(kerr.NotController, "%v", err)
	}
	if errors.Is(err, coord.ErrUnavailable) || errors.Is(err, coord.ErrSessionLost) {
		return kafkaErr(kerr.RequestTimedOut, "coordination backend unavailable: %v", err)
	}
	return kafkaErr(kerr.UnknownServerError, "coordination backend: %v", err)
}

func (m *Metadata) putState(ctx context.Context, topic string, p Partition) error {
	b, _ := json.Marshal(stateRecord{Version: 1, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, ControllerEpoch: m.ControllerEpoch, ISR: p.ISR})
	_, err := m.Store.Create(ctx, stateKey(topic, p.Index), b)
	if errors.Is(err, coord.ErrConflict) {
		// Left over from an interrupted create: overwrite it.
		rec, gerr := m.Store.Get(ctx, stateKey(topic, p.Index))
		if gerr != nil {
			return storeErr(gerr)
		}
		_, err = m.Store.CompareAndSet(ctx, stateKey(topic, p.Index), b, rec.Version)
	}
	if err != nil {
		return storeErr(err)
	}
	return nil
}

func (m *Metadata) putConfig(ctx context.Context, topic string, cfgs map[string]string) error {
	b, _ := json.Marshal(configRecord{Version: 1, Config: cfgs})
	rec, err := m.Store.Get(ctx, configKey(topic))
	switch {
	case errors.Is(err, coord.ErrNotFound):
		_, err = m.Store.Create(ctx, configKey(topic), b)
	case err == nil:
		_, err = m.Store.CompareAndSet(ctx, configKey(topic), b, rec.Version)
	}
	if err != nil {
		return storeErr(err)
	}
	return nil
}

// Topics returns every topic, sorted by name, with partition states and
// configs. Topics with an unfinished deletion are marked Deleting.
func (m *Metadata) Topics(ctx context.Context) ([]Topic, error) {
	recs, err := m.Store.List(ctx, topicsPrefix)
	if err != nil {
		return nil, storeErr(err)
	}
	cfgs, err := m.Store.List(ctx, "/config/topics/")
	if err != nil {
		return nil, storeErr(err)
	}
	dels, err := m.Store.List(ctx, deletesPrefix)
	if err != nil {
		return nil, storeErr(err)
	}
	return buildTopics(recs, cfgs, dels), nil
}

// buildTopics assembles topics from raw records (pure, for watchers too).
func buildTopics(recs, cfgs, dels []coord.Record) []Topic {
	byName := map[string]*Topic{}
	states := map[string]map[int32]stateRecord{}
	for _, r := range recs {
		rest := strings.TrimPrefix(r.Key, topicsPrefix)
		parts := strings.Split(rest, "/")
		switch {
		case len(parts) == 1:
			var tr topicRecord
			if json.Unmarshal(r.Value, &tr) != nil {
				continue
			}
			id, _ := ParseTopicID(tr.TopicID)
			t := &Topic{Name: parts[0], ID: id, version: r.Version, Internal: strings.HasPrefix(parts[0], "__")}
			for ps, reps := range tr.Partitions {
				p, err := strconv.Atoi(ps)
				if err != nil {
					continue
				}
				t.Partitions = append(t.Partitions, Partition{Index: int32(p), Replicas: reps, Leader: -1})
			}
			sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i].Index < t.Partitions[j].Index })
			byName[parts[0]] = t
		case len(parts) == 4 && parts[1] == "partitions" && parts[3] == "state":
			p, err := strconv.Atoi(parts[2])
			var st stateRecord
			if err != nil || json.Unmarshal(r.Value, &st) != nil {
				continue
			}
			if states[parts[0]] == nil {
				states[parts[0]] = map[int32]stateRecord{}
			}
			states[parts[0]][int32(p)] = st
		}
	}
	for _, r := range cfgs {
		t := byName[strings.TrimPrefix(r.Key, "/config/topics/")]
		var cr configRecord
		if t != nil && json.Unmarshal(r.Value, &cr) == nil {
			t.Configs = cr.Config
		}
	}
	for _, r := range dels {
		if t := byName[strings.TrimPrefix(r.Key, deletesPrefix)]; t != nil {
			t.Deleting = true
		}
	}
	out := make([]Topic, 0, len(byName))
	for name, t := range byName {
		for i := range t.Partitions {
			if st, ok := states[name][t.Partitions[i].Index]; ok {
				t.Partitions[i].Leader, t.Partitions[i].LeaderEpoch, t.Partitions[i].ISR = st.Leader, st.LeaderEpoch, st.ISR
			}
		}
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic returns one topic, or an UNKNOWN_TOPIC_OR_PARTITION *Error.
func (m *Metadata) Topic(ctx context.Context, name string) (Topic, error) {
	ts, err := m.Topics(ctx)
	if err != nil {
		return Topic{}, err
	}
	for _, t := range ts {
		if t.Name == name {
			return t, nil
		}
	}
	return Topic{}, kafkaErr(kerr.UnknownTopicOrPartition, "topic %q does not exist", name)
}

// BeginDelete records the intent to delete topic (by name; id, if not zero,
// must match). The caller then deletes the data and calls FinishDelete.
func (m *Metadata) BeginDelete(ctx context.Context, name string, id TopicID) (Topic, error) {
	t, err := m.Topic(ctx, name)
	if err != nil {
		return Topic{}, err
	}
	if id != (TopicID{}) && id != t.ID {
		return Topic{}, kafkaErr(kerr.UnknownTopicID, "topic %q has id %s, not %s", name, t.ID, id)
	}
	b, _ := json.Marshal(deleteRecord{TopicID: t.ID.String()})
	if _, err := m.Store.Create(ctx, deleteKey(name), b); err != nil && !errors.Is(err, coord.ErrConflict) {
		return Topic{}, storeErr(err)
	}
	t.Deleting = true
	return t, nil
}

// PendingDeletes lists topics whose deletion began but did not finish.
func (m *Metadata) PendingDeletes(ctx context.Context) ([]string, error) {
	recs, err := m.Store.List(ctx, deletesPrefix)
	if err != nil {
		return nil, storeErr(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, strings.TrimPrefix(r.Key, deletesPrefix))
	}
	return out, nil
}

// FinishDelete removes the topic's metadata, then its deletion intent.
// It is idempotent: a crash in the middle is finished by calling it again.
func (m *Metadata) FinishDelete(ctx context.Context, name string) error {
	recs, err := m.Store.List(ctx, topicKey(name)+"/")
	if err != nil {
		return storeErr(err)
	}
	// Deepest keys first, so ZooKeeper parents are empty when deleted.
	sort.Slice(recs, func(i, j int) bool { return len(recs[i].Key) > len(recs[j].Key) })
	for _, r := range recs {
		if err := m.Store.Delete(ctx, r.Key, coord.NoVersion); err != nil && !errors.Is(err, coord.ErrNotFound) {
			return storeErr(err)
		}
	}
	for _, k := range []string{topicKey(name), configKey(name), deleteKey(name)} {
		if err := m.Store.Delete(ctx, k, coord.NoVersion); err != nil && !errors.Is(err, coord.ErrNotFound) {
			return storeErr(err)
		}
	}
	return nil
}

// SetConfigs replaces a topic's config overrides (validated first).
func (m *Metadata) SetConfigs(ctx context.Context, name string, cfgs map[string]string, validateOnly bool) error {
	if _, err := m.Topic(ctx, name); err != nil {
		return err
	}
	if err := config.CheckTopicConfigs(cfgs); err != nil {
		return kafkaErr(kerr.InvalidConfig, "%v", err)
	}
	if validateOnly {
		return nil
	}
	return m.putConfig(ctx, name, cfgs)
}

// AddPartitions grows a topic to total partitions.
func (m *Metadata) AddPartitions(ctx context.Context, name string, total int32, assignment [][]int32, brokers []int32, validateOnly bool) error {
	t, err := m.Topic(ctx, name)
	if err != nil {
		return err
	}
	if t.Deleting {
		return kafkaErr(kerr.UnknownTopicOrPartition, "topic %q is being deleted", name)
	}
	cur := int32(len(t.Partitions))
	if total <= cur {
		return kafkaErr(kerr.InvalidPartitions, "topic %q has %d partitions; the new count %d must be larger", name, cur, total)
	}
	rf := 1
	if cur > 0 {
		rf = len(t.Partitions[0].Replicas)
	}
	if rf > len(brokers) {
		return kafkaErr(kerr.InvalidReplicationFactor, "replication factor %d is larger than the %d available broker(s)", rf, len(brokers))
	}
	add := Assign(total-cur, rf, brokers, int(cur))
	if assignment != nil {
		if int32(len(assignment)) != total-cur {
			return kafkaErr(kerr.InvalidReplicaAssignment, "%d assignments given for %d new partitions", len(assignment), total-cur)
		}
		for i, reps := range assignment {
			if err := checkReplicas(reps, brokers); err != nil {
				return err
			}
			add[int32(i)] = reps
		}
	}
	if validateOnly {
		return nil
	}
	for i := int32(0); i < total-cur; i++ {
		p := Partition{Index: cur + i, Replicas: add[i], Leader: add[i][0], ISR: append([]int32(nil), add[i]...)}
		if err := m.putState(ctx, name, p); err != nil {
			return err
		}
	}
	// Publish the new partitions in the topic record by compare-and-set,
	// retrying a few times if someone else changed it meanwhile.
	for attempt := 0; ; attempt++ {
		rec, err := m.Store.Get(ctx, topicKey(name))
		if err != nil {
			return storeErr(err)
		}
		var tr topicRecord
		if err := json.Unmarshal(rec.Value, &tr); err != nil {
			return kafkaErr(kerr.UnknownServerError, "topic record of %q is not JSON: %v", name, err)
		}
		if int32(len(tr.Partitions)) != cur {
			return kafkaErr(kerr.InvalidPartitions, "topic %q changed to %d partitions meanwhile", name, len(tr.Partitions))
		}
		for i := int32(0); i < total-cur; i++ {
			tr.Partitions[strconv.Itoa(int(cur+i))] = add[i]
		}
		b, _ := json.Marshal(tr)
		_, err = m.Store.CompareAndSet(ctx, topicKey(name), b, rec.Version)
		if err == nil {
			return nil
		}
		if !errors.Is(err, coord.ErrConflict) || attempt == 4 {
			return storeErr(err)
		}
	}
}
