package broker

// InitProducerId (key 22), v0–v5.
//
// Idempotent producers only (a null transactional id): each call gets a new
// producer id from a block reserved in the coordination store
// (/latest_producer_id_block, Kafka's layout), so ids are never reused
// across restarts or brokers. v3+ with an existing id and epoch (KIP-360)
// bumps the epoch, so the producer can reset its sequences to 0. A
// transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED: transactions
// are not served yet, and a clear refusal beats a hang.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync"

	"github.com/brokkr/brokkr/coord"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(22, 0, 5, handleInitProducerID) }

const producerIDBlockSize = 1000

func handleInitProducerID(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return response{msg: resp}
	}
	if req.Version >= 3 && req.ProducerID >= 0 {
		if req.ProducerEpoch < math.MaxInt16-1 && req.ProducerEpoch >= 0 {
			resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
			return response{msg: resp}
		}
		// Epoch exhausted: fall through to a fresh id, as Kafka does.
	}
	id, err := b.pids.next(ctx, b)
	if err != nil {
		b.log.Warn("allocating a producer id", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return response{msg: resp}
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return response{msg: resp}
}

// pidAllocator hands out producer ids from blocks reserved by
// compare-and-set on /latest_producer_id_block.
type pidAllocator struct {
	mu        sync.Mutex
	nextID    int64
	blockEnd  int64 // inclusive; nextID > blockEnd means no block
	haveBlock bool
}

type pidBlock struct {
	Version    int    `json:"version"`
	Broker     int32  `json:"broker"`
	BlockStart string `json:"block_start"`
	BlockEnd   string `json:"block_end"`
}

func (a *pidAllocator) next(ctx context.Context, b *Broker) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.haveBlock || a.nextID > a.blockEnd {
		start, end, err := reservePIDBlock(ctx, b.Coord, b.Config.NodeID)
		if err != nil {
			return 0, err
		}
		a.nextID, a.blockEnd, a.haveBlock = start, end, true
	}
	id := a.nextID
	a.nextID++
	return id, nil
}

func reservePIDBlock(ctx context.Context, s coord.Store, broker int32) (start, end int64, err error) {
	const key = "/latest_producer_id_block"
	for attempt := 0; attempt < 10; attempt++ {
		rec, err := s.Get(ctx, key)
		start = 0
		switch {
		case errors.Is(err, coord.ErrNotFound):
		case err != nil:
			return 0, 0, err
		default:
			var pb pidBlock
			if err := json.Unmarshal(rec.Value, &pb); err != nil {
				return 0, 0, err
			}
			last, err := strconv.ParseInt(pb.BlockEnd, 10, 64)
			if err != nil {
				return 0, 0, err
			}
			start = last + 1
		}
		end = start + producerIDBlockSize - 1
		v, _ := json.Marshal(pidBlock{Version: 1, Broker: broker, BlockStart: strconv.FormatInt(start, 10), BlockEnd: strconv.FormatInt(end, 10)})
		if rec.Key == "" {
			_, err = s.Create(ctx, key, v)
		} else {
			_, err = s.CompareAndSet(ctx, key, v, rec.Version)
		}
		if err == nil {
			return start, end, nil
		}
		if !errors.Is(err, coord.ErrConflict) {
			return 0, 0, err
		}
	}
	return 0, 0, errors.New("producer id block: too many concurrent reservations")
}
