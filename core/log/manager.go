package log

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brokkr/brokkr/segment"
)

// File names in each log dir.
const (
	CleanShutdownFile     = ".kafka_cleanshutdown"
	RecoveryPointFile     = "recovery-point-offset-checkpoint"
	deleteSuffix          = "-delete"
	defaultSchedulerEvery = time.Second
)

// ManagerConfig is the broker-level storage configuration.
type ManagerConfig struct {
	LogDirs []string // log.dirs
	Default Config   // log.* defaults for partitions without overrides
	// CheckpointMs is log.flush.offset.checkpoint.interval.ms (60000):
	// how often recovery points are written.
	CheckpointMs int64
	// SchedulerMs is log.flush.scheduler.interval.ms: how often flush.ms
	// and the checkpoint interval are checked. 0, or above one hour
	// (Kafka's default is Long.MAX, which would never check flush.ms and
	// never checkpoint): every second. Negative: no background goroutine
	// (call Tick yourself).
	SchedulerMs int64
}

// ReservedPrefix starts the names of entries in a log dir that hold
// Brokkr's own state (the embedded etcd member's __brokkr_etcd, the gossip
// replica's file); the manager leaves them alone, without a warning.
const ReservedPrefix = "__brokkr_"

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) dirName() string { return tp.Topic + "-" + strconv.Itoa(int(tp.Partition)) }

// ParsePartitionDir parses "<topic>-<partition>".
func ParsePartitionDir(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || p < 0 || strconv.Itoa(int(p)) != name[i+1:] {
		return TopicPartition{}, false
	}
	return TopicPartition{name[:i], int32(p)}, true
}

// Manager owns the logs of all log.dirs of a broker.
type Manager struct {
	cfg  ManagerConfig
	opts Options
	fs   segment.FS
	log  *slog.Logger

	mu       sync.Mutex
	logs     map[TopicPartition]*Log
	dirOf    map[TopicPartition]string // log dir root of each partition
	lastCkpt time.Time
	broken   atomic.Bool // a storage error happened: no clean-shutdown marker
	closed   bool

	ckptMu sync.Mutex // one checkpoint writer at a time

	stop chan struct{}
	done chan struct{}
}

// OpenManager opens every partition in cfg.LogDirs: it finishes
// interrupted deletes, reads the recovery points, recovers each log from
// its recovery point (or trusts it after a clean shutdown), then removes
// the clean-shutdown marker and writes fresh checkpoints.
func OpenManager(cfg ManagerConfig, opts Options) (*Manager, error) {
	if len(cfg.LogDirs) == 0 {
		return nil, errors.New("log manager: log.dirs is empty")
	}
	if err := cfg.Default.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if cfg.CheckpointMs <= 0 {
		cfg.CheckpointMs = 60000
	}
	m := &Manager{cfg: cfg, opts: opts, fs: opts.FS, log: opts.Logger, logs: map[TopicPartition]*Log{}, dirOf: map[TopicPartition]string{}, lastCkpt: opts.Now()}
	userSE := opts.Events.StorageError
	m.opts.Events.StorageError = func(dir string, err error) {
		m.markBroken(err)
		if userSE != nil {
			userSE(dir, err)
		}
	}
	for _, d := range cfg.LogDirs {
		if err := m.loadDir(d); err != nil {
			m.abandonAll()
			return nil, err
		}
	}
	if err := m.Checkpoint(); err != nil {
		m.abandonAll()
		return nil, err
	}
	if cfg.SchedulerMs >= 0 {
		every := defaultSchedulerEvery
		if cfg.SchedulerMs > 0 && cfg.SchedulerMs <= 3_600_000 {
			every = time.Duration(cfg.SchedulerMs) * time.Millisecond
		}
		m.stop, m.done = make(chan struct{}), make(chan struct{})
		go m.scheduler(every)
	}
	return m, nil
}

