package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
)

// TemporalActivities are the activities that talk to other workflows. They
// live here rather than in package activities because they start and signal
// this package's workflows. Safe for concurrent use.
type TemporalActivities struct {
	Client client.Client
	// ClockMaxAge is how old a cached clock reading may be; default 250ms.
	ClockMaxAge time.Duration
	// ClockSkew is how far the clocks of Temporal's history hosts may
	// disagree; default 500ms. A session reads W as of its workflow task's
	// start minus this (ClockState.AsOf), so it costs as much close latency.
	ClockSkew time.Duration

	// Notifier sends HandOff's notices: the worker's activities.Activities.
	Notifier interface {
		Notify(context.Context, activities.Notification) error
	}

	mu     sync.Mutex
	clocks map[string]*cachedClock
}

// cachedClock is one pipeline's clock as this worker last read it: every
// session of the worker shares the reading, so the clock workflow answers a
// few queries a second however many sessions wait on it.
type cachedClock struct {
	mu    sync.Mutex
	state ClockState
	at    time.Time
}

// ClockRequest asks for a pipeline's clock as it stood at a workflow time.
type ClockRequest struct {
	Pipeline string `json:"pipeline"`
	AsOfMs   int64  `json:"as_of_ms"`
}

// ClockState reads a pipeline's clock as of the request's time, less the
// clock skew (ClockState.AsOf explains why), from this worker's cache when
// it is fresh. A pipeline without a clock yet has no watermark.
func (a *TemporalActivities) ClockState(ctx context.Context, req ClockRequest) (ClockState, error) {
	s, err := a.latestClock(ctx, req.Pipeline)
	if err != nil {
		return ClockState{}, err
	}
	skew := a.ClockSkew
	if skew <= 0 {
		skew = 500 * time.Millisecond
	}
	return s.AsOf(req.AsOfMs - skew.Milliseconds()), nil
}

// latestClock is the clock's latest state, cached.
func (a *TemporalActivities) latestClock(ctx context.Context, pipeline string) (ClockState, error) {
	a.mu.Lock()
	if a.clocks == nil {
		a.clocks = map[string]*cachedClock{}
	}
	c := a.clocks[pipeline]
	if c == nil {
		c = &cachedClock{}
		a.clocks[pipeline] = c
	}
	a.mu.Unlock()

	maxAge := a.ClockMaxAge
	if maxAge <= 0 {
		maxAge = 250 * time.Millisecond
	}
	c.mu.Lock() // one query at a time per pipeline; the others wait for it
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < maxAge {
		return c.state, nil
	}
	s, err := a.queryClock(ctx, pipeline)
	if err != nil {
		return ClockState{}, err
	}
	c.state, c.at = s, time.Now()
	return s, nil
}

func (a *TemporalActivities) queryClock(ctx context.Context, pipeline string) (ClockState, error) {
	v, err := a.Client.QueryWorkflow(ctx, ClockWorkflowID(pipeline), "", QueryClock)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return ClockState{Watermark: session.NoWatermark}, nil
	}
	if err != nil {
		return ClockState{}, fmt.Errorf("query clock of %s: %w", pipeline, err)
	}
	var s ClockState
	if err := v.Get(&s); err != nil {
		return ClockState{}, fmt.Errorf("decode clock of %s: %w", pipeline, err)
	}
	s.Marks = nil // sessions need only W, its past and its pace
	return s, nil
}

// DeliverInput hands a closed session to its sink.
type DeliverInput struct {
	Pipeline Pipeline       `json:"pipeline"`
	Bucket   int            `json:"bucket"`
	Record   session.Record `json:"record"`
}

// DeliverRecord signals the record to its SinkWorkflow, starting the sink if
// it is not running. Sessions use it only when a plain signal found no sink;
// the sink drops a record it already has, so a retry cannot duplicate rows.
func (a *TemporalActivities) DeliverRecord(ctx context.Context, in DeliverInput) error {
	id := SinkWorkflowID(in.Pipeline.Name, in.Bucket)
	_, err := a.Client.SignalWithStartWorkflow(ctx, id, SignalRecord, in.Record, client.StartWorkflowOptions{
		ID:            id,
		TaskQueue:     activity.GetInfo(ctx).TaskQueue,
		StaticSummary: fmt.Sprintf("Parquet sink %d of pipeline %s", in.Bucket, in.Pipeline.Name),
	}, SinkWorkflow, SinkInput{Pipeline: in.Pipeline, Bucket: in.Bucket})
	if err != nil {
		return fmt.Errorf("deliver %s to %s: %w", in.Record.SessionID, id, err)
	}
	return nil
}

// HandOffInput is a closed record for its sink and, if its pipeline sends
// one, the record's session_closed notice.
type HandOffInput struct {
	Deliver DeliverInput             `json:"deliver"`
	Notice  *activities.Notification `json:"notice,omitempty"`
}

// HandOffResult says how the notice went; a failed delivery is HandOff's
// error instead.
type HandOffResult struct {
	NoticeError string `json:"notice_error,omitempty"`
	// NoticeFinal: a receiver refused the notice; retrying cannot help.
	NoticeFinal bool `json:"notice_final,omitempty"`
}

// HandOff delivers the record (DeliverRecord) and then sends its notice.
// Only the delivery fails the activity: a retry repeats it, which the sink
// absorbs, and never resends a notice a receiver already has. The notice's
// failure is in the result, for the workflow to retry it on its own.
func (a *TemporalActivities) HandOff(ctx context.Context, in HandOffInput) (HandOffResult, error) {
	if err := a.DeliverRecord(ctx, in.Deliver); err != nil {
		return HandOffResult{}, err
	}
	if in.Notice == nil {
		return HandOffResult{}, nil
	}
	if a.Notifier == nil {
		return HandOffResult{NoticeError: "this worker has no notifier"}, nil
	}
	err := a.Notifier.Notify(ctx, *in.Notice)
	if err == nil {
		return HandOffResult{}, nil
	}
	var ae *temporal.ApplicationError
	return HandOffResult{NoticeError: err.Error(), NoticeFinal: errors.As(err, &ae) && ae.NonRetryable()}, nil
}
