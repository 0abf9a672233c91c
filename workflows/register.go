package workflows

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
)

// Register puts Sessionflow's workflows and activities on a worker.
func Register(w worker.Registry, acts *activities.Activities, c client.Client) {
	w.RegisterWorkflow(SessionWorkflow)
	w.RegisterWorkflow(ClockWorkflow) // clocks started on the main queue before ClockTaskQueue existed
	w.RegisterWorkflow(SinkWorkflow)
	w.RegisterWorkflow(ShardWorkflow)
	w.RegisterWorkflow(BackfillWorkflow)
	w.RegisterActivity(acts)
	ta := &TemporalActivities{Client: c}
	if acts != nil {
		ta.Notifier = acts
	}
	w.RegisterActivity(ta)
}

// DefaultWorkflowTaskPollers is the worker binary's default for
// worker.Options.MaxConcurrentWorkflowTaskPollers: each session signal is a
// workflow task, and the SDK's default of 2 caps a worker at two round trips
// to the server at a time. NewWorkers itself leaves a zero to the SDK.
const DefaultWorkflowTaskPollers = 16

// Workers are the workers of a process that runs Sessionflow's workflows:
// Main on the task queue for sessions, sinks, backfills and all activities,
// Clock on ClockTaskQueue for the pipelines' clocks alone.
type Workers struct {
	Main, Clock worker.Worker
}

// NewWorkers creates both workers with opts and registers everything on
// them. Register more on Main before Start if a test needs it.
func NewWorkers(c client.Client, taskQueue string, opts worker.Options, acts *activities.Activities) Workers {
	ws := Workers{Main: worker.New(c, taskQueue, opts), Clock: worker.New(c, ClockTaskQueue(taskQueue), opts)}
	Register(ws.Main, acts, c)
	ws.Clock.RegisterWorkflow(ClockWorkflow)
	return ws
}

// Start starts both workers; if one fails, neither runs.
func (ws Workers) Start() error {
	if err := ws.Clock.Start(); err != nil {
		return err
	}
	if err := ws.Main.Start(); err != nil {
		ws.Clock.Stop()
		return err
	}
	return nil
}

// Stop stops both, waiting for in-flight tasks. The clock stops last: the
// sessions' last tasks may still read it.
func (ws Workers) Stop() {
	ws.Main.Stop()
	ws.Clock.Stop()
}
