package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// What a shard puts out, and when it wakes to do it.

// flushOptions: storage outages are waited out, as a sink waits them out;
// the records are safe in the shard's history meanwhile.
var flushOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 2 * time.Minute,
	RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
}

// shardNotice is a notice of this task.
type shardNotice = activities.Notification

func (r *shardRun) closedNotice(rec session.Record) shardNotice {
	return shardNotice{Kind: activities.KindSessionClosed, Pipeline: r.p.Name, Key: rec.Key, SessionID: rec.SessionID, At: rec.End, Session: rec}
}

func (r *shardRun) breakNotice(b session.KeyBreak) shardNotice {
	n := shardNotice{Kind: activities.KindBreakStarted, Pipeline: r.p.Name, Key: b.Key, SessionID: b.SessionID, At: b.Start}
	if t, ok := r.keys.Tracker(b.Key); ok {
		n.Session, _, _, _ = t.Open()
	}
	return n
}

// send delivers a task's notices in one local activity, NotifyAll, at
// least once each (a task that fails runs it again; receivers drop the
// repeat by its Idempotency-Key). What it could not send goes to the Notify
// activity on the task queue, unless a receiver refused it.
func (r *shardRun) send(ns []shardNotice) {
	if len(ns) == 0 {
		return
	}
	var a *activities.Activities
	var res []activities.NotifyResult
	if err := workflow.ExecuteLocalActivity(quick(r.ctx), a.NotifyAll, ns).Get(r.ctx, &res); err != nil || len(res) != len(ns) {
		workflow.GetLogger(r.ctx).Warn("notices in the task failed; retrying as activities", "notices", len(ns), "error", err)
		for _, n := range ns {
			r.notices = append(r.notices, r.notifyActivity(n))
		}
		return
	}
	for i, n := range ns {
		switch {
		case res[i].Error == "":
		case res[i].Final:
			workflow.GetLogger(r.ctx).Error("notification failed for good", "kind", n.Kind, "session_id", n.SessionID, "error", res[i].Error)
		default:
			r.notices = append(r.notices, r.notifyActivity(n))
		}
	}
}

