package workflows_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// -update-histories makes the integration test (TestIntegration/straight)
// save real histories of each workflow kind into testdata/histories, and
// TestRecordHistories record the corpus's particular cases there, for
// TestReplay.
var updateHistories = flag.Bool("update-histories", false, "save workflow histories from the integration test and TestRecordHistories into testdata/histories")

// saveHistories stores one history per query: the first run it matches.
func saveHistories(ctx context.Context, t *testing.T, c client.Client, namespace string) {
	picks := map[string]string{
		"session_completed":        "WorkflowType = 'SessionWorkflow' AND ExecutionStatus = 'Completed'",
		"session_continued_as_new": "WorkflowType = 'SessionWorkflow' AND ExecutionStatus = 'ContinuedAsNew'",
		"sink_continued_as_new":    "WorkflowType = 'SinkWorkflow' AND ExecutionStatus = 'ContinuedAsNew'",
		"clock_running":            "WorkflowType = 'ClockWorkflow' AND ExecutionStatus = 'Running'",
	}
	for name, query := range picks {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query, PageSize: 1})
		if err != nil || len(resp.GetExecutions()) == 0 {
			t.Fatalf("no run for %s (%q): %v", name, query, err)
		}
		ex := resp.GetExecutions()[0].GetExecution()
		var h historypb.History
		it := c.GetWorkflowHistory(ctx, ex.GetWorkflowId(), ex.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, e)
		}
		if err := writeHistory(name, &h); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %s: %s (%d events)", name, ex.GetWorkflowId(), len(h.Events))
	}
}

// writeHistory stores h as testdata/histories/<name>.json, in the JSON form
// the replayer reads.
func writeHistory(name string, h *historypb.History) error {
	dir := filepath.Join("testdata", "histories")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644)
}
