package coordtest

import (
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/brokkr/brokkr/coord"
)

func op(client int, call, ret int64, in regInput, out regOutput) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

// The register model must accept legal histories and reject illegal ones;
// otherwise the backends' linearizability checks prove nothing.
func TestRegisterModel(t *testing.T) {
	get := regInput{Kind: opGet}
	cases := []struct {
		name  string
		hist  []porcupine.Operation
		legal bool
	}{
		{"create then read", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 30, get, regOutput{Kind: outOK, Value: "a", Version: 5}),
		}, true},
		{"read before create returned may see either", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 5, 8, get, regOutput{Kind: outNotFound}),
		}, true},
		{"stale read after a completed write", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(0, 11, 20, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outOK, Version: 6}),
			op(1, 30, 40, get, regOutput{Kind: outOK, Value: "a", Version: 5}),
		}, false},
		{"two CAS winners on one version", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 30, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outOK, Version: 6}),
			op(2, 20, 30, regInput{Kind: opCAS, Value: "c", Expect: 5}, regOutput{Kind: outOK, Version: 7}),
		}, false},
		{"concurrent CAS: one wins, one conflicts", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 30, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outOK, Version: 6}),
			op(2, 20, 30, regInput{Kind: opCAS, Value: "c", Expect: 5}, regOutput{Kind: outConflict}),
			op(2, 31, 40, get, regOutput{Kind: outOK, Value: "b", Version: 6}),
		}, true},
		{"conflict on the current version with no other writer", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 30, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outConflict}),
		}, false},
		{"unknown CAS may have applied, revealed later", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 100, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outUnknown}),
			op(2, 40, 50, get, regOutput{Kind: outOK, Value: "b", Version: 9}),
			op(2, 60, 70, regInput{Kind: opCAS, Value: "c", Expect: 9}, regOutput{Kind: outOK, Version: 10}),
		}, true},
		{"unknown CAS may not have applied", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 100, regInput{Kind: opCAS, Value: "b", Expect: 5}, regOutput{Kind: outUnknown}),
			op(2, 40, 50, get, regOutput{Kind: outOK, Value: "a", Version: 5}),
		}, true},
		{"a value nobody wrote", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(1, 20, 30, get, regOutput{Kind: outOK, Value: "z", Version: 5}),
		}, false},
		{"delete then read not found, re-create", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(0, 11, 20, regInput{Kind: opDelete, Expect: 5}, regOutput{Kind: outOK}),
			op(1, 21, 30, get, regOutput{Kind: outNotFound}),
			op(1, 31, 40, regInput{Kind: opCreate, Value: "b"}, regOutput{Kind: outOK, Version: 8}),
			op(0, 41, 50, regInput{Kind: opDelete, Expect: 5}, regOutput{Kind: outConflict}),
		}, true},
		{"read of a deleted record", []porcupine.Operation{
			op(0, 0, 10, regInput{Kind: opCreate, Value: "a"}, regOutput{Kind: outOK, Version: 5}),
			op(0, 11, 20, regInput{Kind: opDelete, Expect: coord.Version(5)}, regOutput{Kind: outOK}),
			op(1, 21, 30, get, regOutput{Kind: outOK, Value: "a", Version: 5}),
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(registerModel(), c.hist); got != c.legal {
				t.Fatalf("linearizable = %v, want %v", got, c.legal)
			}
		})
	}
}

func TestViewDiff(t *testing.T) {
	v := view{}
	v.apply(coord.Event{Kind: coord.EventResync, Snapshot: []coord.Record{{Key: "/a", Value: []byte("1"), Version: 1}, {Key: "/b", Value: []byte("2"), Version: 2}}})
	v.apply(coord.Event{Kind: coord.EventPut, Key: "/a", Value: []byte("3"), Version: 3})
	v.apply(coord.Event{Kind: coord.EventDelete, Key: "/b"})
	if d := v.diff([]coord.Record{{Key: "/a", Value: []byte("3"), Version: 3}}); d != "" {
		t.Fatalf("equal views differ: %s", d)
	}
	if d := v.diff([]coord.Record{{Key: "/a", Value: []byte("3"), Version: 4}}); d == "" {
		t.Fatalf("a version difference went unnoticed")
	}
	if d := v.diff(nil); d == "" {
		t.Fatalf("an extra record went unnoticed")
	}
	if d := v.diff([]coord.Record{{Key: "/a", Value: []byte("3"), Version: 3}, {Key: "/c", Version: 1}}); d == "" {
		t.Fatalf("a missing record went unnoticed")
	}
}
