package workflows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// shardHarness runs one ShardWorkflow against mocked activities: the clock
// says what the test sets, writes and notices are collected.
type shardHarness struct {
	mu      sync.Mutex
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	clockW  int64
	final   bool
	writes  []store.WriteSessionsInput
	notices []activities.Notification
	late    []store.LateEvent
	failOne bool // the first notice of every NotifyAll fails, retryably
	retried []activities.Notification
}

func newShardHarness(t *testing.T) *shardHarness {
	h := &shardHarness{t: t, env: newTestEnv(quietLogger()), clockW: session.NoWatermark}
	var a *activities.Activities
	var ta *TemporalActivities
	h.env.RegisterActivity(a)
	h.env.RegisterActivity(ta)
	h.env.OnActivity(ta.ClockState, mock.Anything, mock.Anything).Return(
		func(context.Context, ClockRequest) (ClockState, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return ClockState{Watermark: h.clockW, Rate: 1, EndOfInput: h.final}, nil
		})
	h.env.OnActivity(a.WriteParquet, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in store.WriteSessionsInput) (store.WriteResult, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			in.Records = slices.Clone(in.Records)
			h.writes = append(h.writes, in)
			return store.WriteResult{Rows: len(in.Records)}, nil
		})
	h.env.OnActivity(a.NotifyAll, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ns []activities.Notification) ([]activities.NotifyResult, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			res := make([]activities.NotifyResult, len(ns))
			for i, n := range ns {
				if h.failOne && i == 0 {
					res[i] = activities.NotifyResult{Error: "503"}
					continue
				}
				h.notices = append(h.notices, n)
			}
			return res, nil
		})
	h.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(
		func(_ context.Context, n activities.Notification) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.retried = append(h.retried, n)
			return nil
		})
	h.env.OnActivity(a.WriteLate, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in store.WriteLateInput) (store.WriteResult, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.late = append(h.late, in.Events...)
			return store.WriteResult{Rows: len(in.Events)}, nil
		})
	return h
}

func (h *shardHarness) setClock(w int64, final bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clockW, h.final = w, final
}

// records are the rows the shard wrote, in write order.
func (h *shardHarness) records() []session.Record {
	var out []session.Record
	for _, w := range h.writes {
		out = append(out, w.Records...)
	}
	return out
}

// shardEvents are n random clickstream events over keys k0..k(keys-1) in an
// hour from t0, some of them duplicates, in random order.
func shardEvents(rng *rand.Rand, keys, n int) []session.Keyed {
	var out []session.Keyed
	for i := range n {
		e := session.Event{Time: t0 + rng.Int64N(60*mnt), Seq: int64(i + 1), Page: fmt.Sprintf("p%d", rng.IntN(5))}
		out = append(out, session.Keyed{Key: fmt.Sprintf("k%d", rng.IntN(keys)), Event: e})
		if rng.IntN(20) == 0 {
			out = append(out, out[len(out)-1])
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// batches cuts events into ShardBatches of up to size events; each carries
// the lowest time of the events not yet sent as its watermark, as a holding
// ingester would (never past an event it still holds).
func batches(events []session.Keyed, size int) []ShardBatch {
	var out []ShardBatch
	for i := 0; i < len(events); i += size {
		end := min(i+size, len(events))
		w := int64(session.NoWatermark)
		if end < len(events) {
			w = slices.MinFunc(events[end:], func(a, b session.Keyed) int { return int(a.Time - b.Time) }).Time
			w = min(w, slices.MinFunc(events[i:end], func(a, b session.Keyed) int { return int(a.Time - b.Time) }).Time)
		}
		b := ShardBatch{Watermark: w}
		for _, ke := range events[i:end] {
			b.Keys = append(b.Keys, KeyEvents{Key: ke.Key, Events: []session.Event{ke.Event}})
		}
		out = append(out, b)
	}
	return out
}

func shardPipeline(t *testing.T) Pipeline {
	p := pipeline(t, session.Clickstream, func(p *Pipeline) {
		p.Notify = Notify{SessionClosed: true}
		p.Unit, p.Shards = UnitShard, 4
		p.Sink = SinkLimits{MaxRecords: 7, MaxAge: 20 * time.Second}
	})
	return p
}

// maxTime is the batch engine's end-of-input watermark for events.
func maxTime(events []session.Keyed) int64 {
	return slices.MaxFunc(events, func(a, b session.Keyed) int { return cmp.Compare(a.Time, b.Time) }).Time
}

// plain drops what only the streaming path sets.
func plain(rs []session.Record) []session.Record {
	out := slices.Clone(rs)
	for i := range out {
		out[i].ClosedAtMs = 0
	}
	slices.SortFunc(out, func(a, b session.Record) int { return cmp.Compare(a.SessionID, b.SessionID) })
	return out
}

// TestShardWorkflowEqualsBatch: a shard fed ShardBatches of many keys, with
// the clock moving past every deadline, writes the batch engine's sessions,
// once each, in bucket=<shard> objects named for the shard, and sends one
// session_closed notice per session.
func TestShardWorkflowEqualsBatch(t *testing.T) {
	for _, size := range []int{1, 13, 400} {
		t.Run(fmt.Sprintf("batches of %d", size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 7))
			events := shardEvents(rng, 25, 300)
			p := shardPipeline(t)
			want, _ := session.Sessionize(&p.Rules, p.Name, events)
			h := newShardHarness(t)
			for i, b := range batches(events, size) {
				h.env.RegisterDelayedCallback(func() { h.env.SignalWorkflow(SignalShardEvents, b) }, time.Duration(i+1)*time.Millisecond)
			}
			h.env.RegisterDelayedCallback(func() { h.setClock(maxTime(events), true) }, time.Minute)
			h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 10*time.Minute)
			h.env.ExecuteWorkflow(ShardWorkflow, ShardInput{Pipeline: p, Shard: 2})
			if err := h.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
				t.Fatalf("workflow ended with %v, want it cancelled by the test", err)
			}
			got := h.records()
			if !reflect.DeepEqual(plain(got), plain(want)) {
				t.Fatalf("shard wrote %d records, batch engine %d:\n got %+v\nwant %+v", len(got), len(want), plain(got), plain(want))
			}
			for i, w := range h.writes {
				if w.Bucket != 2 || w.Seq != int64(i) || len(w.Records) > 7 || w.Prefix != p.Name {
					t.Errorf("write %d: bucket %d seq %d, %d records, prefix %q", i, w.Bucket, w.Seq, len(w.Records), w.Prefix)
				}
			}
			if len(h.notices) != len(want) {
				t.Errorf("%d notices for %d sessions", len(h.notices), len(want))
			}
		})
	}
}

