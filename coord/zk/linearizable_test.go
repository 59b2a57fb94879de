package zk

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/brokkr/brokkr/coord"
	"github.com/brokkr/brokkr/coord/coordtest"
	"github.com/brokkr/brokkr/coord/zk/zktest"
)

type regInput struct {
	cas         bool
	expect, put string // cas only: the value read with the expected version, the new value
}

type regOutput struct {
	value string // get
	ok    bool   // cas
}

// registerModel is one record read with Get and written with
// CompareAndSet. Every written value is unique, so a Version and the value
// written with it name the same state; the model works on values.
var registerModel = porcupine.Model{
	Init: func() any { return "init" },
	Step: func(state, input, output any) (bool, any) {
		in, out, s := input.(regInput), output.(regOutput), state.(string)
		if !in.cas {
			return out.value == s, s
		}
		if out.ok {
			return s == in.expect, in.put
		}
		return s != in.expect, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if !in.cas {
			return "get -> " + out.value
		}
		return fmt.Sprintf("cas(%s -> %s) = %v", in.expect, in.put, out.ok)
	},
}

// TestLinearizableGetCAS records a history of concurrent Gets and CASes on
// one record from several sessions and checks it with porcupine. It also
// checks that a Version always names the same value.
func TestLinearizableGetCAS(t *testing.T) {
	srv := zktest.Start(t)
	ctx := ctxT(t)
	const clients = 5
	bs := make([]*Backend, clients)
	for i := range bs {
		bs[i] = open(t, srv.Addr(), "/lin", testSession)
	}
	if _, err := bs[0].Create(ctx, "/reg", []byte("init")); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		history  []porcupine.Operation
		versions = map[coord.Version]string{}
		wg       sync.WaitGroup
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	seen := func(v coord.Version, val string) {
		mu.Lock()
		defer mu.Unlock()
		if old, ok := versions[v]; ok && old != val {
			t.Errorf("version %d names %q and %q", v, old, val)
		}
		versions[v] = val
	}
	stop := time.Now().Add(3 * time.Second)
	for c, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ops []porcupine.Operation
			defer func() {
				mu.Lock()
				history = append(history, ops...)
				mu.Unlock()
			}()
			for i := 0; time.Now().Before(stop); i++ {
				call := now()
				rec, err := b.Get(ctx, "/reg")
				if err != nil {
					t.Errorf("get: %v", err)
					return
				}
				ops = append(ops, porcupine.Operation{ClientId: c, Input: regInput{}, Call: call,
					Output: regOutput{value: string(rec.Value)}, Return: now()})
				seen(rec.Version, string(rec.Value))
				if i%3 == 2 {
					continue // some clients' reads race others' writes
				}
				put := fmt.Sprintf("c%d-%d", c, i)
				call = now()
				v, err := b.CompareAndSet(ctx, "/reg", []byte(put), rec.Version)
				if err != nil && !errors.Is(err, coord.ErrConflict) {
					t.Errorf("cas: %v", err)
					return
				}
				ops = append(ops, porcupine.Operation{ClientId: c, Input: regInput{cas: true, expect: string(rec.Value), put: put},
					Call: call, Output: regOutput{ok: err == nil}, Return: now()})
				if err == nil {
					seen(v, put)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	res := porcupine.CheckOperationsTimeout(registerModel, history, 60*time.Second)
	wins := 0
	for _, op := range history {
		if op.Output.(regOutput).ok {
			wins++
		}
	}
	t.Logf("%d operations (%d successful CAS) checked: %v", len(history), wins, res)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable (%v)", res)
	}
	if wins < 10 {
		t.Fatalf("only %d successful CAS: the history proves little", wins)
	}
}

// TestLinearizabilityCheckerCatchesStaleRead makes sure the model can fail:
// a read of an overwritten value after the write returned is rejected.
func TestLinearizabilityCheckerCatchesStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{ClientId: 0, Input: regInput{cas: true, expect: "init", put: "a"}, Call: 0, Output: regOutput{ok: true}, Return: 10},
		{ClientId: 1, Input: regInput{}, Call: 20, Output: regOutput{value: "init"}, Return: 30},
	}
	if porcupine.CheckOperations(registerModel, h) {
		t.Fatalf("a stale read passed the checker")
	}
}

// TestLinearizableAcrossFaults: the suite's history recorder and porcupine
// model, with faults during the history: the server is killed with SIGKILL
// and restarted, and two of the five clients reach it through a proxy that
// is cut for longer than their session time-out (their sessions expire).
// Calls that failed with ErrUnavailable count as "may have happened".
func TestLinearizableAcrossFaults(t *testing.T) {
	srv := zktest.Start(t)
	proxy := zktest.NewProxy(t, srv.Addr())
	const session = 2 * time.Second
	stores := make([]coord.Store, 5)
	for i := range stores {
		addr := srv.Addr()
		if i < 2 {
			addr = proxy.Addr()
		}
		stores[i] = open(t, addr, "/linf", session)
	}
	res := coordtest.CheckLinearizable(t, stores, "/register", coordtest.LinearizableOptions{
		OpsPerClient: 250,
		MaxDuration:  30 * time.Second,
		DuringHistory: func() {
			time.Sleep(300 * time.Millisecond)
			srv.Restart()
			time.Sleep(500 * time.Millisecond)
			proxy.Cut()
			time.Sleep(2*session + time.Second)
			proxy.Heal()
		},
	})
	t.Logf("%d calls, %d with unknown outcome: %v", res.Ops, res.Unknown, res.Result)
	if res.Result == porcupine.Illegal {
		t.Logf("server log tail:\n%s", srv.LogTail(20000))
	}
	if res.Unknown == 0 || res.Ops < 500 {
		t.Fatalf("%d calls, %d unknown: the faults did not hit the history", res.Ops, res.Unknown)
	}
}