func (r *shardRun) notifyActivity(n shardNotice) workflow.Future {
	ctx := workflow.WithActivityOptions(r.ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	var a *activities.Activities
	return workflow.ExecuteActivity(ctx, a.Notify, n)
}

func (r *shardRun) awaitNotices() {
	for _, f := range r.notices {
		if err := f.Get(r.ctx, nil); err != nil {
			workflow.GetLogger(r.ctx).Error("notification failed for good", "error", err)
		}
	}
	r.notices = nil
}

// writer names the shard's objects: its id and its first run, so that a
// shard started afresh (terminated, reset) never overwrites the objects of
// the one before.
func (r *shardRun) writer() string {
	return fmt.Sprintf("%s/%s", ShardWorkflowID(r.p.Name, r.in.Shard), workflow.GetInfo(r.ctx).FirstRunID)
}

func (r *shardRun) writeLate() error {
	if len(r.late) == 0 {
		return nil
	}
	var a *activities.Activities
	in := store.WriteLateInput{Prefix: r.p.prefix(), Writer: r.writer(), Seq: r.st.LateSeq, Events: r.late}
	if err := workflow.ExecuteActivity(r.ctx, a.WriteLate, in).Get(r.ctx, nil); err != nil {
		return fmt.Errorf("write %d late events: %w", len(r.late), err)
	}
	r.st.LateSeq++
	r.late = nil
	return nil
}

// flushDue tells whether the buffer has reached a limit of the pipeline's
// flush (count, size, age).
func (r *shardRun) flushDue(nowMs int64) bool {
	if len(r.st.Buffer) == 0 {
		return false
	}
	l := r.p.Sink.withDefaults()
	if len(r.st.Buffer) >= l.MaxRecords || nowMs-r.st.BufferedAtMs >= l.MaxAge.Milliseconds() {
		return true
	}
	size := 0
	for _, rec := range r.st.Buffer {
		size += recordSize(rec)
	}
	return size >= l.MaxBytes
}

// flush writes the buffer as one or more Parquet writes of at most a
// payload's worth each, in bucket=<shard>.
func (r *shardRun) flush() error {
	l := r.p.Sink.withDefaults()
	for len(r.st.Buffer) > 0 {
		n, size := 0, 0
		for n < len(r.st.Buffer) && n < l.MaxRecords && (n == 0 || size+recordSize(r.st.Buffer[n]) <= l.MaxBytes) {
			size += recordSize(r.st.Buffer[n])
			n++
		}
		var a *activities.Activities
		var res store.WriteResult
		err := workflow.ExecuteActivity(r.ctx, a.WriteParquet, store.WriteSessionsInput{
			Prefix: r.p.prefix(), Sink: r.writer(), Bucket: r.in.Shard, Seq: r.st.Seq,
			Profile: r.p.Rules.Profile, Records: r.st.Buffer[:n],
		}).Get(r.ctx, &res)
		if err != nil {
			return fmt.Errorf("flush %d of shard %d: %w", r.st.Seq, r.in.Shard, err)
		}
		workflow.GetLogger(r.ctx).Info("flushed", "seq", r.st.Seq, "rows", res.Rows, "objects", len(res.Objects))
		r.st.Seq++
		r.st.Rows += int64(n)
		r.st.Buffer = append([]session.Record(nil), r.st.Buffer[n:]...)
		r.st.BufferedAtMs = workflow.Now(r.ctx).UnixMilli()
	}
	return nil
}

// readClock reads the pipeline's clock after a wake-up, as a session does.
func (r *shardRun) readClock() {
	req := ClockRequest{Pipeline: r.p.Name, AsOfMs: workflow.Now(r.ctx).UnixMilli()}
	ctx := workflow.WithLocalActivityOptions(r.ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var ta *TemporalActivities
	var c ClockState
	if err := workflow.ExecuteLocalActivity(ctx, ta.ClockState, req).Get(ctx, &c); err != nil {
		workflow.GetLogger(r.ctx).Warn("clock unavailable; keeping the watermark", "error", err)
		return
	}
	if c.Watermark > r.w {
		r.w, r.wAt, r.stalls = c.Watermark, req.AsOfMs, 0
	} else {
		r.stalls++
	}
	if c.Rate > 0 {
		r.rate = c.Rate
	}
	r.final = c.EndOfInput
}

// arm keeps one timer for the shard's next wake: the earliest close W is
// expected to reach (aimed as a session aims, aimWait), or the buffer's
// flush age. A timer that fires no later than needed is kept: an early
// wake-up re-aims, where re-aiming at every batch would cost two events
// each. A later one is replaced.
func (r *shardRun) arm() {
	now := workflow.Now(r.ctx).UnixMilli()
	wake, summary, ok := int64(0), "", false
	target, _, due := r.keys.NextClose()
	if r.p.Notify.BreakStarted {
		target, _, due = r.keys.NextDeadline()
	}
	if due && r.w != session.NoWatermark {
		wait := aimWait(target, r.wNow(now), r.rate, r.p.maxWait())
		if r.stalls >= 2 { // W stands still: back off
			wait = min(max(wait, 2*r.wait), r.p.maxWait())
		}
		wake, summary, ok = now+wait.Milliseconds(), "next deadline", true
	} else if due {
		wake, summary, ok = now+r.p.maxWait().Milliseconds(), "clock", true
	}
	if len(r.st.Buffer) > 0 {
		at := r.st.BufferedAtMs + r.p.Sink.withDefaults().MaxAge.Milliseconds()
		if !ok || at < wake {
			wake, summary, ok = at, "flush age", true
		}
	}
	if !ok || (r.timer != nil && r.fireAt <= wake) {
		return
	}
	if r.timer != nil {
		r.cancel()
	}
	wait := max(time.Duration(wake-now)*time.Millisecond, minWait)
	ctx, cancel := workflow.WithCancel(r.ctx)
	r.timer = workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: summary})
	r.cancel, r.fireAt, r.wait = cancel, now+wait.Milliseconds(), wait
}

// wNow is W moved at its pace since it was read (sessionRun.wNow).
func (r *shardRun) wNow(now int64) int64 {
	rate := r.rate
	if rate <= 0 {
		rate = 1
	}
	if r.wAt == 0 || now <= r.wAt {
		return r.w
	}
	return r.w + int64(float64(now-r.wAt)*rate)
}

// show puts the shard's figures in its current details (free: not in the
// history).
func (r *shardRun) show() {
	var b strings.Builder
	fmt.Fprintf(&b, "**shard %d** of %s · %d open keys · %d closed · %d rows in %d flushes",
		r.in.Shard, r.p.Name, r.keys.Len(), r.st.Closed, r.st.Rows, r.st.Seq)
	if len(r.st.Buffer) > 0 {
		fmt.Fprintf(&b, " · %d records to write", len(r.st.Buffer))
	}
	if r.w != session.NoWatermark {
		fmt.Fprintf(&b, " · watermark %s", stamp(r.w))
	}
	if d := b.String(); d != r.details {
		workflow.SetCurrentDetails(r.ctx, d)
		r.details = d
	}
}

// showAttrs upserts the shard's search attributes once a run, at its
// start: the pipeline, its number and its open keys as carried.
func (r *shardRun) showAttrs() {
	if !r.p.Visibility {
		return
	}
	err := workflow.UpsertTypedSearchAttributes(r.ctx,
		AttrPipeline.ValueSet(r.p.Name), AttrShard.ValueSet(int64(r.in.Shard)), AttrOpenSessions.ValueSet(int64(r.keys.Len())))
	if err != nil {
		workflow.GetLogger(r.ctx).Warn("search attributes not updated", "error", err)
	}
}
