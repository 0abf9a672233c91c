package main

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestNewBreakdown(t *testing.T) {
	tests := []struct {
		name     string
		totals   map[string]int64
		runs     int
		sessions int
		// want: per run events, tasks, timers, upserts, signals
		events, tasks, timers, upserts, signals float64
		perSession                              *SessionCost
	}{
		{
			name: "one session per run",
			totals: map[string]int64{"WorkflowTaskCompleted": 8, "TimerFired": 2, "UpsertWorkflowSearchAttributes": 4,
				"WorkflowExecutionSignaled": 12, "WorkflowExecutionStarted": 2, "MarkerRecorded": 2}, // 30 events
			runs: 2, sessions: 2,
			events: 15, tasks: 4, timers: 1, upserts: 2, signals: 6,
			perSession: &SessionCost{Runs: 1, Events: 15, WorkflowTasks: 4, TimerFired: 1, Upserts: 2, Signals: 6},
		},
		{
			name: "a run continued as new with its session open",
			totals: map[string]int64{"WorkflowTaskCompleted": 9, "TimerFired": 3, "UpsertWorkflowSearchAttributes": 3,
				"WorkflowExecutionSignaled": 6, "WorkflowExecutionStarted": 3}, // 24 events
			runs: 3, sessions: 2,
			events: 8, tasks: 3, timers: 1, upserts: 1, signals: 2,
			perSession: &SessionCost{Runs: 1.5, Events: 12, WorkflowTasks: 4.5, TimerFired: 1.5, Upserts: 1.5, Signals: 3},
		},
		{
			name:   "two sessions closed in one run",
			totals: map[string]int64{"WorkflowTaskCompleted": 5, "TimerFired": 2, "WorkflowExecutionSignaled": 3}, // 10 events
			runs:   1, sessions: 2,
			events: 10, tasks: 5, timers: 2, upserts: 0, signals: 3,
			perSession: &SessionCost{Runs: 0.5, Events: 5, WorkflowTasks: 2.5, TimerFired: 1, Upserts: 0, Signals: 1.5},
		},
		{
			name:   "no session closed",
			totals: map[string]int64{"WorkflowTaskCompleted": 4, "WorkflowExecutionSignaled": 4},
			runs:   1, sessions: 0,
			events: 8, tasks: 4, signals: 4,
		},
		{name: "nothing sampled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBreakdown(tt.totals, make([]runCount, tt.runs), tt.sessions)
			if b.Sampled != tt.runs || b.SessionsClosed != tt.sessions {
				t.Errorf("sampled %d, sessions %d; want %d, %d", b.Sampled, b.SessionsClosed, tt.runs, tt.sessions)
			}
			got := []float64{b.Events, b.WorkflowTasks, b.TimerFired, b.Upserts, b.Signals}
			want := []float64{tt.events, tt.tasks, tt.timers, tt.upserts, tt.signals}
			for i := range got {
				if !near(got[i], want[i]) {
					t.Errorf("per run (events, tasks, timers, upserts, signals) = %v, want %v", got, want)
					break
				}
			}
			if b.WorkflowTasks != b.ByType["WorkflowTaskCompleted"] {
				t.Errorf("workflow tasks %v is not by_type's %v", b.WorkflowTasks, b.ByType["WorkflowTaskCompleted"])
			}
			switch {
			case tt.perSession == nil && b.PerSession != nil:
				t.Errorf("per session %+v, want none", *b.PerSession)
			case tt.perSession != nil && b.PerSession == nil:
				t.Errorf("no per session, want %+v", *tt.perSession)
			case tt.perSession != nil:
				g, w := *b.PerSession, *tt.perSession
				if !near(g.Runs, w.Runs) || !near(g.Events, w.Events) || !near(g.WorkflowTasks, w.WorkflowTasks) ||
					!near(g.TimerFired, w.TimerFired) || !near(g.Upserts, w.Upserts) || !near(g.Signals, w.Signals) {
					t.Errorf("per session %+v, want %+v", g, w)
				}
			}
		})
	}
}

