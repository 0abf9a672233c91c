package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sessionflow/sessionflow/workflows"
)

// HistoryResult is the Temporal history the pipeline's workflows wrote.
type HistoryResult struct {
	// Events sums the history length of every run of every workflow type
	// (runs that continued as new included), by type.
	Events map[string]int64 `json:"events"`
	Runs   map[string]int64 `json:"runs"`
	Total  int64            `json:"total"`
	// Described counts the runs whose length came from
	// DescribeWorkflowExecution: the visibility store has the final length
	// of closed runs only.
	Described int64 `json:"described"`
	// SessionRun is the average history of a closed SessionWorkflow run by
	// event type, over a sample of runs: where the events come from.
	SessionRun RunBreakdown `json:"session_run"`
	// Tasks is the workflow tasks of every run of every type (see
	// estimateTasks for how each is counted).
	Tasks TaskCount `json:"workflow_tasks"`
}

// historyTypes are the workflow types of a pipeline; the ceiling's no-op
// workflows are left out.
var historyTypes = []string{sessionType, "ClockWorkflow", "SinkWorkflow"}

const sessionType = "SessionWorkflow"

// countHistory lists every run of the pipeline's workflow types and sums
// their history lengths.
func countHistory(ctx context.Context, c client.Client, namespace string) (HistoryResult, error) {
	res := HistoryResult{Events: map[string]int64{}, Runs: map[string]int64{}}
	// The few clock and sink runs are read whole for their workflow tasks;
	// the thousands of session runs are estimated from the sample.
	// A failure there costs the tasks figure only, not the history count.
	exact := map[string]int64{}
	var tasksErr error
	for _, typ := range historyTypes {
		events, all, described, err := historyOf(ctx, c, namespace, typ)
		if err != nil {
			return res, err
		}
		res.Events[typ], res.Runs[typ] = events, int64(len(all))
		res.Total += events
		res.Described += described
		if typ != sessionType && tasksErr == nil {
			exact[typ], tasksErr = tasksOf(ctx, c, all)
		}
	}
	var err error
	res.SessionRun, err = sampleRuns(ctx, c, namespace, sessionType, breakdownSample)
	res.Tasks = estimateTasks(res.Events, exact, res.SessionRun)
	if tasksErr != nil {
		res.Tasks.Error = "workflow tasks not counted: " + tasksErr.Error()
	}
	return res, err
}

// breakdownSample is how many closed session runs sampleRuns reads.
const breakdownSample = 50

// sampleRuns reads the histories of up to n closed runs of a workflow type:
// the first page visibility lists, which is the most recently closed runs,
// not a random sample. Closed means any status but Running: runs that
// completed and runs that continued as new.
func sampleRuns(ctx context.Context, c client.Client, namespace, typ string, n int) (RunBreakdown, error) {
	req := &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace, PageSize: int32(n),
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'Running'", typ),
	}
	resp, err := retried(ctx, func(ctx context.Context) (*workflowservice.ListWorkflowExecutionsResponse, error) {
		return c.WorkflowService().ListWorkflowExecutions(ctx, req)
	})
	if err != nil {
		return newBreakdown(nil, nil, 0), fmt.Errorf("list closed %s runs: %w", typ, err)
	}
	totals := map[string]int64{}
	var runs []runCount
	sessions := 0
	for _, info := range resp.GetExecutions() {
		var rc runCount
		err := eachEvent(ctx, c, info.GetExecution(), func(e *historypb.HistoryEvent) {
			totals[eventKey(e.GetEventType())]++
			rc.events++
			if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
				rc.tasks++
			}
			// A session workflow hands a record to a sink once per session
			// it closes, and for nothing else: by a signal (before any
			// DeliverRecord fallback), or in a lean run by the local
			// activity DeliverRecord (version 1 and 2) or HandOff (3),
			// whatever the fallback after it.
			if a := e.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalRecord {
				sessions++
			}
			if t := localActivityType(e); t == "DeliverRecord" || t == "HandOff" {
				sessions++
			}
		})
		if err != nil {
			return newBreakdown(totals, runs, sessions), err
		}
		runs = append(runs, rc)
	}
	return newBreakdown(totals, runs, sessions), nil
}

