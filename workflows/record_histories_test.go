package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// TestRecordHistories records, with -update-histories, one real history of
// each case the replay corpus must cover (see replayCorpus in
// replay_test.go): small scenarios played against a real Temporal server, a
// real MinIO and a webhook, each in a pipeline of its own so that its clock,
// sink and sessions are its alone. Every saved history is checked to hold
// what its name promises before it is written, so a scenario that stops
// producing its case fails here instead of saving a history of something
// else. Without the flag it is skipped: TestReplay is what runs in make test.
//
//	go test -count=1 -run TestRecordHistories ./workflows -args -update-histories
func TestRecordHistories(t *testing.T) {
	if !*updateHistories {
		t.Skip("records testdata/histories only with -update-histories")
	}
	// Cleanups, not defers: the parallel scenarios run after this function
	// returns, and cleanups only after they end.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	s3 := miniotest.Start(t)
	hook := &webhook{seen: map[string]int{}}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := workflows.RegisterSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	acts := &activities.Activities{S3: s3.Client, Bucket: s3.Bucket, Webhook: &activities.Webhook{URL: hookSrv.URL}}
	w := workflows.NewWorkers(c, workflows.TaskQueue, worker.Options{}, acts)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	// The scenarios are independent (a pipeline each) and wait on Temporal's
	// timers; run them side by side.
	for _, sc := range []struct {
		name string
		run  func(*recorder)
	}{
		{"multi-batch", recordMultiBatch},
		{"late", recordLate},
		{"break", recordBreak},
		{"expiry", recordExpiry},
		{"fallback", recordFallback},
		{"continue-as-new", recordContinueAsNew},
		{"tie", recordTie},
		{"clock", recordClock},
		{"shard", recordShard},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(&recorder{t: t, ctx: ctx, c: c, hook: hook})
		})
	}
}

// t0 is the recorder's event-time origin (2024-01-01T00:00:00Z); sec is a
// second of event time in ms.
const (
	t0  = int64(1704067200000)
	sec = int64(1000)
)

type recorder struct {
	t    *testing.T
	ctx  context.Context
	c    client.Client
	hook *webhook
}

// pipeline is a recorder pipeline of one sink bucket: sessions that wake at
// most every 500 ms, a sink that flushes a second after its first record
// unless sink says otherwise, session_closed and the notifications notify
// asks for.
func (r *recorder) pipeline(name string, rules session.Rules, notify workflows.Notify, sink workflows.SinkLimits) workflows.Pipeline {
	if err := rules.Validate(); err != nil {
		r.t.Fatal(err)
	}
	notify.SessionClosed = true
	if sink.MaxAge == 0 {
		sink.MaxAge = time.Second
	}
	return workflows.Pipeline{Name: name, Rules: rules, Buckets: 1, MaxWait: 500 * time.Millisecond, Visibility: true,
		Sink: sink, Notify: notify}
}

// startSink starts the pipeline's only sink, so that sessions hand their
// records to a running sink, as they do once a pipeline runs.
func (r *recorder) startSink(p workflows.Pipeline) string {
	id := workflows.SinkWorkflowID(p.Name, 0)
	run, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.SinkWorkflow, workflows.SinkInput{Pipeline: p, Bucket: 0})
	if err != nil {
		r.t.Fatal(err)
	}
	return run.GetRunID()
}

// send signals a batch to key's session, starting it if need be, and
// returns the run it went to.
func (r *recorder) send(p workflows.Pipeline, key string, b workflows.EventBatch) string {
	id := workflows.SessionWorkflowID(p.Name, key)
	run, err := r.c.SignalWithStartWorkflow(r.ctx, id, workflows.SignalEvents, b, client.StartWorkflowOptions{
		ID: id, TaskQueue: workflows.TaskQueue,
	}, workflows.SessionWorkflow, workflows.SessionInput{Pipeline: p, Key: key})
	if err != nil {
		r.t.Fatal(err)
	}
	return run.GetRunID()
}

// clock tells the pipeline's clock that its one partition reached maxTime;
// W becomes maxTime minus the lateness.
func (r *recorder) clock(p workflows.Pipeline, u workflows.WatermarkUpdate) {
	id := workflows.ClockWorkflowID(p.Name)
	if u.SentMs == 0 {
		u.SentMs = time.Now().UnixMilli()
	}
	u.Source = "recorder"
	_, err := r.c.SignalWithStartWorkflow(r.ctx, id, workflows.SignalWatermark, u, client.StartWorkflowOptions{
		ID: id, TaskQueue: workflows.ClockTaskQueue(workflows.TaskQueue),
	}, workflows.ClockWorkflow, workflows.ClockInput{Pipeline: p.Name, Lateness: p.Rules.Lateness})
	if err != nil {
		r.t.Fatal(err)
	}
}

