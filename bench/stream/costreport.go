package main

import "fmt"

// The lean-sessions issue's light-load targets for a session's cost in
// history.
const (
	targetRunTasks      = 4.0  // workflow tasks per closed session run
	targetRunEvents     = 24.0 // history events per closed session run
	targetSessionTimers = 1.3  // timer wake-ups per closed session
)

// within is v ≤ goal for averages that are ratios of integers: the margin
// absorbs float rounding, far below the two decimals shown.
func within(v, goal float64) bool { return v <= goal+1e-9 }

// judgeCost states the verdicts of the session-cost targets from the
// sample of closed session runs.
func judgeCost(p *PipelineResult, t func(name, verdict, value string) Target) []Target {
	const (
		tasks  = "≤ 4 workflow tasks per closed session run"
		events = "≤ 24 history events per closed session run"
		timers = "≤ 1.3 timer wake-ups per session"
	)
	run := p.History.SessionRun
	untested := func(why string) []Target {
		return []Target{t(tasks, "not tested", why), t(events, "not tested", why), t(timers, "not tested", why)}
	}
	switch {
	case p.HistoryError != "":
		return untested("not counted: " + p.HistoryError)
	case run.Sampled == 0:
		return untested("no closed session run to sample")
	}
	n := fmt.Sprintf(" (%d runs sampled)", run.Sampled)
	out := []Target{
		t(tasks, verdict(within(run.WorkflowTasks, targetRunTasks)), fmt.Sprintf("%.2f", run.WorkflowTasks)+n),
		t(events, verdict(within(run.Events, targetRunEvents)), fmt.Sprintf("%.2f", run.Events)+n),
	}
	if s := run.PerSession; s != nil {
		out = append(out, t(timers, verdict(within(s.TimerFired, targetSessionTimers)),
			fmt.Sprintf("%.2f (%d sessions closed by %d sampled runs)", s.TimerFired, run.SessionsClosed, run.Sampled)))
	} else {
		out = append(out, t(timers, "not tested", fmt.Sprintf("the %d sampled runs closed no session", run.Sampled)))
	}
	return out
}

// Rows of the summary table on the cost of sessions; see rows.

func tasksPerEventRow(s ServerResult) string {
	p := s.Pipeline
	if p.HistoryError != "" || p.History.Tasks.Error != "" {
		return "not counted"
	}
	return fmt.Sprintf("%.2f ± %.2f", p.TasksPerEvent, p.TasksPerEventSE)
}

func sessionRunRow(s ServerResult) string {
	run := s.Pipeline.History.SessionRun
	if run.Sampled == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f (n=%d)", run.WorkflowTasks, run.Events, run.TimerFired, run.Upserts, run.Sampled)
}

func sessionRow(s ServerResult) string {
	c := s.Pipeline.History.SessionRun.PerSession
	if c == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.1f / %.1f / %.1f (n=%d)", c.Runs, c.WorkflowTasks, c.TimerFired, c.Upserts,
		s.Pipeline.History.SessionRun.SessionsClosed)
}

// costSentence follows the breakdown of a closed session run with what the
// lean-sessions issue measures.
func costSentence(p *PipelineResult) string {
	run := p.History.SessionRun
	out := fmt.Sprintf(" Per run: %.1f workflow tasks, %.1f timer wake-ups, %.1f search-attribute upserts, %.1f signals.",
		run.WorkflowTasks, run.TimerFired, run.Upserts, run.Signals)
	if c := run.PerSession; c != nil {
		out += fmt.Sprintf(" The %d runs closed %d sessions (%.2f runs per session); per closed session, over those runs: "+
			"%.1f workflow tasks, %.1f history events, %.1f timer wake-ups, %.1f upserts, %.1f signals.",
			run.Sampled, run.SessionsClosed, c.Runs, c.WorkflowTasks, c.Events, c.TimerFired, c.Upserts, c.Signals)
	}
	tc := p.History.Tasks
	if p.HistoryError == "" && tc.Error == "" {
		out += fmt.Sprintf(" Workflow tasks per input event, all the pipeline's workflows: %.2f ± %.2f "+
			"(clock and sink runs counted in every history; session runs estimated as the sample's %.3f tasks per history event "+
			"× all %d session history events; ± one standard error of that ratio, as if the sample were random).",
			p.TasksPerEvent, p.TasksPerEventSE, tc.SessionTasksPerEvent, p.History.Events[sessionType])
	}
	return out
}
