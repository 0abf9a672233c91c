package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// probe watches the worker from inside, as a worker interceptor: when the
// sink's WriteParquet returned (its rows are then in S3), and how many
// signals the workflows have taken in. Signals accepted by Temporal but not
// yet taken in are the worker's backlog.
type probe struct {
	interceptor.WorkerInterceptorBase
	closes         *closeLog
	clock          *clockTimeline
	sessionSignals atomic.Int64 // "events" signals handled by SessionWorkflows
	sessionEvents  atomic.Int64 // the events they carried
	noopSignals    atomic.Int64 // signals handled by the ceiling's no-op workflows
}

func (p *probe) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &probeActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, p: p}
}

func (p *probe) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &probeWorkflow{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, p: p}
}

type probeActivity struct {
	interceptor.ActivityInboundInterceptorBase
	p *probe
}

func (a *probeActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := a.Next.ExecuteActivity(ctx, in)
	if err != nil || activity.GetInfo(ctx).ActivityType.Name != "WriteParquet" || len(in.Args) == 0 {
		return res, err
	}
	switch w := in.Args[0].(type) {
	case store.WriteSessionsInput:
		a.p.closes.wrote(w.Records, time.Now())
	case *store.WriteSessionsInput:
		a.p.closes.wrote(w.Records, time.Now())
	}
	return res, err
}

type probeWorkflow struct {
	interceptor.WorkflowInboundInterceptorBase
	p *probe
}

// HandleSignal counts a signal when the workflow first sees it and follows
// the clocks' watermark updates; a replay (after the worker evicted the
// workflow from its cache) sees them again and is ignored.
func (w *probeWorkflow) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if !workflow.IsReplaying(ctx) {
		switch in.SignalName {
		case workflows.SignalEvents:
			w.p.sessionSignals.Add(1)
			w.p.sessionEvents.Add(eventCount(in))
		case workflows.SignalWatermark:
			w.p.watermark(ctx, in)
		case noopSignal:
			w.p.noopSignals.Add(1)
		}
	}
	return w.Next.HandleSignal(ctx, in)
}

// eventCount is the number of events in an "events" signal. Decoding into
// empty structs skips the events' fields.
func eventCount(in *interceptor.HandleSignalInput) int64 {
	var b struct {
		Events []struct{} `json:"events"`
	}
	if converter.GetDefaultDataConverter().FromPayloads(in.Arg, &b) != nil {
		return 0
	}
	return int64(len(b.Events))
}

// watermark hands a clock's update to the timeline, with the clock's
// workflow time: the instant the clock applies it.
func (p *probe) watermark(ctx workflow.Context, in *interceptor.HandleSignalInput) {
	pipeline, ok := strings.CutPrefix(workflow.GetInfo(ctx).WorkflowExecution.ID, workflows.ClockWorkflowID(""))
	var u workflows.WatermarkUpdate
	if !ok || p.clock == nil || converter.GetDefaultDataConverter().FromPayloads(in.Arg, &u) != nil {
		return
	}
	p.clock.observe(pipeline, u, workflow.Now(ctx).UnixMilli())
}
