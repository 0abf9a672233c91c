package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
)

// A closed record goes to its pipeline's sink and, if the pipeline asks, to
// the notification targets; break and expiry notices go out while a session
// is open.
//
// The lean run (changeLean) does all of it with local activities in the task
// that closes the session, or finds the break: DeliverRecord's
// signal-with-start takes the record to the sink, Notify sends the notice.
// Neither costs a task of its own, where a signal to the sink costs one to
// learn it was delivered and an activity one for its completion. The
// guarantees stay: a local activity whose task is lost runs again when the
// task is retried, and the sink drops the second copy of a record
// (recordIdentity), a receiver the second notice (its Idempotency-Key). A
// local activity that keeps failing falls back to the same activity on the
// task queue, as earlier runs use: the hand-off waits for it (the record
// must not end with the run), a notice runs on its own, and the run waits
// for its notices only before it ends.
//
// Version 3 of changeLean makes the hand-off and the session_closed notice
// one local activity (HandOff): one marker in the history where two cost
// two events per session. The notice goes out once the sink has the
// record; a notice that fails there goes to the task queue as before, and a
// hand-off that fails takes both there, the notice after the record.

// quick gives the local activities their budget: a few attempts within one
// workflow task. Options are made afresh for each call: the SDK fills in
// the defaults of the retry policy it is given, in place.
func quick(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 15 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
}

// quickNotice is a notice sent by a local activity in this task.
type quickNotice struct {
	n activities.Notification
	f workflow.Future
}

// handOff delivers the closed record to its sink and sends its
// session_closed notice.
func (r *sessionRun) handOff(rec session.Record) error {
	if !r.lean {
		if err := r.deliver(rec); err != nil {
			return err
		}
		if r.p.Notify.SessionClosed {
			r.notify(activities.KindSessionClosed, rec.SessionID, rec.End, rec)
		}
		return nil
	}
	in := DeliverInput{Pipeline: r.p, Bucket: SinkBucket(r.in.Key, r.p.buckets()), Record: rec}
	if r.oneHandOff {
		return r.handOffOne(in)
	}
	var ta *TemporalActivities
	delivered := workflow.ExecuteLocalActivity(quick(r.ctx), ta.DeliverRecord, in)
	if r.p.Notify.SessionClosed { // sent while the record is on its way
		r.notify(activities.KindSessionClosed, rec.SessionID, rec.End, rec)
	}
	if err := delivered.Get(r.ctx, nil); err != nil {
		workflow.GetLogger(r.ctx).Warn("hand-off in the task failed; retrying as an activity", "session_id", rec.SessionID, "error", err)
		return r.deliverActivity(in)
	}
	return nil
}

// handOffOne is the version-3 hand-off: the record and its notice in one
// local activity, falling back to the activities on the task queue.
func (r *sessionRun) handOffOne(deliver DeliverInput) error {
	in := HandOffInput{Deliver: deliver}
	if r.p.Notify.SessionClosed {
		n := r.notice(activities.KindSessionClosed, deliver.Record.SessionID, deliver.Record.End, deliver.Record)
		in.Notice = &n
	}
	var ta *TemporalActivities
	var res HandOffResult
	if err := workflow.ExecuteLocalActivity(quick(r.ctx), ta.HandOff, in).Get(r.ctx, &res); err != nil {
		workflow.GetLogger(r.ctx).Warn("hand-off in the task failed; retrying as an activity", "session_id", deliver.Record.SessionID, "error", err)
		if err := r.deliverActivity(deliver); err != nil {
			return err
		}
		if in.Notice != nil {
			r.notices = append(r.notices, r.notifyActivity(*in.Notice))
		}
		return nil
	}
	switch {
	case res.NoticeError == "":
	case res.NoticeFinal:
		workflow.GetLogger(r.ctx).Error("notification failed for good", "kind", in.Notice.Kind, "session_id", in.Notice.SessionID, "error", res.NoticeError)
	default:
		workflow.GetLogger(r.ctx).Warn("notification in the task failed; retrying as an activity", "kind", in.Notice.Kind, "session_id", in.Notice.SessionID, "error", res.NoticeError)
		r.notices = append(r.notices, r.notifyActivity(*in.Notice))
	}
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
	return r.deliverActivity(DeliverInput{Pipeline: r.p, Bucket: bucket, Record: rec})
}

func (r *sessionRun) deliverActivity(in DeliverInput) error {
	var ta *TemporalActivities
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
	})
	if err := workflow.ExecuteActivity(ctx, ta.DeliverRecord, in).Get(ctx, nil); err != nil {
		return fmt.Errorf("deliver %s: %w", in.Record.SessionID, err)
	}
	return nil
}

// notify sends a notification; its failure is logged, never fatal, and
// never delays the hand-off of the record.
func (r *sessionRun) notify(kind, sessionID string, at int64, rec session.Record) {
	n := r.notice(kind, sessionID, at, rec)
	if r.lean {
		var a *activities.Activities
		r.quick = append(r.quick, quickNotice{n: n, f: workflow.ExecuteLocalActivity(quick(r.ctx), a.Notify, n)})
		return
	}
	r.notices = append(r.notices, r.notifyActivity(n))
}

func (r *sessionRun) notice(kind, sessionID string, at int64, rec session.Record) activities.Notification {
	return activities.Notification{Kind: kind, Pipeline: r.p.Name, Key: r.in.Key, SessionID: sessionID, At: at, Session: rec}
}

func (r *sessionRun) notifyActivity(n activities.Notification) workflow.Future {
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	var a *activities.Activities
	return workflow.ExecuteActivity(ctx, a.Notify, n)
}

// settle waits for the notices sent in this task. One that failed for a
// reason a retry may cure goes to the task queue; one a receiver refused is
// logged, as the activity would end the same way.
func (r *sessionRun) settle() {
	for _, q := range r.quick {
		err := q.f.Get(r.ctx, nil)
		var ae *temporal.ApplicationError
		switch {
		case err == nil:
		case errors.As(err, &ae) && ae.NonRetryable():
			workflow.GetLogger(r.ctx).Error("notification failed for good", "kind", q.n.Kind, "session_id", q.n.SessionID, "error", err)
		default:
			workflow.GetLogger(r.ctx).Warn("notification in the task failed; retrying as an activity", "kind", q.n.Kind, "session_id", q.n.SessionID, "error", err)
			r.notices = append(r.notices, r.notifyActivity(q.n))
		}
	}
	r.quick = nil
}

func (r *sessionRun) awaitNotices() {
	for _, f := range r.notices {
		if err := f.Get(r.ctx, nil); err != nil {
			workflow.GetLogger(r.ctx).Error("notification failed for good", "error", err)
		}
	}
	r.notices = nil
}
