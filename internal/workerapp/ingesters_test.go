package workerapp

import (
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/ingest"
)

// Each pipeline's ingester holds for its own max_hold, else the worker's
// --max-hold, else (0) the hold its rules imply; the worker's other limits
// carry over and one pipeline's hold never leaks into the next one's.
func TestPipelineLimits(t *testing.T) {
	f, err := config.Parse([]byte(`
pipelines:
  - {name: own, profile: clickstream, topic: a, max_hold: 10s, rules: {gap: 30s}}
  - {name: derived, profile: clickstream, topic: b, rules: {gap: 30s}}
  - {name: charging, profile: charging, topic: c, rules: {gap: 15s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		worker time.Duration // --max-hold
		want   []time.Duration
	}{
		{"no --max-hold: from the rules", 0, []time.Duration{10 * time.Second, 7500 * time.Millisecond, 3750 * time.Millisecond}},
		{"--max-hold 2s", 2 * time.Second, []time.Duration{10 * time.Second, 2 * time.Second, 2 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			worker := ingest.Limits{MaxHold: tc.worker, MaxInFlight: 7}
			for i, p := range f.Pipelines {
				lim := pipelineLimits(worker, p)
				wp, err := p.Workflow()
				if err != nil {
					t.Fatal(err)
				}
				if got := lim.Hold(wp.Rules); got != tc.want[i] || lim.MaxInFlight != 7 {
					t.Errorf("%s: hold %v, MaxInFlight %d; want %v, 7", p.Name, got, lim.MaxInFlight, tc.want[i])
				}
			}
			if worker.MaxHold != tc.worker {
				t.Errorf("the worker's limits changed: MaxHold %v", worker.MaxHold)
			}
		})
	}
}
