package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// Signaller is what the ingester needs from Temporal. TemporalSignaller is
// the real one; tests use fakes that fail and delay. Implementations must be
// safe for concurrent use.
type Signaller interface {
	// SignalEvents delivers one key's batch to its SessionWorkflow,
	// starting the workflow if none runs. A nil error means Temporal
	// accepted the signal: the events are durable.
	SignalEvents(ctx context.Context, key string, b workflows.EventBatch) error
	// PublishMarks sends the pipeline's ClockWorkflow a watermark update,
	// starting the clock if it does not run.
	PublishMarks(ctx context.Context, u workflows.WatermarkUpdate) error
	// ReadClock returns the clock's state; a pipeline without a clock yet
	// has session.NoWatermark and no marks.
	ReadClock(ctx context.Context) (workflows.ClockState, error)
}

// TemporalSignaller signals a pipeline's workflows through a Temporal client.
type TemporalSignaller struct {
	Client   client.Client
	Pipeline workflows.Pipeline
	// TaskQueue of the workflows it starts; default workflows.TaskQueue.
	TaskQueue string
	// StartDelay, if above zero, is how long a session it starts waits for
	// its first workflow task, so that the batches of the session's first
	// burst arrive in one task (see DefaultStartDelay). 0 starts at once.
	StartDelay time.Duration

	mu      sync.Mutex
	started map[string]time.Time // keys started within StartDelay
	swept   time.Time
}

func (t *TemporalSignaller) taskQueue() string {
	if t.TaskQueue != "" {
		return t.TaskQueue
	}
	return workflows.TaskQueue
}

// SignalEvents is SignalWithStart of workflows.SessionWorkflow on
// "session/<pipeline>/<key>".
//
// With a StartDelay, a batch for a key it started less than StartDelay ago
// is a plain signal: Temporal does not cut a start delay short for it, as
// it does for a SignalWithStart, so every batch of the delay reaches the
// session's first task. If that workflow is gone, it starts one. A batch
// with an end marker is the exception: its session may close as soon as W
// passes the marker, so it starts without a delay, or cuts one short.
func (t *TemporalSignaller) SignalEvents(ctx context.Context, key string, b workflows.EventBatch) error {
	id := workflows.SessionWorkflowID(t.Pipeline.Name, key)
	ends := slices.ContainsFunc(b.Events, func(e session.Event) bool { return e.Flags&session.FlagEnd != 0 })
	if !ends && t.delaying(key) {
		err := t.Client.SignalWorkflow(ctx, id, "", workflows.SignalEvents, b)
		var notFound *serviceerror.NotFound
		if !errors.As(err, &notFound) {
			if err != nil {
				return fmt.Errorf("signal %d events to %s: %w", len(b.Events), id, err)
			}
			return nil
		}
	}
	opts := client.StartWorkflowOptions{
		ID:            id,
		TaskQueue:     t.taskQueue(),
		StaticSummary: fmt.Sprintf("session of %s in pipeline %s", key, t.Pipeline.Name),
	}
	if !ends {
		opts.StartDelay = t.StartDelay
	}
	if t.Pipeline.Visibility {
		// Findable in the UI, and listed as open, from the first signal on,
		// at no cost to the workflow; it adds the rest when it closes.
		opts.TypedSearchAttributes = temporal.NewSearchAttributes(
			workflows.AttrSessionKey.ValueSet(key), workflows.AttrPipeline.ValueSet(t.Pipeline.Name),
			workflows.AttrSessionState.ValueSet(workflows.StateOpen))
	}
	_, err := t.Client.SignalWithStartWorkflow(ctx, id, workflows.SignalEvents, b, opts,
		workflows.SessionWorkflow, workflows.SessionInput{Pipeline: t.Pipeline, Key: key})
	if err != nil {
		return fmt.Errorf("signal %d events to %s: %w", len(b.Events), id, err)
	}
	t.startedNow(key)
	return nil
}

// delaying tells whether key was started less than StartDelay ago.
func (t *TemporalSignaller) delaying(key string) bool {
	if t.StartDelay <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.started[key]
	return ok && time.Since(at) < t.StartDelay
}

// startedNow notes that key was started (or signalled with start) now, and
// forgets, once per StartDelay, the keys whose delay is over.
func (t *TemporalSignaller) startedNow(key string) {
	if t.StartDelay <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.started == nil {
		t.started, t.swept = make(map[string]time.Time), now
	}
	if now.Sub(t.swept) >= t.StartDelay {
		maps.DeleteFunc(t.started, func(_ string, at time.Time) bool { return now.Sub(at) >= t.StartDelay })
		t.swept = now
	}
	t.started[key] = now
}

// PublishMarks is SignalWithStart of workflows.ClockWorkflow on
// "clock/<pipeline>", on the clocks' own task queue.
func (t *TemporalSignaller) PublishMarks(ctx context.Context, u workflows.WatermarkUpdate) error {
	id := workflows.ClockWorkflowID(t.Pipeline.Name)
	_, err := t.Client.SignalWithStartWorkflow(ctx, id, workflows.SignalWatermark, u, client.StartWorkflowOptions{
		ID:            id,
		TaskQueue:     workflows.ClockTaskQueue(t.taskQueue()),
		StaticSummary: "event-time clock of pipeline " + t.Pipeline.Name,
	}, workflows.ClockWorkflow, workflows.ClockInput{Pipeline: t.Pipeline.Name, Lateness: t.Pipeline.Rules.Lateness})
	if err != nil {
		return fmt.Errorf("publish %d marks to %s: %w", len(u.Marks), id, err)
	}
	return nil
}

// ReadClock queries the clock.
func (t *TemporalSignaller) ReadClock(ctx context.Context) (workflows.ClockState, error) {
	id := workflows.ClockWorkflowID(t.Pipeline.Name)
	v, err := t.Client.QueryWorkflow(ctx, id, "", workflows.QueryClock)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return workflows.ClockState{Watermark: session.NoWatermark}, nil
	}
	if err != nil {
		return workflows.ClockState{}, fmt.Errorf("query %s: %w", id, err)
	}
	var s workflows.ClockState
	if err := v.Get(&s); err != nil {
		return workflows.ClockState{}, fmt.Errorf("decode the state of %s: %w", id, err)
	}
	return s, nil
}
