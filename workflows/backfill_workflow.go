package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/backfill"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// QueryProgress returns a BackfillWorkflow's BackfillProgress.
const QueryProgress = "progress"

// Backfill phases, in order.
const (
	PhaseListing      = "listing"
	PhaseRouting      = "routing"
	PhaseSessionizing = "sessionizing"
	PhaseCleaning     = "cleaning"
	PhaseDone         = "done"
)

// BackfillRequest is what a backfill is asked to do. Its hash is the
// backfill's id, so the same request names the same workflow and the same
// objects: re-running it attaches to the run or returns its result.
type BackfillRequest struct {
	Pipeline string        `json:"pipeline"`
	Rules    session.Rules `json:"rules"`
	// Inputs are s3://bucket/prefix or absolute local paths, read by the
	// workers; their objects' events count in this order, as if
	// concatenated.
	Inputs []string `json:"inputs"`
	// Since (inclusive) and Until (exclusive) bound event times, in epoch
	// ms; 0 leaves a side open.
	Since int64 `json:"since,omitempty"`
	Until int64 `json:"until,omitempty"`
	// Shards is the number of key-hash shards; it bounds the memory of a
	// sessionizing activity to about 1/Shards of the input's events.
	Shards int `json:"shards"`
	// Out is s3://bucket/prefix. A starter leaves it empty to mean a
	// prefix of its own named by the id.
	Out string `json:"out,omitempty"`
}

// ID is the backfill id: 16 hex digits of the request's SHA-256.
func (r BackfillRequest) ID() string {
	if r.Rules.TimeUnit == time.Millisecond {
		r.Rules.TimeUnit = 0 // the default, spelt either way
	}
	b, _ := json.Marshal(r) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// BackfillWorkflowID is "backfill/<pipeline>/<id>".
func BackfillWorkflowID(pipeline, id string) string { return "backfill/" + pipeline + "/" + id }

// BackfillStartOptions are the options every starter of a backfill uses: the
// id from the request; a running backfill is attached to rather than started
// twice; a completed one is not run again (starting returns the completed
// run, whose result Get returns); a failed, terminated or cancelled one may
// run again from the start.
func BackfillStartOptions(in BackfillInput, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       BackfillWorkflowID(in.Pipeline, in.ID),
		TaskQueue:                taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("Backfill of pipeline %s from %d input(s) into %s", in.Pipeline, len(in.Inputs), in.Out),
	}
}

// BackfillInput starts or continues a BackfillWorkflow.
type BackfillInput struct {
	// ID is BackfillRequest.ID of the request as the user gave it.
	ID string `json:"id"`
	BackfillRequest
	// Parallelism bounds the activities in flight; default 4.
	Parallelism int `json:"parallelism,omitempty"`
	// PartLines is the routing unit (backfill.RouteInput.PartLines).
	PartLines int64 `json:"part_lines,omitempty"`
	// HeartbeatTimeout is how soon a dead worker's activity is retried
	// elsewhere; default 1m.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// ActivitiesPerRun bounds the activities of one run before it
	// continues as new, which keeps every history far below Temporal's
	// limits whatever the number of inputs; default 500.
	ActivitiesPerRun int `json:"activities_per_run,omitempty"`
	// State carries the progress across continue-as-new.
	State *BackfillProgress `json:"state,omitempty"`
}

// BackfillProgress is a backfill's progress (the progress query) and, once
// it is done, its result.
type BackfillProgress struct {
	ID        string    `json:"id"`
	Pipeline  string    `json:"pipeline"`
	Out       string    `json:"out"`
	Phase     string    `json:"phase"`
	StartedAt time.Time `json:"started_at"`
	// Phase 1: inputs listed and routed.
	Objects   int   `json:"objects"`
	Bytes     int64 `json:"bytes"`
	Routed    int   `json:"routed"`
	BytesRead int64 `json:"bytes_read"`
	Lines     int64 `json:"lines"`
	Events    int64 `json:"events"`
	Invalid   int64 `json:"invalid"`  // written to <out>/rejects/
	Filtered  int64 `json:"filtered"` // outside the time range
	MaxTime   int64 `json:"max_time_ms"`
	// Phase 2: shards sessionized.
	Shards      int   `json:"shards"`
	Sessionized int   `json:"sessionized"`
	Sessions    int64 `json:"sessions"` // rows written
	Duplicates  int64 `json:"duplicates"`
	Ignored     int64 `json:"ignored"`
	Files       int   `json:"files"` // Parquet objects
	// Resumed counts activities that resumed from an earlier attempt's
	// heartbeat; Runs the continue-as-new count.
	Resumed int `json:"resumed"`
	Runs    int `json:"runs"`
}

