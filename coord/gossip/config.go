package gossip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures one gossip node. Start from DefaultConfig (memberlist's
// LAN profile) or TestConfig (fast failure detection for loopback tests),
// set fields, then Open.
type Config struct {
	// NodeName is the memberlist node name; it must be unique among live
	// members. Empty: "brokkr-<hostname>-<random>", fresh for every Open, so
	// that a broker restarted on a new port is never refused as a name
	// conflict with its own not-yet-reaped previous incarnation. The broker
	// ID is not the node name: it travels in the node's metadata (Register),
	// because one node may exist before it registers.
	NodeName string
	// BindAddr and BindPort are where the node listens, UDP and TCP on the
	// same port. BindPort 0 picks a free port.
	BindAddr string
	BindPort int
	// AdvertiseAddr/AdvertisePort are what other members dial; empty/0 means
	// the bind address and the port actually bound.
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are "host:port" of existing members to join at Open.
	Seeds []string
	// Bootstrap allows this node to start a new cluster alone when no seed
	// can be joined (or Seeds is empty). Exactly one node of a new cluster
	// should set it (cmd/brokkr: the node whose own address is the first
	// seed). A node without Bootstrap that joins no seed within JoinTimeout
	// fails Open, so a mistyped seed list cannot silently split the cluster.
	Bootstrap bool
	// JoinTimeout bounds how long Open retries the seeds.
	JoinTimeout time.Duration

	// Failure detection (memberlist's SWIM parameters). A silent node is
	// suspected after a failed probe (ProbeInterval, ProbeTimeout) and
	// declared dead after the suspicion time-out:
	// SuspicionMult x max(1, log10(N)) x ProbeInterval when enough members
	// confirm, up to SuspicionMaxTimeoutMult times that when they do not.
	// See FailureDetection.
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier: a node that misses acks slows its own probing
	// by up to this factor (Lifeguard); 0 disables that.
	AwarenessMaxMultiplier int
	// GossipInterval/GossipNodes: how often and to how many members queued
	// broadcasts (record changes, claims) are sent; RetransmitMult x
	// log10(N+1) is how many times each is retransmitted.
	GossipInterval time.Duration
	GossipNodes    int
	RetransmitMult int
	// PushPullInterval: full state exchange with one random member (the
	// anti-entropy that heals lost broadcasts and partitions).
	PushPullInterval time.Duration

	// ReconnectInterval: how often seeds and recently dead members that are
	// not alive are dialled again, so that a healed partition merges even
	// after memberlist has stopped gossiping to the dead side.
	ReconnectInterval time.Duration
	// ReconnectTimeout: how long a dead member's address is retried.
	ReconnectTimeout time.Duration
	// TombstoneTTL: how long a deleted record's tombstone is kept. A member cut off for longer may bring a deleted record back.
	TombstoneTTL time.Duration
	// ElectionSettle: how long a candidate waits, once there is no live
	// controller, before the lowest-ID candidate claims (lets concurrent
	// candidacies and the previous claim spread). Also the time a new claim
	// is left to spread before Campaign returns.
	ElectionSettle time.Duration
	// PauseLimit: if this process itself stops running for longer (SIGSTOP,
	// VM pause), it assumes it was declared dead: its leaderships end at
	// once, before it can act on stale state. 0 disables the check.
	PauseLimit time.Duration

	// StateFile, if set, keeps the replica (records, tombstones, the best
	// claim and the highest term) on disk: Open loads it, and every change
	// is written there within about 100 ms (write to a temporary file,
	// fsync, rename). Without it everything lives in memory and is lost
	// when every node stops at once; a restarted node then also starts
	// epochs at 1.
	StateFile string

	// Logger receives the backend's and memberlist's messages; nil discards.
	Logger *slog.Logger

	// transport, for tests only, wraps the network transport (fault injection).
	transport func(memberlist.Transport) memberlist.Transport
}

// DefaultConfig is memberlist's LAN profile (DefaultLANConfig) with Brokkr's
// additions. With N ≤ 10 members a killed node is typically declared dead in
// 5-6 s and at worst about 25 s (see FailureDetection).
func DefaultConfig() Config {
	lan := memberlist.DefaultLANConfig()
	c := Config{
		BindAddr:                "0.0.0.0",
		BindPort:                7946,
		JoinTimeout:             10 * time.Second,
		ProbeInterval:           lan.ProbeInterval,           // 1 s
		ProbeTimeout:            lan.ProbeTimeout,            // 500 ms
		SuspicionMult:           lan.SuspicionMult,           // 4
		SuspicionMaxTimeoutMult: lan.SuspicionMaxTimeoutMult, // 6
		AwarenessMaxMultiplier:  lan.AwarenessMaxMultiplier,  // 8
		GossipInterval:          lan.GossipInterval,          // 200 ms
		GossipNodes:             lan.GossipNodes,             // 3
		RetransmitMult:          lan.RetransmitMult,          // 4
		PushPullInterval:        lan.PushPullInterval,        // 30 s
		ReconnectInterval:       10 * time.Second,
		ReconnectTimeout:        6 * time.Hour,
		TombstoneTTL:            24 * time.Hour,
		ElectionSettle:          time.Second,
	}
	c.PauseLimit = c.minSuspicion(1)
	return c
}

// TestConfig is a fast profile for loopback tests and benchmarks on one
// machine: a killed node is declared dead in about 1.5 s, at worst about
// 3.5 s. Too aggressive for a real network (a 200 ms hiccup starts
// suspicion) and not in the safe range below.
func TestConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.JoinTimeout = 5 * time.Second
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 200 * time.Millisecond
	c.SuspicionMult = 5
	c.SuspicionMaxTimeoutMult = 3
	c.AwarenessMaxMultiplier = 2
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.ReconnectInterval = 500 * time.Millisecond
	c.ReconnectTimeout = 10 * time.Minute
	c.TombstoneTTL = 10 * time.Minute
	c.ElectionSettle = 250 * time.Millisecond
	c.PauseLimit = c.minSuspicion(1)
	return c
}

