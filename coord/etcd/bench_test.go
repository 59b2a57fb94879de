package etcd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
)

// Benchmarks use the defaults: one embedded member with etcd's raft timing
// (100 ms heartbeat, 1 s election), fsync on, a 3 s session time-out.
//
//	go test -run '^$' -bench . -benchtime 1x ./coord/etcd/   # one failover trial each
//	go test -run '^$' -bench 'CAS|Watch' ./coord/etcd/

func benchCluster(b *testing.B) *cluster {
	return startCluster(b, 1, DefaultHeartbeat, DefaultElection, true)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Time from a registrant-controller's kill -9 to its disappearance from the
// live set and to a waiting campaigner's election.
// ttl-3s is the default; ttl-2s is the smallest session the default raft
// timing allows (minimum lease TTL: 1.5 x the 1 s election time-out).
func BenchmarkFailover(b *testing.B) {
	c := benchCluster(b)
	for _, ttl := range []time.Duration{DefaultSessionTimeout, 2 * time.Second} {
		b.Run(fmt.Sprintf("ttl-%v", ttl), func(b *testing.B) { benchFailover(b, c, ttl) })
	}
}

func benchFailover(b *testing.B, c *cluster, ttl time.Duration) {
	spec := childSpec(c.endpoints(), ttl)
	var gone, elected []time.Duration
	for i := 0; b.Loop(); i++ {
		id := int32(100 + 2*i + 1000*int(ttl/time.Second))
		child := coordtest.StartChild(b, spec, id, true, 60*time.Second)
		obs := client(b, c.endpoints(), ttl)
		bctx, bcancel := context.WithCancel(context.Background())
		bch, err := obs.WatchBrokers(bctx)
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var goneAt time.Time
		seen := make(chan struct{})
		go func() {
			present := false
			for list := range bch {
				has := slices.ContainsFunc(list, func(x coord.BrokerInfo) bool { return x.ID == id })
				if has && !present {
					present = true
					close(seen)
				}
				if present && !has {
					mu.Lock()
					goneAt = time.Now()
					mu.Unlock()
				}
			}
		}()
		select {
		case <-seen:
		case <-time.After(30 * time.Second):
			b.Fatal("child registration not seen")
		}
		won := make(chan time.Time, 1)
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		go func() {
			l, err := obs.Campaign(cctx, id+1)
			if err != nil {
				b.Error(err)
				won <- time.Time{}
				return
			}
			won <- time.Now()
			_ = l.Resign(context.Background())
		}()
		time.Sleep(200 * time.Millisecond) // the campaign is queued behind the child
		killed := child.Kill()
		at := <-won
		ccancel()
		eventually(b, 30*time.Second, "killed child leaves the live set", func() error {
			mu.Lock()
			defer mu.Unlock()
			if goneAt.IsZero() {
				return errors.New("still live")
			}
			return nil
		})
		bcancel()
		gone = append(gone, goneAt.Sub(killed))
		elected = append(elected, at.Sub(killed))
		b.Logf("trial %d: gone after %v, new controller after %v", i, goneAt.Sub(killed).Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond))
		_ = obs.Close()
	}
	b.ReportMetric(ms(slices.Max(gone)), "max-gone-ms")
	b.ReportMetric(ms(slices.Max(elected)), "max-elected-ms")
	b.ReportMetric(0, "ns/op")
}

// One writer's compare-and-set chain on one record (a partition leader
// persisting ISR changes), and eight writers racing on it.
func BenchmarkCASOneRecord(b *testing.B) {
	c := benchCluster(b)
	cl := client(b, c.endpoints(), DefaultSessionTimeout)
	ctx := context.Background()
	b.Run("one-writer", func(b *testing.B) {
		key := fmt.Sprintf("/bench/one/%d", time.Now().UnixNano())
		v, err := cl.Create(ctx, key, []byte("0"))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		n := 0
		for b.Loop() {
			if v, err = cl.CompareAndSet(ctx, key, []byte(strconv.Itoa(n)), v); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "cas/s")
	})
	// Reference: the client's bare unconditional Put, no transaction.
	b.Run("raw-put-reference", func(b *testing.B) {
		key := cl.pfxData + fmt.Sprintf("/bench/raw/%d", time.Now().UnixNano())
		start := time.Now()
		n := 0
		for b.Loop() {
			if _, err := cl.Client().Put(ctx, key, strconv.Itoa(n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "put/s")
	})
	b.Run("eight-racing", func(b *testing.B) {
		key := fmt.Sprintf("/bench/race/%d", time.Now().UnixNano())
		if _, err := cl.Create(ctx, key, []byte("0")); err != nil {
			b.Fatal(err)
		}
		var wins, conflicts atomic.Int64
		start := time.Now()
		b.SetParallelism(4) // 8 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := cl.Get(ctx, key)
				if err != nil {
					b.Error(err)
					return
				}
				_, err = cl.CompareAndSet(ctx, key, []byte("x"), r.Version)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, coord.ErrConflict):
					conflicts.Add(1)
				default:
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(wins.Load())/time.Since(start).Seconds(), "won-cas/s")
		b.ReportMetric(float64(conflicts.Load())/float64(max(1, wins.Load()+conflicts.Load())), "conflict-ratio")
	})
}

