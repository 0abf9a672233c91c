package ingest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// TestStartDelayGathersFirstBatches: with a start delay, the batches of a
// session's first burst wait in its history for one first workflow task;
// without one, or with a SignalWithStart per batch (which cuts a start
// delay short), the first batch schedules a task of its own. A batch with
// an end marker starts the session's task at once: it may close as soon as
// W passes the marker. A batch for a session that went away within the
// delay starts a new one.
func TestStartDelayGathersFirstBatches(t *testing.T) {
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})))
	ts := temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseClientOptions(client.Options{Logger: quiet}))
	c := ts.GetDefaultClient()
	ctx := context.Background()
	p := workflows.Pipeline{Name: "delay", Rules: testRules(t)}
	batch := func(i int64) workflows.EventBatch {
		return workflows.EventBatch{Events: []session.Event{{Time: 1_700_000_000_000 + i, ID: uint64(i + 1)}}, Watermark: session.NoWatermark}
	}
	// No worker polls: the tasks stay scheduled, and the history says how many.
	tasksScheduled := func(key string) (signals, tasks int) {
		it := c.GetWorkflowHistory(ctx, workflows.SessionWorkflowID(p.Name, key), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				signals++
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
				tasks++
			}
		}
		return signals, tasks
	}
	for _, c := range []struct {
		name      string
		delay     time.Duration
		endsAt    int64 // the batch with an end marker, -1 for none
		wantTasks int
	}{
		{"no delay", 0, -1, 1},
		{"delay", time.Minute, -1, 0},
		{"delay cut short by an end marker", time.Minute, 1, 1},
		{"no delay for a first batch with an end marker", time.Minute, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &TemporalSignaller{Client: ts.GetDefaultClient(), Pipeline: p, StartDelay: c.delay}
			key := "k-" + c.name
			for i := range int64(3) {
				b := batch(i)
				if i == c.endsAt {
					b.Events[0].Flags = session.FlagEnd
				}
				if err := s.SignalEvents(ctx, key, b); err != nil {
					t.Fatal(err)
				}
			}
			if signals, tasks := tasksScheduled(key); signals != 3 || tasks != c.wantTasks {
				t.Errorf("history: %d signals, %d workflow tasks scheduled; want 3 and %d", signals, tasks, c.wantTasks)
			}
		})
	}

	t.Run("gone within the delay", func(t *testing.T) {
		s := &TemporalSignaller{Client: c, Pipeline: p, StartDelay: time.Minute}
		id := workflows.SessionWorkflowID(p.Name, "gone")
		if err := s.SignalEvents(ctx, "gone", batch(0)); err != nil {
			t.Fatal(err)
		}
		first, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.TerminateWorkflow(ctx, id, "", "test"); err != nil {
			t.Fatal(err)
		}
		if err := s.SignalEvents(ctx, "gone", batch(1)); err != nil {
			t.Fatalf("a batch for a session terminated within the delay: %v; want a new session started", err)
		}
		second, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if second.GetWorkflowExecutionInfo().GetExecution().GetRunId() == first.GetWorkflowExecutionInfo().GetExecution().GetRunId() ||
			second.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("after the second batch: run %s, %v; want a new running run", second.GetWorkflowExecutionInfo().GetExecution().GetRunId(),
				second.GetWorkflowExecutionInfo().GetStatus())
		}
	})
}