func TestRatioEstimate(t *testing.T) {
	tests := []struct {
		name   string
		runs   []runCount
		wantR  float64
		wantSE float64
	}{
		// R = 15/60; residuals −0.5, −1, 1.5; √(3.5/6) ÷ 20.
		{"three runs", []runCount{{10, 2}, {20, 4}, {30, 9}}, 0.25, 0.038188130791298666},
		{"proportional runs have no error", []runCount{{10, 5}, {20, 10}}, 0.5, 0},
		{"one run: no error to estimate", []runCount{{10, 3}}, 0.3, 0},
		{"none", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, se := ratioEstimate(tt.runs)
			if !near(r, tt.wantR) || !near(se, tt.wantSE) {
				t.Errorf("ratioEstimate = %v ± %v, want %v ± %v", r, se, tt.wantR, tt.wantSE)
			}
		})
	}
}

func TestEstimateTasks(t *testing.T) {
	events := map[string]int64{"SessionWorkflow": 1000, "ClockWorkflow": 200, "SinkWorkflow": 100}
	exact := map[string]int64{"ClockWorkflow": 50, "SinkWorkflow": 30}
	sample := newBreakdown(nil, []runCount{{10, 2}, {20, 4}, {30, 9}}, 3)
	tests := []struct {
		name                string
		events              map[string]int64
		run                 RunBreakdown
		total, se, sessions float64
		wantErr             bool
	}{
		// 0.25 tasks per event × 1000 session events + 50 + 30.
		{"sessions estimated, the rest counted", events, sample, 330, 38.188130791298666, 250, false},
		{"no sample: not counted", events, RunBreakdown{}, 80, 0, 0, true},
		{"no session history", map[string]int64{"ClockWorkflow": 200}, RunBreakdown{}, 80, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := estimateTasks(tt.events, exact, tt.run)
			if !near(tc.Total, tt.total) || !near(tc.SE, tt.se) || !near(tc.ByType["SessionWorkflow"], tt.sessions) {
				t.Errorf("total %v ± %v, sessions %v; want %v ± %v, %v", tc.Total, tc.SE, tc.ByType["SessionWorkflow"], tt.total, tt.se, tt.sessions)
			}
			if (tc.Error != "") != tt.wantErr {
				t.Errorf("error %q, want one: %v", tc.Error, tt.wantErr)
			}
		})
	}
}

// TestTasksPerEvent: the denominator is that of history events per input
// event, the events accepted over the whole run, not the window's.
func TestTasksPerEvent(t *testing.T) {
	samples := []Sample{{T: 0}, {T: 10, Events: 400, HandledEvents: 300}}
	tests := []struct {
		name     string
		tasks    TaskCount
		want, se float64
	}{
		{"counted", TaskCount{Total: 100, SE: 8}, 0.25, 0.02},
		{"not counted", TaskCount{Total: 100, Error: "no sample"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := summarize(summaryInput{samples: samples, history: HistoryResult{Total: 200, Tasks: tt.tasks},
				reg: prometheus.NewRegistry()})
			if !near(res.TasksPerEvent, tt.want) || !near(res.TasksPerEventSE, tt.se) || !near(res.HistoryPerEvent, 0.5) {
				t.Errorf("tasks per event %v ± %v, history per event %v; want %v ± %v, 0.5",
					res.TasksPerEvent, res.TasksPerEventSE, res.HistoryPerEvent, tt.want, tt.se)
			}
		})
	}
}

