package coordtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/brokkr/brokkr/coord"
)

// The linearizability check records a history of concurrent Get, Create,
// CompareAndSet and Delete calls on one key from several clients and asks
// porcupine whether some order of them, each taking effect at one instant
// between its call and its return, is legal for a single versioned register.
//
// Versions are opaque, so the model does not predict them: it learns a
// version from the call that returned it and then demands that later reads
// and compare-and-sets agree with it. A call whose outcome is unknown (an
// error other than conflict / not found, e.g. a time-out during a fault)
// may or may not have taken effect, at any time after its call: the model
// allows both, with the new version unknown until a later call reveals it.

type opKind int

const (
	opGet opKind = iota
	opCreate
	opCAS
	opDelete
)

func (k opKind) String() string {
	return [...]string{"get", "create", "cas", "delete"}[k]
}

type regInput struct {
	Kind   opKind
	Value  string        // create, cas
	Expect coord.Version // cas, delete
}

type outKind int

const (
	outOK outKind = iota
	outConflict
	outNotFound
	outUnknown
)

type regOutput struct {
	Kind    outKind
	Value   string        // get
	Version coord.Version // get, create, cas
}

// regState is the register: absent, or a value at a version. Unknown means
// the version is not known yet (an ambiguous write may have set it).
type regState struct {
	Exists  bool
	Value   string
	Version coord.Version
	Unknown bool
}

func (s regState) matches(v coord.Version) bool { return s.Unknown || s.Version == v }

// regStep lists the states the register can be in after in returned out.
func regStep(st, in, out any) []any {
	s, i, o := st.(regState), in.(regInput), out.(regOutput)
	none := []any{}
	switch i.Kind {
	case opGet:
		switch o.Kind {
		case outNotFound:
			if !s.Exists {
				return []any{s}
			}
			return none
		case outOK:
			if s.Exists && s.Value == o.Value && s.matches(o.Version) {
				return []any{regState{Exists: true, Value: o.Value, Version: o.Version}}
			}
			return none
		default: // a failed read changes nothing
			return []any{s}
		}
	case opCreate:
		switch o.Kind {
		case outOK:
			if !s.Exists {
				return []any{regState{Exists: true, Value: i.Value, Version: o.Version}}
			}
		case outConflict:
			if s.Exists {
				return []any{s}
			}
		case outUnknown:
			if !s.Exists {
				return []any{s, regState{Exists: true, Value: i.Value, Unknown: true}}
			}
			return []any{s}
		}
		return none
	case opCAS:
		switch o.Kind {
		case outOK:
			if s.Exists && s.matches(i.Expect) {
				return []any{regState{Exists: true, Value: i.Value, Version: o.Version}}
			}
		case outConflict:
			if s.Exists && (s.Unknown || s.Version != i.Expect) {
				return []any{s}
			}
		case outNotFound:
			if !s.Exists {
				return []any{s}
			}
		case outUnknown:
			if s.Exists && s.matches(i.Expect) {
				return []any{s, regState{Exists: true, Value: i.Value, Unknown: true}}
			}
			return []any{s}
		}
		return none
	case opDelete:
		switch o.Kind {
		case outOK:
			if s.Exists && s.matches(i.Expect) {
				return []any{regState{}}
			}
		case outConflict:
			if s.Exists && (s.Unknown || s.Version != i.Expect) {
				return []any{s}
			}
		case outNotFound:
			if !s.Exists {
				return []any{s}
			}
		case outUnknown:
			if s.Exists && s.matches(i.Expect) {
				return []any{s, regState{}}
			}
			return []any{s}
		}
		return none
	}
	return none
}

