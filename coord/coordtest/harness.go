// Package coordtest is the one conformance suite that every coordination
// backend passes: coord/etcd, coord/zk and coord/gossip run it from their own
// tests with a few lines of harness.
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
