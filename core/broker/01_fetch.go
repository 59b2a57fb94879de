package broker

// Fetch (key 1), v4–v16.
//
// The response is hand-framed (fetch_encode.go): headers are encoded in
// user space and record bytes go from segment files to the socket with
// sendfile, never through Go memory. Whole batches are returned, starting at
// the batch that holds the fetch offset (clients skip records before it),
// up to the partition's max bytes and the request's max bytes; the first
// partition with data returns at least one batch even when it is larger
// (KIP-74). Reads stop at the high watermark. If fewer than min bytes are
// ready, the request waits (on per-partition notifiers, never by polling) up
// to max wait; other requests on the connection, and other connections, go
// on meanwhile. A broker shutting down answers parked polls at once.
//
// Fetch sessions (KIP-227) are refused correctly: the answer's session id is
// always 0, which tells the client no session was created, so it keeps
// sending full requests; a request naming a session gets
// FETCH_SESSION_ID_NOT_FOUND. read_committed and read_uncommitted see the
// same data (no transactions yet, so the last stable offset is the high
// watermark). An offset below the log start or above the log end is
// OFFSET_OUT_OF_RANGE; a current leader epoch newer than ours is
// UNKNOWN_LEADER_EPOCH, older FENCED_LEADER_EPOCH.

import (
	"context"
	"reflect"
	"time"

	"github.com/brokkr/brokkr/netio"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	fetchMinVersion = 4
	fetchMaxVersion = 16
)

func init() { register(1, fetchMinVersion, fetchMaxVersion, handleFetch) }

func handleFetch(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.FetchRequest)
	if req.SessionID > 0 {
		// We never create sessions, so any id the client names is unknown.
		return response{net: ptr(netio.Chunks(encodeFetch(req.Version, kerr.FetchSessionIDNotFound.Code, 0, nil)...))}
	}
	var names map[[16]byte]string
	if req.Version >= 13 {
		names = b.topicNamesByID()
	}
	chunks, n, release := b.readFetch(req, names)
	wait := time.Duration(req.MaxWaitMillis) * time.Millisecond
	if n >= int64(req.MinBytes) || wait <= 0 {
		return netResponse(netio.Chunks(chunks...).WithRelease(release))
	}
	// Not enough data: wait for an append to any requested partition.
	release()
	waits := b.fetchWaits(req, names)
	return netResponse(netio.Later(func(ctx context.Context) netio.Response {
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			// One select over the deadline, the connection and every
			// partition's notifier (reflect.Select: no goroutine each).
			cases := make([]reflect.SelectCase, 0, len(waits)+3)
			cases = append(cases,
				reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline.C)},
				reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
				// A shutdown answers parked long polls at once with what
				// there is, so it does not wait out their max wait.
				reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(b.done)})
			for _, w := range waits {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
			}
			chosen, _, _ := reflect.Select(cases)
			if chosen >= 3 {
				// Re-arm the notifiers before reading, so an append that
				// lands after this read wakes the next wait.
				waits = b.fetchWaits(req, names)
				chunks, n, release := b.readFetch(req, names)
				if n >= int64(req.MinBytes) {
					return netio.Chunks(chunks...).WithRelease(release)
				}
				release()
				continue
			}
			chunks, _, release := b.readFetch(req, names)
			return netio.Chunks(chunks...).WithRelease(release)
		}
	}))
}

func ptr[T any](v T) *T { return &v }

// fetchWaits returns the change notifiers of the requested local partitions.
func (b *Broker) fetchWaits(req *kmsg.FetchRequest, names map[[16]byte]string) []<-chan struct{} {
	var out []<-chan struct{}
	for _, rt := range req.Topics {
		name := rt.Topic
		if req.Version >= 13 {
			name = names[rt.TopicID]
		}
		for _, rp := range rt.Partitions {
			if p := b.partitionFor(name, rp.Partition); p != nil {
				out = append(out, p.log.Changed())
			}
		}
	}
	return out
}

// readFetch builds the whole response now: the chunks, the record bytes it
// holds, and the function that unpins the file regions.
func (b *Broker) readFetch(req *kmsg.FetchRequest, names map[[16]byte]string) ([]netio.Chunk, int64, func()) {
	maxBytes := int64(req.MaxBytes)
	if maxBytes <= 0 || req.Version < 3 {
		maxBytes = int64(b.Config.FetchMaxBytes)
	}
	var (
		total    int64
		releases []func()
		topics   []fetchTopicOut
	)
	for _, rt := range req.Topics {
		to := fetchTopicOut{name: rt.Topic, id: rt.TopicID}
		name := rt.Topic
		if req.Version >= 13 {
			name = names[rt.TopicID]
		}
		for _, rp := range rt.Partitions {
			out := fetchOut{partition: rp.Partition, highWatermark: -1, lastStable: -1, logStart: -1, preferredReplica: -1}
			p := b.partitionFor(name, rp.Partition)
			switch {
			case p == nil && req.Version >= 13 && name == "":
				out.errCode = kerr.UnknownTopicID.Code
			case p == nil:
				out.errCode = kerr.UnknownTopicOrPartition.Code
			case p.epochError(req.Version >= 9, rp.CurrentLeaderEpoch) != nil:
				out.errCode = p.epochError(true, rp.CurrentLeaderEpoch).Code
			default:
				hw := p.log.HighWatermark()
				out.highWatermark, out.lastStable, out.logStart = hw, hw, p.log.StartOffset()
				if rp.FetchOffset < out.logStart || rp.FetchOffset > p.log.EndOffset() {
					out.errCode = kerr.OffsetOutOfRange.Code
					break
				}
				limit := min(int64(rp.PartitionMaxBytes), maxBytes-total)
				if limit <= 0 && total > 0 || rp.FetchOffset >= hw {
					break
				}
				chunks, n, release, err := p.log.Read(rp.FetchOffset, hw, max(limit, 0), total == 0)
				if err != nil {
					if err == errOffsetOutOfRange {
						out.errCode = kerr.OffsetOutOfRange.Code
					} else {
						out.errCode = kerr.KafkaStorageError.Code
						b.log.Error("fetch read failed", "topic", name, "partition", rp.Partition, "err", err)
					}
					break
				}
				if release != nil {
					releases = append(releases, release)
				}
				out.records, out.recordsLen = chunks, n
				total += n
			}
			to.partitions = append(to.partitions, out)
		}
		topics = append(topics, to)
	}
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	return encodeFetch(req.Version, 0, 0, topics), total, release
}