func (m *Manager) loadDir(d string) error {
	if err := m.fs.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("%w: mkdir %s: %w", ErrStorage, d, err)
	}
	marker := filepath.Join(d, CleanShutdownFile)
	_, err := m.fs.Stat(marker)
	clean := err == nil
	rps := map[TopicPartition]int64{}
	lines, err := readCheckpointFile(m.fs, filepath.Join(d, RecoveryPointFile), 3)
	if err != nil {
		// A damaged checkpoint only costs time: recover everything.
		m.log.Warn("unreadable recovery point checkpoint: recovering every log from the start", "dir", d, "err", err)
		lines = nil
	}
	for _, l := range lines {
		p, err1 := strconv.ParseInt(l[1], 10, 32)
		o, err2 := strconv.ParseInt(l[2], 10, 64)
		if err1 == nil && err2 == nil {
			rps[TopicPartition{l[0], int32(p)}] = o
		}
	}
	ents, err := m.fs.ReadDir(d)
	if err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrStorage, d, err)
	}
	m.log.Info("loading log dir", "dir", d, "clean_shutdown", clean, "partitions", len(ents))
	for _, e := range ents {
		if !e.IsDir {
			continue
		}
		full := filepath.Join(d, e.Name)
		if strings.HasSuffix(e.Name, deleteSuffix) {
			m.log.Info("finishing an interrupted delete", "dir", full)
			if err := m.fs.RemoveAll(full); err != nil {
				return fmt.Errorf("%w: remove %s: %w", ErrStorage, full, err)
			}
			continue
		}
		if strings.HasPrefix(e.Name, ReservedPrefix) {
			continue // Brokkr's own state (the embedded etcd member), not a partition
		}
		tp, ok := ParsePartitionDir(e.Name)
		if !ok {
			m.log.Warn("ignoring a directory that is not <topic>-<partition>", "dir", full)
			continue
		}
		o := m.opts
		o.RecoveryPoint = rps[tp] // 0 when unknown: recover it all
		if clean {
			o.RecoveryPoint = math.MaxInt64
		}
		l, err := Open(full, m.cfg.Default, o)
		if err != nil {
			return fmt.Errorf("open %s: %w", full, err)
		}
		if prev, dup := m.logs[tp]; dup {
			l.Close()
			return fmt.Errorf("partition %s-%d is in two log dirs (%s and %s)", tp.Topic, tp.Partition, prev.Dir(), full)
		}
		m.logs[tp], m.dirOf[tp] = l, d
	}
	if clean {
		// From here on a crash must look unclean.
		if err := m.fs.Remove(marker); err != nil {
			return fmt.Errorf("%w: remove %s: %w", ErrStorage, marker, err)
		}
		if err := m.fs.SyncDir(d); err != nil {
			return fmt.Errorf("%w: sync %s: %w", ErrStorage, d, err)
		}
	}
	return nil
}

func (m *Manager) abandonAll() {
	for _, l := range m.logs {
		l.abandon()
	}
}

func (m *Manager) scheduler(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Tick(m.opts.Now())
		}
	}
}

// Tick runs the periodic work: flush.ms flushes and, every CheckpointMs,
// the recovery-point checkpoints. The background scheduler calls it; tests
// with their own clock call it directly.
func (m *Manager) Tick(now time.Time) {
	for _, l := range m.All() {
		if err := l.FlushIfDue(now); err != nil {
			m.markBroken(err)
		}
	}
	m.mu.Lock()
	due := now.Sub(m.lastCkpt) >= time.Duration(m.cfg.CheckpointMs)*time.Millisecond
	if due {
		m.lastCkpt = now
	}
	m.mu.Unlock()
	if due {
		if err := m.Checkpoint(); err != nil {
			m.log.Error("recovery point checkpoint failed", "err", err)
		}
	}
}

func (m *Manager) markBroken(err error) {
	if errors.Is(err, ErrStorage) {
		m.broken.Store(true)
	}
}

// All returns every open log.
func (m *Manager) All() []*Log {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Log, 0, len(m.logs))
	for _, l := range m.logs {
		out = append(out, l)
	}
	return out
}

