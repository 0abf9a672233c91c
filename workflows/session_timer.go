package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/session"
)

// A session sleeps on one timer until the watermark W is expected to pass its
// next deadline, then reads the clock. Every wake-up is a workflow task, the
// unit Temporal's server pays for, so the lean run (changeLean) aims once:
//
//   - it aims at the wall time W is expected to pass the deadline, from W as
//     last known, moved at W's pace since it was read (version 2, wNow), plus
//     aimSlack for what that estimate leaves out (the clock read lags the
//     task by the clock skew, W moves in the steps the ingesters publish);
//   - it aims past the events still buffered (ahead of W), at the close they
//     lead to (session.Tracker.NextClose), not at each of them;
//   - a batch that moves the deadline re-aims the timer in the batch's own
//     task (cancelling a timer is a command, not a task) instead of letting
//     a stale timer wake the run early;
//   - a wake-up that finds W short because the estimate was early re-arms
//     once, aimed from the fresh reading; only a W that did not move at all
//     since the last look backs off, doubling up to the pipeline's max_wait
//     (version 2: from the second such wake-up in a row, since W stands
//     still for seconds at a time under held batches).
//
// Runs recorded before changeLean keep the earlier rule: keep the timer
// that runs, and double the wait after every early wake-up.

// aimSlack is added to every lean aim; see above.
const aimSlack = time.Second

// aimWait is how long to sleep until W, at wNow now and moving at rate (of
// the wall's pace; above 0), passes target, plus aimSlack, within
// [minWait, maxWait]. Sessions and shards aim with it.
func aimWait(target, wNow int64, rate float64, maxWait time.Duration) time.Duration {
	wait := time.Duration(float64(target+1-wNow)/rate)*time.Millisecond + aimSlack
	return min(max(wait, minWait), maxWait)
}

// refreshClock asks the pipeline's clock for its watermark.
func (r *sessionRun) refreshClock() {
	ctx := workflow.WithLocalActivityOptions(r.ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: 10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	// W as of this task's start (ClockState.AsOf). workflow.Now is that start
	// until a local activity completes in the task, and this is the task's
	// first one: it follows a timer, and a timer fires in a task of its own.
	req := ClockRequest{Pipeline: r.p.Name, AsOfMs: workflow.Now(r.ctx).UnixMilli()}
	var ta *TemporalActivities
	var c ClockState
	if err := workflow.ExecuteLocalActivity(ctx, ta.ClockState, req).Get(ctx, &c); err != nil {
		workflow.GetLogger(r.ctx).Warn("clock unavailable; keeping the watermark", "error", err)
		return
	}
	before := r.w
	if c.Watermark >= r.w {
		r.wAt = req.AsOfMs
	}
	r.w = max(r.w, c.Watermark)
	if c.Rate > 0 {
		r.rate = c.Rate
	}
	r.final = c.EndOfInput
	if r.w > before {
		r.wait, r.stalls = 0, 0 // W moves: no back-off
	} else {
		r.stalls++
	}
}

// nextWake is what the timer must wake the run for: the tracker's next
// deadline or the expiry warning, whichever is first, and its summary in
// the UI.
func (r *sessionRun) nextWake() (target int64, summary string, ok bool) {
	target, ok = r.tr.NextDeadline()
	summary = "deadline"
	if _, _, why, open := r.tr.Open(); open && ok {
		summary = string(why) + " deadline"
	} else if ok {
		summary = "buffered events"
	}
	// A lean run need not wake to apply its buffered events, unless applying
	// one may be due a notice (a break, the expiry warning of a session not
	// open yet): it aims past them at the close they lead to.
	if r.lean && !r.p.Notify.BreakStarted && !r.p.Notify.ExpiryWarning && r.tr.Pending() > 0 {
		target, ok = r.tr.NextClose()
		summary = "deadline after buffered events"
	}
	if at, due := r.expiryAt(); due && (!ok || at < target) {
		target, ok, summary = at, true, "expiry warning"
	}
	return target, summary, ok
}

// arm starts the one timer, for when the watermark is expected to pass the
// next deadline.
func (r *sessionRun) arm() {
	if r.lean {
		r.armLean()
		return
	}
	if r.timer != nil {
		return
	}
	target, summary, ok := r.nextWake()
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

// wNow is where a version-2 lean run expects W to be at the task's time:
// W as last known, moved at its pace (rate) for the time since it was known. W
// read by the ingester and carried by a batch is a reading of seconds ago
// (the ingester's last clock read, then the batch's hold, queue and start
// delay), and aiming from it would wake the run that much late. Older runs
// aim from W as it was.
func (r *sessionRun) wNow(rate float64) int64 {
	if !r.aimNow || r.wAt == 0 {
		return r.w
	}
	since := workflow.Now(r.ctx).UnixMilli() - r.wAt
	if since <= 0 {
		return r.w
	}
	return r.w + int64(float64(since)*rate)
}

// armLean aims the timer once per deadline; see the top of this file.
func (r *sessionRun) armLean() {
	target, summary, ok := r.nextWake()
	if r.timer != nil {
		if ok && target == r.aim {
			return
		}
		r.cancelTimer() // the deadline moved or went: re-aim
		r.timer, r.wait = nil, 0
	}
	if !ok {
		return
	}
	wait := r.p.maxWait()
	rate := r.rate
	if rate <= 0 && r.aimNow {
		// Pace unknown yet (a clock too young to have one): live, W keeps
		// the wall's. Faster (a backlog), the wait is still no longer than
		// max_wait; slower, the wake-up reads the clock and its pace.
		rate = 1
	}
	if rate > 0 && r.w != session.NoWatermark {
		wait = aimWait(target, r.wNow(rate), rate, r.p.maxWait())
	}
	// r.wait outlives only a timer that fired to a clock read that did not
	// move W (refreshClock clears it, re-aiming clears it): back off. W
	// stands still for seconds at a time under held batches, so a version-2
	// run backs off only from the second such wake-up in a row; the first
	// re-arms for what is left.
	if r.wait > 0 && (!r.aimNow || r.stalls >= 2) {
		wait = max(wait, 2*r.wait)
	}
	wait = min(max(wait, minWait), r.p.maxWait())
	ctx, cancel := workflow.WithCancel(r.ctx)
	r.timer = workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: summary})
	r.cancelTimer, r.aim, r.wait = cancel, target, wait
}
