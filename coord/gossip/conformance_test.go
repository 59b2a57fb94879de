package gossip

import (
	"fmt"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
)

// TestConformance runs the shared coord suite against real memberlist nodes
// on 127.0.0.x: every client is a new node joining an anchor node; the
// killed registrants are child processes (this binary run again). Restart
// cuts every node off from every other for longer than the failure
// detection time and heals the network: each side declares the others
// dead, then the reconnect loop and push/pull merge them again.
func TestConformance(t *testing.T) {
	c := newCluster(t, TestConfig)
	anchor := c.add(nil)
	cfg := TestConfig()
	typical, worst := cfg.FailureDetection(5)
	t.Logf("test profile: failure detection typical %v, worst %v; pause limit %v", typical, worst, cfg.PauseLimit)
	coordtest.Run(t, coordtest.Harness{
		Name:           "gossip",
		New:            func(t *testing.T) coord.Backend { return c.add(nil) },
		ChildSpec:      "test;" + anchor.Addr(),
		SessionTimeout: worst,
		Restart: func(t *testing.T) {
			c.f.isolate(true)
			nodes := c.open()
			eventually(t, 3*worst+10*time.Second, "every node has declared every other dead", func() error {
				for _, n := range nodes {
					if m := memberNames(n); len(m) > 0 {
						return fmt.Errorf("%s still sees %v", n.Name(), m)
					}
				}
				return nil
			})
			c.f.heal()
			waitMembers(t, 3*worst+10*time.Second, nodes...)
		},
	})
}
