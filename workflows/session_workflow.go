package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// SessionInput starts or continues a SessionWorkflow.
type SessionInput struct {
	Pipeline Pipeline `json:"pipeline"`
	Key      string   `json:"key"`
	// Carried across continue-as-new:
	State     *session.TrackerState `json:"state,omitempty"`
	Watermark int64                 `json:"watermark,omitempty"` // best known W
	Rate      float64               `json:"rate,omitempty"`      // W's pace, from the clock
	Warned    string                `json:"warned,omitempty"`    // session whose expiry warning went out
	LateSeq   int64                 `json:"late_seq,omitempty"`
}

// SessionState is the answer to QueryState: the live session of a key.
type SessionState struct {
	Pipeline  string `json:"pipeline"`
	Key       string `json:"key"`
	Watermark int64  `json:"watermark"`
	// Session is the open session so far (no close reason yet), if any.
	Session        *session.Record `json:"session,omitempty"`
	Deadline       int64           `json:"deadline,omitempty"`
	DeadlineReason session.Reason  `json:"deadline_reason,omitempty"`
	Pending        int             `json:"pending"` // events waiting for the watermark
	Stats          session.Stats   `json:"stats"`
}

// Limits of one run; past them the session continues as new.
const (
	sessionSignalsPerRun = 1000
	minWait              = 250 * time.Millisecond
)

// SessionWorkflow is one key's session: it buffers the events signalled to
// it, applies them as the pipeline's watermark passes them, closes the
// session when the watermark passes its earliest deadline, hands the record
// to the sink, notifies, and completes with the record. If events of a later
// session are already buffered it continues as new carrying them.
func SessionWorkflow(ctx workflow.Context, in SessionInput) (session.Record, error) {
	r := newSessionRun(ctx, in)
	return r.run()
}

type sessionRun struct {
	ctx     workflow.Context
	in      SessionInput
	p       Pipeline
	tr      *session.Tracker
	w       int64
	rate    float64
	final   bool
	signals int

	late    []store.LateEvent
	notices []workflow.Future
	result  session.Record
	closed  bool

	timer   workflow.Future
	woke    bool          // this step follows the timer
	wait    time.Duration // last timer's length, for back-off while W stands still
	attrs   sessionAttrs  // last upserted search attributes
	details string
}

func newSessionRun(ctx workflow.Context, in SessionInput) *sessionRun {
	p := in.Pipeline
	r := &sessionRun{in: in, p: p, w: session.NoWatermark, rate: in.Rate}
	r.ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	if in.State != nil {
		r.tr = session.RestoreTracker(&r.p.Rules, p.Name, in.Key, *in.State)
		r.w = r.tr.Watermark()
	} else {
		r.tr = session.NewTracker(&r.p.Rules, p.Name, in.Key)
	}
	if in.State != nil && in.Watermark > r.w { // carried by continue-as-new
		r.w = in.Watermark
	}
	if p.Notify.BreakStarted {
		r.tr.TrackBreaks()
	}
	// Runs recorded before tie-numbered ids met a tie with the plain id;
	// asking only at a tie keeps the version marker out of every other run.
	r.tr.GateTies(func() bool {
		return workflow.GetVersion(ctx, changeTieIDs, workflow.DefaultVersion, 1) >= 1
	})
	return r
}

// changeTieIDs is the workflow.GetVersion change id of numbering a session
// that starts in its predecessor's millisecond ("<key>/<start>-<n>").
const changeTieIDs = "tie-numbered-session-ids"

func (r *sessionRun) run() (session.Record, error) {
	if err := workflow.SetQueryHandler(r.ctx, QueryState, r.state); err != nil {
		return session.Record{}, err
	}
	events := workflow.GetSignalChannel(r.ctx, SignalEvents)
	// ready: there is work to step before waiting. A continued run starts
	// with its carried events and must arm its timer before any wait; a new
	// run waits for its first batch.
	ready := r.in.State != nil
	for {
		if !ready {
			fired := false
			sel := workflow.NewSelector(r.ctx)
			sel.AddReceive(events, func(c workflow.ReceiveChannel, _ bool) { r.receive(c) })
			if r.timer != nil {
				sel.AddFuture(r.timer, func(workflow.Future) { fired, r.timer = true, nil })
			}
			sel.Select(r.ctx)
			r.drain(events)
			if fired {
				r.refreshClock()
			}
			r.woke = fired
		}
		ready = false
		if err := r.step(); err != nil {
			return session.Record{}, err
		}
		r.woke = false
		_, busy := r.tr.NextDeadline()
		if !busy || r.closed || r.signals >= sessionSignalsPerRun || workflow.GetInfo(r.ctx).GetContinueAsNewSuggested() {
			r.awaitNotices()
			// Batches that reached this run while it finished must not be
			// lost with it: nothing may block between this drain and the end.
			if r.drain(events) {
				ready = true
				continue
			}
			if !busy {
				return r.result, nil
			}
			return session.Record{}, workflow.NewContinueAsNewError(r.ctx, SessionWorkflow, r.next())
		}
		r.arm()
	}
}

