package workflows_test

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// recordShard: a shard of one pipeline (unit: shard, one shard) fed two
// batches of two keys, the second with an event late for W; the clock's W
// passes both sessions' deadlines, the shard closes them in one task,
// sends both session_closed notices by one local NotifyAll, writes them in
// one WriteParquet and the late event by WriteLate. Saved while it runs, as
// a shard always does.
func recordShard(r *recorder) {
	t := r.t
	p := r.pipeline("rec-shard", clickRules(t), workflows.Notify{}, workflows.SinkLimits{})
	p.Unit, p.Shards = workflows.UnitShard, 1
	id := workflows.ShardWorkflowID(p.Name, 0)
	send := func(b workflows.ShardBatch) {
		if _, err := r.c.SignalWithStartWorkflow(r.ctx, id, workflows.SignalShardEvents, b,
			client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
			workflows.ShardWorkflow, workflows.ShardInput{Pipeline: p, Shard: 0}); err != nil {
			t.Fatal(err)
		}
	}
	send(workflows.ShardBatch{Watermark: t0, Keys: []workflows.KeyEvents{
		{Key: "s1", Events: []session.Event{click(t0, 1), click(t0+2*sec, 2)}},
		{Key: "s2", Events: []session.Event{click(t0+sec, 3)}},
	}})
	summary := func() (sum workflows.ShardSummary) {
		v, err := r.c.QueryWorkflow(r.ctx, id, "", workflows.QueryShard)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Get(&sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	for summary().Watermark < t0 { // applied: the next batch meets W t0
		if r.ctx.Err() != nil {
			t.Fatal(r.ctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
	send(workflows.ShardBatch{Watermark: t0 + 2*sec, Keys: []workflows.KeyEvents{
		{Key: "s2", Events: []session.Event{click(t0+4*sec, 4), click(t0-sec, 5)}}, // the second is below W: late
	}})
	r.mark(p, t0+4*sec+30*sec+6*sec) // W past both gaps (30s) of the last clicks

	var sum workflows.ShardSummary
	for sum.Rows < 2 {
		if r.ctx.Err() != nil {
			t.Fatalf("%s: summary %+v, want 2 rows written", id, sum)
		}
		time.Sleep(100 * time.Millisecond)
		sum = summary()
	}
	// Settled: the history ends with a completed task's commands and did
	// not grow in the last second.
	h := r.history(id, "")
	for {
		time.Sleep(time.Second)
		again := r.history(id, "")
		last := again.last().GetEventType()
		if len(again.h.Events) == len(h.h.Events) && last != enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED &&
			last != enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED && last != enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			break
		}
		if r.ctx.Err() != nil {
			t.Fatalf("%s: history %d events, last %v", id, len(again.h.Events), last)
		}
		h = again
	}
	if n := h.signals(workflows.SignalShardEvents); n != 2 {
		t.Errorf("%s: %d batch signals, want 2", id, n)
	}
	if n := h.completed("WriteParquet"); n != 1 {
		t.Errorf("%s: %d WriteParquet completed, want 1", id, n)
	}
	if n := h.completed("WriteLate"); n != 1 {
		t.Errorf("%s: %d WriteLate completed, want 1", id, n)
	}
	if n := len(h.locals(t, "NotifyAll")); n != 1 {
		t.Errorf("%s: %d local NotifyAll markers, want 1 for both closes", id, n)
	}
	if sum.Closed != 2 || sum.OpenKeys != 0 {
		t.Errorf("%s: summary %+v, want 2 closed and none open", id, sum)
	}
	r.notified(fmt.Sprintf("s1/%d:%s", t0, activities.KindSessionClosed))
	r.notified(fmt.Sprintf("s2/%d:%s", t0+sec, activities.KindSessionClosed))
	r.save("shard_flushed_late", h)
}
