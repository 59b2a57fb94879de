package broker

import (
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdempotentProducer drives the idempotent-producer checks with raw
// ProduceRequests: a retried batch gets its original offset and is not
// appended again, a gap is refused, and both still hold after a restart.
func TestIdempotentProducer(t *testing.T) {
	b := testbroker.Start(t)
	const topic = "idem"
	createTopic(t, b.Addr, topic, 1, nil)

	rc := dial(t, b.Addr)
	ipid := kmsg.NewPtrInitProducerIDRequest()
	ipid.SetVersion(4)
	ipid.TransactionTimeoutMillis = 60000
	ip := rc.mustRoundTrip(ipid).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID < 0 {
		t.Fatalf("InitProducerId: error %d, producer id %d", ip.ErrorCode, ip.ProducerID)
	}
	pid, epoch := ip.ProducerID, ip.ProducerEpoch
	ip2 := rc.mustRoundTrip(ipid).(*kmsg.InitProducerIDResponse)
	if ip2.ErrorCode != 0 || ip2.ProducerID == pid {
		t.Errorf("a second InitProducerId: error %d, producer id %d, want a new id (first %d)", ip2.ErrorCode, ip2.ProducerID, pid)
	}

	produce := func(rc *rawConn, seq int32, values ...string) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		return onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, 0, recordBatch(pid, epoch, seq, values...))))
	}
	expect := func(p kmsg.ProduceResponseTopicPartition, code int16, base int64, what string) {
		t.Helper()
		if p.ErrorCode != code || (code == 0 && p.BaseOffset != base) {
			t.Fatalf("%s: error %d base offset %d, want error %d base offset %d", what, p.ErrorCode, p.BaseOffset, code, base)
		}
	}

	// Some non-idempotent records first, so offsets and sequences differ.
	expect(onlyPartition(t, rc.mustRoundTrip(produceReq(9, -1, topic, 0, recordBatch(-1, -1, -1, "plain-a", "plain-b")))), 0, 0, "non-idempotent batch")
	expect(produce(rc, 0, "a0", "a1", "a2"), 0, 2, "first batch seq 0-2")
	expect(produce(rc, 3, "b3", "b4"), 0, 5, "second batch seq 3-4")
	expect(produce(rc, 5, "c5"), 0, 7, "third batch seq 5")
	if leo := endOffset(t, b.Addr, topic, 0); leo != 8 {
		t.Fatalf("end offset %d, want 8", leo)
	}

	// Retries of the last and of an older batch in the window.
	expect(produce(rc, 5, "c5"), 0, 7, "retry of the last batch")
	expect(produce(rc, 0, "a0", "a1", "a2"), 0, 2, "retry of the first batch")
	if leo := endOffset(t, b.Addr, topic, 0); leo != 8 {
		t.Fatalf("retried batches were appended again: end offset %d, want 8", leo)
	}

	// A gap: sequence 7 when 6 is next.
	expect(produce(rc, 7, "gap"), kerr.OutOfOrderSequenceNumber.Code, -1, "batch with a sequence gap")
	if leo := endOffset(t, b.Addr, topic, 0); leo != 8 {
		t.Fatalf("the out-of-order batch was appended: end offset %d, want 8", leo)
	}
	expect(produce(rc, 6, "d6", "d7"), 0, 8, "batch at the next sequence")

	// After a clean restart the state is rebuilt from the log.
	if d, clean := b.Stop(); !clean {
		t.Fatalf("SIGTERM: not a clean exit after %v:\n%s", d, b.Output())
	}
	restarted := time.Now()
	b.Restart(t)
	t.Logf("restart after SIGTERM: ready %v after exec", time.Since(restarted).Round(time.Millisecond))
	rc2 := dial(t, b.Addr)
	expect(produce(rc2, 6, "d6", "d7"), 0, 8, "retry of the last batch after a restart")
	expect(produce(rc2, 3, "b3", "b4"), 0, 5, "retry of an older batch after a restart")
	if leo := endOffset(t, b.Addr, topic, 0); leo != 10 {
		t.Fatalf("after a restart a retried batch was appended again: end offset %d, want 10", leo)
	}
	expect(produce(rc2, 9, "gap"), kerr.OutOfOrderSequenceNumber.Code, -1, "sequence gap after a restart")
	expect(produce(rc2, 8, "e8"), 0, 10, "next sequence after a restart")

	// And after kill -9 (no clean-shutdown marker, recovery from the log).
	b.Kill9()
	restartAfterKill9(t, b)
	rc3 := dial(t, b.Addr)
	expect(produce(rc3, 8, "e8"), 0, 10, "retry of the last batch after kill -9")
	expect(produce(rc3, 9, "f9"), 0, 11, "next sequence after kill -9")

	got := consumeValues(t, b.Addr, topic)[0]
	want := []string{"plain-a", "plain-b", "a0", "a1", "a2", "b3", "b4", "c5", "d6", "d7", "e8", "f9"}
	if len(got) != len(want) {
		t.Fatalf("log holds %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("log holds %q, want %q", got, want)
		}
	}
	assertNoPanic(t, b)
}
