package plugins_test

import (
	"context"
	"errors"
	"testing"

	"github.com/brokkr/brokkr/plugins"
)

type hostile struct {
	d     plugins.RetentionDecision
	err   error
	panic bool
}

func (h hostile) Info() plugins.Info { return plugins.Info{Name: "hostile"} }
func (h hostile) Decide(context.Context, plugins.RetentionInput) (plugins.RetentionDecision, error) {
	if h.panic {
		panic("boom")
	}
	return h.d, h.err
}

func TestDecideCheckedHostilePolicies(t *testing.T) {
	for _, c := range []struct {
		name string
		p    hostile
		want error
	}{
		{"Panics", hostile{panic: true}, plugins.ErrPolicyFailed},
		{"Errors", hostile{err: errors.New("disk on fire")}, plugins.ErrPolicyFailed},
		{"ErrorWithDecision", hostile{d: plugins.RetentionDecision{LogStartOffset: 30}, err: errors.New("half done")}, plugins.ErrPolicyFailed},
		{"AboveHW", hostile{d: plugins.RetentionDecision{LogStartOffset: 40}}, plugins.ErrRefused},
		{"Negative", hostile{d: plugins.RetentionDecision{LogStartOffset: -7}}, plugins.ErrRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, _, err := plugins.DecideChecked(context.Background(), c.p, input())
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if len(v.Delete) != 0 {
				t.Fatalf("a failed policy still deletes %+v", v.Delete)
			}
		})
	}
	v, d, err := plugins.DecideChecked(context.Background(), hostile{d: plugins.RetentionDecision{LogStartOffset: 25, Reason: "r"}}, input())
	if err != nil || v.LogStartOffset != 20 || len(v.Delete) != 2 || d.Reason != "r" {
		t.Fatalf("mid-segment answer: %+v %+v %v, want start 20 with 2 segments deleted", v, d, err)
	}
	bad := input()
	bad.Segments = nil
	if _, _, err := plugins.DecideChecked(context.Background(), hostile{panic: true}, bad); !errors.Is(err, plugins.ErrInvalidInput) {
		t.Fatalf("malformed input: err = %v, want ErrInvalidInput before the policy is asked", err)
	}
}
