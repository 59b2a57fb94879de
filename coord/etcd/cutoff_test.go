package etcd

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// proxy forwards TCP to target until cut; while cut it drops every
// connection, as a network partition does to this one client.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close(); c.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, u); u.Close(); c.Close() })
	}
}

// Cut drops every connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Heal lets connections through again.
func (p *proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// A broker cut off from etcd (its process alive) loses its registration and
// controllership within the session time-out on both sides: etcd deletes its
// keys and elects another controller, and the cut-off client closes its Lost
// channels. Its stale writes stay fenced after the partition heals, and it
// can register and campaign again with a new lease and a higher epoch.
func TestCutOffBroker(t *testing.T) {
	c := startCluster(t, 1, testHeart, testElection, false)
	p := newProxy(t, c.endpoints()[0][len("http://"):])
	cut := client(t, []string{p.URL()}, testSession)
	other := client(t, c.endpoints(), testSession)
	ctx := context.Background()

	reg, err := cut.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lead, err := cut.Campaign(cctx, 1)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	v, err := lead.Store().Create(ctx, "/cut/state", []byte("epoch1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	bw, err := other.WatchBrokers(cctx)
	if err != nil {
		t.Fatalf("WatchBrokers: %v", err)
	}
	won := make(chan coord.Leadership, 1)
	go func() {
		l, err := other.Campaign(cctx, 2)
		if err != nil {
			t.Errorf("Campaign of the other broker: %v", err)
			close(won)
			return
		}
		won <- l
	}()

	start := time.Now()
	p.Cut()
	var gone, elected, lostReg, lostLead time.Duration
	var newLead coord.Leadership
	deadline := time.After(testSession + 15*time.Second)
	leadLost := lead.Lost()
	for gone == 0 || elected == 0 || lostReg == 0 || lostLead == 0 {
		select {
		case list := <-bw:
			if gone == 0 && len(list) == 0 {
				gone = time.Since(start)
			}
		case l, ok := <-won:
			if !ok {
				t.FailNow()
			}
			elected, newLead, won = time.Since(start), l, nil
		case <-reg.Lost():
			lostReg = time.Since(start)
			reg = neverLost{}
		case <-leadLost:
			lostLead, leadLost = time.Since(start), nil
		case <-deadline:
			cut.mu.Lock()
			sess := cut.sess
			cut.mu.Unlock()
			if sess != nil {
				t.Logf("cut-off client's session: keep-alive done %v, lost %v", isClosedChan(sess.s.Done()), isClosedChan(sess.lost))
			} else {
				t.Logf("cut-off client has no session")
			}
			t.Fatalf("after the cut: gone %v, elected %v, registration Lost %v, leadership Lost %v (0 = not yet; session %v)", gone, elected, lostReg, lostLead, testSession)
		}
	}
	t.Logf("cut off: registration gone after %v, new controller after %v; the cut-off client's registration Lost after %v, leadership Lost after %v (session %v)",
		gone.Round(time.Millisecond), elected.Round(time.Millisecond), lostReg.Round(time.Millisecond), lostLead.Round(time.Millisecond), testSession)
	// SingleController: the cut-off side gives up before etcd can elect
	// another (its watchdog declares the session lost TTL/4 before etcd
	// could expire the lease).
	if lostLead >= elected {
		t.Errorf("the cut-off controller's Lost closed %v after the cut, not before the new controller's election at %v", lostLead, elected)
	}
	if newLead.Epoch() <= lead.Epoch() {
		t.Fatalf("new epoch %d not above %d", newLead.Epoch(), lead.Epoch())
	}

	p.Heal()
	if _, err := lead.Store().CompareAndSet(ctx, "/cut/state", []byte("stale"), v); !errors.Is(err, coord.ErrFenced) {
		t.Fatalf("stale controller's write after the heal: %v, want ErrFenced", err)
	}
	eventually(t, 15*time.Second, "the healed broker registers again", func() error {
		_, err := cut.Register(ctx, coord.BrokerInfo{ID: 1, Endpoints: []string{"PLAINTEXT://127.0.0.1:1"}})
		return err
	})
	if r, err := other.Get(ctx, "/cut/state"); err != nil || string(r.Value) != "epoch1" {
		t.Fatalf("record = %+v, %v; want the value written before the cut", r, err)
	}
	if err := newLead.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	l2, err := cut.Campaign(cctx, 1)
	if err != nil {
		t.Fatalf("Campaign after the heal: %v", err)
	}
	if l2.Epoch() <= newLead.Epoch() {
		t.Fatalf("epoch after the heal %d not above %d", l2.Epoch(), newLead.Epoch())
	}
}

// neverLost stands in for a registration already seen lost.
type neverLost struct{}

func (neverLost) Lost() <-chan struct{}       { return nil }
func (neverLost) Close(context.Context) error { return nil }
