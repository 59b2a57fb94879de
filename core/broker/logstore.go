package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/core/config"
	plog "github.com/brokkr/brokkr/core/log"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/segment"
)

// managerStore is the logStore over core/log's Manager.
type managerStore struct {
	m        *plog.Manager
	throttle *plog.Throttle // log.cleaner.io.max.bytes.per.second, shared; nil = unthrottled
}

func (b *Broker) openLogStore() (logStore, error) {
	def, err := b.Config.Topic(nil)
	if err != nil {
		return nil, err
	}
	m, err := plog.OpenManager(plog.ManagerConfig{
		LogDirs:      b.Config.LogDirs,
		Default:      logConfig(def),
		CheckpointMs: b.Config.LogFlushOffsetCheckpointIntervalMs,
	}, plog.Options{Logger: b.log})
	if err != nil {
		return nil, fmt.Errorf("opening log dirs: %w", err)
	}
	return &managerStore{m: m, throttle: plog.NewThrottle(b.Config.LogCleanerIoMaxBytesPerSecond)}, nil
}

// logConfig maps a topic's effective config to core/log's.
func logConfig(t config.TopicConfig) plog.Config {
	c := plog.DefaultConfig()
	c.SegmentBytes = t.SegmentBytes
	c.SegmentMs = t.SegmentMs
	if strings.Contains(t.CleanupPolicy, "compact") && t.MaxCompactionLagMs > 0 && t.MaxCompactionLagMs < c.SegmentMs {
		// KIP-354: a compacted topic rolls by max.compaction.lag.ms too, so
		// a quiet partition's records become cleanable within that lag
		// (the cleaner never touches the active segment).
		c.SegmentMs = t.MaxCompactionLagMs
	}
	c.SegmentIndexBytes = int(t.SegmentIndexBytes)
	c.IndexIntervalBytes = int(t.IndexIntervalBytes)
	c.MaxMessageBytes = int(t.MaxMessageBytes)
	c.FlushMessages = t.FlushMessages
	c.FlushMs = t.FlushMs
	if c.FlushMs == math.MaxInt64 {
		c.FlushMs = 0
	}
	return c
}

func (s *managerStore) Open(topic string, partition int32, _ [16]byte, cfg config.TopicConfig) (partLog, error) {
	lc := logConfig(cfg)
	l, err := s.m.Create(topic, partition, &lc)
	if err != nil {
		return nil, err
	}
	return &logAdapter{l: l, throttle: s.throttle}, nil
}

func (s *managerStore) SetConfig(topic string, cfg config.TopicConfig) {
	lc := logConfig(cfg)
	for _, l := range s.m.All() {
		if tp, ok := plog.ParsePartitionDir(filepath.Base(l.Dir())); ok && tp.Topic == topic {
			_ = l.SetConfig(lc) // validated by core/config before it got here
		}
	}
}

