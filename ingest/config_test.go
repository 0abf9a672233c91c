package ingest

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	rules := testRules(t)
	ok := Config{Pipeline: testPipeline(t), Topic: topic, Brokers: []string{"k:9092"},
		Temporal: newFakeTemporal(&rules, "clicks"), Late: &fakeLate{}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for want, mutate := range map[string]func(*Config){
		"no topic":         func(c *Config) { c.Topic = "" },
		"no Kafka brokers": func(c *Config) { c.Brokers = nil },
		"no Temporal":      func(c *Config) { c.Temporal = nil },
		"no late-event":    func(c *Config) { c.Late = nil },
		"has no name":      func(c *Config) { c.Pipeline.Name = "" },
		"rules":            func(c *Config) { c.Pipeline.Rules.Gap = 0 },
		"payload limit":    func(c *Config) { c.Limits.BatchBytes = 4 << 20 },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Validate = %v", want, err)
		}
	}
}
