package broker

import (
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestProducerStateRules(t *testing.T) {
	s := newProducerState()
	appendBatch := func(pid int64, epoch int16, seq, count int32, off int64) checkResult {
		r := s.check(pid, epoch, seq, count)
		if r.err == nil && !r.duplicate {
			s.record(pid, epoch, batchMeta{firstSeq: seq, lastSeq: seqAdd(seq, count-1), firstOffset: off, lastOffset: off + int64(count) - 1})
		}
		return r
	}
	if r := appendBatch(1, 0, 3, 1, 0); r.err != kerr.UnknownProducerID {
		t.Errorf("a new producer starting at seq 3: %+v", r)
	}
	off := int64(0)
	for seq := int32(0); seq < 30; seq += 3 {
		if r := appendBatch(1, 0, seq, 3, off); r.err != nil || r.duplicate {
			t.Fatalf("in-order batch seq %d: %+v", seq, r)
		}
		off += 3
	}
	// The last five batches are remembered: a retry of one gets its offsets.
	if r := s.check(1, 0, 27, 3); !r.duplicate || r.dup.firstOffset != 27 {
		t.Errorf("retry of the last batch: %+v", r)
	}
	if r := s.check(1, 0, 15, 3); !r.duplicate || r.dup.firstOffset != 15 {
		t.Errorf("retry of the fifth-last batch: %+v", r)
	}
	if r := s.check(1, 0, 12, 3); r.err != kerr.OutOfOrderSequenceNumber {
		t.Errorf("a batch older than the window must not append again: %+v", r)
	}
	if r := s.check(1, 0, 31, 1); r.err != kerr.OutOfOrderSequenceNumber {
		t.Errorf("a gap: %+v", r)
	}
	if r := s.check(1, 0, 30, 2); r.err != nil || r.duplicate {
		t.Errorf("the next batch: %+v", r)
	}
	if r := s.check(1, 1, 5, 1); r.err != kerr.OutOfOrderSequenceNumber {
		t.Errorf("a new epoch must start at 0: %+v", r)
	}
	if r := appendBatch(1, 1, 0, 1, off); r.err != nil {
		t.Errorf("new epoch at 0: %+v", r)
	}
	if r := s.check(1, 0, 30, 1); r.err != kerr.InvalidProducerEpoch {
		t.Errorf("an old epoch is fenced: %+v", r)
	}
	if r := s.check(-1, -1, -1, 10); r.err != nil || r.duplicate {
		t.Errorf("a non-idempotent batch is never checked: %+v", r)
	}
	// Sequence numbers wrap at MaxInt32.
	s2 := newProducerState()
	s2.record(9, 0, batchMeta{firstSeq: math.MaxInt32 - 1, lastSeq: math.MaxInt32, firstOffset: 0, lastOffset: 1})
	if r := s2.check(9, 0, 0, 1); r.err != nil {
		t.Errorf("wrap: %+v", r)
	}
	// Truncation forgets what is gone from the log.
	s.truncate(31)
	if _, ok := s.producers[1]; !ok {
		t.Fatal("truncate(31) dropped a producer whose batch ends at 30")
	}
	s.truncate(30)
	if len(s.producers) != 0 {
		t.Errorf("truncate(30) kept %d producers", len(s.producers))
	}
}
