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
// A pass is two-phase, as the host drives it: Scan sees records in offset
// order and counts them per key; Survivors then sees records in offset
// order again (batched as the host likes) and keeps a scanned record when
// fewer than N records of its key follow it. Per key the pass stores a
// 128-bit hash of the key and three integers, never the key's bytes or any
// value, so its memory is about 60 bytes per distinct key whatever N is.
//
// Exact "latest N" needs Scan to see every record Survivors sees. Kafka's
// cleaner scans only the dirty section (records since the last cleaning);
// the policy asks for a full scan (FullScan, plugins.FullScanner), which
// Brokkr's cleaner grants every plugin policy. Shown a record below the
// scanned section anyway, the policy drops it only when that is certain
// (N newer records of its key, a later tombstone, or an expired tombstone)
// and keeps it otherwise: never more deleted than latest-N would delete.
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

// FullScan implements plugins.FullScanner: exact latest-N needs Scan to see
// every record Survivors will see, not only the dirty section.
func (Policy) FullScan() bool { return true }

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

type pass struct {
	s     Settings
	now   int64
	seeds [2]maphash.Seed
	index map[keyHash]int // key hash -> its state in keys
	keys  []keyState

	scanned       bool  // Scan saw at least one record
	firstScanned  int64 // lowest offset Scan saw
	lastScanned   int64 // highest offset Scan saw
	survivorsSeen bool  // Survivors saw at least one record
	lastSurvivor  int64 // highest offset Survivors saw
	surviving     bool  // Survivors has been called: Scan is over
	closed        bool
}

// errOrder reports a pass driven against the contract; the host then keeps
// everything.
var errOrder = errors.New(Name + ": records out of order")

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
// remembers the latest tombstone per key. Records must come in ascending
// offset order across all Scan calls; batch boundaries do not matter.
func (p *pass) Scan(ctx context.Context, batch []plugins.Record) error {
	if err := p.check(ctx, "Scan"); err != nil {
		return err
	}
	if p.surviving {
		return fmt.Errorf("%w: Scan after Survivors", errOrder)
	}
	for _, r := range batch {
		if p.scanned && r.Offset <= p.lastScanned {
			return fmt.Errorf("%w: Scan offset %d after %d", errOrder, r.Offset, p.lastScanned)
		}
		if !p.scanned {
			p.scanned, p.firstScanned = true, r.Offset
		}
		p.lastScanned = r.Offset
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
	return nil
}

// Survivors implements plugins.CompactionPass. Records must come in
// ascending offset order across all Survivors calls (any batching), and
// every scanned record must come exactly once.
func (p *pass) Survivors(ctx context.Context, batch []plugins.Record) ([]int64, error) {
	if err := p.check(ctx, "Survivors"); err != nil {
		return nil, err
	}
	p.surviving = true
	out := make([]int64, 0, len(batch))
	for _, r := range batch {
		if p.survivorsSeen && r.Offset <= p.lastSurvivor {
			return nil, fmt.Errorf("%w: Survivors offset %d after %d", errOrder, r.Offset, p.lastSurvivor)
		}
		p.survivorsSeen, p.lastSurvivor = true, r.Offset
		keep, err := p.keep(r)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, r.Offset)
		}
	}
	return out, nil
}

// keep decides one record, in offset order.
func (p *pass) keep(r plugins.Record) (bool, error) {
	if r.Key == nil {
		return true, nil // keyless: never dropped
	}
	young := p.now-r.TimestampMs < p.s.MinCompactionLag
	expired := r.Tombstone && p.now-r.TimestampMs > p.s.DeleteRetentionMs
	i, known := p.index[p.hash(r.Key)]
	switch {
	case !p.scanned || r.Offset > p.lastScanned:
		return true, nil // after everything scanned: keep, never guess
	case r.Offset < p.firstScanned:
		// Below the scanned section (a host that, like Kafka's cleaner,
		// scans only the dirty section): every scanned record of the key
		// is newer. Drop only what is certain to go.
		switch {
		case young:
			return true, nil
		case expired:
			return false, nil
		case !known:
			return true, nil
		}
		k := p.keys[i]
		return !(k.count >= p.s.N || r.Offset < k.tomb), nil
	case !known || r.Offset > p.keys[i].last:
		return false, fmt.Errorf("%w: Survivors record at offset %d was not shown to Scan", errOrder, r.Offset)
	}
	k := &p.keys[i]
	k.seen++
	if k.seen > k.count {
		return false, fmt.Errorf("%w: Survivors shows more records of a key than Scan (offset %d)", errOrder, r.Offset)
	}
	newer := k.count - k.seen // records of the key after this one
	switch {
	case young:
		return true, nil // too young to compact
	case r.Offset < k.tomb:
		return false, nil // a later tombstone deleted it
	case newer >= p.s.N:
		return false, nil // N newer records of its key exist
	case expired:
		return false, nil // an expired tombstone
	}
	return true, nil
}

// Close implements plugins.CompactionPass.
func (p *pass) Close() error {
	p.closed = true
	p.index, p.keys = nil, nil
	return nil
}
