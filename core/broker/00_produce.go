package broker

// Produce (key 0), v0–v11.
//
// Advertised from v0 because librdkafka decides which features it may use
// from the overlap with v0; v0–v2 carry message-format v0/v1 sets, which
// Brokkr does not store (batches are kept exactly as they came, magic 2
// only), so every partition of such a request gets UNSUPPORTED_VERSION.
//
// Appending to __consumer_offsets is INVALID_TOPIC_EXCEPTION, as Kafka:
// only the group coordinator writes it.
//
// acks must be 0, 1 or -1 (INVALID_REQUIRED_ACKS otherwise); acks=-1 with
// fewer in-sync replicas than min.insync.replicas is NOT_ENOUGH_REPLICAS
// and nothing is written. Batches are
// validated (size, magic, CRC-32C, record framing and counts, decompressing
// compressed records with a cap) and appended as they came; only base
// offset and partition leader epoch are rewritten. Idempotent batches are
// checked against the producer's last five batches on this partition: a
// retried duplicate gets its original offset and is not appended again; a
// gap gets OUT_OF_ORDER_SEQUENCE_NUMBER; an old epoch INVALID_PRODUCER_EPOCH.
// acks=0 gets no response; if such a request fails, the connection is
// closed, as Kafka does, so the producer notices. A disk error is
// KAFKA_STORAGE_ERROR for that partition, never a dropped connection.
// Transactional produce is refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED):
// transactions are not served yet.

import (
	"context"
	"errors"
	"fmt"

	"github.com/brokkr/brokkr/core/codec"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/segment"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(0, 0, 11, handleProduce) }

func handleProduce(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	failed := false
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		name := rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			code, msg, base := b.produceOne(name, rp, req)
			sp.ErrorCode = code
			if code == 0 {
				sp.BaseOffset = base
			} else {
				failed = true
				if msg != "" {
					m := msg
					sp.ErrorMessage = &m
				}
			}
			if p := b.partitionFor(name, rp.Partition); p != nil {
				sp.LogStartOffset = p.log.StartOffset()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if req.Acks == 0 {
		if failed {
			return netResponse(netio.CloseConnection())
		}
		return netResponse(netio.NoResponse())
	}
	return response{msg: resp}
}

// produceOne appends one partition's records and returns the error code
// (0 for success), a message for the client, and the base offset.
func (b *Broker) produceOne(topic string, rp kmsg.ProduceRequestTopicPartition, req *kmsg.ProduceRequest) (int16, string, int64) {
	switch {
	case req.Version < 3:
		return kerr.UnsupportedVersion.Code, "Produce v0-v2 (message format v0/v1) is not supported; use v3 or later", -1
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		return kerr.InvalidRequiredAcks.Code, "", -1
	case req.TransactionID != nil:
		return kerr.TransactionalIDAuthorizationFailed.Code, "transactions are not supported", -1
	case topic == offsetsTopic:
		// As Kafka: only the group coordinator writes its records (a
		// client's would bypass the coordinator's state until a reload).
		return kerr.InvalidTopicException.Code, "cannot append to internal topic " + offsetsTopic, -1
	}
	p := b.partitionFor(topic, rp.Partition)
	if p == nil {
		return kerr.UnknownTopicOrPartition.Code, "", -1
	}
	if len(rp.Records) == 0 {
		return kerr.CorruptMessage.Code, "no record batches", -1
	}
	if req.Acks == -1 && int32(p.isrSize) < p.config().MinInsyncReplicas {
		return kerr.NotEnoughReplicas.Code, fmt.Sprintf("the ISR has %d replica(s), min.insync.replicas is %d", p.isrSize, p.config().MinInsyncReplicas), -1
	}
	hs, err := segment.Batches(rp.Records, int(p.config().MaxMessageBytes), recordsCheck)
	if err != nil {
		return segment.KafkaCode(err), err.Error(), -1
	}

	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	// Idempotence: all batches of a request come from one producer.
	var dups []batchMeta
	for _, h := range hs {
		r := p.producers.check(h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.LastOffsetDelta+1)
		if r.err != nil {
			return r.err.Code, "", -1
		}
		if r.duplicate {
			dups = append(dups, r.dup)
		}
	}
	if len(dups) > 0 {
		if len(dups) != len(hs) {
			return kerr.OutOfOrderSequenceNumber.Code, "a request mixes retried and new batches", -1
		}
		return 0, "", dups[0].firstOffset
	}
	base, _, err := p.log.Append(rp.Records, p.leaderEpoch)
	if err != nil {
		if code := segment.KafkaCode(err); code > 0 {
			return code, err.Error(), -1
		}
		if errors.Is(err, segment.ErrStorage) {
			return kerr.KafkaStorageError.Code, err.Error(), -1
		}
		return kerr.UnknownServerError.Code, err.Error(), -1
	}
	off := base
	for _, h := range hs {
		n := int64(h.LastOffsetDelta) + 1
		p.producers.record(h.ProducerID, h.ProducerEpoch, batchMeta{
			firstSeq: h.BaseSequence, lastSeq: seqAdd(h.BaseSequence, h.LastOffsetDelta),
			firstOffset: off, lastOffset: off + n - 1, timestamp: h.MaxTimestamp,
		})
		off += n
	}
	// Single replica: the high watermark follows the log end at once.
	p.log.SetHighWatermark(p.log.EndOffset())
	return 0, "", base
}

// maxDecompressed caps what one compressed batch may inflate to while its
// records are validated.
const maxDecompressed = 64 << 20

// recordsCheck validates the records of a compressed batch by inflating
// them (capped) and walking every record's framing and offset delta.
func recordsCheck(_ segment.BatchHeader, batch []byte) error {
	plain, err := codec.PlainBatch(batch, maxDecompressed)
	if err != nil {
		return fmt.Errorf("%w: %v", segment.ErrCorruptMessage, err)
	}
	return segment.WalkRecordsDense(plain, nil)
}
