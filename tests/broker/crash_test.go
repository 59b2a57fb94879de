package broker

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stream is an idempotent acks=all franz-go producer that produces "v<n>"
// records as fast as its buffer allows and remembers, per partition and in
// order, every record the broker acknowledged.
type stream struct {
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	acked   map[int32][]int
	nAcked  int
	failed  int
	sent    int
	lastErr error
}

func startStream(t *testing.T, addr, topic string) *stream {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(2000), kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{cl: cl, cancel: cancel, done: make(chan struct{}), acked: map[int32][]int{}}
	go func() {
		defer close(s.done)
		for i := 0; ctx.Err() == nil; i++ {
			n := i
			r := &kgo.Record{Value: []byte("v" + strconv.Itoa(n))}
			s.mu.Lock()
			s.sent++
			s.mu.Unlock()
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				s.mu.Lock()
				defer s.mu.Unlock()
				if err != nil {
					s.failed++
					s.lastErr = err
					return
				}
				s.acked[r.Partition] = append(s.acked[r.Partition], n)
				s.nAcked++
			})
		}
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// result is the stream's final tally, copied under its lock (a late
// callback cannot race with the checks).
func (s *stream) result() (acked map[int32][]int, nAcked, failed, sent int, lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acked = map[int32][]int{}
	for p, ns := range s.acked {
		acked[p] = append([]int(nil), ns...)
	}
	return acked, s.nAcked, s.failed, s.sent, s.lastErr
}

func (s *stream) sentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

func (s *stream) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nAcked
}

// stop ends the stream and closes the client (failing what is still
// buffered); after it the acknowledged set is final.
func (s *stream) stop(t *testing.T) {
	s.cancel()
	closed := make(chan struct{})
	go func() {
		<-s.done
		s.cl.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Errorf("the producer did not close within 20 s")
	}
}

// TestKill9DuringProduceStream: SIGKILL the broker while an idempotent
// acks=all producer streams into 3 partitions; after a restart every
// acknowledged record is there, in order, with no duplicates.
func TestKill9DuringProduceStream(t *testing.T) {
	b := testbroker.Start(t)
	const topic = "crash"
	createTopic(t, b.Addr, topic, 3, nil)
	s := startStream(t, b.Addr, topic)
	testbroker.Eventually(t, 30*time.Second, "5000 records acknowledged before the kill", func() bool { return s.ackedCount() >= 5000 })
	b.Kill9()
	atKill := s.ackedCount()
	s.stop(t)
	acked, nAcked, failed, sent, lastErr := s.result()
	t.Logf("killed after %d acknowledged records; in the end %d acknowledged, %d failed of %d sent (last error: %v)", atKill, nAcked, failed, sent, lastErr)
	if nAcked == sent {
		t.Errorf("every record was acknowledged: the kill did not happen mid-stream")
	}

	restartAfterKill9(t, b)
	if !strings.Contains(b.Output(), "clean_shutdown=false") {
		t.Errorf("the restart after kill -9 did not report an unclean shutdown:\n%s", b.Output())
	}
	got := consumeValues(t, b.Addr, topic)
	checkAcked(t, got, acked)
	assertNoPanic(t, b)
}

