package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
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

// The default hold follows the gap, within its bounds, and a hold that is
// set wins over it.
func TestDefaultMaxHold(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gap     time.Duration
		maxHold time.Duration // Limits.MaxHold
		want    time.Duration
	}{
		{"no gap: today's second", 0, 0, time.Second},
		{"tiny gap: the floor", 2 * time.Second, 0, time.Second},
		{"at the floor", 4 * time.Second, 0, time.Second},
		{"bench charging", 15 * time.Second, 0, 3750 * time.Millisecond},
		{"dev clickstream", 20 * time.Second, 0, 5 * time.Second},
		{"bench clickstream", 30 * time.Second, 0, 7500 * time.Millisecond},
		{"at the cap", 4 * time.Minute, 0, time.Minute},
		{"production clickstream: the cap", 30 * time.Minute, 0, time.Minute},
		{"set: wins over the gap", 30 * time.Minute, 5 * time.Second, 5 * time.Second},
		{"set: may pass the cap", 30 * time.Second, 2 * time.Minute, 2 * time.Minute},
		{"negative: the default", 30 * time.Second, -time.Second, 7500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := session.Rules{Gap: tc.gap}
			if tc.maxHold == 0 {
				if got := DefaultMaxHold(r); got != tc.want {
					t.Errorf("DefaultMaxHold(gap %v) = %v, want %v", tc.gap, got, tc.want)
				}
			}
			if got := (Limits{MaxHold: tc.maxHold}).Hold(r); got != tc.want {
				t.Errorf("Limits{MaxHold: %v}.Hold(gap %v) = %v, want %v", tc.maxHold, tc.gap, got, tc.want)
			}
		})
	}
}

func TestStartDelay(t *testing.T) {
	prod := func(p session.Profile) session.Rules {
		r, err := session.Defaults(p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	dur := func(d time.Duration) *time.Duration { return &d }
	for _, tc := range []struct {
		name  string
		rules session.Rules
		set   *time.Duration
		want  time.Duration
	}{
		{"no gap: none", session.Rules{}, nil, 0},
		{"production clickstream: twice the 1m hold", prod(session.Clickstream), nil, 2 * time.Minute},
		{"production charging: twice the hold", prod(session.Charging), nil, 2 * time.Minute},
		{"bench clickstream: half the gap", session.Rules{Gap: 30 * time.Second, MaxDuration: 2 * time.Minute}, nil, 15 * time.Second},
		{"bench charging: half the break tolerance", session.Rules{Gap: 15 * time.Second, MaxDuration: 10 * time.Minute, BreakTolerance: 5 * time.Second}, nil, 2500 * time.Millisecond},
		{"an expiry warning soon after the start", session.Rules{Gap: time.Hour, MaxDuration: 10 * time.Minute, ExpiryWarning: 8 * time.Minute}, nil, time.Minute},
		{"set", prod(session.Clickstream), dur(5 * time.Second), 5 * time.Second},
		{"set to 0: none", prod(session.Clickstream), dur(0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := StartDelay(tc.set, tc.rules, DefaultMaxHold(tc.rules)); got != tc.want {
				t.Errorf("StartDelay = %v, want %v (hold %v)", got, tc.want, DefaultMaxHold(tc.rules))
			}
		})
	}
}