// receive takes one batch from the channel.
func (r *sessionRun) receive(c workflow.ReceiveChannel) {
	var b EventBatch
	c.Receive(r.ctx, &b)
	r.add(b)
}

// drain takes every batch already delivered, without blocking. It reports
// whether there was any.
func (r *sessionRun) drain(c workflow.ReceiveChannel) bool {
	got := false
	for {
		var b EventBatch
		if !c.ReceiveAsync(&b) {
			return got
		}
		r.add(b)
		got = true
	}
}

func (r *sessionRun) add(b EventBatch) {
	r.signals++
	for _, e := range r.tr.Add(b.Events...) {
		r.late = append(r.late, store.LateEvent{Pipeline: r.p.Name, Key: r.in.Key, Event: e, Watermark: r.tr.Watermark()})
	}
	// The sender's watermark is no later than any of its events, so it is
	// safe to take it only after adding them.
	r.w = max(r.w, b.Watermark)
	if b.Rate > 0 {
		r.rate = b.Rate
	}
}

// refreshClock asks the pipeline's clock for its watermark.
func (r *sessionRun) refreshClock() {
	ctx := workflow.WithLocalActivityOptions(r.ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	// W as of this task's start (ClockState.AsOf). workflow.Now is that start
	// until a local activity completes in the task, and this is the task's
	// only one: it follows a timer, and a timer fires in a task of its own.
	req := ClockRequest{Pipeline: r.p.Name, AsOfMs: workflow.Now(r.ctx).UnixMilli()}
	var ta *TemporalActivities
	var c ClockState
	if err := workflow.ExecuteLocalActivity(ctx, ta.ClockState, req).Get(ctx, &c); err != nil {
		workflow.GetLogger(r.ctx).Warn("clock unavailable; keeping the watermark", "error", err)
		return
	}
	before := r.w
	r.w = max(r.w, c.Watermark)
	if c.Rate > 0 {
		r.rate = c.Rate
	}
	r.final = c.EndOfInput
	if r.w > before {
		r.wait = 0 // W moves: no back-off
	}
}

// step applies what the watermark allows and acts on what closed.
func (r *sessionRun) step() error {
	var closed []session.Record
	if r.final {
		closed = r.tr.Finish(r.w)
	} else {
		closed = r.tr.Advance(r.w)
	}
	if err := r.writeLate(); err != nil {
		return err
	}
	for _, b := range r.tr.TakeBreaks() {
		r.notify(activities.KindBreakStarted, b.SessionID, b.Start, r.openRecord())
	}
	r.checkExpiry()
	for _, rec := range closed {
		rec.ClosedAtMs = workflow.Now(r.ctx).UnixMilli()
		if err := r.deliver(rec); err != nil {
			return err
		}
		if r.p.Notify.SessionClosed {
			r.notify(activities.KindSessionClosed, rec.SessionID, rec.End, rec)
		}
		workflow.GetLogger(r.ctx).Info("session closed", "session_id", rec.SessionID,
			"reason", rec.CloseReason, "events", rec.EventCount)
		r.result, r.closed = rec, true
	}
	r.show()
	return nil
}

// deliver hands a closed record to its sink: a signal if the sink runs, the
// DeliverRecord activity (signal-with-start) if not.
func (r *sessionRun) deliver(rec session.Record) error {
	bucket := SinkBucket(r.in.Key, r.p.buckets())
	err := workflow.SignalExternalWorkflow(r.ctx, SinkWorkflowID(r.p.Name, bucket), "", SignalRecord, rec).Get(r.ctx, nil)
	if err == nil {
		return nil
	}
	var ta *TemporalActivities
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	if err := workflow.ExecuteActivity(ctx, ta.DeliverRecord, DeliverInput{Pipeline: r.p, Bucket: bucket, Record: rec}).Get(ctx, nil); err != nil {
		return fmt.Errorf("deliver %s: %w", rec.SessionID, err)
	}
	return nil
}

// notify starts a notification; its failure is logged, never fatal, and
// never delays the hand-off of the record.
func (r *sessionRun) notify(kind, sessionID string, at int64, rec session.Record) {
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	var a *activities.Activities
	r.notices = append(r.notices, workflow.ExecuteActivity(ctx, a.Notify, activities.Notification{
		Kind: kind, Pipeline: r.p.Name, Key: r.in.Key, SessionID: sessionID, At: at, Session: rec,
	}))
}

func (r *sessionRun) awaitNotices() {
	for _, f := range r.notices {
		if err := f.Get(r.ctx, nil); err != nil {
			workflow.GetLogger(r.ctx).Error("notification failed for good", "error", err)
		}
	}
	r.notices = nil
}

// checkExpiry sends the expiry warning once the watermark passes
// start + max duration − lead while the session is still open.
func (r *sessionRun) checkExpiry() {
	at, ok := r.expiryAt()
	if !ok || r.w <= at {
		return
	}
	rec := r.openRecord()
	r.in.Warned = rec.SessionID
	r.notify(activities.KindExpiryWarning, rec.SessionID, at, rec)
}

// expiryAt is when the open session's expiry warning is due, if one is.
func (r *sessionRun) expiryAt() (int64, bool) {
	rules := r.p.Rules
	if !r.p.Notify.ExpiryWarning || rules.ExpiryWarning <= 0 || rules.MaxDuration <= 0 {
		return 0, false
	}
	rec, _, _, open := r.tr.Open()
	if !open || rec.SessionID == r.in.Warned {
		return 0, false
	}
	return rec.Start + (rules.MaxDuration - rules.ExpiryWarning).Milliseconds(), true
}

func (r *sessionRun) openRecord() session.Record {
	rec, _, _, _ := r.tr.Open()
	return rec
}

func (r *sessionRun) writeLate() error {
	if len(r.late) == 0 {
		return nil
	}
	var a *activities.Activities
	in := store.WriteLateInput{
		Prefix: r.p.prefix(),
		Writer: fmt.Sprintf("%s/%s", SessionWorkflowID(r.p.Name, r.in.Key), workflow.GetInfo(r.ctx).FirstRunID),
		Seq:    r.in.LateSeq,
		Events: r.late,
	}
	if err := workflow.ExecuteActivity(r.ctx, a.WriteLate, in).Get(r.ctx, nil); err != nil {
		return fmt.Errorf("write %d late events: %w", len(r.late), err)
	}
	r.in.LateSeq++
	r.late = nil
	return nil
}

// arm starts the one timer, for when the watermark is expected to pass the
// next deadline, unless one is already running.
func (r *sessionRun) arm() {
	if r.timer != nil {
		return
	}
	target, ok := r.tr.NextDeadline()
	summary := "deadline"
	if _, _, why, open := r.tr.Open(); open && ok {
		summary = string(why) + " deadline"
	} else if ok {
		summary = "buffered events"
	}
	if at, due := r.expiryAt(); due && (!ok || at < target) {
		target, ok, summary = at, true, "expiry warning"
	}
	if !ok {
		return
	}
	wait := r.p.maxWait()
	if r.rate > 0 && r.w != session.NoWatermark {
		wait = time.Duration(float64(target+1-r.w)/r.rate) * time.Millisecond
	}
	if r.wait > 0 && wait <= r.wait { // the last guess was too early: back off
		wait = 2 * r.wait
	}
	wait = min(max(wait, minWait), r.p.maxWait())
	r.wait = wait
	r.timer = workflow.NewTimerWithOptions(r.ctx, wait, workflow.TimerOptions{Summary: summary})
}

// next is the input of the run that continues this one.
func (r *sessionRun) next() SessionInput {
	in := r.in
	st := r.tr.State()
	in.State, in.Watermark, in.Rate = &st, r.w, r.rate
	return in
}

func (r *sessionRun) state() (SessionState, error) {
	s := SessionState{Pipeline: r.p.Name, Key: r.in.Key, Watermark: r.w, Pending: r.tr.Pending(), Stats: r.tr.Stats()}
	if rec, deadline, why, ok := r.tr.Open(); ok {
		s.Session, s.Deadline, s.DeadlineReason = &rec, deadline, why
	}
	return s, nil
}
