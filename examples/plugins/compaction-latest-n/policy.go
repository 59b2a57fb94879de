// Command compaction-latest-n is an example Brokkr compaction policy served
// as a go-plugin process: it keeps the latest N records per key instead of
// Kafka's latest one.
//
// The rule (policy.go): for each key, the newest N records survive; a
// tombstone deletes every older record of its key, and is itself removed
// once it is older than delete.retention.ms (by record timestamp against the
// pass's NowMs). As in Brokkr's built-in compaction, a record younger than
// min.compaction.lag.ms is always kept, and a record without a key is kept.
// With N=1 the answers equal the built-in policy's (Kafka's behaviour).
//
// A pass is two-phase, as the host drives it: Scan sees every batch and
// counts records per key; Survivors sees the same batches again, in the same
// order, and keeps a record when fewer than N records of its key follow it.
// Per key the pass stores a 128-bit hash of the key and three integers, never
// the key's bytes or any value, so its memory is about 60 bytes per distinct key
// whatever N is.
//
// Settings (topic configs, see README.md):
//
//	brokkr.plugin.compaction-latest-n.n  records kept per key, default 1
//	delete.retention.ms                  Kafka's, default 1 day
//	min.compaction.lag.ms                Kafka's, default 0
//
// Build it into the broker's plugin directory and name it on a topic:
//
//	go build -o $PLUGIN_DIR/compaction-latest-n ./examples/plugins/compaction-latest-n
//	brokkr topic create T -c cleanup.policy=compact -c brokkr.compaction.plugin=compaction-latest-n
package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"

	"github.com/brokkr/brokkr/plugins"
)

// Name is the policy's name: the binary's file name in brokkr.plugin.dir and
// the middle part of its settings' keys.
const Name = "compaction-latest-n"

// NKey is the setting for how many records per key survive.
const NKey = "brokkr.plugin." + Name + ".n"

// Kafka's defaults for the keys this policy reads.
const (
	DefaultN                 = 1
	DefaultDeleteRetentionMs = 24 * 60 * 60 * 1000 // delete.retention.ms
	DefaultMinCompactionLag  = 0                   // min.compaction.lag.ms
)

// Policy is the keep-latest-N compaction policy.
type Policy struct{}

// Info implements plugins.CompactionPolicy. The policy decides on keys,
// timestamps and the tombstone flag, so the host ships no values.
func (Policy) Info() plugins.Info { return plugins.Info{Name: Name} }

// Settings are a pass's parsed configuration.
type Settings struct {
	N                 int64
	DeleteRetentionMs int64
	MinCompactionLag  int64
}

// ParseSettings reads the settings from a topic's effective config.
func ParseSettings(cfg map[string]string) (Settings, error) {
	var s Settings
	var err error
	if s.N, err = configInt(cfg, NKey, DefaultN, 1); err != nil {
		return Settings{}, err
	}
	if s.DeleteRetentionMs, err = configInt(cfg, "delete.retention.ms", DefaultDeleteRetentionMs, 0); err != nil {
		return Settings{}, err
	}
	if s.MinCompactionLag, err = configInt(cfg, "min.compaction.lag.ms", DefaultMinCompactionLag, 0); err != nil {
		return Settings{}, err
	}
	return s, nil
}

func configInt(cfg map[string]string, key string, def, min int64) (int64, error) {
	raw, ok := cfg[key]
	if !ok || strings.TrimSpace(raw) == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", key, raw)
	}
	if v < min {
		return 0, fmt.Errorf("%s: %d is below the minimum %d", key, v, min)
	}
	return v, nil
}

// Begin implements plugins.CompactionPolicy.
func (Policy) Begin(ctx context.Context, p plugins.CompactionParams) (plugins.CompactionPass, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := ParseSettings(p.Config)
	if err != nil {
		return nil, err
	}
	return &pass{s: s, now: p.NowMs, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		index: map[keyHash]int{}}, nil
}

// keyHash is a 128-bit hash of a key: two maphash sums with independent
// random seeds. Two keys of one pass share it with probability ~2^-128
// per pair (Kafka's cleaner makes the same bet with 16-byte MD5 digests).
type keyHash [2]uint64

