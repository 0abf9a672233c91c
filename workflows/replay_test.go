package workflows

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"
)

// replayCorpus names every history in testdata/histories and what it holds.
// The first four come from the integration test (go test -run
// TestIntegration/straight ./workflows -args -update-histories), the rest
// from TestRecordHistories (go test -run TestRecordHistories ./workflows
// -args -update-histories), which checks each for what its name says before
// saving it. The session_*, sink_* and clock_* files of TestRecordHistories
// were recorded by the release before lean sessions (01ae57e) and take the
// DefaultVersion path of "lean-sessions": they are what runs open at that
// deploy look like, and no longer re-recorded. The lean_* files were
// recorded by the release of version 1 of "lean-sessions" (12fb092) and are
// no longer re-recorded either, nor are the lean2_* files, of version 2
// (85adcff). The lean3_* files are what TestRecordHistories records today:
// sessions that take version 3, and the sink and clock beside them. Never
// overwrite or delete a file of an earlier release.
var replayCorpus = []string{
	// TestIntegration/straight, recorded before tie numbering (072146a)
	// and before batch-paced search attributes (e7affb2).
	"session_completed",        // a session run that closed and completed
	"session_continued_as_new", // a session run that continued as new
	"sink_continued_as_new",    // a sink run that flushed and continued as new
	"clock_running",            // a running clock
	// TestRecordHistories.
	"session_multi_batch",             // four events signals in four tasks, a timer, hand-off by signal
	"session_late_event",              // an event below W: WriteLate
	"session_break_started",           // charging: a bridged break, break_started and session_closed notices
	"session_expiry_warning",          // Open/Close: expiry_warning, then closed by the Close event
	"session_sink_fallback",           // the signal to a sink that does not run fails: DeliverRecord
	"session_continued_with_pending",  // closes a session, continues as new with the next one's events pending
	"session_continued_run_completed", // a run started from carried state that closes it and completes
	"session_tie_numbered",            // logout and click in one ms: the tie-numbering version marker, continue-as-new
	"session_tie_successor",           // the next run, closing "<key>/<start>-1"
	"sink_flushed",                    // a sink's first run: two record signals, one WriteParquet, continue-as-new
	"sink_started_by_delivery",        // a sink run started by DeliverRecord's signal-with-start, flushed
	"clock_partitions_idle_end",       // a running clock: two partitions, one idle, end of input
	// TestRecordHistories since lean sessions (01ae57e): version 1 of
	// "lean-sessions", hand-off and notices by local activities.
	"lean_session_multi_batch",             // four batches in four tasks, timer re-aimed by batches, local DeliverRecord to the running sink
	"lean_session_late_event",              // an event below W: WriteLate, the close by local DeliverRecord and Notify
	"lean_session_break_started",           // charging: break_started by local Notify in the task that found it, then the close
	"lean_session_expiry_warning",          // Open/Close: expiry_warning by local Notify, then closed by the Close event
	"lean_session_sink_started",            // no sink runs: the local DeliverRecord's signal-with-start starts it, no fallback
	"lean_session_continued_with_pending",  // closes a session, continues as new with the next one's events pending
	"lean_session_continued_run_completed", // a lean run started from carried state: upsert at its start, closes and completes
	"lean_session_tie_numbered",            // logout and click in one ms: lean and tie-numbering markers, continue-as-new
	"lean_session_tie_successor",           // the next run, closing "<key>/<start>-1"
	"lean_sink_flushed",                    // a sink's first run: two records by signal-with-start, one WriteParquet, continue-as-new
	"lean_sink_started_by_delivery",        // a sink run started by the local DeliverRecord's signal-with-start, flushed
	"lean_clock_partitions_idle_end",       // a running clock: two partitions, one idle, end of input
	// TestRecordHistories since version 2 of "lean-sessions": timers aimed
	// from W as of the task (EventBatch.AsOfMs), the same cases.
	"lean2_session_multi_batch",             // four batches, the last two with readings of W two seconds old (AsOfMs)
	"lean2_session_late_event",              // an event below W: WriteLate, the close by local DeliverRecord and Notify
	"lean2_session_break_started",           // charging: break_started by local Notify in the task that found it, then the close
	"lean2_session_expiry_warning",          // Open/Close: expiry_warning by local Notify, then closed by the Close event
	"lean2_session_sink_started",            // no sink runs: the local DeliverRecord's signal-with-start starts it
	"lean2_session_continued_with_pending",  // closes a session, continues as new with the next one's events pending
	"lean2_session_continued_run_completed", // a run started from carried state: upsert at its start, closes and completes
	"lean2_session_tie_numbered",            // logout and click in one ms: lean and tie-numbering markers, continue-as-new
	"lean2_session_tie_successor",           // the next run, closing "<key>/<start>-1"
	"lean2_sink_flushed",                    // a sink's first run beside version-2 sessions
	"lean2_sink_started_by_delivery",        // a sink run started by the local DeliverRecord's signal-with-start, flushed
	"lean2_clock_partitions_idle_end",       // a running clock: two partitions, one idle, end of input
	// TestRecordHistories since version 3: the close's record and
	// session_closed notice in one local HandOff, the same cases.
	"lean3_session_multi_batch",             // four batches, the last two with readings of W two seconds old (AsOfMs)
	"lean3_session_late_event",              // an event below W: WriteLate, the close by local HandOff
	"lean3_session_break_started",           // charging: break_started by local Notify in the task that found it, then HandOff
	"lean3_session_expiry_warning",          // Open/Close: expiry_warning by local Notify, then closed by the Close event
	"lean3_session_sink_started",            // no sink runs: the local HandOff's signal-with-start starts it
	"lean3_session_continued_with_pending",  // closes a session, continues as new with the next one's events pending
	"lean3_session_continued_run_completed", // a run started from carried state: upsert at its start, closes and completes
	"lean3_session_tie_numbered",            // logout and click in one ms: lean and tie-numbering markers, continue-as-new
	"lean3_session_tie_successor",           // the next run, closing "<key>/<start>-1"
	"lean3_sink_flushed",                    // a sink's first run beside version-3 sessions
	"lean3_sink_started_by_delivery",        // a sink run started by the local HandOff's signal-with-start, flushed
	"lean3_clock_partitions_idle_end",       // a running clock: two partitions, one idle, end of input
	// TestRecordHistories since the shard unit (issue 14).
	"shard_flushed_late", // a running shard: two batches of two keys, a late event, two closes, one NotifyAll, one flush
}

// TestReplay replays the recorded histories of replayCorpus against today's
// workflow code: a change that breaks determinism for running workflows
// fails here. Every name of the corpus must be there, and no file outside
// it.
func TestReplay(t *testing.T) {
	dir := filepath.Join("testdata", "histories")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range files {
		have = append(have, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	for _, name := range replayCorpus {
		if !slices.Contains(have, name) {
			t.Errorf("history %s.json is missing from %s (re-record it: see replayCorpus)", name, dir)
		}
	}
	for _, name := range have {
		if !slices.Contains(replayCorpus, name) {
			t.Errorf("%s/%s.json is not in replayCorpus: name it there, with what it holds", dir, name)
		}
	}
	for _, name := range replayCorpus {
		f := filepath.Join(dir, name+".json")
		if _, err := os.Stat(f); err != nil {
			continue // reported above
		}
		t.Run(name, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(SessionWorkflow)
			r.RegisterWorkflow(ClockWorkflow)
			r.RegisterWorkflow(SinkWorkflow)
			r.RegisterWorkflow(ShardWorkflow)
			r.RegisterWorkflow(BackfillWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}