// registerModel is porcupine's model of one versioned record.
func registerModel() porcupine.Model {
	m := porcupine.NondeterministicModel{
		Init: func() []any { return []any{regState{}} },
		Step: regStep,
		DescribeOperation: func(in, out any) string {
			i, o := in.(regInput), out.(regOutput)
			res := [...]string{"ok", "conflict", "not found", "unknown"}[o.Kind]
			switch i.Kind {
			case opGet:
				if o.Kind == outOK {
					res = fmt.Sprintf("%q@%d", o.Value, o.Version)
				}
				return "get -> " + res
			case opCreate:
				return fmt.Sprintf("create(%q) -> %s@%d", i.Value, res, o.Version)
			case opCAS:
				return fmt.Sprintf("cas(%d, %q) -> %s@%d", i.Expect, i.Value, res, o.Version)
			default:
				return fmt.Sprintf("delete(%d) -> %s", i.Expect, res)
			}
		},
	}
	return m.ToModel()
}

func classify(err error) outKind {
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, coord.ErrConflict):
		return outConflict
	case errors.Is(err, coord.ErrNotFound):
		return outNotFound
	}
	return outUnknown
}

// LinearizableOptions shapes a history. Zero values take defaults.
type LinearizableOptions struct {
	OpsPerClient int           // default 60
	MaxDuration  time.Duration // stop issuing calls after this long; default 60 s
	CheckTimeout time.Duration // porcupine's budget; default 60 s
	Pace         time.Duration // pause between one client's calls (to span a fault); default none
	// DuringHistory, if set, runs once while the clients are busy (a fault
	// injector: stop a member, restart a server). The history then contains
	// calls with unknown outcomes, which the model allows either way.
	DuringHistory func()
}

// LinearizableResult is what a check found.
type LinearizableResult struct {
	Ops, Unknown int
	Result       porcupine.CheckResult
}

