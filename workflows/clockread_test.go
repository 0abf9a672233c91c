package workflows_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// TestIntegrationBatchDuringClockRead pins the race behind ClockState.AsOf
// on a real server. A session waits on its first event a; while one of its
// workflow tasks reads the clock, a batch with event b (a later session of
// the key) is acknowledged, and then the clock passes both a's deadline and
// b. That is a legal order for an ingester: W passes b only after b's
// signal is acknowledged. The task that reads the clock has not seen b, so
// it must not act on the new W: b belongs in the second session, not in the
// late output.
func TestIntegrationBatchDuringClockRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s3 := miniotest.Start(t)
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := workflows.RegisterSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}

	rules := compressed(t, session.Clickstream) // 30 s gap, 5 s lateness
	s := &stream{pipeline: workflows.Pipeline{Name: "clockread", Rules: rules, Buckets: 1, MaxWait: time.Second,
		Sink: workflows.SinkLimits{MaxRecords: 1, MaxAge: time.Second}}}
	const t0 = int64(1_704_067_200_000)
	// b is past a's deadline, t0+30s.
	lines := fmt.Appendf(nil, "{\"uuid\":\"u\",\"event_timestamp\":%d,\"page_name\":\"home\",\"event_id\":\"a\"}\n"+
		"{\"uuid\":\"u\",\"event_timestamp\":%d,\"page_name\":\"home\",\"event_id\":\"b\"}\n", t0, t0+40_000)
	dec := session.NewDecoder(&s.pipeline.Rules)
	var a, b session.Event
	for i, e := range []*session.Event{&a, &b} {
		var err error
		if _, *e, err = dec.Decode(bytes.Split(lines, []byte{'\n'})[i]); err != nil {
			t.Fatal(err)
		}
	}
	mark := func(maxTime int64, end bool) workflows.WatermarkUpdate {
		return workflows.WatermarkUpdate{Source: "test", EndOfInput: end,
			Marks: []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: maxTime}}}
	}

	var armed atomic.Bool
	latest := &workflows.TemporalActivities{Client: c, ClockMaxAge: time.Nanosecond}
	clockRead := func(ctx context.Context, req workflows.ClockRequest) (workflows.ClockState, error) {
		if armed.CompareAndSwap(true, false) {
			if err := s.signal(ctx, c, "u", workflows.EventBatch{Events: []session.Event{b}, Watermark: t0}); err != nil {
				return workflows.ClockState{}, err
			}
			s.clock(ctx, t, c, mark(t0+60_000, false)) // W = t0+55s: past a's deadline and past b
			if err := awaitClock(ctx, c, s.pipeline.Name, t0+55_000); err != nil {
				return workflows.ClockState{}, err
			}
		}
		return latest.ClockState(ctx, req)
	}
	w := workflows.NewWorkers(c, workflows.TaskQueue, worker.Options{}, &activities.Activities{S3: s3.Client, Bucket: s3.Bucket})
	w.Main.RegisterActivityWithOptions(clockRead, activity.RegisterOptions{Name: "ClockState", DisableAlreadyRegisteredCheck: true})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	s.clock(ctx, t, c, mark(t0+5_000, false)) // W = t0
	armed.Store(true)
	if err := s.signal(ctx, c, "u", workflows.EventBatch{Events: []session.Event{a}, Watermark: t0}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for armed.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if armed.Load() {
		t.Fatal("the session never read the clock")
	}
	s.clock(ctx, t, c, mark(t0+60_000, true)) // the end of input: b's session finishes too

	s.lines = lines
	var err error
	batch := session.Batch{Rules: &s.pipeline.Rules, Pipeline: s.pipeline.Name}
	if s.want, _, err = batch.Run(ctx, bytes.NewReader(lines)); err != nil {
		t.Fatal(err)
	}
	if len(s.want) != 2 {
		t.Fatalf("the batch engine finds %d sessions, want a's and b's", len(s.want))
	}
	got := s.awaitParquet(ctx, t, s3, c)
	for i := range got {
		got[i].ClosedAtMs = 0
	}
	if !reflect.DeepEqual(got, s.want) {
		t.Errorf("Parquet holds\n%s\nwant\n%s", show(got), show(s.want))
	}
	late, err := store.ReadLate(ctx, s3.Client, s3.Bucket, s.pipeline.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(late) != 0 {
		t.Errorf("%d events in the late output, want none: b was acknowledged before W passed it", len(late))
	}
}

// awaitClock waits until the pipeline's clock holds at least w.
func awaitClock(ctx context.Context, c client.Client, pipeline string, w int64) error {
	for {
		v, err := c.QueryWorkflow(ctx, workflows.ClockWorkflowID(pipeline), "", workflows.QueryClock)
		if err != nil {
			return err
		}
		var st workflows.ClockState
		if err := v.Get(&st); err != nil {
			return err
		}
		if st.Watermark >= w {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
