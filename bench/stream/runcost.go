package main

import (
	"math"

	enumspb "go.temporal.io/api/enums/v1"
)

// RunBreakdown is the average number of history events of each type in a
// sampled workflow run, and the figures the lean-sessions issue asks for.
// Every figure is derived from one count, the events of each type summed
// over the sample (newBreakdown).
type RunBreakdown struct {
	Sampled int                `json:"sampled"`
	Events  float64            `json:"events"`
	ByType  map[string]float64 `json:"by_type"`

	// Per closed run, on average: ByType's WorkflowTaskCompleted,
	// TimerFired, UpsertWorkflowSearchAttributes and
	// WorkflowExecutionSignaled under their own names.
	WorkflowTasks float64 `json:"workflow_tasks"`
	TimerFired    float64 `json:"timer_fired"`
	Upserts       float64 `json:"upserts"`
	Signals       float64 `json:"signals"`
	// SessionsClosed counts the sessions the sampled runs closed: the
	// records they signalled to a sink.
	SessionsClosed int `json:"sessions_closed"`
	// PerSession is the sample's cost per closed session, nil if the
	// sampled runs closed none.
	PerSession *SessionCost `json:"per_session,omitempty"`

	runs []runCount // per sampled run, for the error of estimateTasks
}

// SessionCost is what a closed session costs in history: the totals over
// the sampled runs ÷ the sessions those runs closed.
//
// A session and a run are not one to one. A run that closes a session with
// the next one's events buffered continues as new carrying them; a run
// past its signal limit, or told to by the server, continues as new with
// its session still open, which then closes in a later run; a step may
// close two sessions at once. Dividing the runs' totals by their closes
// charges each session with the runs it took, whichever run closed it.
// Runs is that ratio: 1 when every sampled run closed exactly one session.
// The ratio is biased when the sample cuts a session's runs apart (the
// sample is the most recently closed runs, not a random one), by at most
// the few runs at its edges.
type SessionCost struct {
	Runs          float64 `json:"runs"`
	Events        float64 `json:"events"`
	WorkflowTasks float64 `json:"workflow_tasks"`
	TimerFired    float64 `json:"timer_fired"`
	Upserts       float64 `json:"upserts"`
	Signals       float64 `json:"signals"`
}

// runCount is one sampled run's history events and workflow tasks.
type runCount struct{ events, tasks int64 }

var (
	keyTasks    = eventKey(enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
	keyTimers   = eventKey(enumspb.EVENT_TYPE_TIMER_FIRED)
	keyUpserts  = eventKey(enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
	keySignaled = eventKey(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
)

// newBreakdown derives a RunBreakdown from the events of each type summed
// over the sampled runs, the runs' own counts and the sessions they closed.
func newBreakdown(totals map[string]int64, runs []runCount, sessions int) RunBreakdown {
	b := RunBreakdown{Sampled: len(runs), ByType: map[string]float64{}, SessionsClosed: sessions, runs: runs}
	if b.Sampled == 0 {
		return b
	}
	var events int64
	for t, n := range totals {
		b.ByType[t] = float64(n) / float64(b.Sampled)
		events += n
	}
	b.Events = float64(events) / float64(b.Sampled)
	b.WorkflowTasks, b.TimerFired = b.ByType[keyTasks], b.ByType[keyTimers]
	b.Upserts, b.Signals = b.ByType[keyUpserts], b.ByType[keySignaled]
	if sessions > 0 {
		per := func(n int64) float64 { return float64(n) / float64(sessions) }
		b.PerSession = &SessionCost{Runs: per(int64(b.Sampled)), Events: per(events),
			WorkflowTasks: per(totals[keyTasks]), TimerFired: per(totals[keyTimers]),
			Upserts: per(totals[keyUpserts]), Signals: per(totals[keySignaled])}
	}
	return b
}

// TaskCount is the workflow tasks (WorkflowTaskCompleted events) of every
// run of the pipeline's workflows, continued-as-new runs included.
//
// Clock and sink runs are few and every one of their histories is read: an
// exact count. Session runs are thousands: their tasks are the sample's
// tasks per history event (R = Σ tasks ÷ Σ events over the sampled runs)
// times the history events of every session run, which visibility counts
// exactly. SE is the standard error of that estimate, as if the sample
// were random; it is not (the most recently closed runs), and running
// runs, which the sample never holds, may differ: a signal still waiting
// for the worker is an event without its task, so a worker that fell
// behind makes the estimate high.
type TaskCount struct {
	ByType map[string]float64 `json:"by_type"`
	Total  float64            `json:"total"`
	SE     float64            `json:"se"`
	// SessionTasksPerEvent is R, the sample's ratio.
	SessionTasksPerEvent float64 `json:"session_tasks_per_event"`
	// Error says why Total is not the count, if it is not.
	Error string `json:"error,omitempty"`
}

// estimateTasks counts the workflow tasks of all types: exact holds the
// counted ones (clocks, sinks), events every type's history events, and run
// the sample that estimates the session runs.
func estimateTasks(events, exact map[string]int64, run RunBreakdown) TaskCount {
	tc := TaskCount{ByType: map[string]float64{}}
	for typ, n := range exact {
		tc.ByType[typ] = float64(n)
		tc.Total += float64(n)
	}
	e := float64(events[sessionType])
	switch {
	case e == 0:
		tc.ByType[sessionType] = 0
	case run.Sampled == 0:
		tc.Error = "no closed session run to estimate the session runs' tasks from"
	default:
		r, se := ratioEstimate(run.runs)
		tc.SessionTasksPerEvent = r
		tc.ByType[sessionType] = r * e
		tc.Total += r * e
		tc.SE = se * e
	}
	return tc
}

// ratioEstimate is R = Σ tasks ÷ Σ events over the runs and its standard
// error by the usual approximation for a ratio estimator (Cochran,
// Sampling Techniques, 6.9), without the finite-population correction,
// which would only shrink it:
//
//	SE(R) = √(Σ (tasks_i − R·events_i)² ÷ (n(n−1))) ÷ mean(events)
//
// With fewer than two runs the error cannot be estimated and is 0.
func ratioEstimate(runs []runCount) (r, se float64) {
	var tasks, events float64
	for _, c := range runs {
		tasks += float64(c.tasks)
		events += float64(c.events)
	}
	n := float64(len(runs))
	if events == 0 {
		return 0, 0
	}
	r = tasks / events
	if n < 2 {
		return r, 0
	}
	var ss float64
	for _, c := range runs {
		d := float64(c.tasks) - r*float64(c.events)
		ss += d * d
	}
	return r, math.Sqrt(ss/(n*(n-1))) / (events / n)
}
