package zk

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

// benchSession is the session time-out of the failover benchmark: Kafka's
// default unless BROKKR_ZK_BENCH_SESSION_MS says otherwise.
func benchSession(b *testing.B) time.Duration {
	if v := os.Getenv("BROKKR_ZK_BENCH_SESSION_MS"); v != "" {
		var ms int
		if _, err := fmt.Sscan(v, &ms); err != nil {
			b.Fatalf("BROKKR_ZK_BENCH_SESSION_MS=%q: %v", v, err)
		}
		return time.Duration(ms) * time.Millisecond
	}
	return DefaultSessionTimeout
}

// BenchmarkFailover: a child process registers and is controller; it is
// killed with SIGKILL. Reported (medians over b.N kills; ns/op is the whole
// cycle): time until its broker znode is gone from the live set, and until
// another broker, already campaigning, is elected.
func BenchmarkFailover(b *testing.B) {
	session := benchSession(b)
	srv := zktest.Start(b)
	obs := open(b, srv.Addr(), "/f", testSession)
	ctx := context.Background()
	brokers, err := obs.WatchBrokers(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var gone, elected []time.Duration
	for i := 0; i < b.N; i++ {
		id := int32(100 + i)
		child := startChild(b, childSpec(srv.Addr(), "/f", session), id, true)
		waitBrokers(b, brokers, 20*time.Second, id)
		won := make(chan coord.Leadership, 1)
		go func() {
			l, err := obs.Campaign(ctx, 1)
			if err != nil {
				b.Error(err)
			}
			won <- l
		}()
		killed := time.Now()
		if err := syscall.Kill(child.Process.Pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		waitBrokers(b, brokers, 3*session)
		gone = append(gone, time.Since(killed))
		var l coord.Leadership
		select {
		case l = <-won:
		case <-time.After(3 * session):
			b.Fatalf("no controller within %v", 3*session)
		}
		elected = append(elected, time.Since(killed))
		if err := l.Resign(ctx); err != nil {
			b.Fatal(err)
		}
		_ = child.Wait()
	}
	b.ReportMetric(median(gone).Seconds(), "s-to-gone")
	b.ReportMetric(median(elected).Seconds(), "s-to-controller")
	b.ReportMetric(session.Seconds(), "s-session")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkCASOneRecord: one client, compare-and-set after compare-and-set
// on one partition-state record (each is a stat read plus a conditional set).
func BenchmarkCASOneRecord(b *testing.B) {
	srv := zktest.Start(b)
	c := open(b, srv.Addr(), "/b", DefaultSessionTimeout)
	ctx := context.Background()
	key := "/brokers/topics/t/partitions/0/state"
	v, err := c.Create(ctx, key, []byte(`{"leader":1}`))
	if err != nil {
		b.Fatal(err)
	}
	val := []byte(`{"version":1,"leader":1,"leader_epoch":0,"controller_epoch":1,"isr":[1,2,3]}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, err = c.CompareAndSet(ctx, key, val, v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cas/s")
}

// BenchmarkCAS1000Records: 32 goroutines on one client, CAS on 1,000
// partition-state records (each goroutine cycles through its own 31 or 32).
func BenchmarkCAS1000Records(b *testing.B) {
	srv := zktest.Start(b)
	c := open(b, srv.Addr(), "/b", DefaultSessionTimeout)
	ctx := context.Background()
	const records, workers = 1000, 32
	versions := make([]coord.Version, records)
	for i := range versions {
		v, err := c.Create(ctx, fmt.Sprintf("/brokers/topics/t%d/partitions/0/state", i), []byte("{}"))
		if err != nil {
			b.Fatal(err)
		}
		versions[i] = v
	}
	val := []byte(`{"version":1,"leader":1,"leader_epoch":0,"controller_epoch":1,"isr":[1,2,3]}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Worker w owns records w, w+workers, ...: no two in-flight
			// operations share a record, so none conflicts.
			var owned []int
			for r := w; r < records; r += workers {
				owned = append(owned, r)
			}
			for turn := 0; ; turn++ {
				if next.Add(1) > int64(b.N) {
					return
				}
				r := owned[turn%len(owned)]
				v, err := c.CompareAndSet(ctx, fmt.Sprintf("/brokers/topics/t%d/partitions/0/state", r), val, versions[r])
				if err != nil {
					b.Error(err)
					return
				}
				versions[r] = v
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cas/s")
}

// BenchmarkRawSet is the same-run reference: the client library's bare
// unconditional set, one at a time, with no Brokkr code around it.
func BenchmarkRawSet(b *testing.B) {
	srv := zktest.Start(b)
	c := open(b, srv.Addr(), "", DefaultSessionTimeout)
	if _, err := c.conn.Create("/raw", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.conn.Set("/raw", []byte("y"), -1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "set/s")
}

// BenchmarkWatchFanout: 10 watchers, each its own session, on a prefix; one
// write at a time. Reported: from the write's return to the last of the 10
// seeing it (median and max).
func BenchmarkWatchFanout(b *testing.B) {
	srv := zktest.Start(b)
	const watchers = 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := open(b, srv.Addr(), "/fan", DefaultSessionTimeout)
	v, err := w.Create(ctx, "/brokers/topics/t/partitions/0/state", []byte("0"))
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan coord.Version, watchers*16)
	for i := 0; i < watchers; i++ {
		c := open(b, srv.Addr(), "/fan", DefaultSessionTimeout)
		ch, err := c.Watch(ctx, "/brokers/topics/")
		if err != nil {
			b.Fatal(err)
		}
		nextEvent(b, ch, 10*time.Second)
		go func() {
			for ev := range ch {
				switch ev.Kind {
				case coord.EventPut:
					got <- ev.Version
				case coord.EventResync:
					for _, r := range ev.Snapshot {
						got <- r.Version
					}
				}
			}
		}()
	}
	var delays []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, err = w.CompareAndSet(ctx, "/brokers/topics/t/partitions/0/state", []byte(fmt.Sprint(i)), v); err != nil {
			b.Fatal(err)
		}
		wrote := time.Now()
		for n := 0; n < watchers; {
			select {
			case gv := <-got:
				if gv == v {
					n++
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("only %d of %d watchers saw write %d", n, watchers, i)
			}
		}
		delays = append(delays, time.Since(wrote))
	}
	b.StopTimer()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "ms-max")
}