// TestSIGTERMUnderLoad: SIGTERM while a consumer long-polls (franz-go, and
// a raw Fetch waiting 30 s) and a producer streams: the broker exits 0 in
// well under 10 s, the next start finds a clean shutdown (no recovery), and
// every acknowledged record is there.
func TestSIGTERMUnderLoad(t *testing.T) {
	b := testbroker.Start(t)
	const topic, idle = "term", "term-idle"
	createTopic(t, b.Addr, topic, 2, nil)
	createTopic(t, b.Addr, idle, 1, nil)

	// A franz-go consumer following the stream.
	cons := newClient(t, b.Addr, kgo.ConsumeTopics(topic, idle), kgo.FetchMaxWait(5*time.Second))
	consCtx, consCancel := context.WithCancel(context.Background())
	defer consCancel()
	var consumed sync.WaitGroup
	consumed.Add(1)
	var nConsumed int
	go func() {
		defer consumed.Done()
		for consCtx.Err() == nil {
			fs := cons.PollFetches(consCtx)
			nConsumed += fs.NumRecords()
		}
	}()

	s := startStream(t, b.Addr, topic)
	testbroker.Eventually(t, 30*time.Second, "2000 records acknowledged", func() bool { return s.ackedCount() >= 2000 })

	// A raw long poll on the empty topic, parked for up to 30 s.
	rc := dial(t, b.Addr)
	f := kmsg.NewPtrFetchRequest()
	f.SetVersion(12)
	f.MaxWaitMillis, f.MinBytes, f.MaxBytes = 30000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = idle
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = 0, 0, 1<<20, -1, -1
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	if err := rc.write(frame(f, 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rc.readFrame(300 * time.Millisecond); err == nil {
		t.Fatal("the 30 s long poll on an empty partition was answered at once")
	}

	// Records handed to the producer 2 s after SIGTERM went out in requests
	// sent after it: a broker that is shutting down must not take them.
	ackedAtTerm := s.ackedCount()
	lateFrom := make(chan int, 1)
	lateTimer := time.AfterFunc(2*time.Second, func() { lateFrom <- s.sentCount() })
	took, clean := b.Stop()
	lateTimer.Stop()
	t.Logf("SIGTERM with a producer streaming and two long polls: exited in %v (clean exit %v); %d records acknowledged at SIGTERM, %d when it exited", took.Round(time.Millisecond), clean, ackedAtTerm, s.ackedCount())
	if !clean {
		t.Errorf("the broker did not exit 0 after SIGTERM:\n%s", b.Output())
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %v, want < 10 s", took)
	}
	// The parked long poll was in flight: it is answered (empty), not dropped.
	if corr, body, err := rc.readFrame(2 * time.Second); err != nil || corr != 1 {
		t.Errorf("the long poll parked at SIGTERM: corr %d err %v, want its (empty) answer", corr, err)
	} else if r, err := decode(f, body); err != nil {
		t.Error(err)
	} else if fr := r.(*kmsg.FetchResponse); fr.ErrorCode != 0 || len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || len(fr.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Errorf("the long poll parked at SIGTERM was answered with %+v, want one empty partition", fr)
	}
	if !strings.Contains(b.Output(), "stopped cleanly") {
		t.Errorf("no \"stopped cleanly\" line:\n%s", b.Output())
	}
	s.stop(t)
	acked, nAcked, failed, sent, _ := s.result()
	select {
	case late := <-lateFrom:
		for p, ns := range acked {
			if len(ns) > 0 && ns[len(ns)-1] >= late {
				t.Errorf("partition %d: record v%d was acknowledged, but it was handed to the producer more than 2 s after SIGTERM (from v%d on): the broker kept taking new produce requests while shutting down", p, ns[len(ns)-1], late)
			}
		}
	default: // the broker was gone within 2 s
	}
	consCancel()
	consumed.Wait()
	t.Logf("producer: %d acknowledged, %d failed of %d sent; consumer read %d before the shutdown", nAcked, failed, sent, nConsumed)
	if nConsumed == 0 {
		t.Errorf("the consumer read nothing while the producer streamed")
	}

	b.Restart(t)
	out := b.Output()
	if !strings.Contains(out, "clean_shutdown=true") {
		t.Errorf("the restart after SIGTERM did not find the clean-shutdown marker:\n%s", out)
	}
	for _, bad := range []string{"recovered segment", "recovery truncated", "dropping segments", "rebuilt index"} {
		if strings.Contains(out, bad) {
			t.Errorf("the restart after a clean shutdown logged %q:\n%s", bad, out)
		}
	}
	checkAcked(t, consumeValues(t, b.Addr, topic), acked)
	assertNoPanic(t, b)
}
