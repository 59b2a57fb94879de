package broker

import (
	"errors"
	"sync"

	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/plugins"
	"github.com/twmb/franz-go/pkg/kerr"
)

// errOffsetOutOfRange is what a partLog's Read returns for an offset below
// the log start or above the log end.
var errOffsetOutOfRange = errors.New("offset out of range")

// partLog is what the handlers need of one partition's log; logAdapter
// provides it over core/log.
type partLog interface {
	// Append validates and appends the batches of one produce payload,
	// returning the first and last offset assigned.
	Append(batches []byte, leaderEpoch int32) (base, last int64, err error)
	// Read returns whole batches starting at the batch holding offset, at
	// most maxBytes (at least one batch when minOne), as file regions,
	// never beyond upTo (the high watermark); release unpins them.
	Read(offset, upTo, maxBytes int64, minOne bool) (chunks []netio.Chunk, n int64, release func(), err error)
	StartOffset() int64
	EndOffset() int64
	HighWatermark() int64
	SetHighWatermark(int64)
	// OffsetForTimestamp is the first offset whose timestamp is >= ts.
	OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error)
	// MaxTimestamp is the largest timestamp and its offset (-1, -1 if empty).
	MaxTimestamp() (timestamp, offset int64)
	// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch <=
	// epoch and the offset where it ended (-1, -1 if none).
	EndOffsetForEpoch(epoch int32) (int32, int64)
	// Segments describes the segments for a retention policy.
	Segments() []plugins.Segment
	// DeleteSegmentsBelow deletes whole segments wholly below offset (never
	// the active one) and returns how many went.
	DeleteSegmentsBelow(offset int64) (int, error)
	// Dir is the partition's directory.
	Dir() string
	// Changed is closed at the next append or high watermark change.
	Changed() <-chan struct{}
	// ProducerBatches calls fn for the idempotent batches the log still
	// holds recent headers of (to rebuild the producer state at start).
	ProducerBatches(fn func(pid int64, epoch int16, firstSeq, lastSeq int32, firstOff, lastOff, ts int64)) error
}

// partition is one partition this broker hosts.
type partition struct {
	topic     string
	index     int32
	topicID   controller.TopicID
	log       partLog
	producers *producerState

	// appendMu makes the idempotence check and the append it allows one step.
	appendMu    sync.Mutex
	leaderEpoch int32
	isrSize     int

	cfgMu     sync.RWMutex
	cfg       config.TopicConfig
	overrides map[string]string // the topic's config overrides, for policies
}

func (p *partition) config() config.TopicConfig {
	p.cfgMu.RLock()
	defer p.cfgMu.RUnlock()
	return p.cfg
}

type tp struct {
	topic string
	index int32
}

// partitionFor returns the local partition, or nil.
func (b *Broker) partitionFor(topic string, index int32) *partition {
	b.pmu.RLock()
	defer b.pmu.RUnlock()
	return b.parts[tp{topic, index}]
}

// topicNamesByID maps the ids of local topics to their names (Produce v13+
// and Fetch v13+ name topics by id).
func (b *Broker) topicNamesByID() map[[16]byte]string {
	b.pmu.RLock()
	defer b.pmu.RUnlock()
	m := map[[16]byte]string{}
	for _, p := range b.parts {
		m[p.topicID] = p.topic
	}
	return m
}

// epochError checks a request's current leader epoch (KIP-320) against the
// partition's: newer than ours is UNKNOWN_LEADER_EPOCH (we are behind),
// older is FENCED_LEADER_EPOCH (the client is); -1, or a version without
// the field, is not checked.
func (p *partition) epochError(checked bool, current int32) *kerr.Error {
	switch {
	case !checked || current < 0:
		return nil
	case current > p.leaderEpoch:
		return kerr.UnknownLeaderEpoch
	case current < p.leaderEpoch:
		return kerr.FencedLeaderEpoch
	}
	return nil
}
