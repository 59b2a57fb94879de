package broker

import (
	"math"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
)

// producerWindow is how many recent batches per producer and partition are
// remembered for duplicate detection (Kafka's max in-flight requests).
const producerWindow = 5

// batchMeta is what is remembered of one appended idempotent batch.
type batchMeta struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset int64
	timestamp               int64
}

type producerEntry struct {
	epoch   int16
	batches []batchMeta // oldest first, at most producerWindow
}

// producerState is one partition's idempotent-producer state: for every
// producer id, its epoch and its last producerWindow batches. It is pure
// logic: the caller holds the partition's append lock around check and
// record, so a check and the append it allows are atomic.
type producerState struct {
	mu        sync.Mutex
	producers map[int64]*producerEntry
}

func newProducerState() *producerState {
	return &producerState{producers: map[int64]*producerEntry{}}
}

// checkResult says what to do with an incoming batch.
type checkResult struct {
	err       *kerr.Error // non-nil: reject the batch with this error
	duplicate bool        // the batch was appended before: answer with dup
	dup       batchMeta
}

// check decides, for a batch from producer pid at epoch with sequence
// numbers firstSeq..firstSeq+count-1, whether it may be appended (Kafka's
// rules, ProducerStateManager): a retried batch equal to one of the last
// five is a duplicate answered with its original offsets; an older epoch is
// fenced; a new epoch must start at sequence 0; otherwise the batch must
// follow the last sequence exactly (wrapping at MaxInt32); a producer with
// no state here must start at 0 (UNKNOWN_PRODUCER_ID otherwise).
func (s *producerState) check(pid int64, epoch int16, firstSeq int32, count int32) checkResult {
	if pid < 0 {
		return checkResult{}
	}
	lastSeq := seqAdd(firstSeq, count-1)
	e := s.producers[pid]
	if e == nil {
		// No state for this producer: new, or its batches are no longer
		// in what was rebuilt at start. Kafka answers UNKNOWN_PRODUCER_ID,
		// on which clients bump their epoch and restart at sequence 0.
		if firstSeq != 0 {
			return checkResult{err: kerr.UnknownProducerID}
		}
		return checkResult{}
	}
	if epoch < e.epoch {
		return checkResult{err: kerr.InvalidProducerEpoch}
	}
	if epoch > e.epoch {
		if firstSeq != 0 {
			return checkResult{err: kerr.OutOfOrderSequenceNumber}
		}
		return checkResult{}
	}
	for _, b := range e.batches {
		if b.firstSeq == firstSeq && b.lastSeq == lastSeq {
			return checkResult{duplicate: true, dup: b}
		}
	}
	if len(e.batches) == 0 {
		if firstSeq != 0 {
			return checkResult{err: kerr.OutOfOrderSequenceNumber}
		}
		return checkResult{}
	}
	if firstSeq != seqAdd(e.batches[len(e.batches)-1].lastSeq, 1) {
		return checkResult{err: kerr.OutOfOrderSequenceNumber}
	}
	return checkResult{}
}

// record remembers an appended batch (also used when rebuilding from the log).
func (s *producerState) record(pid int64, epoch int16, b batchMeta) {
	if pid < 0 {
		return
	}
	e := s.producers[pid]
	if e == nil || epoch > e.epoch {
		e = &producerEntry{epoch: epoch}
		s.producers[pid] = e
	} else if epoch < e.epoch {
		return
	}
	e.batches = append(e.batches, b)
	if len(e.batches) > producerWindow {
		e.batches = append(e.batches[:0], e.batches[len(e.batches)-producerWindow:]...)
	}
}

// truncate forgets batches at or above offset (after a log truncation).
func (s *producerState) truncate(offset int64) {
	for pid, e := range s.producers {
		kept := e.batches[:0]
		for _, b := range e.batches {
			if b.lastOffset < offset {
				kept = append(kept, b)
			}
		}
		e.batches = kept
		if len(kept) == 0 {
			delete(s.producers, pid)
		}
	}
}

func seqAdd(seq, n int32) int32 {
	v := int64(seq) + int64(n)
	if v > math.MaxInt32 {
		v -= math.MaxInt32 + 1
	}
	return int32(v)
}
