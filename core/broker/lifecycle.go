package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/core/config"
	"github.com/brokkr/brokkr/core/controller"
	"github.com/brokkr/brokkr/netio"
)

// logStore is what the broker needs of the log manager (core/log).
type logStore interface {
	// Open returns a partition's log, creating it when missing and
	// recovering it when present.
	Open(topic string, partition int32, topicID [16]byte, cfg config.TopicConfig) (partLog, error)
	// SetConfig applies a topic's new effective config to its open logs.
	SetConfig(topic string, cfg config.TopicConfig)
	// DeleteTopic removes every local partition of topic, data included.
	DeleteTopic(topic string) error
	// Close flushes, writes checkpoints and the clean-shutdown marker.
	Close() error
}

// Start opens the logs (recovering them), binds the listeners, registers
// the broker with the coordination backend, campaigns for controller, and
// serves. It returns once the broker is ready or failed to start.
func (b *Broker) Start(ctx context.Context) error {
	if b.Coord == nil {
		return errors.New("broker: Coord is nil: open a coordination backend first")
	}
	if err := b.Config.Validate(); err != nil {
		return err
	}
	b.log = b.Logger
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b.parts = map[tp]*partition{}
	b.done = make(chan struct{})
	b.groups = newGroupCoord(b)
	started := time.Now()

	logs, err := b.openLogStore()
	if err != nil {
		return err
	}
	b.logs = logs

	listeners, err := netio.ParseListeners(strings.Join(b.Config.Listeners, ","), nil)
	if err != nil {
		return err
	}
	adv, err := netio.ParseAdvertisedListeners(strings.Join(b.Config.AdvertisedListeners, ","), listeners, nil)
	if err != nil {
		return err
	}
	ncfg := netio.DefaultConfig()
	ncfg.Listeners = listeners
	ncfg.Handler = b
	ncfg.MaxRequestBytes = b.Config.SocketRequestMaxBytes
	ncfg.IdleTimeout = time.Duration(b.Config.ConnectionsMaxIdleMs) * time.Millisecond
	if b.Config.ConnectionsMaxIdleMs < 0 {
		ncfg.IdleTimeout = 0
	}
	ncfg.Logger = b.log
	ncfg.DisableSendfile = !b.Config.NetworkSendfile
	srv, err := netio.NewServer(ncfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		_ = b.logs.Close()
		return err
	}
	b.srv = srv
	host, _ := os.Hostname()
	b.advertised = netio.FillAdvertised(adv, srv.Addrs(), host)

	fail := func(err error) error {
		_ = srv.Close()
		_ = b.logs.Close()
		return err
	}
	if err := b.ensureClusterID(ctx); err != nil {
		return fail(fmt.Errorf("coordination backend: %w", err))
	}
	var eps []string
	for _, a := range b.advertised {
		eps = append(eps, a.String())
	}
	reg, err := b.register(ctx, coord.BrokerInfo{ID: b.Config.NodeID, Rack: b.Config.Rack, Endpoints: eps})
	if err != nil {
		return fail(fmt.Errorf("registering broker %d: %w", b.Config.NodeID, err))
	}
	b.reg = reg
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.keepRegistered(runCtx, coord.BrokerInfo{ID: b.Config.NodeID, Rack: b.Config.Rack, Endpoints: eps})
	if err := b.watchBrokers(runCtx); err != nil {
		return fail(err)
	}
	go b.campaignLoop(runCtx)
	go b.retentionLoop(runCtx)
	b.startCleaner(runCtx)

	// Host the partitions assigned to this broker.
	if err := b.reconcile(ctx); err != nil {
		return fail(err)
	}
	// A single broker wins its campaign at once; wait a little for any
	// controller so the first admin request does not bounce.
	deadline := time.Now().Add(5 * time.Second)
	for b.controllerID(ctx) < 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// The group coordinator finds or creates __consumer_offsets now (so
	// FindCoordinator answers once the broker is ready) and loads its
	// shards in the background; until then group requests get
	// COORDINATOR_LOAD_IN_PROGRESS.
	shards, err := b.groups.setup(ctx)
	go b.groups.run(runCtx, shards, err == nil)
	go b.groups.retentionLoop(runCtx)
	b.readyIn = time.Since(started)
	b.log.Info("broker ready", "node", b.Config.NodeID, "cluster", b.clusterID, "in", b.readyIn)
	return nil
}

