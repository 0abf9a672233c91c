package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplay replays real histories (recorded by the integration test with
// -update-histories) against today's workflow code: a change that breaks
// determinism for running workflows fails here.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d histories in testdata/histories, want one per workflow kind (regenerate with: go test -run TestIntegration/straight -update-histories ./workflows)", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(SessionWorkflow)
			r.RegisterWorkflow(ClockWorkflow)
			r.RegisterWorkflow(SinkWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}
