package workflows

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
)

// Register puts Sessionflow's workflows and activities on a worker.
func Register(w worker.Registry, acts *activities.Activities, c client.Client) {
	w.RegisterWorkflow(SessionWorkflow)
	w.RegisterWorkflow(ClockWorkflow)
	w.RegisterWorkflow(SinkWorkflow)
	w.RegisterWorkflow(BackfillWorkflow)
	w.RegisterActivity(acts)
	w.RegisterActivity(&TemporalActivities{Client: c})
}
