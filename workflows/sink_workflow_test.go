package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

func record(i int) session.Record {
	return session.Record{SessionID: fmt.Sprintf("u%d/%d", i, t0), Key: fmt.Sprintf("u%d", i), Pipeline: "web",
		Profile: "clickstream", Start: t0, End: t0 + int64(i), EventCount: 1, CloseReason: session.ReasonInactivity,
		ClickstreamAttrs: &session.ClickstreamAttrs{PagesVisited: []string{"home"}}}
}

type sinkHarness struct {
	env     *testsuite.TestWorkflowEnvironment
	flushes []store.WriteSessionsInput
}

func newSinkHarness(t *testing.T) *sinkHarness {
	h := &sinkHarness{env: newTestEnv(quietLogger())}
	var a *activities.Activities
	h.env.RegisterActivity(a)
	h.env.OnActivity(a.WriteParquet, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in store.WriteSessionsInput) (store.WriteResult, error) {
			h.flushes = append(h.flushes, in)
			return store.WriteResult{Rows: len(in.Records), Objects: []string{"x"}}, nil
		})
	return h
}

func (h *sinkHarness) run(t *testing.T, in SinkInput) SinkInput {
	t.Helper()
	h.env.ExecuteWorkflow(SinkWorkflow, in)
	var next SinkInput
	err := h.env.GetWorkflowError()
	if err := converter.GetDefaultDataConverter().FromPayloads(canInput(t, err), &next); err != nil {
		t.Fatal(err)
	}
	return next
}

func TestSinkFlushes(t *testing.T) {
	size := recordSize(record(1))
	cases := []struct {
		name      string
		limits    SinkLimits
		records   int
		wantFlush []int // records per flush in this run
		wantLeft  int   // buffered records carried on
	}{
		{"by count", SinkLimits{MaxRecords: 3, MaxAge: time.Hour}, 5, []int{3}, 2},
		{"by size, under the payload limit", SinkLimits{MaxRecords: 100, MaxBytes: 2*size + size/2, MaxAge: time.Hour}, 5, []int{2}, 3},
		{"by age", SinkLimits{MaxRecords: 100, MaxAge: 10 * time.Second}, 2, []int{2}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newSinkHarness(t)
			h.env.RegisterDelayedCallback(func() {
				for i := range c.records {
					h.env.SignalWorkflow(SignalRecord, record(i))
				}
			}, time.Second)
			pl := pipeline(t, session.Clickstream, func(p *Pipeline) { p.Sink = c.limits })
			next := h.run(t, SinkInput{Pipeline: pl, Bucket: 1})
			var got []int
			for _, f := range h.flushes {
				got = append(got, len(f.Records))
				data, _ := json.Marshal(f)
				if c.limits.MaxBytes > 0 && len(f.Records) > 1 && f.Records != nil && recordsSize(f.Records) > c.limits.MaxBytes {
					t.Errorf("flush of %d bytes over the %d limit", len(data), c.limits.MaxBytes)
				}
				if f.Sink != "sink/web/01" || f.Seq != 0 || f.Prefix != "web" || f.Bucket != 1 {
					t.Errorf("flush names %+v", f)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.wantFlush) {
				t.Errorf("flushes %v, want %v", got, c.wantFlush)
			}
			st := next.State
			if st == nil || st.Seq != 1 || len(st.Buffer) != c.wantLeft || st.Rows != int64(c.wantFlush[0]) {
				t.Fatalf("carried %+v", st)
			}
			// Every record is either written or carried, once.
			seen := map[string]int{}
			for _, f := range h.flushes {
				for _, r := range f.Records {
					seen[r.SessionID]++
				}
			}
			for _, r := range st.Buffer {
				seen[r.SessionID]++
			}
			for i := range c.records {
				if n := seen[record(i).SessionID]; n != 1 {
					t.Errorf("record %d seen %d times", i, n)
				}
			}
		})
	}
}

func recordsSize(rs []session.Record) int {
	n := 0
	for _, r := range rs {
		n += recordSize(r)
	}
	return n
}

func TestSinkDropsRedeliveredRecords(t *testing.T) {
	h := newSinkHarness(t)
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalRecord, record(1))
		h.env.SignalWorkflow(SignalRecord, record(2))
		h.env.SignalWorkflow(SignalRecord, record(1))
	}, time.Second)
	pl := pipeline(t, session.Clickstream, func(p *Pipeline) { p.Sink = SinkLimits{MaxRecords: 100, MaxAge: 5 * time.Second} })
	next := h.run(t, SinkInput{Pipeline: pl})
	if len(h.flushes) != 1 || len(h.flushes[0].Records) != 2 {
		t.Fatalf("flushes %+v", h.flushes)
	}
	// A redelivery after the flush is recognized by the next run too.
	h2 := newSinkHarness(t)
	h2.env.RegisterDelayedCallback(func() {
		h2.env.SignalWorkflow(SignalRecord, record(2))
		h2.env.SignalWorkflow(SignalRecord, record(3))
	}, time.Second)
	h2.run(t, next)
	if len(h2.flushes) != 1 || len(h2.flushes[0].Records) != 1 || h2.flushes[0].Records[0].Key != "u3" || h2.flushes[0].Seq != 1 {
		t.Errorf("second run flushes %+v", h2.flushes)
	}
}