func (s *managerStore) DeleteTopic(topic string) error {
	var errs []error
	for _, tp := range s.m.Partitions() {
		if tp.Topic == topic {
			if err := s.m.Delete(tp.Topic, tp.Partition); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *managerStore) Close() error { return s.m.Close() }

// logAdapter gives the handlers what they need of a core/log Log.
type logAdapter struct {
	l        *plog.Log
	throttle *plog.Throttle // the cleaner's, shared by every log of the store
}

func (a *logAdapter) Append(batches []byte, leaderEpoch int32) (int64, int64, error) {
	r, err := a.l.Append(batches, leaderEpoch)
	return r.BaseOffset, r.LastOffset, err
}

func (a *logAdapter) Read(offset, upTo, maxBytes int64, minOne bool) ([]netio.Chunk, int64, func(), error) {
	res, err := a.l.Read(offset, plog.ReadOptions{MaxBytes: maxBytes, Limit: plog.LimitHighWatermark, MinOneBatch: minOne})
	if errors.Is(err, plog.ErrOffsetOutOfRange) {
		return nil, 0, nil, errOffsetOutOfRange
	}
	if err != nil {
		return nil, 0, nil, err
	}
	if res.Region.Len == 0 {
		res.Release()
		return nil, 0, nil, nil
	}
	return []netio.Chunk{netio.FileChunk(res.Region.File, res.Region.Pos, res.Region.Len)}, res.Region.Len, res.Release, nil
}

func (a *logAdapter) StartOffset() int64       { return a.l.LogStartOffset() }
func (a *logAdapter) EndOffset() int64         { return a.l.LogEndOffset() }
func (a *logAdapter) HighWatermark() int64     { return a.l.HighWatermark() }
func (a *logAdapter) SetHighWatermark(o int64) { a.l.SetHighWatermark(o) }
func (a *logAdapter) Changed() <-chan struct{} { return a.l.Changed() }
func (a *logAdapter) EndOffsetForEpoch(e int32) (int32, int64) {
	return a.l.EndOffsetForEpoch(e)
}

func (a *logAdapter) MaxTimestamp() (int64, int64) {
	off, ok, err := a.l.OffsetForTimestamp(plog.MaxTimestamp)
	if err != nil || !ok {
		return -1, -1
	}
	ts, err := a.timestampAt(off)
	if err != nil {
		return -1, -1
	}
	return ts, off
}

func (a *logAdapter) OffsetForTimestamp(ts int64) (int64, int64, bool, error) {
	off, ok, err := a.l.OffsetForTimestamp(ts)
	if err != nil || !ok {
		return -1, -1, false, err
	}
	t, err := a.timestampAt(off)
	if err != nil {
		return -1, -1, false, err
	}
	return off, t, true, nil
}

// timestampAt reads the timestamp of the record at offset (ListOffsets
// answers with it). Only the one batch is read, decompressed if needed.
func (a *logAdapter) timestampAt(offset int64) (int64, error) {
	res, err := a.l.Read(offset, plog.ReadOptions{MaxBytes: 1, Limit: plog.LimitLogEnd, MinOneBatch: true})
	if err != nil {
		return -1, err
	}
	defer res.Release()
	if res.Region.Len < segment.HeaderSize {
		return -1, fmt.Errorf("no batch at offset %d", offset)
	}
	batch := make([]byte, res.Region.Len)
	if _, err := res.Region.File.ReadAt(batch, res.Region.Pos); err != nil {
		return -1, err
	}
	h, err := segment.ParseHeader(batch)
	if err != nil {
		return -1, err
	}
	if h.LogAppendTime() {
		return h.MaxTimestamp, nil
	}
	plain, err := codec.PlainBatch(batch[:h.Size()], maxDecompressed)
	if err != nil {
		return h.MaxTimestamp, nil
	}
	ts := h.MaxTimestamp
	_ = segment.WalkRecords(plain, func(r segment.Record) error {
		if h.BaseOffset+int64(r.OffsetDelta) == offset {
			ts = h.BaseTimestamp + r.TimestampDelta
			return errStop
		}
		return nil
	})
	return ts, nil
}

var errStop = errors.New("stop")

// ProducerBatches reads the batch headers of the active segment, which is
// where the producers still retrying live; older segments are not read, so
// a restart costs what the active segment holds, not the whole log.
func (a *logAdapter) ProducerBatches(fn func(pid int64, epoch int16, firstSeq, lastSeq int32, firstOff, lastOff, ts int64)) error {
	segs := a.l.Segments()
	if len(segs) == 0 {
		return nil
	}
	last := segs[len(segs)-1]
	f, err := os.Open(segment.FileName(a.l.Dir(), last.Base, ".log"))
	if err != nil {
		return err
	}
	defer f.Close()
	return segment.ScanLog(f, 0, last.Size, func(_ int64, h segment.BatchHeader, crcOK bool) error {
		if crcOK && h.ProducerID >= 0 {
			fn(h.ProducerID, h.ProducerEpoch, h.BaseSequence, seqAdd(h.BaseSequence, h.LastOffsetDelta), h.BaseOffset, h.LastOffset(), h.MaxTimestamp)
		}
		return nil
	})
}

func (a *logAdapter) Dir() string { return a.l.Dir() }

func (a *logAdapter) Segments() []plugins.Segment {
	var out []plugins.Segment
	for _, s := range a.l.Segments() {
		out = append(out, plugins.Segment{BaseOffset: s.Base, LastOffset: s.LastOffset, SizeBytes: s.Size,
			MaxTimestampMs: s.MaxTimestamp, CreatedMs: s.Created.UnixMilli(), Active: s.Active})
	}
	return out
}

func (a *logAdapter) DeleteSegmentsBelow(offset int64) (int, error) {
	gone, err := a.l.DeleteSegmentsBelow(offset)
	return len(gone), err
}

// CleanState implements cleanableLog.
func (a *logAdapter) CleanState(nowMs, minCompactionLagMs int64) cleanState {
	st := a.l.CleanState(nowMs, minCompactionLagMs)
	return cleanState{CleanBytes: st.CleanBytes, DirtyBytes: st.DirtyBytes, OldestDirtyMs: st.OldestDirtyTimestamp}
}

// Clean implements cleanableLog with core/log's crash-safe cleaner.
func (a *logAdapter) Clean(ctx context.Context, req cleanRequest) (cleanResult, error) {
	r, err := a.l.Clean(ctx, plog.CleanOptions{Policy: req.Policy, NowMs: req.NowMs, Config: req.Config, Throttle: a.throttle})
	if errors.Is(err, plog.ErrCleanAborted) {
		return cleanResult{}, fmt.Errorf("%w: %v", errCleanAborted, err)
	}
	if err != nil {
		return cleanResult{}, err
	}
	return cleanResult{NoProgress: r.SegmentsBefore == 0, Summary: fmt.Sprintf("offsets %d..%d: kept %d records, removed %d; %d segments -> %d; read %d bytes, wrote %d; %s",
		r.FirstDirty, r.CleanedTo, r.RecordsKept, r.RecordsRemoved, r.SegmentsBefore, r.SegmentsAfter, r.BytesRead, r.BytesWritten, r.Took.Round(time.Millisecond))}, nil
}