// register registers this broker. After a crash (kill -9) the previous
// run's registration lives on until its session expires; registering
// waits for that, as a restarted Kafka broker waits for its old ephemeral
// znode, rather than failing or taking over a registration that might
// belong to another live broker with the same id.
func (b *Broker) register(ctx context.Context, info coord.BrokerInfo) (coord.Registration, error) {
	logged := false
	for {
		reg, err := b.Coord.Register(ctx, info)
		if err == nil || !errors.Is(err, coord.ErrConflict) {
			return reg, err
		}
		if !logged {
			b.log.Warn("broker id is still registered, probably by this broker before a crash; waiting for that session to expire", "node", info.ID)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up waiting for the earlier registration to expire: %v)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// keepRegistered registers the broker again whenever its registration is
// lost (an etcd lease that expired while the broker was cut off; coord/zk
// re-registers by itself and never closes Lost). Until then the broker is
// missing from the live set, which is what the others must see while it
// is unreachable.
func (b *Broker) keepRegistered(ctx context.Context, info coord.BrokerInfo) {
	for {
		b.mu.RLock()
		reg := b.reg
		b.mu.RUnlock()
		select {
		case <-ctx.Done():
			return
		case <-reg.Lost():
		}
		b.log.Warn("broker registration lost; registering again", "node", info.ID)
		for {
			r, err := b.register(ctx, info)
			if err == nil {
				b.mu.Lock()
				b.reg = r
				b.mu.Unlock()
				b.log.Info("broker registered again", "node", info.ID)
				break
			}
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("registering again failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
		}
	}
}

// ReadyIn is how long Start took.
func (b *Broker) ReadyIn() time.Duration { return b.readyIn }

// Addrs are the bound listener addresses by listener name.
func (b *Broker) Addrs() map[string]net.Addr { return b.srv.Addrs() }

// Advertised are the endpoints registered for clients.
func (b *Broker) Advertised() []string {
	var out []string
	for _, a := range b.advertised {
		out = append(out, a.String())
	}
	return out
}

// ClusterID is the cluster's id.
func (b *Broker) ClusterID() string { return b.clusterID }

// Stats are the broker's request counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// PartitionCount is the number of partitions this broker hosts.
func (b *Broker) PartitionCount() int {
	b.pmu.RLock()
	defer b.pmu.RUnlock()
	return len(b.parts)
}

// NetMetrics are the network counters.
func (b *Broker) NetMetrics() netio.Metrics { return b.srv.Metrics() }

// Close shuts down cleanly: stop accepting, finish in-flight requests
// (bounded by ctx), give up controllership and the registration, then
// flush the logs and write their checkpoints and clean-shutdown marker.
func (b *Broker) Close(ctx context.Context) error {
	var errs []error
	b.closeOnce.Do(func() {
		if b.done != nil {
			close(b.done)
		}
	})
	if b.groups != nil {
		b.groups.close()
	}
	if b.srv != nil {
		if err := b.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("network shutdown: %w", err))
		}
	}
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Lock()
	l := b.leadership
	b.leadership = nil
	b.mu.Unlock()
	if l != nil {
		_ = l.Resign(ctx)
	}
	b.mu.RLock()
	reg := b.reg
	b.mu.RUnlock()
	if reg != nil {
		_ = reg.Close(ctx)
	}
	if b.logs != nil {
		if err := b.logs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing logs: %w", err))
		}
	}
	return errors.Join(errs...)
}

