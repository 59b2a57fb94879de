package config

import (
	"math"
	"strings"
	"testing"
)

func TestGroupKeys(t *testing.T) {
	d := DefaultConfig()
	if d.GroupInitialRebalanceDelayMs != 3000 || d.GroupMinSessionTimeoutMs != 6000 || d.GroupMaxSessionTimeoutMs != 1800000 ||
		d.GroupMaxSize != math.MaxInt32 || d.OffsetsRetentionCheckIntervalMs != 600000 || d.OffsetMetadataMaxBytes != 4096 {
		t.Fatalf("group defaults are not Kafka's: %+v", d)
	}
	c, err := Load("", []string{"group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=1000", "group.max.size=5",
		"offsets.retention.check.interval.ms=1000", "offset.metadata.max.bytes=10"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GroupInitialRebalanceDelayMs != 0 || c.GroupMinSessionTimeoutMs != 1000 || c.GroupMaxSize != 5 ||
		c.OffsetsRetentionCheckIntervalMs != 1000 || c.OffsetMetadataMaxBytes != 10 {
		t.Fatalf("overrides not applied: %+v", c)
	}
	for _, tc := range []struct {
		overrides []string
		want      string
	}{
		{[]string{"group.min.session.timeout.ms=10000", "group.max.session.timeout.ms=9000"}, "group.max.session.timeout.ms: 9000 is below group.min.session.timeout.ms=10000"},
		{[]string{"group.max.size=0"}, "group.max.size: 0 is out of range"},
		{[]string{"offsets.retention.check.interval.ms=0"}, "offsets.retention.check.interval.ms: 0 is out of range"},
		{[]string{"group.initial.rebalance.delay.ms=-1"}, "group.initial.rebalance.delay.ms: -1 is out of range"},
	} {
		_, err := Load("", tc.overrides)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.overrides, err, tc.want)
		}
	}
}
