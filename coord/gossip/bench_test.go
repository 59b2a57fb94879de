package gossip

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// Benchmarks for docs/benchmarks.md ("Coordination — Gossip"):
//
//	go test ./coord/gossip -run '^$' -bench . -benchtime 3x -p 1
//
// Failover and fan-out take their time from the gossip timings, not the CPU;
// they are reported as custom metrics (ms), and ns/op is not meaningful.

// BenchmarkFailover: a child process (this binary run again) is the
// controller and a registered broker; it is SIGKILLed, and we time how long
// until it leaves another node's WatchBrokers and until another node's
// Campaign wins. One iteration per kill.
func BenchmarkFailover(b *testing.B) {
	for _, p := range []struct {
		name string
		cfg  func() Config
	}{{"default", DefaultConfig}, {"test", TestConfig}} {
		b.Run(p.name, func(b *testing.B) {
			c := newCluster(b, p.cfg)
			n1, n2 := c.add(nil), c.add(nil)
			waitMembers(b, 30*time.Second, n1, n2)
			typical, worst := p.cfg().FailureDetection(3)
			ctx := context.Background()
			var dead, ctrl []time.Duration
			for i := 0; i < b.N; i++ {
				id := 100 + i
				child := startFreezeChild(b, p.name+";"+n1.Addr(), id)
				child.next(b, 60*time.Second) // READY
				bw, cancel := brokersOf(b, n1)
				eventually(b, 30*time.Second, "child registered and controller", func() error {
					if _, ok := bw.has(int32(id)); !ok {
						return fmt.Errorf("broker %d not live", id)
					}
					if cid, _, err := n2.Controller(ctx); err != nil || cid != int32(id) {
						return fmt.Errorf("controller %d, %v", cid, err)
					}
					return nil
				})
				won := make(chan time.Time, 1)
				var l coord.Leadership
				go func() {
					var err error
					l, err = n2.Campaign(ctx, 1)
					if err != nil {
						b.Errorf("campaign: %v", err)
					}
					won <- time.Now()
				}()
				killed := time.Now()
				_ = child.cmd.Process.Kill()
				eventually(b, 2*worst+30*time.Second, "killed broker leaves the live set", func() error {
					if _, ok := bw.has(int32(id)); ok {
						return fmt.Errorf("broker %d still live", id)
					}
					return nil
				})
				at, _ := bw.has(-1)
				dead = append(dead, at.Sub(killed))
				select {
				case w := <-won:
					ctrl = append(ctrl, w.Sub(killed))
				case <-time.After(2*worst + 30*time.Second):
					b.Fatalf("no new controller")
				}
				cancel()
				if l != nil {
					_ = l.Resign(ctx)
				}
			}
			b.ReportMetric(mean(dead), "ms-to-dead")
			b.ReportMetric(mean(ctrl), "ms-to-controller")
			b.Logf("%s profile, 3 members: kill -9 -> gone %v, new controller %v (documented typical %v, worst %v)", p.name, dead, ctrl, typical, worst)
		})
	}
}

func mean(ds []time.Duration) float64 {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return float64(s.Milliseconds()) / float64(max(len(ds), 1))
}

// brokerView follows WatchBrokers; has reports whether id is live and when
// the latest delivery came.
type brokerView struct {
	ch   <-chan []coord.BrokerInfo
	last []coord.BrokerInfo
	at   time.Time
}

func brokersOf(tb testing.TB, n *Backend) (*brokerView, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := n.WatchBrokers(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return &brokerView{ch: ch}, cancel
}

func (v *brokerView) has(id int32) (time.Time, bool) {
	for {
		select {
		case l, ok := <-v.ch:
			if ok {
				v.last, v.at = l, time.Now()
				continue
			}
		default:
		}
		break
	}
	for _, x := range v.last {
		if x.ID == id {
			return v.at, true
		}
	}
	return v.at, false
}

// BenchmarkCAS: compare-and-set throughput on one node of a three-node
// cluster (each write is applied locally and queued for gossip), on one
// record and round-robin over 1,000; Get on one record as the reference.
func BenchmarkCAS(b *testing.B) {
	c := newCluster(b, TestConfig)
	n := c.add(nil)
	c.add(nil)
	c.add(nil)
	ctx := context.Background()
	val := []byte(`{"leader":1,"leader_epoch":7,"isr":[1,2,3],"version":1}`)
	run := func(b *testing.B, keys int) {
		vers := make([]coord.Version, keys)
		prefix := fmt.Sprintf("/bench/%d/%d/", keys, time.Now().UnixNano())
		for i := range vers {
			v, err := n.Create(ctx, prefix+strconv.Itoa(i), val)
			if err != nil {
				b.Fatal(err)
			}
			vers[i] = v
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			k := i % keys
			v, err := n.CompareAndSet(ctx, prefix+strconv.Itoa(k), val, vers[k])
			if err != nil {
				b.Fatal(err)
			}
			vers[k] = v
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cas/s")
	}
	b.Run("one-record", func(b *testing.B) { run(b, 1) })
	b.Run("1000-records", func(b *testing.B) { run(b, 1000) })
	if _, err := n.Create(ctx, "/bench/get", val); err != nil {
		b.Fatal(err)
	}
	b.Run("reference-get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := n.Get(ctx, "/bench/get"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "get/s")
	})
}

// BenchmarkWatchFanout: eleven nodes; a write on one must reach a watcher on
// each of the ten others. Reported: mean and worst time until the tenth
// watcher has the write.
func BenchmarkWatchFanout(b *testing.B) {
	for _, p := range []struct {
		name string
		cfg  func() Config
	}{{"default", DefaultConfig}, {"test", TestConfig}} {
		b.Run(p.name, func(b *testing.B) {
			c := newCluster(b, p.cfg)
			writer := c.add(nil)
			type arrival struct {
				v  coord.Version
				at time.Time
			}
			arrivals := make(chan arrival, 1024)
			var nodes []*Backend
			for i := 0; i < 10; i++ {
				nodes = append(nodes, c.add(nil))
			}
			waitMembers(b, 60*time.Second, append(nodes, writer)...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			key := fmt.Sprintf("/fanout/%d", time.Now().UnixNano())
			v, err := writer.Create(ctx, key, []byte("0"))
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range nodes {
				ch, err := n.Watch(ctx, "/fanout/")
				if err != nil {
					b.Fatal(err)
				}
				go func() {
					for ev := range ch {
						if ev.Kind == coord.EventPut && ev.Key == key {
							arrivals <- arrival{ev.Version, time.Now()}
						}
					}
				}()
			}
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				nv, err := writer.CompareAndSet(ctx, key, []byte(strconv.Itoa(i+1)), v)
				if err != nil {
					b.Fatal(err)
				}
				v = nv
				got := 0
				var last time.Time
				timeout := time.After(30 * time.Second)
				for got < len(nodes) {
					select {
					case a := <-arrivals:
						if a.v == nv {
							got++
							last = a.at
						}
					case <-timeout:
						b.Fatalf("write %d reached %d of %d watchers in 30 s", i, got, len(nodes))
					}
				}
				lat = append(lat, last.Sub(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(mean(lat), "ms-mean-to-10")
			b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "ms-max-to-10")
			b.Logf("%s profile (gossip interval %v): write -> all 10 watchers: median %v, max %v over %d writes",
				p.name, p.cfg().GossipInterval, lat[len(lat)/2], lat[len(lat)-1], len(lat))
		})
	}
}
