package gossip

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// Controller election without consensus.
//
// A candidate advertises (broker ID, token) in its node metadata. The best
// claim seen (highest epoch) is the controller while its holder is a live
// member still advertising that token ("sticky": a lower-ID candidate does
// not depose a live controller). When there is no live controller for
// ElectionSettle, the candidate with the lowest broker ID claims epoch =
// highest epoch seen + 1, lets the claim spread for ElectionSettle, and wins
// if no better claim arrived. A leadership ends when a better claim is seen,
// when a record or claim with a better term is seen, when this process was
// paused past PauseLimit, on Resign and on Close. Being declared dead by
// other members does not by itself end it: after a partition both sides
// declared the other dead, and only the claims say which side's controller
// is newer.

type leadership struct {
	b        *Backend
	c        claim
	lost     chan struct{}
	lostOnce sync.Once
	reason   string
}

func (l *leadership) Epoch() int64          { return l.c.Epoch }
func (l *leadership) Lost() <-chan struct{} { return l.lost }
func (l *leadership) Store() coord.Store    { return fencedStore{l} }

// Resign withdraws the candidacy: the others see the claim die with the next
// metadata update and elect another candidate.
func (l *leadership) Resign(ctx context.Context) error {
	b := l.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.loseLocked(l, "resigned")
	b.notifyLocked()
	b.mu.Unlock()
	b.advertise()
	return nil
}

// loseLocked ends l and withdraws its candidacy.
func (b *Backend) loseLocked(l *leadership, reason string) {
	l.lostOnce.Do(func() {
		l.reason = reason
		close(l.lost)
		delete(b.leaders, l)
		if b.cands[l.c.BrokerID] == l.c.Token {
			delete(b.cands, l.c.BrokerID)
			_ = b.setMetaLocked()
			if !b.closed {
				go b.advertise()
			}
		}
		b.log.Warn("controller leadership lost", "broker", l.c.BrokerID, "epoch", l.c.Epoch, "reason", reason)
	})
}

// checkLeadersLocked ends every leadership that a better claim or a higher
// epoch has overtaken.
func (b *Backend) checkLeadersLocked() {
	for l := range b.leaders {
		if err := b.fenceLocked(l); err != nil {
			b.loseLocked(l, err.Error())
		}
	}
}

// fenceLocked is nil while l may still write.
func (b *Backend) fenceLocked(l *leadership) error {
	b.checkPauseLocked()
	select {
	case <-l.lost:
		return fmt.Errorf("leadership of epoch %d ended (%s): %w", l.c.Epoch, l.reason, coord.ErrFenced)
	default:
	}
	if c := b.st.claim; c == nil {
		return fmt.Errorf("epoch %d: no claim: %w", l.c.Epoch, coord.ErrFenced)
	} else if *c != l.c {
		return fmt.Errorf("epoch %d overtaken by claim of broker %d at epoch %d: %w", l.c.Epoch, c.BrokerID, c.Epoch, coord.ErrFenced)
	}
	if mine := (term{l.c.Epoch, l.c.BrokerID}); mine.less(b.st.maxTerm) {
		return fmt.Errorf("epoch %d (broker %d) overtaken: epoch %d (broker %d) seen: %w", l.c.Epoch, l.c.BrokerID, b.st.maxTerm.Epoch, b.st.maxTerm.Ctl, coord.ErrFenced)
	}
	return nil
}

// claimLiveLocked: c's holder is this node or a live member, and still
// advertises c's token for c's broker.
func (b *Backend) claimLiveLocked(c *claim) bool {
	if c == nil {
		return false
	}
	if c.Node == b.name {
		return !b.closed && b.cands[c.BrokerID] == c.Token
	}
	m := b.members[c.Node]
	return m != nil && m.meta.Cands[c.BrokerID] == c.Token
}

// lowestCandidateLocked is the candidate with the lowest broker ID among
// this node and the live members (ties: node name, then token).
func (b *Backend) lowestCandidateLocked() (id int32, node string, token uint64, ok bool) {
	consider := func(i int32, n string, t uint64) {
		if !ok || i < id || (i == id && (n < node || (n == node && t < token))) {
			id, node, token, ok = i, n, t, true
		}
	}
	for i, t := range b.cands {
		consider(i, b.name, t)
	}
	for _, m := range b.members {
		for i, t := range m.meta.Cands {
			consider(i, m.name, t)
		}
	}
	return
}

func (b *Backend) isLowestLocked(brokerID int32, token uint64) bool {
	id, node, tok, ok := b.lowestCandidateLocked()
	return ok && id == brokerID && node == b.name && tok == token
}

// syncForElection is a Sync bounded by ElectionSettle x 4; a member that
// does not answer in time is left to gossip.
func (b *Backend) syncForElection(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 4*b.cfg.ElectionSettle)
	defer cancel()
	if err := b.Sync(sctx); err != nil {
		b.log.Debug("election sync incomplete", "err", err)
	}
}

// Controller implements coord.Backend: the best claim this node has seen if
// its holder is live here, else ErrNotFound. Two nodes on two sides of a
// partition can answer differently.
func (b *Backend) Controller(ctx context.Context) (int32, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, 0, b.closedErr("controller")
	}
	if c := b.st.claim; b.claimLiveLocked(c) {
		return c.BrokerID, c.Epoch, nil
	}
	return 0, 0, fmt.Errorf("gossip controller: %w: %w", errNoController, coord.ErrNotFound)
}