// campaignLoop keeps campaigning for controller until ctx ends.
func (b *Broker) campaignLoop(ctx context.Context) {
	for ctx.Err() == nil {
		l, err := b.Coord.Campaign(ctx, b.Config.NodeID)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("controller campaign failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		b.log.Info("this broker is the controller", "epoch", l.Epoch())
		b.mu.Lock()
		b.leadership = l
		b.mu.Unlock()
		m := &controller.Metadata{Store: l.Store(), ControllerEpoch: l.Epoch()}
		if err := b.finishPendingDeletes(ctx, m); err != nil {
			b.log.Error("finishing interrupted topic deletions", "err", err)
		}
		select {
		case <-l.Lost():
			b.log.Warn("controllership lost")
		case <-ctx.Done():
		}
		b.mu.Lock()
		if b.leadership == l {
			b.leadership = nil
		}
		b.mu.Unlock()
	}
}

// reconcile opens the logs of every partition assigned to this broker.
func (b *Broker) reconcile(ctx context.Context) error {
	topics, err := b.topics(ctx)
	if err != nil {
		return fmt.Errorf("reading topic metadata: %w", err)
	}
	for _, t := range topics {
		if t.Deleting {
			continue
		}
		if err := b.ensureLocalLogs(t); err != nil {
			return fmt.Errorf("opening the logs of topic %s: %w", t.Name, err)
		}
	}
	return nil
}

// ensureLocalLogs opens (creating if needed) the logs of t's partitions
// that this broker hosts.
func (b *Broker) ensureLocalLogs(t controller.Topic) error {
	cfg, err := b.Config.Topic(t.Configs)
	if err != nil {
		b.log.Warn("topic has invalid config overrides; using defaults for them", "topic", t.Name, "err", err)
	}
	for _, p := range t.Partitions {
		hosted := false
		for _, r := range p.Replicas {
			hosted = hosted || r == b.Config.NodeID
		}
		if !hosted || b.partitionFor(t.Name, p.Index) != nil {
			continue
		}
		l, err := b.logs.Open(t.Name, p.Index, t.ID, cfg)
		if err != nil {
			return err
		}
		part := &partition{topic: t.Name, index: p.Index, topicID: t.ID, log: l, producers: newProducerState(), leaderEpoch: p.LeaderEpoch, isrSize: len(p.ISR), cfg: cfg, overrides: t.Configs}
		if err := part.rebuildProducers(); err != nil {
			b.log.Warn("rebuilding idempotent producer state", "topic", t.Name, "partition", p.Index, "err", err)
		}
		// Single replica: everything in the log is committed.
		l.SetHighWatermark(l.EndOffset())
		b.pmu.Lock()
		b.parts[tp{t.Name, p.Index}] = part
		b.pmu.Unlock()
	}
	return nil
}

// deleteLocalLogs forgets and removes every local partition of topic.
func (b *Broker) deleteLocalLogs(topic string) error {
	b.pmu.Lock()
	for k := range b.parts {
		if k.topic == topic {
			delete(b.parts, k)
		}
	}
	b.pmu.Unlock()
	return b.logs.DeleteTopic(topic)
}

// applyTopicConfig makes a topic's new overrides take effect at once.
func (b *Broker) applyTopicConfig(topic string, overrides map[string]string) error {
	cfg, err := b.Config.Topic(overrides)
	if err != nil {
		return err
	}
	b.pmu.RLock()
	for k, p := range b.parts {
		if k.topic == topic {
			p.cfgMu.Lock()
			p.cfg, p.overrides = cfg, overrides
			p.cfgMu.Unlock()
		}
	}
	b.pmu.RUnlock()
	b.logs.SetConfig(topic, cfg)
	return nil
}

// rebuildProducers reloads the idempotent-producer state from the log's
// batch headers, so duplicates are still caught after a restart.
func (p *partition) rebuildProducers() error {
	return p.log.ProducerBatches(func(pid int64, epoch int16, firstSeq, lastSeq int32, firstOff, lastOff, ts int64) {
		p.producers.record(pid, epoch, batchMeta{firstSeq: firstSeq, lastSeq: lastSeq, firstOffset: firstOff, lastOffset: lastOff, timestamp: ts})
	})
}