func (r *recorder) mark(p workflows.Pipeline, maxTime int64) {
	r.clock(p, workflows.WatermarkUpdate{Marks: []workflows.PartitionMark{{Partition: p.Name + "/0", MaxTime: maxTime}}})
}

// awaitW waits until key's session has applied watermark w: the batches
// sent after it meet that watermark.
func (r *recorder) awaitW(p workflows.Pipeline, key string, w int64) {
	id := workflows.SessionWorkflowID(p.Name, key)
	for {
		v, err := r.c.QueryWorkflow(r.ctx, id, "", workflows.QueryState)
		if err == nil {
			var st workflows.SessionState
			if err := v.Get(&st); err != nil {
				r.t.Fatal(err)
			}
			if st.Watermark >= w {
				return
			}
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("%s never reached watermark %d: %v", id, w, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// result waits for key's session to complete, following its continued runs.
func (r *recorder) result(p workflows.Pipeline, key, runID string) session.Record {
	var rec session.Record
	if err := r.c.GetWorkflow(r.ctx, workflows.SessionWorkflowID(p.Name, key), runID).Get(r.ctx, &rec); err != nil {
		r.t.Fatal(err)
	}
	return rec
}

// history is one run's full history; runID "" is the current run.
func (r *recorder) history(id, runID string) hist {
	h := &historypb.History{}
	it := r.c.GetWorkflowHistory(r.ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			r.t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	return hist{id: id, h: h}
}

// chain is every run of id from firstRunID on, in order, up to the one that
// did not continue as new.
func (r *recorder) chain(id, firstRunID string) []hist {
	var out []hist
	for run := firstRunID; run != ""; {
		h := r.history(id, run)
		out = append(out, h)
		run = ""
		if a := h.last().GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			run = a.GetNewExecutionRunId()
		}
	}
	return out
}

// awaitNewRun waits until id's current run is another than run.
func (r *recorder) awaitNewRun(id, run string) {
	for {
		d, err := r.c.DescribeWorkflowExecution(r.ctx, id, "")
		if err != nil {
			r.t.Fatal(err)
		}
		if d.GetWorkflowExecutionInfo().GetExecution().GetRunId() != run {
			return
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("%s/%s never continued as new", id, run)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitClosed waits until the run's history ends, as a sink's first run
// does when it flushes and continues as new.
func (r *recorder) awaitClosed(id, runID string) hist {
	for {
		h := r.history(id, runID)
		switch h.last().GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
			return h
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("%s/%s never closed", id, runID)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// save writes h as testdata/histories/<name>.json, the form TestReplay reads.
// A scenario whose checks failed saves nothing: the file would not hold
// what its name says.
func (r *recorder) save(name string, h hist) {
	if r.t.Failed() {
		r.t.Fatalf("not saving %s: the checks above failed", name)
	}
	if err := writeHistory(name, h.h); err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("saved %s: %s (%d events)", name, h.id, len(h.h.Events))
}

// notified requires exactly one webhook call of the idempotency key.
func (r *recorder) notified(key string) {
	r.hook.mu.Lock()
	n := r.hook.seen[key]
	r.hook.mu.Unlock()
	if n != 1 {
		r.t.Errorf("webhook got %d notifications %s, want 1", n, key)
	}
}

// hist is one run's history with the questions the checks ask of it.
type hist struct {
	id string
	h  *historypb.History
}

func (h hist) last() *historypb.HistoryEvent { return h.h.Events[len(h.h.Events)-1] }

func (h hist) count(typ enumspb.EventType) int {
	n := 0
	for _, e := range h.h.Events {
		if e.GetEventType() == typ {
			n++
		}
	}
	return n
}

// signals counts the signals of a name the run received.
func (h hist) signals(name string) int {
	n := 0
	for _, e := range h.h.Events {
		if a := e.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == name {
			n++
		}
	}
	return n
}

// activities returns the inputs (JSON) of the scheduled activities of a type.
func (h hist) activities(typ string) [][]byte {
	var out [][]byte
	for _, e := range h.h.Events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == typ {
			var in []byte
			for _, p := range a.GetInput().GetPayloads() {
				in = append(in, p.GetData()...)
			}
			out = append(out, in)
		}
	}
	return out
}

// completed counts the completed activities of a type.
func (h hist) completed(typ string) int {
	sched := map[int64]bool{}
	for _, e := range h.h.Events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == typ {
			sched[e.GetEventId()] = true
		}
	}
	n := 0
	for _, e := range h.h.Events {
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && sched[a.GetScheduledEventId()] {
			n++
		}
	}
	return n
}

// versionMarkers counts the workflow.GetVersion markers of a change id.
func (h hist) versionMarkers(changeID string) int {
	n := 0
	for _, e := range h.h.Events {
		a := e.GetMarkerRecordedEventAttributes()
		if a == nil || a.GetMarkerName() != "Version" {
			continue
		}
		for _, p := range a.GetDetails()["change-id"].GetPayloads() {
			if bytes.Equal(bytes.Trim(p.GetData(), `"`), []byte(changeID)) {
				n++
			}
		}
	}
	return n
}

// version is the version the run's marker of changeID records, -2 if none.
func (h hist) version(t *testing.T, changeID string) int {
	t.Helper()
	for _, e := range h.h.Events {
		a := e.GetMarkerRecordedEventAttributes()
		if a == nil || a.GetMarkerName() != "Version" {
			continue
		}
		for _, p := range a.GetDetails()["change-id"].GetPayloads() {
			if !bytes.Equal(bytes.Trim(p.GetData(), `"`), []byte(changeID)) {
				continue
			}
			var v int
			if err := json.Unmarshal(a.GetDetails()["version"].GetPayloads()[0].GetData(), &v); err != nil {
				t.Fatalf("%s: version marker of %s: %v", h.id, changeID, err)
			}
			return v
		}
	}
	return -2
}

// localMarker is one local activity a run recorded: a MarkerRecorded event
// of marker name "LocalActivity", whose details' "data" payload names the
// activity type, in the workflow task that completed it.
type localMarker struct {
	typ    string
	task   int64 // the WorkflowTaskCompleted event of the task that ran it
	failed bool  // the marker records a failure: the local activity gave up
}

// localActivities returns the run's local-activity markers in order.
func (h hist) localActivities(t *testing.T) []localMarker {
	t.Helper()
	var out []localMarker
	for _, e := range h.h.Events {
		a := e.GetMarkerRecordedEventAttributes()
		if a == nil || a.GetMarkerName() != "LocalActivity" {
			continue
		}
		ps := a.GetDetails()["data"].GetPayloads()
		if len(ps) == 0 {
			t.Fatalf("%s: event %d: a LocalActivity marker without data", h.id, e.GetEventId())
		}
		var d struct{ ActivityType string }
		if err := json.Unmarshal(ps[0].GetData(), &d); err != nil || d.ActivityType == "" {
			t.Fatalf("%s: event %d: LocalActivity marker data %s: %v", h.id, e.GetEventId(), ps[0].GetData(), err)
		}
		out = append(out, localMarker{typ: d.ActivityType, task: a.GetWorkflowTaskCompletedEventId(), failed: a.GetFailure() != nil})
	}
	return out
}

// locals returns the run's local-activity markers of a type.
func (h hist) locals(t *testing.T, typ string) []localMarker {
	t.Helper()
	var out []localMarker
	for _, m := range h.localActivities(t) {
		if m.typ == typ {
			out = append(out, m)
		}
	}
	return out
}

// The change id of lean sessions (workflows.changeLean), and the version
// the runs recorded today take: 3, the close in one local HandOff.
const (
	changeLean  = "lean-sessions"
	leanVersion = 3
)

// leanRun requires the shape every lean session run has, on the happy path:
// one "lean-sessions" version marker, asked at its start; the record, if the
// run closes one (delivers 1), handed over with its session_closed notice by
// one local HandOff that succeeded, with no signal to the sink, no
// DeliverRecord and no Notify activity; notices in all, those of the closes
// among them, the others by local Notify markers that succeeded; at most
// maxUpserts search-attribute upserts.
func (h hist) leanRun(t *testing.T, delivers, notices, maxUpserts int) {
	t.Helper()
	if n := h.versionMarkers(changeLean); n != 1 {
		t.Errorf("%s: %d version markers of %s, want 1", h.id, n, changeLean)
	}
	if v := h.version(t, changeLean); v != leanVersion {
		t.Errorf("%s: %s version %d, want %d", h.id, changeLean, v, leanVersion)
	}
	if n := h.count(enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED) +
		h.count(enumspb.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED) +
		h.count(enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED); n != 0 {
		t.Errorf("%s: %d SignalExternalWorkflow events, want none: a lean run hands over by local activity", h.id, n)
	}
	for _, m := range h.localActivities(t) {
		if m.failed {
			t.Errorf("%s: local activity %s (task %d) failed", h.id, m.typ, m.task)
		}
	}
	if n := len(h.locals(t, "HandOff")); n != delivers {
		t.Errorf("%s: %d local HandOff markers, want %d", h.id, n, delivers)
	}
	if n := len(h.locals(t, "DeliverRecord")); n != 0 {
		t.Errorf("%s: %d local DeliverRecord markers, want none: HandOff delivers", h.id, n)
	}
	if n := len(h.activities("DeliverRecord")); n != 0 {
		t.Errorf("%s: %d DeliverRecord activities, want none: the local one did not fail", h.id, n)
	}
	if n := len(h.locals(t, "Notify")); n != notices-delivers {
		t.Errorf("%s: %d local Notify markers, want %d", h.id, n, notices-delivers)
	}
	if n := len(h.activities("Notify")); n != 0 {
		t.Errorf("%s: %d Notify activities, want none: the local ones did not fail", h.id, n)
	}
	if n := h.count(enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES); n > maxUpserts {
		t.Errorf("%s: %d search-attribute upserts, want at most %d", h.id, n, maxUpserts)
	}
	if h.count(enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) != len(h.activities("WriteLate")) {
		t.Errorf("%s: activities other than WriteLate scheduled", h.id)
	}
}

// noticeBeforeClose requires the run's first local Notify to have run in an
// earlier task than its HandOff: a break or expiry notice is sent in the
// task that finds it, not kept for the close.
func (h hist) noticeBeforeClose(t *testing.T) {
	t.Helper()
	ns, ds := h.locals(t, "Notify"), h.locals(t, "HandOff")
	if len(ns) == 0 || len(ds) == 0 || ns[0].task >= ds[0].task {
		t.Errorf("%s: local Notify %+v, HandOff %+v: want the first notice in a task before the close", h.id, ns, ds)
	}
}

// reaimed requires a lean re-aim: at least one timer cancelled, and every
// TimerCanceled followed by a TimerStarted in the same workflow task (the
// batch's), not in a task of its own.
func (h hist) reaimed(t *testing.T) {
	t.Helper()
	started := map[int64]int{} // workflow task -> timers started
	canceled := map[int64]int{}
	for _, e := range h.h.Events {
		if a := e.GetTimerStartedEventAttributes(); a != nil {
			started[a.GetWorkflowTaskCompletedEventId()]++
		}
		if a := e.GetTimerCanceledEventAttributes(); a != nil {
			canceled[a.GetWorkflowTaskCompletedEventId()]++
		}
	}
	if len(canceled) == 0 {
		t.Errorf("%s: no timer cancelled: want a batch that moved the deadline to re-aim the timer", h.id)
	}
	for task, n := range canceled {
		if started[task] < n {
			t.Errorf("%s: task %d cancelled %d timers and started %d: want each re-armed in the same task", h.id, task, n, started[task])
		}
	}
}

// ends requires the run's last event to be of typ.
func (h hist) ends(t *testing.T, typ enumspb.EventType) {
	t.Helper()
	if got := h.last().GetEventType(); got != typ {
		t.Fatalf("%s ends with %v, want %v", h.id, got, typ)
	}
}

// The change id of tie-numbered session ids (workflows.changeTieIDs).
const changeTieIDs = "tie-numbered-session-ids"

// noTieMarker requires a run that met no tie to hold no version marker.
func (h hist) noTieMarker(t *testing.T) {
	t.Helper()
	if n := h.versionMarkers(changeTieIDs); n != 0 {
		t.Errorf("%s: %d version markers of %s in a run without a tie", h.id, n, changeTieIDs)
	}
}

func click(tm, seq int64) session.Event {
	return session.Event{Time: tm, Seq: seq, ID: uint64(seq), Page: "home"}
}

func clickRules(t *testing.T) session.Rules { return compressed(t, session.Clickstream) } // gap 30s, max 2m, lateness 5s

// Keys differ between scenarios: session ids, and so the webhook's
// idempotency keys, do not name the pipeline.

// recordMultiBatch: a session fed by four batches in four workflow tasks,
// one with the clock's pace, closed for inactivity once the clock's W passes
// it and handed to its running sink by the local HandOff in the
// closing task, the timer re-aimed by the batches that moved its deadline;
// a second key closes with it,
// so the sink's first run buffers two records and flushes them (MaxRecords
// 2; its age limit is far).
func recordMultiBatch(r *recorder) {
	t := r.t
	p := r.pipeline("rec-multi", clickRules(t), workflows.Notify{}, workflows.SinkLimits{MaxRecords: 2, MaxAge: 30 * time.Second})
	sinkRun := r.startSink(p)
	batches := []workflows.EventBatch{
		{Events: []session.Event{click(t0, 1), click(t0+sec, 2)}, Watermark: session.NoWatermark},
		{Events: []session.Event{click(t0+3*sec, 3)}, Watermark: t0},
		{Events: []session.Event{click(t0+5*sec, 4), click(t0+6*sec, 5)}, Watermark: t0 + 2*sec, Rate: 1},
		{Events: []session.Event{click(t0+8*sec, 6)}, Watermark: t0 + 5*sec},
	}
	var run string
	for i, b := range batches {
		if i >= 2 { // readings of W two seconds old, as an ingester's are
			b.AsOfMs = time.Now().Add(-2 * time.Second).UnixMilli()
		}
		if got := r.send(p, "m1", b); i == 0 {
			run = got
		} else if got != run {
			t.Fatalf("batch %d went to run %s, want %s", i, got, run)
		}
		r.awaitW(p, "m1", b.Watermark)
		time.Sleep(300 * time.Millisecond)
	}
	run2 := r.send(p, "m2", workflows.EventBatch{Events: []session.Event{click(t0+2*sec, 1)}, Watermark: session.NoWatermark})
	r.mark(p, t0+8*sec+30*sec+6*sec) // W = t0+39s, past m1's inactivity deadline t0+38s
	rec := r.result(p, "m1", run)
	if rec.SessionID != "m1/1704067200000" || rec.EventCount != 6 || rec.CloseReason != session.ReasonInactivity {
		t.Fatalf("m1's record %+v, want 6 events closed for inactivity", rec)
	}
	if rec2 := r.result(p, "m2", run2); rec2.EventCount != 1 {
		t.Fatalf("m2's record %+v", rec2)
	}
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)

	h := r.history(workflows.SessionWorkflowID(p.Name, "m1"), run)
	h.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	if n := h.signals(workflows.SignalEvents); n != 4 {
		t.Errorf("%s: %d events signals, want 4", h.id, n)
	}
	// Lean promises no task of its own for the hand-off or the notice, but
	// the four batches, sent 300 ms apart, still come in four tasks, and a
	// timer wakes the run to read the clock and close: at least 5 tasks.
	if n := h.count(enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED); n < 5 {
		t.Errorf("%s: %d workflow tasks, want the batches in tasks of their own and the close", h.id, n)
	}
	if h.count(enumspb.EVENT_TYPE_TIMER_FIRED) < 1 {
		t.Errorf("%s: want a timer that woke the run to read the clock", h.id)
	}
	if len(h.locals(t, "ClockState")) < 1 {
		t.Errorf("%s: want the clock read by the local ClockState on a wake-up", h.id)
	}
	h.reaimed(t)
	// The change-version upsert and the close's.
	h.leanRun(t, 1, 1, 2)
	h.noTieMarker(t)
	r.save("lean3_session_multi_batch", h)

	sink := r.awaitClosed(workflows.SinkWorkflowID(p.Name, 0), sinkRun)
	sink.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
	if n := sink.signals(workflows.SignalRecord); n != 2 {
		t.Errorf("%s: %d record signals, want 2", sink.id, n)
	}
	flushes := sink.activities("WriteParquet")
	if len(flushes) != 1 || sink.completed("WriteParquet") != 1 {
		t.Fatalf("%s: %d WriteParquet scheduled, %d completed, want one flush", sink.id, len(flushes), sink.completed("WriteParquet"))
	}
	var in store.WriteSessionsInput
	if err := json.Unmarshal(flushes[0], &in); err != nil || len(in.Records) != 2 || in.Seq != 0 {
		t.Fatalf("%s: flush input %s (%v), want the two records as seq 0", sink.id, flushes[0], err)
	}
	r.save("lean3_sink_flushed", sink)
}

// recordLate: a session whose W passed t0+10s receives an event of t0+4s:
// the event is late, written by WriteLate, and the session closes without it.
func recordLate(r *recorder) {
	t := r.t
	p := r.pipeline("rec-late", clickRules(t), workflows.Notify{}, workflows.SinkLimits{})
	r.startSink(p)
	run := r.send(p, "l1", workflows.EventBatch{Events: []session.Event{click(t0, 1), click(t0+sec, 2)}, Watermark: session.NoWatermark})
	r.send(p, "l1", workflows.EventBatch{Events: []session.Event{click(t0+12*sec, 3)}, Watermark: t0 + 10*sec})
	r.awaitW(p, "l1", t0+10*sec)
	r.send(p, "l1", workflows.EventBatch{Events: []session.Event{click(t0+4*sec, 4)}, Watermark: t0 + 4*sec})
	r.mark(p, t0+12*sec+30*sec+6*sec)
	rec := r.result(p, "l1", run)
	if rec.EventCount != 3 || rec.End != t0+12*sec {
		t.Fatalf("record %+v, want the three events in time", rec)
	}
	h := r.history(workflows.SessionWorkflowID(p.Name, "l1"), run)
	h.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	writes := h.activities("WriteLate")
	if len(writes) != 1 || h.completed("WriteLate") != 1 {
		t.Fatalf("%s: %d WriteLate scheduled, %d completed, want 1", h.id, len(writes), h.completed("WriteLate"))
	}
	var in store.WriteLateInput
	if err := json.Unmarshal(writes[0], &in); err != nil || len(in.Events) != 1 || in.Events[0].Event.Time != t0+4*sec || in.Events[0].Watermark != t0+10*sec {
		t.Fatalf("%s: WriteLate input %s (%v), want the event of t0+4s below W t0+10s", h.id, writes[0], err)
	}
	h.leanRun(t, 1, 1, 2)
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	h.noTieMarker(t)
	r.save("lean3_session_late_event", h)
}

// recordBreak: a charging session (break tolerance 5s) with a status-0
// event at t0+20s that starts a break, bridged at t0+23s: a break_started
// notice goes out, and the record counts the break.
func recordBreak(r *recorder) {
	t := r.t
	p := r.pipeline("rec-charging", compressed(t, session.Charging), workflows.Notify{BreakStarted: true}, workflows.SinkLimits{})
	r.startSink(p)
	on := func(tm, seq int64, soc float64) session.Event {
		return session.Event{Time: tm, Seq: seq, ID: uint64(seq), Flags: session.FlagActive | session.FlagSoC, SoC: soc}
	}
	off := session.Event{Time: t0 + 20*sec, Seq: 3, ID: 3}
	run := r.send(p, "ev1", workflows.EventBatch{Events: []session.Event{on(t0, 1, 20), on(t0+10*sec, 2, 30)}, Watermark: session.NoWatermark})
	r.send(p, "ev1", workflows.EventBatch{Events: []session.Event{off, on(t0+23*sec, 4, 40)}, Watermark: t0 + 5*sec})
	r.awaitW(p, "ev1", t0+5*sec)
	r.send(p, "ev1", workflows.EventBatch{Events: []session.Event{on(t0+35*sec, 5, 50)}, Watermark: t0 + 21*sec})
	r.mark(p, t0+35*sec+15*sec+6*sec) // past the inactivity deadline, gap 15s
	rec := r.result(p, "ev1", run)
	if rec.EventCount != 5 || rec.BreakCount != 1 || rec.CloseReason != session.ReasonInactivity {
		t.Fatalf("record %+v, want 5 events with one bridged break", rec)
	}
	h := r.history(workflows.SessionWorkflowID(p.Name, "ev1"), run)
	h.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	// break_started and session_closed by local Notify, the first in the
	// task that found the break; the webhook names the break's start.
	h.leanRun(t, 1, 2, 2)
	h.noticeBeforeClose(t)
	r.notified(fmt.Sprintf("%s:%s:%d", rec.SessionID, activities.KindBreakStarted, t0+20*sec))
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	h.noTieMarker(t)
	r.save("lean3_session_break_started", h)
}

// recordExpiry: a parking-style Open/Close session (max 40s, warning 15s
// ahead) still open when W passes start+25s: an expiry_warning goes out,
// once, and the Close event ends the session.
func recordExpiry(r *recorder) {
	t := r.t
	rules, err := session.Defaults(session.OpenClose)
	if err != nil {
		t.Fatal(err)
	}
	rules.Gap, rules.MaxDuration, rules.ExpiryWarning, rules.Lateness = 20*time.Second, 40*time.Second, 15*time.Second, 5*time.Second
	p := r.pipeline("rec-parking", rules, workflows.Notify{ExpiryWarning: true}, workflows.SinkLimits{})
	r.startSink(p)
	ev := func(tm, seq int64, f session.Flags) session.Event {
		return session.Event{Time: tm, Seq: seq, ID: uint64(seq), Flags: f}
	}
	run := r.send(p, "bay7", workflows.EventBatch{Events: []session.Event{ev(t0, 1, session.FlagStart), ev(t0+10*sec, 2, 0), ev(t0+20*sec, 3, 0)},
		Watermark: session.NoWatermark})
	r.send(p, "bay7", workflows.EventBatch{Events: []session.Event{ev(t0+26*sec, 4, 0)}, Watermark: t0 + 26*sec}) // past start+25s
	r.awaitW(p, "bay7", t0+26*sec)
	r.send(p, "bay7", workflows.EventBatch{Events: []session.Event{ev(t0+30*sec, 5, session.FlagEnd)}, Watermark: t0 + 30*sec})
	r.mark(p, t0+30*sec+5*sec+1) // W = t0+30s+1: the Close applies
	rec := r.result(p, "bay7", run)
	if rec.EventCount != 5 || rec.CloseReason != session.ReasonEndMarker {
		t.Fatalf("record %+v, want 5 events ended by the Close", rec)
	}
	h := r.history(workflows.SessionWorkflowID(p.Name, "bay7"), run)
	h.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	// expiry_warning, once, in the task that found it, and session_closed:
	// both by local Notify.
	h.leanRun(t, 1, 2, 2)
	h.noticeBeforeClose(t)
	r.notified(rec.SessionID + ":" + activities.KindExpiryWarning)
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	h.noTieMarker(t)
	r.save("lean3_session_expiry_warning", h)
}

// recordFallback: the first session of a pipeline closes while no sink
// runs. A lean run hands every record over by the local HandOff's
// signal-with-start, so there is no failed signal and no fallback: the
// local activity starts the sink, whose first run flushes that record and
// continues as new.
func recordFallback(r *recorder) {
	t := r.t
	p := r.pipeline("rec-fallback", clickRules(t), workflows.Notify{}, workflows.SinkLimits{})
	run := r.send(p, "f1", workflows.EventBatch{Events: []session.Event{click(t0, 1), click(t0+2*sec, 2)}, Watermark: session.NoWatermark})
	r.mark(p, t0+2*sec+30*sec+6*sec)
	rec := r.result(p, "f1", run)
	h := r.history(workflows.SessionWorkflowID(p.Name, "f1"), run)
	h.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	h.leanRun(t, 1, 1, 2)
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	h.noTieMarker(t)
	r.save("lean3_session_sink_started", h)

	sinkID := workflows.SinkWorkflowID(p.Name, 0)
	d, err := r.c.DescribeWorkflowExecution(r.ctx, sinkID, "")
	if err != nil {
		t.Fatal(err)
	}
	first := d.GetWorkflowExecutionInfo().GetFirstRunId()
	if first == "" {
		first = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	sink := r.awaitClosed(sinkID, first)
	sink.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
	if a := sink.h.Events[0].GetWorkflowExecutionStartedEventAttributes(); a == nil || a.GetContinuedExecutionRunId() != "" {
		t.Fatalf("%s: run %s is not the sink's first", sinkID, first)
	}
	if sink.signals(workflows.SignalRecord) != 1 || sink.completed("WriteParquet") != 1 {
		t.Fatalf("%s: want the delivered record and one flush", sinkID)
	}
	var got session.Record
	if err := json.Unmarshal(sink.recordSignal(t), &got); err != nil || got.SessionID != rec.SessionID {
		t.Fatalf("%s: record signal %+v (%v), want %s", sinkID, got, err, rec.SessionID)
	}
	r.save("lean3_sink_started_by_delivery", sink)
}

// recordSignal is the payload of the run's first record signal.
func (h hist) recordSignal(t *testing.T) []byte {
	for _, e := range h.h.Events {
		if a := e.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalRecord {
			return a.GetInput().GetPayloads()[0].GetData()
		}
	}
	t.Fatalf("%s: no record signal", h.id)
	return nil
}

// recordContinueAsNew: one batch holds two sessions of a key; W passes the
// first's deadline but not the second's events, so the run closes the first
// and continues as new carrying them; the continued run closes the second
// and completes.
func recordContinueAsNew(r *recorder) {
	t := r.t
	p := r.pipeline("rec-can", clickRules(t), workflows.Notify{}, workflows.SinkLimits{})
	r.startSink(p)
	run := r.send(p, "c1", workflows.EventBatch{Events: []session.Event{click(t0, 1), click(t0+sec, 2), click(t0+60*sec, 3)},
		Watermark: session.NoWatermark})
	// The sender's W, t0+40s, is past the first session's deadline (t0+31s)
	// and below the second's events.
	r.send(p, "c1", workflows.EventBatch{Events: []session.Event{click(t0+61*sec, 4)}, Watermark: t0 + 40*sec})
	r.awaitNewRun(workflows.SessionWorkflowID(p.Name, "c1"), run)
	r.mark(p, t0+61*sec+30*sec+6*sec)
	rec := r.result(p, "c1", run)
	if rec.SessionID != fmt.Sprintf("c1/%d", t0+60*sec) || rec.EventCount != 2 {
		t.Fatalf("final record %+v, want the second session", rec)
	}
	runs := r.chain(workflows.SessionWorkflowID(p.Name, "c1"), run)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	first, second := runs[0], runs[1]
	first.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
	var next workflows.SessionInput
	if err := json.Unmarshal(first.last().GetWorkflowExecutionContinuedAsNewEventAttributes().GetInput().GetPayloads()[0].GetData(), &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || len(next.State.Pending) != 2 || next.State.Open != nil {
		t.Fatalf("%s continued with %+v, want the second session's two events pending", first.id, next.State)
	}
	// The first session handed to the sink and notified in the first run;
	// each run asks lean-sessions again.
	first.leanRun(t, 1, 1, 2)
	second.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	if second.signals(workflows.SignalEvents) != 0 || second.count(enumspb.EVENT_TYPE_TIMER_FIRED) == 0 {
		t.Errorf("%s: want a run that closes its carried events without new batches", second.id)
	}
	// A continued run also upserts once at its start.
	second.leanRun(t, 1, 1, 3)
	r.notified(fmt.Sprintf("c1/%d:%s", t0, activities.KindSessionClosed))
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	first.noTieMarker(t)
	second.noTieMarker(t)
	r.save("lean3_session_continued_with_pending", first)
	r.save("lean3_session_continued_run_completed", second)
}

// recordTie: a logout and a click in the same millisecond make two
// sessions; the run that applies them closes the logout's session and
// numbers its successor, behind a GetVersion marker, then continues as new
// with it open; the next run closes it as "<key>/<start>-1".
func recordTie(r *recorder) {
	t := r.t
	rules := clickRules(t)
	rules.EndMarker = session.Marker{Field: "page_name", Value: "logout"}
	p := r.pipeline("rec-tie", rules, workflows.Notify{}, workflows.SinkLimits{})
	r.startSink(p)
	logout := session.Event{Time: t0, Seq: 1, ID: 1, Page: "logout", Flags: session.FlagEnd}
	run := r.send(p, "t1", workflows.EventBatch{Events: []session.Event{logout, click(t0, 2)}, Watermark: session.NoWatermark})
	// The sender's W, t0+1, applies the logout and the click of its
	// millisecond.
	r.send(p, "t1", workflows.EventBatch{Events: []session.Event{click(t0+sec, 3)}, Watermark: t0 + 1})
	r.awaitNewRun(workflows.SessionWorkflowID(p.Name, "t1"), run)
	r.mark(p, t0+sec+30*sec+6*sec)
	rec := r.result(p, "t1", run)
	if want := fmt.Sprintf("t1/%d-1", t0); rec.SessionID != want || rec.EventCount != 2 || rec.CloseReason != session.ReasonInactivity {
		t.Fatalf("successor %+v, want %s", rec, want)
	}
	runs := r.chain(workflows.SessionWorkflowID(p.Name, "t1"), run)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	first, second := runs[0], runs[1]
	first.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
	if n := first.versionMarkers(changeTieIDs); n != 1 {
		t.Fatalf("%s: %d version markers of %s, want 1", first.id, n, changeTieIDs)
	}
	// The logout's session handed over and notified in the first run: its
	// two GetVersion calls make a change-version upsert each, and it ends
	// with the successor open, so no close upsert.
	first.leanRun(t, 1, 1, 2)
	r.notified(fmt.Sprintf("t1/%d:%s", t0, activities.KindSessionClosed))
	second.ends(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
	second.noTieMarker(t)
	second.leanRun(t, 1, 1, 3)
	r.notified(rec.SessionID + ":" + activities.KindSessionClosed)
	r.save("lean3_session_tie_numbered", first)
	r.save("lean3_session_tie_successor", second)
}

// recordClock: a clock fed by two partitions, one of which goes idle, then
// the end of input; saved while it runs, as a pipeline's clock always does.
func recordClock(r *recorder) {
	t := r.t
	p := r.pipeline("rec-clock", clickRules(t), workflows.Notify{}, workflows.SinkLimits{})
	sent := time.Now().UnixMilli()
	u := func(end bool, marks ...workflows.PartitionMark) workflows.WatermarkUpdate {
		sent += 1000
		return workflows.WatermarkUpdate{Marks: marks, EndOfInput: end, SentMs: sent}
	}
	a, b := p.Name+"/0", p.Name+"/1"
	r.clock(p, u(false, workflows.PartitionMark{Partition: a, MaxTime: t0 + 10*sec}))
	r.clock(p, u(false, workflows.PartitionMark{Partition: b, MaxTime: t0 + 8*sec}))
	r.clock(p, u(false, workflows.PartitionMark{Partition: a, MaxTime: t0 + 20*sec}, workflows.PartitionMark{Partition: b, MaxTime: t0 + 18*sec}))
	r.clock(p, u(false, workflows.PartitionMark{Partition: b, MaxTime: t0 + 18*sec, Idle: true}))
	r.clock(p, u(false, workflows.PartitionMark{Partition: a, MaxTime: t0 + 30*sec}))
	r.clock(p, u(true, workflows.PartitionMark{Partition: a, MaxTime: t0 + 31*sec}))
	id := workflows.ClockWorkflowID(p.Name)
	var cs workflows.ClockState
	for {
		v, err := r.c.QueryWorkflow(r.ctx, id, "", workflows.QueryClock)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Get(&cs); err != nil {
			t.Fatal(err)
		}
		if cs.EndOfInput || r.ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// W: a's and b's lows less 5s, then a's alone with b idle, then the
	// largest mark at the end.
	if cs.Watermark != t0+31*sec || !cs.EndOfInput || cs.Rate <= 0 || len(cs.Marks) != 2 {
		t.Fatalf("clock %+v, want W t0+31s at the end of input over two partitions", cs)
	}
	h := r.history(id, "")
	for h.signals(workflows.SignalWatermark) < 6 || h.last().GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
		if r.ctx.Err() != nil {
			t.Fatalf("%s: history %d events, last %v", id, len(h.h.Events), h.last().GetEventType())
		}
		time.Sleep(100 * time.Millisecond)
		h = r.history(id, "")
	}
	if h.count(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW) != 0 {
		t.Fatalf("%s: the clock continued as new", id)
	}
	if n := h.signals(workflows.SignalWatermark); n != 6 {
		t.Fatalf("%s: %d watermark signals, want 6", id, n)
	}
	r.save("lean3_clock_partitions_idle_end", h)
}