// eachEvent calls f on every event of a run's history.
func eachEvent(ctx context.Context, c client.Client, ex *commonpb.WorkflowExecution, f func(*historypb.HistoryEvent)) error {
	it := c.GetWorkflowHistory(ctx, ex.GetWorkflowId(), ex.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return fmt.Errorf("history of %s: %w", ex.GetWorkflowId(), err)
		}
		f(e)
	}
	return nil
}

// eventKey names an event type as RunBreakdown.ByType does.
func eventKey(t enumspb.EventType) string { return strings.TrimPrefix(t.String(), "EVENT_TYPE_") }

// tasksOf counts the WorkflowTaskCompleted events of runs, reading every
// history.
func tasksOf(ctx context.Context, c client.Client, runs []*commonpb.WorkflowExecution) (int64, error) {
	return sumOver(runs, func(ex *commonpb.WorkflowExecution) (int64, error) {
		var n int64
		err := eachEvent(ctx, c, ex, func(e *historypb.HistoryEvent) {
			if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
				n++
			}
		})
		return n, err
	})
}

// historyOf sums the history lengths of every run of a workflow type and
// returns the runs.
func historyOf(ctx context.Context, c client.Client, namespace, typ string) (events int64, all []*commonpb.WorkflowExecution, described int64, err error) {
	var running []*commonpb.WorkflowExecution
	req := &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace, PageSize: 1000, Query: fmt.Sprintf("WorkflowType = '%s'", typ),
	}
	for {
		resp, err := retried(ctx, func(ctx context.Context) (*workflowservice.ListWorkflowExecutionsResponse, error) {
			return c.WorkflowService().ListWorkflowExecutions(ctx, req)
		})
		if err != nil {
			return 0, nil, 0, fmt.Errorf("list %s runs: %w", typ, err)
		}
		for _, info := range resp.GetExecutions() {
			all = append(all, info.GetExecution())
			if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetHistoryLength() == 0 {
				running = append(running, info.GetExecution())
				continue
			}
			events += info.GetHistoryLength()
		}
		if len(resp.GetNextPageToken()) == 0 {
			break
		}
		req.NextPageToken = resp.GetNextPageToken()
	}
	n, err := describeLengths(ctx, c, namespace, running)
	return events + n, all, int64(len(running)), err
}

// describeLengths sums the current history length of runs.
func describeLengths(ctx context.Context, c client.Client, namespace string, runs []*commonpb.WorkflowExecution) (int64, error) {
	return sumOver(runs, func(ex *commonpb.WorkflowExecution) (int64, error) {
		d, err := retried(ctx, func(ctx context.Context) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
			return c.WorkflowService().DescribeWorkflowExecution(ctx,
				&workflowservice.DescribeWorkflowExecutionRequest{Namespace: namespace, Execution: ex})
		})
		if err != nil {
			return 0, fmt.Errorf("describe %s: %w", ex.GetWorkflowId(), err)
		}
		return d.GetWorkflowExecutionInfo().GetHistoryLength(), nil
	})
}

// sumOver sums f over runs, a few at a time; the first error is returned
// with the sum of the others.
func sumOver(runs []*commonpb.WorkflowExecution, f func(*commonpb.WorkflowExecution) (int64, error)) (int64, error) {
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	work := make(chan *commonpb.WorkflowExecution)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ex := range work {
				n, err := f(ex)
				if err != nil {
					once.Do(func() { firstErr = err })
					continue
				}
				total.Add(n)
			}
		})
	}
	for _, ex := range runs {
		work <- ex
	}
	close(work)
	wg.Wait()
	return total.Load(), firstErr
}

// retried makes a call up to twice, a minute each: a server still busy with
// a run's backlog answers slowly, later than the SDK client's own 10 s RPC
// timeout, which is why the calls go to the raw WorkflowService.
func retried[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 2 {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		v, err = call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return v, err
}

// localActivityType is the activity type of a local activity's marker, ""
// for any other event. The SDK records it in the marker's "data" detail.
func localActivityType(e *historypb.HistoryEvent) string {
	a := e.GetMarkerRecordedEventAttributes()
	if a == nil || a.GetMarkerName() != "LocalActivity" {
		return ""
	}
	for _, p := range a.GetDetails()["data"].GetPayloads() {
		var d struct{ ActivityType string }
		if json.Unmarshal(p.GetData(), &d) == nil && d.ActivityType != "" {
			return d.ActivityType
		}
	}
	return ""
}