// Campaign implements coord.Backend. See the comment at the top of this file.
func (b *Backend) Campaign(ctx context.Context, brokerID int32) (coord.Leadership, error) {
	if brokerID < 0 {
		return nil, fmt.Errorf("gossip campaign: broker id %d is negative", brokerID)
	}
	token := random64()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, b.closedErr("campaign")
	}
	if _, ok := b.cands[brokerID]; ok {
		b.mu.Unlock()
		return nil, fmt.Errorf("gossip campaign: broker %d already campaigns or leads on this node: %w", brokerID, coord.ErrConflict)
	}
	b.cands[brokerID] = token
	if err := b.setMetaLocked(); err != nil {
		delete(b.cands, brokerID)
		b.mu.Unlock()
		return nil, err
	}
	b.notifyLocked()
	b.mu.Unlock()
	b.advertise()

	won := false
	defer func() {
		if won {
			return
		}
		b.mu.Lock()
		withdrawn := false
		if b.cands[brokerID] == token {
			delete(b.cands, brokerID)
			_ = b.setMetaLocked()
			withdrawn = true
		}
		closed := b.closed
		b.mu.Unlock()
		if withdrawn && !closed {
			b.advertise()
		}
	}()

	settle := b.cfg.ElectionSettle
	var vacantSince, claimedAt time.Time
	var mine *claim
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := time.Now()
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, b.closedErr("campaign")
		}
		if b.cands[brokerID] != token { // withdrawn by a session loss
			b.cands[brokerID] = token
			_ = b.setMetaLocked()
			go b.advertise()
			mine, vacantSince = nil, time.Time{}
		}
		best := b.st.claim
		switch {
		case mine != nil && best != nil && *best == *mine:
			if now.Sub(claimedAt) >= settle {
				l := &leadership{b: b, c: *mine, lost: make(chan struct{})}
				b.leaders[l] = struct{}{}
				won = true
				b.mu.Unlock()
				b.log.Info("won controller election", "broker", brokerID, "epoch", mine.Epoch)
				return l, nil
			}
		case mine != nil:
			b.log.Info("controller claim overtaken during settle", "broker", brokerID, "epoch", mine.Epoch)
			mine = nil
			vacantSince = time.Time{}
		case b.claimLiveLocked(best):
			vacantSince = time.Time{}
		default:
			if vacantSince.IsZero() {
				vacantSince = now
			}
			if now.Sub(vacantSince) >= settle && b.isLowestLocked(brokerID, token) {
				b.mu.Unlock()
				// Pull every member's state (candidacies, claims) before
				// claiming, and push the claim to all of them after, so that
				// two concurrent claimers on a healthy network see each
				// other's claim before either returns.
				b.syncForElection(ctx)
				b.mu.Lock()
				if b.closed || b.claimLiveLocked(b.st.claim) || !b.isLowestLocked(brokerID, token) {
					b.mu.Unlock()
					continue
				}
				c := claim{Epoch: b.st.maxTerm.Epoch + 1, BrokerID: brokerID, Node: b.name, Token: token}
				b.st.applyClaim(c)
				b.queueLocked("c", encodeMsg(msgClaim, c))
				b.checkLeadersLocked()
				b.notifyLocked()
				b.mu.Unlock()
				b.log.Info("claiming controller", "broker", brokerID, "epoch", c.Epoch)
				b.syncForElection(ctx)
				mine, claimedAt = &c, time.Now()
				continue
			}
		}
		wake := b.changed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.done:
			return nil, b.closedErr("campaign")
		case <-wake:
		case <-time.After(settle / 4):
		}
	}
}

// fencedStore is a Leadership's Store: writes carry the leadership's epoch
// and are refused (ErrFenced) once this node has seen a better claim or a
// higher epoch, or the leadership ended. The check is atomic with the write
// on this node only; a node that has not yet heard of the newer epoch (the
// other side of a partition) cannot refuse.
type fencedStore struct{ l *leadership }

func (f fencedStore) Get(ctx context.Context, key string) (coord.Record, error) {
	return f.l.b.Get(ctx, key)
}

func (f fencedStore) List(ctx context.Context, prefix string) ([]coord.Record, error) {
	return f.l.b.List(ctx, prefix)
}

func (f fencedStore) Create(ctx context.Context, key string, value []byte) (coord.Version, error) {
	return f.l.b.write(ctx, "create", key, value, coord.NoVersion, opCreate, f.l)
}

func (f fencedStore) CompareAndSet(ctx context.Context, key string, value []byte, expect coord.Version) (coord.Version, error) {
	return f.l.b.write(ctx, "compare-and-set", key, value, expect, opSet, f.l)
}

func (f fencedStore) Delete(ctx context.Context, key string, expect coord.Version) error {
	_, err := f.l.b.write(ctx, "delete", key, nil, expect, opDel, f.l)
	return err
}

func (f fencedStore) Watch(ctx context.Context, prefix string) (<-chan coord.Event, error) {
	return f.l.b.Watch(ctx, prefix)
}