// keyState is what a pass knows about one key.
type keyState struct {
	count int64 // records of the key seen by Scan
	last  int64 // highest offset of the key seen by Scan
	tomb  int64 // offset of the key's latest tombstone seen by Scan, -1 none
	seen  int64 // records of the key seen so far by Survivors
}

// batchMark identifies a batch, so Survivors can check it is shown the
// batches Scan saw, in the same order (its counting depends on that).
type batchMark struct{ n, first, last int64 }

func mark(batch []plugins.Record) batchMark {
	if len(batch) == 0 {
		return batchMark{}
	}
	return batchMark{int64(len(batch)), batch[0].Offset, batch[len(batch)-1].Offset}
}

type pass struct {
	s     Settings
	now   int64
	seeds [2]maphash.Seed
	index map[keyHash]int // key hash -> its state in keys
	keys  []keyState

	scanned    []batchMark
	survived   int   // batches answered by Survivors so far
	lastOffset int64 // last offset seen, to check offset order
	started    bool
	surviving  bool // Survivors has been called: Scan is over
	closed     bool
}

// errOrder reports a pass driven against the contract; the host then keeps
// the whole batch (and, for a failed pass, everything).
var errOrder = errors.New(Name + ": batches out of order")

func (p *pass) hash(key []byte) keyHash {
	return keyHash{maphash.Bytes(p.seeds[0], key), maphash.Bytes(p.seeds[1], key)}
}

func (p *pass) check(ctx context.Context, what string) error {
	if p.closed {
		return fmt.Errorf("%s: %s on a closed pass", Name, what)
	}
	return ctx.Err()
}

// Scan implements plugins.CompactionPass: it counts records per key and
// remembers the latest tombstone per key.
func (p *pass) Scan(ctx context.Context, batch []plugins.Record) error {
	if err := p.check(ctx, "Scan"); err != nil {
		return err
	}
	if p.surviving {
		return fmt.Errorf("%w: Scan after Survivors", errOrder)
	}
	for _, r := range batch {
		if p.started && r.Offset <= p.lastOffset {
			return fmt.Errorf("%w: offset %d after %d", errOrder, r.Offset, p.lastOffset)
		}
		p.started, p.lastOffset = true, r.Offset
		if r.Key == nil {
			continue
		}
		h := p.hash(r.Key)
		i, ok := p.index[h]
		if !ok {
			i = len(p.keys)
			p.index[h] = i
			p.keys = append(p.keys, keyState{tomb: -1})
		}
		k := &p.keys[i]
		k.count++
		k.last = r.Offset
		if r.Tombstone {
			k.tomb = r.Offset
		}
	}
	p.scanned = append(p.scanned, mark(batch))
	return nil
}

// Survivors implements plugins.CompactionPass.
func (p *pass) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	if err := p.check(ctx, "Survivors"); err != nil {
		return nil, err
	}
	p.surviving = true
	if p.survived >= len(p.scanned) || p.scanned[p.survived] != mark(batch) {
		return nil, fmt.Errorf("%w: Survivors batch %d (%d records, offsets %d..%d) is not the batch Scan saw there",
			errOrder, p.survived, len(batch), mark(batch).first, mark(batch).last)
	}
	p.survived++
	out := make([]int64, 0, len(batch))
	for _, r := range batch {
		if p.keep(r) {
			out = append(out, r.Offset)
		}
	}
	return out, nil
}

// keep decides one record, in offset order.
func (p *pass) keep(r plugins.Record) bool {
	if r.Key == nil {
		return true // keyless: never dropped
	}
	i, ok := p.index[p.hash(r.Key)]
	if !ok || r.Offset > p.keys[i].last {
		return true // never scanned: keep, never guess
	}
	k := &p.keys[i]
	k.seen++
	if p.now-r.TimestampMs < p.s.MinCompactionLag {
		return true // too young to compact
	}
	newer := k.count - k.seen // records of the key after this one
	switch {
	case r.Offset < k.tomb:
		return false // a later tombstone deleted it
	case newer >= p.s.N:
		return false // N newer records of its key exist
	case r.Tombstone && p.now-r.TimestampMs > p.s.DeleteRetentionMs:
		return false // an expired tombstone
	}
	return true
}

// Close implements plugins.CompactionPass.
func (p *pass) Close() error {
	p.closed = true
	p.index, p.keys, p.scanned = nil, nil, nil
	return nil
}
