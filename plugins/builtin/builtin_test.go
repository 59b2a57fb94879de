package builtin_test

import (
	"testing"

	"github.com/brokkr/brokkr/plugins"
	"github.com/brokkr/brokkr/plugins/builtin"
	"github.com/brokkr/brokkr/plugins/policytest"
)

func TestRetentionConformance(t *testing.T) {
	policytest.RunRetention(t, func(*testing.T) plugins.RetentionPolicy { return builtin.NewRetention() })
}

func TestCompactionConformance(t *testing.T) {
	policytest.RunCompaction(t, func(*testing.T) plugins.CompactionPolicy { return builtin.NewCompaction() })
}

func TestParseCleanupPolicy(t *testing.T) {
	for in, want := range map[string]builtin.CleanupPolicy{
		"": {Delete: true}, "delete": {Delete: true}, "compact": {Compact: true},
		"compact,delete": {Delete: true, Compact: true}, " Delete , compact ": {Delete: true, Compact: true},
	} {
		got, err := builtin.ParseCleanupPolicy(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	if _, err := builtin.ParseCleanupPolicy("delete,shred"); err == nil {
		t.Error("unknown policy accepted")
	}
}
