package zk

import (
	"testing"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

// TestConformance runs the suite every backend passes against a real
// ZooKeeper server; Restart kills it with SIGKILL and starts it again on the
// same port and data.
func TestConformance(t *testing.T) {
	srv := zktest.Start(t)
	coordtest.Run(t, coordtest.Harness{
		Name:           "zookeeper",
		New:            func(t *testing.T) coord.Backend { return open(t, srv.Addr(), "/conformance", testSession) },
		ChildSpec:      childSpec(srv.Addr(), "/conformance", testSession),
		SessionTimeout: testSession,
		Restart:        func(t *testing.T) { srv.Restart() },
	})
}