// Compare-and-set over 1,000 different records from 16 x GOMAXPROCS goroutines, each
// owning its own records (no conflicts): the store's write throughput.
func BenchmarkCAS1000Records(b *testing.B) {
	c := benchCluster(b)
	cl := client(b, c.endpoints(), DefaultSessionTimeout)
	ctx := context.Background()
	const records = 1000
	pfx := fmt.Sprintf("/bench/many/%d/", time.Now().UnixNano())
	vers := make([]coord.Version, records)
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := g; i < records; i += 20 {
				v, err := cl.Create(ctx, fmt.Sprintf("%s%04d", pfx, i), []byte("0"))
				if err != nil {
					b.Error(err)
					return
				}
				vers[i] = v
			}
		})
	}
	wg.Wait()
	var next atomic.Int64
	var done atomic.Int64
	const par = 16
	G := par * runtime.GOMAXPROCS(0)
	b.SetParallelism(par)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := int(next.Add(1)) - 1
		var mine []int // goroutine g owns records g, g+G, g+2G, ...
		for i := g; i < records; i += G {
			mine = append(mine, i)
		}
		for n := 0; pb.Next(); n++ {
			idx := mine[n%len(mine)]
			k := fmt.Sprintf("%s%04d", pfx, idx)
			v, err := cl.CompareAndSet(ctx, k, []byte(strconv.Itoa(n)), vers[idx])
			if err != nil {
				b.Error(err)
				return
			}
			vers[idx] = v
			done.Add(1)
		}
	})
	b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "cas/s")
	if int(next.Load()) > G {
		b.Fatalf("%d goroutines, expected at most %d: records were shared", next.Load(), G)
	}
}

// Delay from a write's call to its delivery at each of 10 watchers (each
// its own client and session).
func BenchmarkWatchFanout10(b *testing.B) {
	c := benchCluster(b)
	w := client(b, c.endpoints(), DefaultSessionTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pfx := fmt.Sprintf("/bench/fan/%d/", time.Now().UnixNano())
	const watchers = 10
	type hit struct {
		seq int
		at  time.Time
	}
	hits := make(chan hit, 1024)
	for range watchers {
		cl := client(b, c.endpoints(), DefaultSessionTimeout)
		ch, err := cl.Watch(ctx, pfx)
		if err != nil {
			b.Fatal(err)
		}
		<-ch // the snapshot
		go func() {
			for ev := range ch {
				if ev.Kind == coord.EventPut {
					n, _ := strconv.Atoi(string(ev.Value))
					hits <- hit{n, time.Now()}
				}
			}
		}()
	}
	key := pfx + "k"
	v, err := w.Create(ctx, key, []byte("-1"))
	if err != nil {
		b.Fatal(err)
	}
	for range watchers {
		<-hits
	}
	var first, last []time.Duration
	seq := 0
	for b.Loop() {
		start := time.Now()
		if v, err = w.CompareAndSet(ctx, key, []byte(strconv.Itoa(seq)), v); err != nil {
			b.Fatal(err)
		}
		var f, l time.Duration
		for got := 0; got < watchers; {
			select {
			case h := <-hits:
				if h.seq != seq {
					b.Fatalf("watcher got write %d while waiting for %d", h.seq, seq)
				}
				d := h.at.Sub(start)
				if got == 0 {
					f = d
				}
				l = d
				got++
			case <-time.After(10 * time.Second):
				b.Fatalf("write %d reached %d of %d watchers in 10 s", seq, got, watchers)
			}
		}
		first, last = append(first, f), append(last, l)
		seq++
	}
	slices.Sort(first)
	slices.Sort(last)
	b.ReportMetric(ms(first[len(first)/2]), "p50-first-ms")
	b.ReportMetric(ms(last[len(last)/2]), "p50-all10-ms")
	b.ReportMetric(ms(last[len(last)*99/100]), "p99-all10-ms")
}