// Partitions lists the open partitions, sorted.
func (m *Manager) Partitions() []TopicPartition {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TopicPartition, 0, len(m.logs))
	for tp := range m.logs {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// Get returns a partition's log.
func (m *Manager) Get(topic string, partition int32) (*Log, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logs[TopicPartition{topic, partition}]
	return l, ok
}

// Create opens the partition's log, creating it in the log dir with the
// fewest partitions. cfg nil uses the default. An existing log is returned
// as is.
func (m *Manager) Create(topic string, partition int32, cfg *Config) (*Log, error) {
	if topic == "" || strings.ContainsAny(topic, "/\\\x00") || topic == "." || topic == ".." {
		return nil, fmt.Errorf("log manager: bad topic name %q", topic)
	}
	if partition < 0 {
		return nil, fmt.Errorf("log manager: bad partition %d", partition)
	}
	tp := TopicPartition{topic, partition}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if l, ok := m.logs[tp]; ok {
		return l, nil
	}
	count := map[string]int{}
	for _, d := range m.dirOf {
		count[d]++
	}
	dir := m.cfg.LogDirs[0]
	for _, d := range m.cfg.LogDirs {
		if count[d] < count[dir] {
			dir = d
		}
	}
	c := m.cfg.Default
	if cfg != nil {
		c = *cfg
	}
	o := m.opts
	o.RecoveryPoint = 0
	l, err := Open(filepath.Join(dir, tp.dirName()), c, o)
	if err != nil {
		return nil, err
	}
	if err := m.fs.SyncDir(dir); err != nil {
		l.Close()
		return nil, fmt.Errorf("%w: sync %s: %w", ErrStorage, dir, err)
	}
	m.logs[tp], m.dirOf[tp] = l, dir
	return l, nil
}

// Delete closes the partition's log and removes its data: the directory
// is renamed to <topic>-<partition>.<id>-delete (so a restart finishes the
// job) and then removed.
func (m *Manager) Delete(topic string, partition int32) error {
	tp := TopicPartition{topic, partition}
	m.mu.Lock()
	l, ok := m.logs[tp]
	dir := m.dirOf[tp]
	if ok {
		delete(m.logs, tp)
		delete(m.dirOf, tp)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("log manager: no partition %s-%d", topic, partition)
	}
	l.abandon() // no flush: the data is going away
	var id [8]byte
	rand.Read(id[:])
	gone := filepath.Join(dir, tp.dirName()+"."+hex.EncodeToString(id[:])+deleteSuffix)
	if err := m.fs.Rename(l.Dir(), gone); err != nil {
		return fmt.Errorf("%w: rename %s: %w", ErrStorage, l.Dir(), err)
	}
	if err := m.fs.SyncDir(dir); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStorage, dir, err)
	}
	if err := m.fs.RemoveAll(gone); err != nil {
		return fmt.Errorf("%w: remove %s: %w", ErrStorage, gone, err)
	}
	m.log.Info("deleted partition", "topic", topic, "partition", partition)
	return m.Checkpoint()
}

// Checkpoint writes each log dir's recovery-point-offset-checkpoint.
func (m *Manager) Checkpoint() error {
	m.ckptMu.Lock()
	defer m.ckptMu.Unlock()
	m.mu.Lock()
	logs := make(map[TopicPartition]*Log, len(m.logs))
	dirs := make(map[TopicPartition]string, len(m.logs))
	for tp, l := range m.logs {
		logs[tp], dirs[tp] = l, m.dirOf[tp]
	}
	m.mu.Unlock()
	per := map[string][]string{}
	for _, d := range m.cfg.LogDirs {
		per[d] = nil
	}
	for tp, l := range logs { // no Manager lock while taking a Log's
		per[dirs[tp]] = append(per[dirs[tp]], fmt.Sprintf("%s %d %d", tp.Topic, tp.Partition, l.RecoveryPoint()))
	}
	var first error
	for d, lines := range per {
		sort.Strings(lines)
		if err := writeCheckpointFile(m.fs, filepath.Join(d, RecoveryPointFile), lines); err != nil {
			m.markBroken(err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Close flushes and closes every log, writes the checkpoints and, only if
// all of that succeeded and no storage error happened meanwhile, the
// clean-shutdown marker of each log dir.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	if m.stop != nil {
		close(m.stop)
		<-m.done
	}
	var first error
	for _, l := range m.All() {
		if err := l.Close(); err != nil {
			m.markBroken(err)
			if first == nil {
				first = err
			}
		}
	}
	if err := m.Checkpoint(); err != nil && first == nil {
		first = err
	}
	broken := m.broken.Load()
	if first != nil || broken {
		m.log.Warn("not writing the clean shutdown marker: the next start recovers from the checkpoints", "err", first)
		return first
	}
	for _, d := range m.cfg.LogDirs {
		name := filepath.Join(d, CleanShutdownFile)
		f, err := m.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err == nil {
			err = m.fs.SyncDir(d)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: write %s: %w", ErrStorage, name, err)
		}
	}
	return nil
}
