package config

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
)

func TestParse(t *testing.T) {
	f, err := Parse([]byte(`
pipelines:
  - name: clickstream
    profile: clickstream
    topic: clicks
    rules: {gap: 20m, end_marker: page_name=logout}
    output: {prefix: web/sessions, buckets: 8, flush: {max_records: 500, max_age: 5s}}
    notify: {session_closed: true}
  - name: drones
    profile: charging
    topic: telemetry
    rules: {break_tolerance: 3m, time_unit: s}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Find("clickstream")
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Workflow()
	if err != nil {
		t.Fatal(err)
	}
	if w.Rules.Gap != 20*time.Minute || w.Rules.MaxDuration != 2*time.Hour || w.Rules.EndMarker.Value != "logout" ||
		w.Buckets != 8 || w.Prefix != "web/sessions" || w.Sink.MaxRecords != 500 || w.Sink.MaxAge != 5*time.Second ||
		!w.Notify.SessionClosed || p.Topic != "clicks" {
		t.Errorf("clickstream pipeline %+v", w)
	}
	d, _ := f.Find("drones")
	r, err := d.SessionRules()
	if err != nil || r.BreakTolerance != 3*time.Minute || r.TimeUnit != time.Second || r.Profile != session.Charging {
		t.Errorf("drones rules %+v %v", r, err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ doc, want string }{
		{`pipelines: []`, "no pipelines"},
		{"pipelines:\n  - {name: a, profile: web, topic: t}", `unknown profile "web"`},
		{"pipelines:\n  - {name: a, profile: clickstream, topic: t, rules: {gapp: 5m}}", "field gapp not found"},
		{"pipelines:\n  - {name: a, profile: clickstream, rules: {gap: 0s, max_duration: -1s}}", "--max-duration"},
		{"pipelines:\n  - {name: A B, profile: clickstream}", `name "A B"`},
		{"pipelines:\n  - {name: a, profile: clickstream}\n  - {name: a, profile: charging}", "declared twice"},
		{"pipelines:\n  - {name: a, profile: clickstream, rules: {end_marker: logout}}", "field=value"},
		{"pipelines:\n  - {name: a, profile: clickstream, output: {buckets: 1000}}", "output.buckets"},
		{"pipelines:\n  - {name: a, profile: clickstream, rules: {gap: 0s}}", "--gap"},
		{"pipelines:\n  - {name: a, profile: clickstream, max_hold: -1s}", "max_hold -1s: want a positive duration"},
		{"pipelines:\n  - {name: a, profile: clickstream, max_hold: soon}", "`soon` into time.Duration"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want it to mention %q", c.doc, err, c.want)
		}
	}
}

// TestZeroDurationsOverride: a duration written in the file replaces the
// profile's default even when it is 0; one left out keeps the default.
func TestZeroDurationsOverride(t *testing.T) {
	def, err := session.Defaults(session.Charging)
	if err != nil {
		t.Fatal(err)
	}
	if def.Lateness == 0 || def.MaxDuration == 0 || def.BreakTolerance == 0 {
		t.Fatalf("the charging defaults %+v leave nothing for this test to override", def)
	}
	cases := []struct {
		name, rules              string
		lateness, max, tolerance time.Duration
	}{
		{"left out", "{}", def.Lateness, def.MaxDuration, def.BreakTolerance},
		{"zero lateness", "{lateness: 0s}", 0, def.MaxDuration, def.BreakTolerance},
		{"no maximum, no tolerance", "{max_duration: 0s, break_tolerance: 0s}", def.Lateness, 0, 0},
		{"given", "{lateness: 7s, max_duration: 3h}", 7 * time.Second, 3 * time.Hour, def.BreakTolerance},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse([]byte("pipelines:\n  - {name: d, profile: charging, topic: t, rules: " + c.rules + "}"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := f.Pipelines[0].SessionRules()
			if err != nil {
				t.Fatal(err)
			}
			if r.Lateness != c.lateness || r.MaxDuration != c.max || r.BreakTolerance != c.tolerance {
				t.Errorf("lateness %v, max_duration %v, break_tolerance %v; want %v, %v, %v",
					r.Lateness, r.MaxDuration, r.BreakTolerance, c.lateness, c.max, c.tolerance)
			}
		})
	}
}

// A pipeline's max_hold wins over the worker's --max-hold; with neither the
// hold is left to the ingester (0), which derives it from the rules.
func TestHold(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		worker     time.Duration
		want       time.Duration
	}{
		{"neither", "", 0, 0},
		{"worker's", "", 3 * time.Second, 3 * time.Second},
		{"pipeline's", ", max_hold: 10s", 0, 10 * time.Second},
		{"pipeline's over the worker's", ", max_hold: 10s", 3 * time.Second, 10 * time.Second},
		{"pipeline's 0: the worker's", ", max_hold: 0s", 3 * time.Second, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse([]byte("pipelines:\n  - {name: a, profile: clickstream, topic: t" + c.yaml + "}"))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Pipelines[0].Hold(c.worker); got != c.want {
				t.Errorf("Hold(%v) = %v, want %v", c.worker, got, c.want)
			}
		})
	}
}

// A pipeline's start_delay wins over the worker's --start-delay, 0 included;
// with neither it is left to the ingester (nil); a negative one is refused.
func TestDelay(t *testing.T) {
	dur := func(d time.Duration) *time.Duration { return &d }
	for _, c := range []struct {
		name, yaml string
		worker     *time.Duration
		want       *time.Duration
	}{
		{"neither", "", nil, nil},
		{"worker's", "", dur(3 * time.Second), dur(3 * time.Second)},
		{"pipeline's", ", start_delay: 10s", nil, dur(10 * time.Second)},
		{"pipeline's over the worker's", ", start_delay: 10s", dur(3 * time.Second), dur(10 * time.Second)},
		{"pipeline's 0: none", ", start_delay: 0s", dur(3 * time.Second), dur(0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse([]byte("pipelines:\n  - {name: a, profile: clickstream, topic: t" + c.yaml + "}"))
			if err != nil {
				t.Fatal(err)
			}
			got := f.Pipelines[0].Delay(c.worker)
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Errorf("Delay(%v) = %v, want %v", c.worker, got, c.want)
			}
		})
	}
	if _, err := Parse([]byte("pipelines:\n  - {name: a, profile: clickstream, topic: t, start_delay: -1s}")); err == nil ||
		!strings.Contains(err.Error(), "start_delay") {
		t.Errorf("start_delay -1s: error %v; want one that names start_delay", err)
	}
}