// minSuspicion is memberlist's suspicion time-out for n members (the
// fastest a silent node is declared dead, after a failed probe).
func (c Config) minSuspicion(n int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(c.SuspicionMult) * scale * float64(c.ProbeInterval))
}

// FailureDetection returns, for a cluster of n members, the typical time
// from a node's death to every member declaring it dead (one probe round,
// then the minimum suspicion time-out, reached when enough members confirm)
// and the worst case without enough confirmations (the maximum suspicion
// time-out), not counting Lifeguard's probe slow-down on unhealthy nodes.
func (c Config) FailureDetection(n int) (typical, worst time.Duration) {
	probe := c.ProbeInterval + c.ProbeTimeout
	min := c.minSuspicion(n)
	return probe + min, 2*probe + time.Duration(c.SuspicionMaxTimeoutMult)*min
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		bad("BindAddr %q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("BindPort %d out of range 0-65535", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		bad("AdvertisePort %d out of range 0-65535", c.AdvertisePort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		bad("AdvertiseAddr %q is not an IP address", c.AdvertiseAddr)
	}
	for _, s := range c.Seeds {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" {
			bad("seed %q is not host:port", s)
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			bad("seed %q: port out of range 1-65535", s)
		}
	}
	if len(c.Seeds) == 0 && !c.Bootstrap {
		bad("no Seeds and Bootstrap is false: a node must either join seeds or be allowed to start a cluster alone")
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			bad("%s must be positive, got %v", name, d)
		}
	}
	pos("JoinTimeout", c.JoinTimeout)
	pos("ProbeInterval", c.ProbeInterval)
	pos("ProbeTimeout", c.ProbeTimeout)
	pos("GossipInterval", c.GossipInterval)
	pos("PushPullInterval", c.PushPullInterval)
	pos("ReconnectInterval", c.ReconnectInterval)
	pos("ReconnectTimeout", c.ReconnectTimeout)
	pos("TombstoneTTL", c.TombstoneTTL)
	pos("ElectionSettle", c.ElectionSettle)
	if c.ProbeTimeout > c.ProbeInterval {
		bad("ProbeTimeout %v exceeds ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 {
		bad("SuspicionMult must be at least 1, got %d", c.SuspicionMult)
	}
	if c.SuspicionMaxTimeoutMult < 1 {
		bad("SuspicionMaxTimeoutMult must be at least 1, got %d", c.SuspicionMaxTimeoutMult)
	}
	if c.AwarenessMaxMultiplier < 0 {
		bad("AwarenessMaxMultiplier must not be negative, got %d", c.AwarenessMaxMultiplier)
	}
	if c.GossipNodes < 1 || c.RetransmitMult < 1 {
		bad("GossipNodes and RetransmitMult must be at least 1, got %d and %d", c.GossipNodes, c.RetransmitMult)
	}
	if c.PauseLimit < 0 {
		bad("PauseLimit must not be negative, got %v", c.PauseLimit)
	}
	if c.TombstoneTTL > 0 && c.ReconnectInterval > 0 && c.TombstoneTTL < 2*c.PushPullInterval {
		bad("TombstoneTTL %v is shorter than two PushPullIntervals (%v): deletes could be undone by anti-entropy", c.TombstoneTTL, 2*c.PushPullInterval)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("gossip config: %w", errors.Join(errs...))
}

func defaultNodeName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "brokkr-" + strings.ReplaceAll(host, "/", "-") + "-" + hex.EncodeToString(b[:])
}

// ParseSeeds splits the seed list of a "gossip://host:port,host:port" URL
// (the scheme is optional) into Seeds.
func ParseSeeds(s string) ([]string, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "gossip://")
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("gossip seeds: %q is not host:port: %v", p, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("gossip seeds: none in %q", s)
	}
	return out, nil
}