func TestJudgeCost(t *testing.T) {
	run := func(tasks, events float64, per *SessionCost, sessions int) HistoryResult {
		return HistoryResult{SessionRun: RunBreakdown{Sampled: 50, WorkflowTasks: tasks, Events: events,
			PerSession: per, SessionsClosed: sessions}}
	}
	tests := []struct {
		name    string
		p       PipelineResult
		want    [3]string // tasks, events, timers
		values0 string    // the first target's value
	}{
		{"at the limits", PipelineResult{History: run(4, 24, &SessionCost{TimerFired: 1.3}, 50)},
			[3]string{"met", "met", "met"}, "4.00 (50 runs sampled)"},
		{"over", PipelineResult{History: run(4.02, 24.5, &SessionCost{TimerFired: 1.34}, 48)},
			[3]string{"not met", "not met", "not met"}, "4.02 (50 runs sampled)"},
		// Averages a float's rounding put one ulp over the limit.
		{"rounding at the limit", PipelineResult{History: run(math.Nextafter(4, 5), math.Nextafter(24, 25),
			&SessionCost{TimerFired: math.Nextafter(1.3, 2)}, 10)},
			[3]string{"met", "met", "met"}, "4.00 (50 runs sampled)"},
		{"no session closed", PipelineResult{History: run(3, 20, nil, 0)},
			[3]string{"met", "met", "not tested"}, "3.00 (50 runs sampled)"},
		{"nothing sampled", PipelineResult{},
			[3]string{"not tested", "not tested", "not tested"}, "no closed session run to sample"},
		{"history not counted", PipelineResult{HistoryError: "deadline exceeded", History: run(3, 20, nil, 0)},
			[3]string{"not tested", "not tested", "not tested"}, "not counted: deadline exceeded"},
	}
	names := [3]string{"≤ 4 workflow tasks per closed session run", "≤ 24 history events per closed session run",
		"≤ 1.3 timer wake-ups per session"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := judgeCost(&tt.p, func(name, verdict, value string) Target {
				return Target{Target: name, Verdict: verdict, Value: value}
			})
			if len(got) != 3 {
				t.Fatalf("%d targets, want 3: %+v", len(got), got)
			}
			for i, g := range got {
				if g.Target != names[i] || g.Verdict != tt.want[i] {
					t.Errorf("target %d: %q %q (%s), want %q %q", i, g.Target, g.Verdict, g.Value, names[i], tt.want[i])
				}
			}
			if got[0].Value != tt.values0 {
				t.Errorf("value %q, want %q", got[0].Value, tt.values0)
			}
		})
	}
}

func TestCostReport(t *testing.T) {
	p := &PipelineResult{
		TasksPerEvent: 0.854, TasksPerEventSE: 0.031,
		History: HistoryResult{
			Events: map[string]int64{"SessionWorkflow": 40_000},
			SessionRun: RunBreakdown{Sampled: 50, Events: 24, WorkflowTasks: 4, TimerFired: 1, Upserts: 2, Signals: 6,
				ByType: map[string]float64{"WorkflowTaskCompleted": 4}, SessionsClosed: 48,
				PerSession: &SessionCost{Runs: 50.0 / 48, Events: 25, WorkflowTasks: 4.17, TimerFired: 1.04, Upserts: 2.08, Signals: 6.25}},
			Tasks: TaskCount{SessionTasksPerEvent: 0.1667},
		},
	}
	r := &Results{Servers: []ServerResult{{Server: "temporaltest", Pipeline: p}}}
	r.Targets = judge(r.Servers[0])
	md := r.markdown()
	for _, want := range []string{
		"| workflow tasks per input event, all workflows (± s.e.) | 0.85 ± 0.03 |",
		"| closed session run: workflow tasks / history events / timer wake-ups / upserts | 4.0 / 24.0 / 1.0 / 2.0 (n=50) |",
		"| closed session: runs / workflow tasks / timer wake-ups / upserts | 1.04 / 4.2 / 1.0 / 2.1 (n=48) |",
		"a closed SessionWorkflow run has 24.0 history events on average (50 sampled): workflowtaskcompleted 4.0. " +
			"Per run: 4.0 workflow tasks, 1.0 timer wake-ups, 2.0 search-attribute upserts, 6.0 signals.",
		"The 50 runs closed 48 sessions (1.04 runs per session)",
		"0.167 tasks per history event × all 40000 session history events",
		"| ≤ 4 workflow tasks per closed session run | temporaltest | met | 4.00 (50 runs sampled) |",
		"| ≤ 24 history events per closed session run | temporaltest | met | 24.00 (50 runs sampled) |",
		"| ≤ 1.3 timer wake-ups per session | temporaltest | met | 1.04 (48 sessions closed by 50 sampled runs) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	p.HistoryError = "deadline exceeded"
	if got := tasksPerEventRow(ServerResult{Pipeline: p}); got != "not counted" {
		t.Errorf("tasks per event row with the history not counted: %q", got)
	}
}
