package workflows

import (
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// testEnvDeadlock replaces the SDK's deadlock detection timeout of one
// second in the unit tests' environments. The check fails a workflow task
// whose goroutine has not yielded for that long; under the race detector on
// a busy 2-core machine a goroutine can wait that long for a core, and
// TestBackfillWorkflowPhasesAndContinueAsNew failed so for nothing. Workers
// in production and in the integration tests keep the default.
const testEnvDeadlock = 30 * time.Second

// newTestEnv is a test workflow environment logging to logger.
func newTestEnv(logger log.Logger) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(logger)
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: testEnvDeadlock})
	return env
}
