package config

import (
	"strings"
	"testing"
)

func TestTopicConfigOverridesAndSources(t *testing.T) {
	c, err := Load("", []string{"log.retention.hours=1", "log.segment.bytes=1048576"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.Topic(map[string]string{"retention.ms": "5000", "cleanup.policy": "delete, compact", "brokkr.retention.plugin": "keep-until-consumed"})
	if err != nil {
		t.Fatal(err)
	}
	if tc.RetentionMs != 5000 || tc.SegmentBytes != 1048576 || tc.CleanupPolicy != "compact,delete" || tc.MaxMessageBytes != 1048588 {
		t.Errorf("effective config: %+v", tc)
	}
	if tc.Plugins["brokkr.retention.plugin"] != "keep-until-consumed" {
		t.Errorf("plugin setting lost: %v", tc.Plugins)
	}
	got := map[string]ConfigEntry{}
	for _, e := range c.DescribeTopic(map[string]string{"retention.ms": "5000"}) {
		got[e.Name] = e
	}
	if e := got["retention.ms"]; e.Value != "5000" || e.Source != SourceTopic {
		t.Errorf("retention.ms = %+v, want the topic override", e)
	}
	if e := got["segment.bytes"]; e.Value != "1048576" || e.Source != SourceStaticBroker || e.Synonym != "log.segment.bytes" {
		t.Errorf("segment.bytes = %+v, want the static broker value", e)
	}
	if e := got["max.message.bytes"]; e.Source != SourceDefault {
		t.Errorf("max.message.bytes = %+v, want a default", e)
	}
	c2, _ := Load("", []string{"log.retention.hours=2"})
	for _, e := range c2.DescribeTopic(nil) {
		if e.Name == "retention.ms" && (e.Source != SourceStaticBroker || e.Value != "7200000") {
			t.Errorf("retention.ms from log.retention.hours: %+v", e)
		}
	}
}

func TestCheckTopicConfigs(t *testing.T) {
	err := CheckTopicConfigs(map[string]string{
		"retention.ms":              "soon",
		"retention.msec":            "1",
		"cleanup.policy":            "shred",
		"min.cleanable.dirty.ratio": "1.5",
		"segment.bytes":             "10",
		"compression.type":          "zstd",
	})
	if err == nil {
		t.Fatal("bad topic configs accepted")
	}
	for _, want := range []string{
		`retention.ms: "soon" is not an integer`,
		`unknown topic config "retention.msec" (did you mean retention.ms?)`,
		`cleanup.policy: "shred" is not one of`,
		`min.cleanable.dirty.ratio`,
		`segment.bytes: 10 is out of range`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "compression.type") {
		t.Errorf("a valid compression.type was refused: %v", err)
	}
}
