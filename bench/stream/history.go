package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
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
}

// RunBreakdown is the average number of history events of each type in a
// workflow run.
type RunBreakdown struct {
	Sampled int                `json:"sampled"`
	Events  float64            `json:"events"`
	ByType  map[string]float64 `json:"by_type"`
}

// historyTypes are the workflow types of a pipeline; the ceiling's no-op
// workflows are left out.
var historyTypes = []string{"SessionWorkflow", "ClockWorkflow", "SinkWorkflow"}

// countHistory lists every run of the pipeline's workflow types and sums
// their history lengths.
func countHistory(ctx context.Context, c client.Client, namespace string) (HistoryResult, error) {
	res := HistoryResult{Events: map[string]int64{}, Runs: map[string]int64{}}
	for _, typ := range historyTypes {
		events, runs, described, err := historyOf(ctx, c, namespace, typ)
		if err != nil {
			return res, err
		}
		res.Events[typ], res.Runs[typ] = events, runs
		res.Total += events
		res.Described += described
	}
	var err error
	res.SessionRun, err = sampleRuns(ctx, c, namespace, "SessionWorkflow", breakdownSample)
	return res, err
}

// breakdownSample is how many closed session runs sampleRuns reads.
const breakdownSample = 50

// sampleRuns reads the histories of up to n closed runs of a workflow type
// and averages their events by type.
func sampleRuns(ctx context.Context, c client.Client, namespace, typ string, n int) (RunBreakdown, error) {
	out := RunBreakdown{ByType: map[string]float64{}}
	req := &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace, PageSize: int32(n),
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'Running'", typ),
	}
	resp, err := retried(ctx, func(ctx context.Context) (*workflowservice.ListWorkflowExecutionsResponse, error) {
		return c.WorkflowService().ListWorkflowExecutions(ctx, req)
	})
	if err != nil {
		return out, fmt.Errorf("list closed %s runs: %w", typ, err)
	}
	for _, info := range resp.GetExecutions() {
		ex := info.GetExecution()
		it := c.GetWorkflowHistory(ctx, ex.GetWorkflowId(), ex.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				return out, fmt.Errorf("history of %s: %w", ex.GetWorkflowId(), err)
			}
			out.ByType[strings.TrimPrefix(e.GetEventType().String(), "EVENT_TYPE_")]++
			out.Events++
		}
		out.Sampled++
	}
	if out.Sampled > 0 {
		for t := range out.ByType {
			out.ByType[t] /= float64(out.Sampled)
		}
		out.Events /= float64(out.Sampled)
	}
	return out, nil
}

func historyOf(ctx context.Context, c client.Client, namespace, typ string) (events, runs, described int64, err error) {
	var running []*commonpb.WorkflowExecution
	req := &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace, PageSize: 1000, Query: fmt.Sprintf("WorkflowType = '%s'", typ),
	}
	for {
		resp, err := retried(ctx, func(ctx context.Context) (*workflowservice.ListWorkflowExecutionsResponse, error) {
			return c.WorkflowService().ListWorkflowExecutions(ctx, req)
		})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("list %s runs: %w", typ, err)
		}
		for _, info := range resp.GetExecutions() {
			runs++
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
	return events + n, runs, int64(len(running)), err
}

// describeLengths sums the current history length of runs, a few at a time.
func describeLengths(ctx context.Context, c client.Client, namespace string, runs []*commonpb.WorkflowExecution) (int64, error) {
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	work := make(chan *commonpb.WorkflowExecution)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ex := range work {
				d, err := retried(ctx, func(ctx context.Context) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
					return c.WorkflowService().DescribeWorkflowExecution(ctx,
						&workflowservice.DescribeWorkflowExecutionRequest{Namespace: namespace, Execution: ex})
				})
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("describe %s: %w", ex.GetWorkflowId(), err) })
					continue
				}
				total.Add(d.GetWorkflowExecutionInfo().GetHistoryLength())
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
