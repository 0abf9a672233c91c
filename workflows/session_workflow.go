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

	// lean: this run takes the shape of changeLean (session_timer.go,
	// session_close.go, session_visibility.go say what changes); aimNow:
	// its version 2, which aims from W as of the task (session_timer.go);
	// oneHandOff: its version 3, which hands off the record and sends its
	// session_closed notice in one local activity (session_close.go).
	lean, aimNow, oneHandOff bool
	wAt                      int64 // wall ms at which w was last known current; 0: unknown
	stalls                   int   // wake-ups in a row whose clock read found W where it was

	late    []store.LateEvent
	notices []workflow.Future // notification activities, awaited before the run ends
	quick   []quickNotice     // notices sent by local activities in this task
	result  session.Record
	closed  bool

	timer       workflow.Future
	cancelTimer workflow.CancelFunc // lean: cancels timer, to re-aim it
	aim         int64               // lean: the deadline timer was aimed at
	woke        bool                // this step follows the timer
	wait        time.Duration       // last timer's length, for back-off while W stands still
	attrs       sessionAttrs        // last upserted search attributes
	details     string
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

// changeLean is the workflow.GetVersion change id of the lean session: one
// timer aimed per deadline, the hand-off and the notices done by local
// activities in the task that needs them, search attributes upserted once,
// at the close. Asked at the start of every run, so that a run is lean or
// not from its first task to its last: a run open when the worker was
// deployed finishes as it began, and a run that continues as new is lean.
// Version 2 aims the timer from W as it has moved since it was read
// (EventBatch.AsOfMs), with the same commands otherwise. Version 3 closes
// with one local activity (HandOff) where version 2 has two.
const changeLean = "lean-sessions"

func (r *sessionRun) run() (session.Record, error) {
	if err := workflow.SetQueryHandler(r.ctx, QueryState, r.state); err != nil {
		return session.Record{}, err
	}
	v := workflow.GetVersion(r.ctx, changeLean, workflow.DefaultVersion, 3)
	r.lean, r.aimNow, r.oneHandOff = v >= 1, v >= 2, v >= 3
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
	if b.AsOfMs > 0 && b.Watermark >= r.w {
		if b.Watermark > r.w {
			r.wAt = b.AsOfMs
		} else {
			r.wAt = max(r.wAt, b.AsOfMs) // W stood still until then
		}
	}
	r.w = max(r.w, b.Watermark)
	if b.Rate > 0 {
		r.rate = b.Rate
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
		if err := r.handOff(rec); err != nil {
			return err
		}
		workflow.GetLogger(r.ctx).Info("session closed", "session_id", rec.SessionID,
			"reason", rec.CloseReason, "events", rec.EventCount)
		r.result, r.closed = rec, true
	}
	r.settle()
	r.show()
	return nil
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