// TestShardContinuesAsNew: past its signal limit a shard continues as new
// with its open keys and flush numbering, and the two runs together write
// the batch engine's sessions.
func TestShardContinuesAsNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	events := shardEvents(rng, 40, shardSignalsPerRun+100)
	p := shardPipeline(t)
	want, _ := session.Sessionize(&p.Rules, p.Name, events)
	bs := batches(events, 1)

	first := newShardHarness(t)
	for i, b := range bs[:shardSignalsPerRun] {
		first.env.RegisterDelayedCallback(func() { first.env.SignalWorkflow(SignalShardEvents, b) }, time.Duration(i+1)*time.Millisecond)
	}
	first.env.ExecuteWorkflow(ShardWorkflow, ShardInput{Pipeline: p, Shard: 1})
	var can *workflow.ContinueAsNewError
	if err := first.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("first run ended with %v, want continue-as-new", err)
	}
	var next ShardInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || len(next.State.Keys.Keys) == 0 || next.State.Seq != int64(len(first.writes)) {
		t.Fatalf("carried state %+v after %d writes", next.State, len(first.writes))
	}

	second := newShardHarness(t)
	for i, b := range bs[shardSignalsPerRun:] {
		second.env.RegisterDelayedCallback(func() { second.env.SignalWorkflow(SignalShardEvents, b) }, time.Duration(i+1)*time.Millisecond)
	}
	second.env.RegisterDelayedCallback(func() { second.setClock(maxTime(events), true) }, time.Minute)
	second.env.RegisterDelayedCallback(second.env.CancelWorkflow, 5*time.Minute)
	second.env.ExecuteWorkflow(ShardWorkflow, next)
	got := append(first.records(), second.records()...)
	if !reflect.DeepEqual(plain(got), plain(want)) {
		t.Fatalf("two runs wrote %d records, batch engine %d:\n got %+v\nwant %+v", len(got), len(want), plain(got), plain(want))
	}
	if len(second.writes) > 0 && second.writes[0].Seq != next.State.Seq {
		t.Errorf("second run's first flush is seq %d, want %d", second.writes[0].Seq, next.State.Seq)
	}
}

// TestShardNoticeRetried: a notice NotifyAll could not send goes to the
// Notify activity; every session still gets its notice.
func TestShardNoticeRetried(t *testing.T) {
	p := shardPipeline(t)
	h := newShardHarness(t)
	h.failOne = true
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalShardEvents, ShardBatch{Watermark: session.NoWatermark, Keys: []KeyEvents{
			{Key: "a", Events: []session.Event{ev(0, 1)}}, {Key: "b", Events: []session.Event{ev(sec, 2)}}}})
	}, time.Second)
	h.env.RegisterDelayedCallback(func() { h.setClock(t0+60*mnt, false) }, time.Minute)
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 5*time.Minute)
	h.env.ExecuteWorkflow(ShardWorkflow, ShardInput{Pipeline: p, Shard: 0})
	if len(h.records()) != 2 || len(h.notices)+len(h.retried) != 2 || len(h.retried) != 1 {
		t.Fatalf("%d records, %d notices sent, %d retried; want 2, 1, 1", len(h.records()), len(h.notices), len(h.retried))
	}
}

// TestShardQueries: the state query answers for one key, the summary for
// the shard.
func TestShardQueries(t *testing.T) {
	p := shardPipeline(t)
	h := newShardHarness(t)
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(SignalShardEvents, ShardBatch{Watermark: t0 + sec, Keys: []KeyEvents{
			{Key: "a", Events: []session.Event{ev(0, 1), ev(2*sec, 2)}}, {Key: "b", Events: []session.Event{ev(sec, 3)}}}})
	}, time.Second)
	var st SessionState
	var sum ShardSummary
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(QueryState, "a")
		if err != nil || v.Get(&st) != nil {
			t.Errorf("state query: %v", err)
		}
		v, err = h.env.QueryWorkflow(QueryShard)
		if err != nil || v.Get(&sum) != nil {
			t.Errorf("summary query: %v", err)
		}
		h.env.CancelWorkflow()
	}, 2*time.Second)
	h.env.ExecuteWorkflow(ShardWorkflow, ShardInput{Pipeline: p, Shard: 3})
	if st.Key != "a" || st.Session == nil || st.Session.EventCount != 1 || st.Pending != 1 {
		t.Errorf("state of a: %+v", st)
	}
	if sum.Shard != 3 || sum.OpenKeys != 2 || sum.Watermark != t0+sec || sum.NextKey != "b" || sum.NextDeadline != t0+sec {
		t.Errorf("summary: %+v", sum)
	}
}