// RecordHistory drives one goroutine per store against key (which should not
// exist yet) and returns the history for porcupine.
// Calls that broke the coord contract are listed in violations.
func RecordHistory(stores []coord.Store, key string, opt LinearizableOptions) (history []porcupine.Operation, unknown int, violations []string) {
	if opt.OpsPerClient <= 0 {
		opt.OpsPerClient = 60
	}
	if opt.MaxDuration <= 0 {
		opt.MaxDuration = 60 * time.Second
	}
	start := time.Now()
	stopAt := start.Add(opt.MaxDuration)
	now := func() int64 { return int64(time.Since(start)) }
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c, st := range stores {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			known, exists := false, false
			var ver coord.Version
			for n := 0; n < opt.OpsPerClient && time.Now().Before(stopAt); n++ {
				in := regInput{Kind: opGet}
				switch {
				case !known || rng.IntN(3) == 0:
				case !exists:
					in = regInput{Kind: opCreate, Value: fmt.Sprintf("c%d-%d", c, n)}
				case rng.IntN(12) == 0:
					in = regInput{Kind: opDelete, Expect: ver}
				default:
					in = regInput{Kind: opCAS, Value: fmt.Sprintf("c%d-%d", c, n), Expect: ver}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				call := now()
				var out regOutput
				switch in.Kind {
				case opGet:
					r, err := st.Get(ctx, key)
					out = regOutput{Kind: classify(err), Value: string(r.Value), Version: r.Version}
				case opCreate:
					v, err := st.Create(ctx, key, []byte(in.Value))
					out = regOutput{Kind: classify(err), Version: v}
				case opCAS:
					v, err := st.CompareAndSet(ctx, key, []byte(in.Value), in.Expect)
					out = regOutput{Kind: classify(err), Version: v}
				case opDelete:
					out = regOutput{Kind: classify(st.Delete(ctx, key, in.Expect))}
				}
				ret := now()
				cancel()
				if in.Kind == opCreate && out.Kind == outNotFound {
					// Not in the contract (Create fails only with ErrConflict):
					// reported apart; for the model the outcome is unknown.
					mu.Lock()
					violations = append(violations, fmt.Sprintf("client %d: Create returned ErrNotFound", c))
					mu.Unlock()
					out.Kind = outUnknown
				}
				// What this client now believes, to pick its next call.
				switch {
				case out.Kind == outUnknown:
					known = false
				case in.Kind == opGet:
					known, exists, ver = true, out.Kind == outOK, out.Version
				case out.Kind == outOK && in.Kind == opDelete:
					exists = false
				case out.Kind == outOK:
					exists, ver = true, out.Version
				default:
					known = false
				}
				if out.Kind == outUnknown {
					ret = -1 // fixed below: may take effect any time after call
					time.Sleep(50 * time.Millisecond)
				}
				if opt.Pace > 0 {
					time.Sleep(opt.Pace)
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	end := now() + 1
	for i := range history {
		if history[i].Return < 0 {
			history[i].Return = end
			unknown++
		}
	}
	return history, unknown, violations
}

// CheckLinearizable records a history of concurrent calls on key (which must
// not exist) through stores (one per client, each its own session) and fails
// t when porcupine proves it is not linearizable. An inconclusive check
// (porcupine's time budget ran out) is logged, not failed.
func CheckLinearizable(t *testing.T, stores []coord.Store, key string, opt LinearizableOptions) LinearizableResult {
	t.Helper()
	res := checkLinearizable(t, stores, key, opt)
	if res.Result == porcupine.Illegal {
		t.Errorf("history of %d calls on %s (%d with unknown outcome) is NOT linearizable", res.Ops, key, res.Unknown)
	}
	return res
}

func checkLinearizable(t *testing.T, stores []coord.Store, key string, opt LinearizableOptions) LinearizableResult {
	t.Helper()
	if len(stores) < 2 {
		t.Fatalf("linearizability check needs at least 2 clients, have %d", len(stores))
	}
	if opt.CheckTimeout <= 0 {
		opt.CheckTimeout = 60 * time.Second
	}
	var faultDone chan struct{}
	if opt.DuringHistory != nil {
		faultDone = make(chan struct{})
		go func() {
			defer close(faultDone)
			time.Sleep(300 * time.Millisecond)
			opt.DuringHistory()
		}()
	}
	began := time.Now()
	hist, unknown, violations := RecordHistory(stores, key, opt)
	for i, v := range violations {
		if i == 5 {
			t.Errorf("... %d contract violations in all", len(violations))
			break
		}
		t.Errorf("contract violation: %s", v)
	}
	if faultDone != nil {
		<-faultDone
	}
	took := time.Since(began)
	checkStart := time.Now()
	result, info := porcupine.CheckOperationsVerbose(registerModel(), hist, opt.CheckTimeout)
	counts := map[string]int{}
	for _, op := range hist {
		counts[op.Input.(regInput).Kind.String()+"/"+[...]string{"ok", "conflict", "notfound", "unknown"}[op.Output.(regOutput).Kind]]++
	}
	t.Logf("linearizability: %d calls from %d clients in %v (%v), %d with unknown outcome; porcupine says %s in %v",
		len(hist), len(stores), took.Round(time.Millisecond), counts, unknown, result, time.Since(checkStart).Round(time.Millisecond))
	if result == porcupine.Illegal {
		if f, err := writeVisualization(t, info); err == nil {
			t.Logf("porcupine visualization: %s", f)
		}
		if f, err := writeHistory(t, hist); err == nil {
			t.Logf("history as text: %s", f)
		}
	}
	if result == porcupine.Unknown {
		t.Logf("porcupine ran out of its %v budget: inconclusive, not a failure", opt.CheckTimeout)
	}
	return LinearizableResult{Ops: len(hist), Unknown: unknown, Result: result}
}

func writeHistory(t *testing.T, hist []porcupine.Operation) (string, error) {
	f, err := createArtifact(t, "history-*.txt")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sorted := append([]porcupine.Operation(nil), hist...)
	slices.SortFunc(sorted, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	m := registerModel()
	for _, op := range sorted {
		fmt.Fprintf(f, "%12d %12d client %d: %s\n", op.Call, op.Return, op.ClientId, m.DescribeOperation(op.Input, op.Output))
	}
	return f.Name(), nil
}

func writeVisualization(t *testing.T, info porcupine.LinearizationInfo) (string, error) {
	f, err := createArtifact(t, "porcupine-*.html")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := porcupine.Visualize(registerModel(), info, f); err != nil {
		return "", err
	}
	return f.Name(), nil
}