// routeWeight is phase 1's share of a backfill's time, as measured by the
// benchmark; Fraction uses it for the ETA.
const routeWeight = 0.45

// Fraction estimates how much of the work is done, from 0 to 1.
func (p BackfillProgress) Fraction() float64 {
	switch p.Phase {
	case PhaseListing, "":
		return 0
	case PhaseRouting:
		if p.Bytes > 0 {
			return routeWeight * float64(p.BytesRead) / float64(p.Bytes)
		}
		return routeWeight * float64(p.Routed) / float64(max(1, p.Objects))
	case PhaseSessionizing:
		return routeWeight + (1-routeWeight)*float64(p.Sessionized)/float64(max(1, p.Shards))
	}
	return 1
}

// ErrTypeBadBackfill is the error type of a backfill request that cannot run.
const ErrTypeBadBackfill = "SessionflowBadBackfill"

// Validate reports every problem of the request at once.
func (r BackfillRequest) Validate() error {
	var errs []error
	if r.Pipeline == "" {
		errs = append(errs, errors.New("a backfill needs a pipeline name"))
	}
	if len(r.Inputs) == 0 {
		errs = append(errs, errors.New("no inputs"))
	}
	outBucket, outPrefix, ok := store.ParseS3URL(r.Out)
	if !ok {
		errs = append(errs, fmt.Errorf("output %q: want s3://bucket/prefix", r.Out))
	}
	for _, input := range r.Inputs {
		bucket, prefix, isS3 := store.ParseS3URL(input)
		if ok && isS3 && bucket == outBucket && (prefix == "" || outPrefix == prefix || strings.HasPrefix(outPrefix, prefix+"/")) {
			errs = append(errs, fmt.Errorf("output %s lies under input %s: the backfill would read its own output", r.Out, input))
		}
	}
	if r.Shards < 1 || r.Shards > backfill.MaxShards {
		errs = append(errs, fmt.Errorf("shards %d: want 1 to %d", r.Shards, backfill.MaxShards))
	}
	if r.Until != 0 && r.Until <= r.Since {
		errs = append(errs, fmt.Errorf("until %d is not after since %d", r.Until, r.Since))
	}
	if err := r.Rules.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (in BackfillInput) validate() error {
	err := in.BackfillRequest.Validate()
	if in.ID == "" {
		err = errors.Join(err, errors.New("a backfill needs an id"))
	}
	if err != nil {
		return temporal.NewNonRetryableApplicationError("backfill request: "+err.Error(), ErrTypeBadBackfill, err)
	}
	return nil
}

// BackfillWorkflow sessionizes history with the batch engine, as a
// distributed job (docs/DESIGN.md §4):
//
//  1. PrepareBackfill lists the inputs into a manifest in S3.
//  2. RouteBackfillInput, one per input object, decodes it and routes its
//     events by key hash into shard objects, noting the largest event time.
//  3. SessionizeBackfillShard, one per shard, sessionizes the shard with the
//     whole input's largest event time as the final watermark and writes
//     Parquet in the streaming layout under Out.
//  4. CleanupBackfill removes the intermediate objects.
//
// At most Parallelism activities run at once. Event data never passes
// through the workflow: activities exchange it in S3, and the workflow keeps
// only counters, so its payloads stay small; after ActivitiesPerRun
// activities (or when Temporal suggests it) it continues as new, so its
// history stays short for any number of inputs.
func BackfillWorkflow(ctx workflow.Context, in BackfillInput) (BackfillProgress, error) {
	if err := in.validate(); err != nil {
		return BackfillProgress{}, err
	}
	var st BackfillProgress
	if in.State != nil {
		st = *in.State
		st.Runs++
	} else {
		st = BackfillProgress{ID: in.ID, Pipeline: in.Pipeline, Out: in.Out, Phase: PhaseListing,
			StartedAt: workflow.Now(ctx), Shards: in.Shards, MaxTime: session.NoWatermark}
	}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (BackfillProgress, error) { return st, nil }); err != nil {
		return st, err
	}
	hbTimeout := in.HeartbeatTimeout
	if hbTimeout <= 0 {
		hbTimeout = time.Minute
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    hbTimeout,
		// Bad input fails at once (non-retryable errors); an outage is
		// retried for about 45 minutes before the backfill gives up.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: time.Minute, MaximumAttempts: 50},
	})
	logger := workflow.GetLogger(ctx)
	var a *activities.Activities
	budget := in.ActivitiesPerRun
	if budget <= 0 {
		budget = 500
	}
	parallel := in.Parallelism
	if parallel <= 0 {
		parallel = 4
	}
	details := func() {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s**: %d/%d inputs routed, %d events, %d/%d shards sessionized, %d sessions written",
			st.Phase, st.Routed, st.Objects, st.Events, st.Sessionized, st.Shards, st.Sessions))
	}
	continueAsNew := func() error {
		in.State = &st
		logger.Info("backfill continues as new", "phase", st.Phase, "routed", st.Routed, "sessionized", st.Sessionized)
		return workflow.NewContinueAsNewError(ctx, BackfillWorkflow, in)
	}

	if st.Phase == PhaseListing {
		var m backfill.Manifest
		if err := workflow.ExecuteActivity(ctx, a.PrepareBackfill, backfill.PrepareInput{
			ID: in.ID, Out: in.Out, Inputs: in.Inputs,
		}).Get(ctx, &m); err != nil {
			return st, fmt.Errorf("list inputs: %w", err)
		}
		st.Objects, st.Bytes, st.Phase = m.Objects, m.Bytes, PhaseRouting
		budget--
		details()
	}

	if st.Phase == PhaseRouting {
		next, err := fanOut(ctx, st.Routed, st.Objects, parallel, &budget,
			func(ctx workflow.Context, i int) workflow.Future {
				return workflow.ExecuteActivity(ctx, a.RouteBackfillInput, backfill.RouteInput{
					ID: in.ID, Out: in.Out, Index: i, Rules: in.Rules, Since: in.Since, Until: in.Until,
					Shards: in.Shards, PartLines: in.PartLines,
				})
			},
			func(i int, f workflow.Future) error {
				var r backfill.Routed
				if err := f.Get(ctx, &r); err != nil {
					return fmt.Errorf("route input %d: %w", i, err)
				}
				st.Routed++
				st.BytesRead += r.Bytes
				st.Lines += r.Lines
				st.Events += r.Events
				st.Invalid += r.Invalid
				st.Filtered += r.Filtered
				st.MaxTime = max(st.MaxTime, r.MaxTime)
				st.Resumed += oneIf(r.ResumedPart > 0)
				details()
				return nil
			})
		if err != nil {
			return st, err
		}
		if next < st.Objects {
			return st, continueAsNew()
		}
		st.Phase = PhaseSessionizing
		details()
	}

	if st.Phase == PhaseSessionizing {
		next, err := fanOut(ctx, st.Sessionized, st.Shards, parallel, &budget,
			func(ctx workflow.Context, shard int) workflow.Future {
				return workflow.ExecuteActivity(ctx, a.SessionizeBackfillShard, backfill.ShardInput{
					ID: in.ID, Out: in.Out, Pipeline: in.Pipeline, Rules: in.Rules, Shard: shard, MaxTime: st.MaxTime,
				})
			},
			func(shard int, f workflow.Future) error {
				var r backfill.ShardResult
				if err := f.Get(ctx, &r); err != nil {
					return fmt.Errorf("sessionize shard %d: %w", shard, err)
				}
				st.Sessionized++
				st.Sessions += r.Sessions
				st.Duplicates += r.Duplicates
				st.Ignored += r.Ignored
				st.Files += r.Objects
				st.Resumed += oneIf(r.ResumedChunk > 0)
				details()
				return nil
			})
		if err != nil {
			return st, err
		}
		if next < st.Shards {
			return st, continueAsNew()
		}
		st.Phase = PhaseCleaning
		details()
	}

	if err := workflow.ExecuteActivity(ctx, a.CleanupBackfill, backfill.CleanupInput{ID: in.ID, Out: in.Out}).
		Get(ctx, nil); err != nil {
		return st, fmt.Errorf("clean up: %w", err)
	}
	st.Phase = PhaseDone
	details()
	logger.Info("backfill done", "events", st.Events, "invalid", st.Invalid, "sessions", st.Sessions, "files", st.Files)
	return st, nil
}

// fanOut runs start(i) for i from `from` up to `to` with at most parallel in
// flight, calling done as each completes. It stops launching when the budget
// of activities for this run is spent or Temporal suggests continuing as
// new, and returns once everything launched has completed, with the first
// index not launched. At the first error it cancels the others and returns
// that error.
func fanOut(ctx workflow.Context, from, to, parallel int, budget *int,
	start func(ctx workflow.Context, i int) workflow.Future, done func(i int, f workflow.Future) error) (int, error) {
	actx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	next, inflight := from, 0
	var firstErr error
	sel := workflow.NewSelector(ctx)
	for {
		for inflight < parallel && next < to && *budget > 0 && firstErr == nil &&
			!workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			i := next
			f := start(actx, i)
			next++
			inflight++
			*budget--
			sel.AddFuture(f, func(f workflow.Future) {
				inflight--
				if err := done(i, f); err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
			})
		}
		if inflight == 0 {
			return next, firstErr
		}
		sel.Select(ctx)
	}
}

func oneIf(b bool) int {
	if b {
		return 1
	}
	return 0
}
