// Package coordtest is the one conformance suite that every coordination
// backend passes: coord/etcd, coord/zk and coord/gossip run it from their own
// tests with a few lines of harness:
//
//	func TestMain(m *testing.M) {
//		coordtest.MaybeChild(openFromSpec) // the suite's killed registrants
//		os.Exit(m.Run())
//	}
//
//	func TestConformance(t *testing.T) { coordtest.Run(t, coordtest.Harness{...}) }
//
// Run checks: get/create/delete/compare-and-set with typed errors and
// versions never reused; List by prefix, sorted; concurrent compare-and-set
// with one winner per round; watches that start with a resync snapshot and
// deliver every change in order (the writers' successful writes form one
// version chain per key, which the watcher must walk link by link, or say
// EventResync) and end equal to the store; a SIGKILLed child registrant
// leaving WatchBrokers within the session time-out (timed and logged); one
// controller at a time, higher epochs for later winners, Lost on Resign and
// Close, stale leaderships' writes refused; a SIGKILLed child controller
// replaced in time; a porcupine linearizability check (CheckLinearizable,
// also usable on its own, e.g. during faults); a watch surviving
// Harness.Restart. What a backend's Capabilities do not claim is checked in
// a weaker form with a log line naming the promise not made.
package coordtest

import (
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// Harness tells the suite how to reach one running backend cluster.
type Harness struct {
	// Name of the backend, for messages.
	Name string
	// New returns a new client, with its own session, of the cluster under
	// test. The suite closes it (and t.Cleanup may close it again: Close must
	// be idempotent).
	New func(t *testing.T) coord.Backend
	// ChildSpec is passed to the function given to MaybeChild in a child
	// process (the test binary run again), which opens a client of the same
	// cluster from it; the suite kills that child with SIGKILL to check that a
	// dead registrant disappears.
	ChildSpec string
	// SessionTimeout is the configured time within which a dead or cut-off
	// client's registration and leadership must disappear.
	SessionTimeout time.Duration
	// Restart, if set, makes every client lose its connection to the backend
	// server and come back (kill -9 the server and start it again; for gossip,
	// whatever is the closest thing). Watches must survive it.
	Restart func(t *testing.T)
}
