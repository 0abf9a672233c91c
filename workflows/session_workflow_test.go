package workflows

import (
	"context"
	"errors"
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

const (
	t0  int64 = 1704082500000 // 2024-01-01T04:15:00Z
	sec       = int64(1000)
	mnt       = 60 * sec
)

// harness runs one SessionWorkflow against mocked activities. The clock's
// watermark is whatever the test sets; records reach the sink through the
// mocked external signal, or through DeliverRecord when the sink is "down".
type harness struct {
	mu       sync.Mutex // activities of the test environment run on their own goroutines
	t        *testing.T
	env      *testsuite.TestWorkflowEnvironment
	clockW   int64
	final    bool
	clock    func(ClockRequest) ClockState // if set, the clock's answer instead of clockW
	sinkDown bool
	// handOff, if set, is HandOff's outcome (the version-3 close) instead
	// of a delivery and a notice that go through.
	handOff func(HandOffInput) (HandOffResult, error)
	paths   []string // "hand-off", "deliver" and "notify": which activity ran
	sunk    []session.Record
	notes   []activities.Notification
	late    []store.LateEvent
}

func newHarness(t *testing.T) *harness { return newHarnessNotifyDelay(t, 0) }

// newHarnessNotifyDelay makes notifications take d of virtual time.
func newHarnessNotifyDelay(t *testing.T, d time.Duration) *harness {
	h := &harness{t: t, env: newTestEnv(quietLogger()), clockW: session.NoWatermark}
	var a *activities.Activities
	var ta *TemporalActivities
	h.env.RegisterActivity(a)
	h.env.RegisterActivity(ta)
	h.env.OnActivity(ta.ClockState, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req ClockRequest) (ClockState, error) {
			if h.clock != nil {
				return h.clock(req), nil
			}
			return ClockState{Watermark: h.clockW, Rate: 1, EndOfInput: h.final}, nil
		})
	h.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalRecord, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			if h.sinkDown {
				return errors.New("workflow not found")
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			h.sunk = append(h.sunk, arg.(session.Record))
			return nil
		})
	h.env.OnActivity(ta.DeliverRecord, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in DeliverInput) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.sunk = append(h.sunk, in.Record)
			h.paths = append(h.paths, "deliver")
			return nil
		})
	h.env.OnActivity(ta.HandOff, mock.Anything, mock.Anything).After(d).Return(
		func(_ context.Context, in HandOffInput) (HandOffResult, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.paths = append(h.paths, "hand-off")
			if h.handOff != nil {
				res, err := h.handOff(in)
				if err == nil {
					h.sunk = append(h.sunk, in.Deliver.Record)
				}
				if err == nil && in.Notice != nil && res.NoticeError == "" {
					h.notes = append(h.notes, *in.Notice)
				}
				return res, err
			}
			h.sunk = append(h.sunk, in.Deliver.Record)
			if in.Notice != nil {
				h.notes = append(h.notes, *in.Notice)
			}
			return HandOffResult{}, nil
		})
	h.env.OnActivity(a.Notify, mock.Anything, mock.Anything).After(d).Return(
		func(_ context.Context, n activities.Notification) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.notes = append(h.notes, n)
			h.paths = append(h.paths, "notify")
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

// at schedules f at a virtual time after the start.
func (h *harness) at(d time.Duration, f func()) { h.env.RegisterDelayedCallback(f, d) }

func (h *harness) signal(w int64, events ...session.Event) {
	h.env.SignalWorkflow(SignalEvents, EventBatch{Events: events, Watermark: w})
}

func pipeline(t *testing.T, p session.Profile, edit func(*Pipeline)) Pipeline {
	t.Helper()
	r, err := session.Defaults(p)
	if err != nil {
		t.Fatal(err)
	}
	pl := Pipeline{Name: "web", Rules: r, Buckets: 2, MaxWait: 30 * time.Second,
		Notify: Notify{SessionClosed: true, BreakStarted: true, ExpiryWarning: true}}
	if edit != nil {
		edit(&pl)
	}
	if err := pl.Rules.Validate(); err != nil {
		t.Fatal(err)
	}
	return pl
}

func ev(off int64, seq int64) session.Event {
	return session.Event{Time: t0 + off, Seq: seq, Page: "p"}
}

func (h *harness) run(in SessionInput) (session.Record, error) {
	h.env.ExecuteWorkflow(SessionWorkflow, in)
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	var rec session.Record
	err := h.env.GetWorkflowError()
	if err == nil {
		if gerr := h.env.GetWorkflowResult(&rec); gerr != nil {
			h.t.Fatal(gerr)
		}
	}
	return rec, err
}

// continued decodes the input a run continued as new with.
func continued(t *testing.T, err error) SessionInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var in SessionInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestSessionClosesWhenWatermarkPassesInactivity(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), ev(5*mnt, 2)) })
	// The deadline is t0+35m: a watermark at it keeps the session open, one
	// ms past it closes.
	h.at(time.Minute, func() { h.clockW = t0 + 35*mnt })
	h.at(2*time.Minute, func() {
		if len(h.sunk) != 0 {
			t.Error("closed with the watermark at the deadline")
		}
		h.clockW = t0 + 35*mnt + 1
	})
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SessionID != "u1/1704082500000" || rec.EventCount != 2 || rec.CloseReason != session.ReasonInactivity ||
		rec.End != t0+5*mnt || rec.Pipeline != "web" || rec.ClosedAtMs == 0 {
		t.Errorf("record %+v", rec)
	}
	if len(h.sunk) != 1 || h.sunk[0].SessionID != rec.SessionID {
		t.Errorf("sink got %v", h.sunk)
	}
	if len(h.notes) != 1 || h.notes[0].Kind != activities.KindSessionClosed || h.notes[0].SessionID != rec.SessionID {
		t.Errorf("notifications %+v", h.notes)
	}
}

func TestSessionMaxDurationContinuesIntoNextSession(t *testing.T) {
	h := newHarness(t)
	h.sinkDown = true // and the hand-off falls back to DeliverRecord
	h.at(time.Second, func() {
		h.signal(t0-10*mnt, ev(0, 1), ev(30*mnt, 2), ev(60*mnt, 3), ev(90*mnt, 4), ev(120*mnt, 5))
	})
	h.at(time.Minute, func() { h.clockW = t0 + 121*mnt })
	_, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u2"})
	next := continued(t, err)
	if len(h.sunk) != 1 || h.sunk[0].CloseReason != session.ReasonMaxDuration || h.sunk[0].EventCount != 4 {
		t.Fatalf("sink got %+v", h.sunk)
	}
	if next.State == nil || next.State.Open == nil || next.State.Open.Start != t0+120*mnt || next.Watermark != t0+121*mnt {
		t.Errorf("continued with %+v", next)
	}
}

// TestFirstTimerFromTheBatchPace: a new session knows the clock's pace from
// its first batch, so it looks at the clock when W should pass its deadline
// rather than after MaxWait. W moves at the pace of workflow time here.
func TestFirstTimerFromTheBatchPace(t *testing.T) {
	h := newHarness(t)
	start := h.env.Now()
	reads := 0
	h.clock = func(req ClockRequest) ClockState {
		reads++
		return ClockState{Watermark: t0 - 10*mnt + req.AsOfMs - start.UnixMilli(), Rate: 1}
	}
	h.at(0, func() {
		h.env.SignalWorkflow(SignalEvents, EventBatch{Events: []session.Event{ev(0, 1)}, Watermark: t0 - 10*mnt, Rate: 1})
	})
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, func(p *Pipeline) { p.MaxWait = 3 * time.Hour }), Key: "u10"})
	if err != nil {
		t.Fatal(err)
	}
	// The deadline t0+30m is 40 minutes of W ahead of the batch's watermark.
	if took := time.Duration(rec.ClosedAtMs-start.UnixMilli()) * time.Millisecond; took < 40*time.Minute || took > 45*time.Minute {
		t.Errorf("closed %v after the first batch, want just after 40m (MaxWait is 3h)", took)
	}
	if reads > 2 {
		t.Errorf("%d clock reads, want the one the pace predicted (and one more at most)", reads)
	}
}

// TestFirstTimerWithoutAPace: a batch from a clock too young to know its
// pace; the run aims as if W kept the wall's pace, not at max_wait.
func TestFirstTimerWithoutAPace(t *testing.T) {
	h := newHarness(t)
	start := h.env.Now()
	h.clock = func(req ClockRequest) ClockState {
		return ClockState{Watermark: t0 - 10*mnt + req.AsOfMs - start.UnixMilli(), Rate: 1}
	}
	h.at(0, func() {
		h.env.SignalWorkflow(SignalEvents, EventBatch{Events: []session.Event{ev(0, 1)}, Watermark: t0 - 10*mnt})
	})
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, func(p *Pipeline) { p.MaxWait = 3 * time.Hour }), Key: "u13"})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Duration(rec.ClosedAtMs-start.UnixMilli()) * time.Millisecond; took < 40*time.Minute || took > 41*time.Minute {
		t.Errorf("closed %v after the first batch, want just after 40m (MaxWait is 3h)", took)
	}
}

// TestAimFromWAsItMovedSinceRead: a batch's watermark is the ingester's
// reading of some time ago (held, queued, start-delayed); the run aims from
// W as it has moved since, at its pace, and wakes once, when W passes the
// deadline, not the reading's age later.
func TestAimFromWAsItMovedSinceRead(t *testing.T) {
	h := newHarness(t)
	start := h.env.Now()
	reads := 0
	wAt := func(wall int64) int64 { return t0 - 10*mnt + wall - start.UnixMilli() } // W moves with wall time
	h.clock = func(req ClockRequest) ClockState {
		reads++
		return ClockState{Watermark: wAt(req.AsOfMs), Rate: 1}
	}
	readAt := start.UnixMilli() - 5*mnt // the reading is five minutes old when the batch arrives
	h.at(0, func() {
		h.env.SignalWorkflow(SignalEvents, EventBatch{Events: []session.Event{ev(0, 1)}, Watermark: wAt(readAt), Rate: 1, AsOfMs: readAt})
	})
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, func(p *Pipeline) {
		p.MaxWait = 3 * time.Hour
		p.Notify = Notify{SessionClosed: true}
	}), Key: "u11"})
	if err != nil {
		t.Fatal(err)
	}
	// The deadline t0+30m is 40 minutes of W ahead of W at the start.
	if took := time.Duration(rec.ClosedAtMs-start.UnixMilli()) * time.Millisecond; took < 40*time.Minute || took > 40*time.Minute+3*time.Second {
		t.Errorf("closed %v after the batch, want within 3 s of 40m (aimed from the old reading: 45m)", took)
	}
	if reads != 1 {
		t.Errorf("%d clock reads, want 1", reads)
	}
}

// TestOneWakeUpPerSession: batches that move the inactivity deadline
// re-aim the timer in their own tasks, so the run wakes once, when W passes
// the last deadline, instead of at each deadline it had on the way; and a
// wake-up that finds W short (the clock lags here by 3 s) re-arms once.
func TestOneWakeUpPerSession(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lag       time.Duration // how far the clock's W is behind the pace the batches predict
		wantReads int
	}{
		{"on time", 0, 1},
		{"clock behind", 3 * time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			start := h.env.Now()
			reads := 0
			h.clock = func(req ClockRequest) ClockState {
				reads++
				return ClockState{Watermark: t0 - 10*mnt + req.AsOfMs - start.UnixMilli() - tc.lag.Milliseconds(), Rate: 1}
			}
			for i := range int64(3) { // events at t0, t0+5m, t0+10m; W 10 minutes behind them
				h.at(time.Duration(i)*5*time.Minute, func() {
					h.env.SignalWorkflow(SignalEvents, EventBatch{Events: []session.Event{ev(i*5*mnt, i+1)}, Watermark: t0 - 10*mnt + i*5*mnt, Rate: 1})
				})
			}
			rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, func(p *Pipeline) {
				p.MaxWait = 3 * time.Hour
				p.Notify = Notify{SessionClosed: true} // no notice due when an event applies
			}), Key: "u12"})
			if err != nil {
				t.Fatal(err)
			}
			if rec.EventCount != 3 || rec.End != t0+10*mnt {
				t.Fatalf("record %+v, want the three events", rec)
			}
			if reads != tc.wantReads {
				t.Errorf("%d clock reads, want %d", reads, tc.wantReads)
			}
			// The last deadline, t0+40m, is 50 minutes of W after the start.
			if took := time.Duration(rec.ClosedAtMs-start.UnixMilli()) * time.Millisecond; took < 50*time.Minute+tc.lag || took > 50*time.Minute+tc.lag+3*time.Second {
				t.Errorf("closed %v after the first batch, want within 3 s of W passing the deadline", took)
			}
		})
	}
}

// TestSearchAttributesAtTheClose: five batches, each moving the session on,
// cost no upsert at all (the first signal's start set key, pipeline and
// state); the close publishes the final figures in one.
func TestSearchAttributesAtTheClose(t *testing.T) {
	h := newHarness(t)
	var upserts []temporal.SearchAttributes
	h.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		upserts = append(upserts, args.Get(0).(temporal.SearchAttributes))
	}).Return(nil)
	for i := range int64(5) {
		// Each batch's watermark applies the event before it.
		h.at(time.Duration(i+1)*time.Second, func() { h.signal(t0+i*mnt, ev(i*mnt, i+1)) })
	}
	h.at(6*time.Second, func() { h.signal(t0 + 40*mnt) }) // closes it before the first wake-up
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, func(p *Pipeline) { p.Visibility = true }), Key: "u11"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.EventCount != 5 {
		t.Fatalf("record %+v", rec)
	}
	var states []string
	for _, u := range upserts {
		st, _ := u.GetKeyword(AttrSessionState)
		states = append(states, st)
	}
	if want := []string{StateClosed}; !slices.Equal(states, want) {
		t.Fatalf("upserts for 5 batches and the close: %v, want %v", states, want)
	}
	if count, _ := upserts[0].GetInt64(AttrEventCount); count != 5 {
		t.Errorf("closed with EventCount %d, want 5", count)
	}
	if id, _ := upserts[0].GetKeyword(AttrSessionID); id != rec.SessionID {
		t.Errorf("closed with SessionID %q, want %q", id, rec.SessionID)
	}
}

// TestOutOfOrderBridge: two provisional sessions (t0 and t0+40m, further
// apart than the gap) become one when an event at t0+20m arrives late, but
// before the watermark passed it.
func TestOutOfOrderBridge(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), ev(40*mnt, 3)) })
	h.at(time.Minute, func() { h.clockW = t0 + 15*mnt })
	h.at(2*time.Minute, func() { h.signal(t0+15*mnt, ev(20*mnt, 2)) })
	h.at(3*time.Minute, func() { h.clockW = t0 + 71*mnt })
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u3"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.EventCount != 3 || rec.Start != t0 || rec.End != t0+40*mnt {
		t.Errorf("want one bridged session of 3 events, got %+v", rec)
	}
}

func TestLateAndDuplicateEvents(t *testing.T) {
	h := newHarness(t)
	withID := func(off, seq int64, id uint64) session.Event { e := ev(off, seq); e.ID = id; return e }
	h.at(time.Second, func() { h.signal(t0, withID(0, 1, 11), withID(mnt, 2, 12)) })
	h.at(2*time.Second, func() { h.signal(t0, withID(0, 1, 11), withID(mnt, 2, 12)) }) // redelivery
	h.at(time.Minute, func() { h.clockW = t0 + 2*mnt })
	h.at(2*time.Minute, func() { h.signal(t0+2*mnt, withID(90*sec, 3, 13)) }) // below W: late
	h.at(3*time.Minute, func() { h.clockW = t0 + 40*mnt })
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u4"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.EventCount != 2 {
		t.Errorf("redelivered or late events counted: %+v", rec)
	}
	if len(h.late) != 1 || h.late[0].Event.ID != 13 || h.late[0].Watermark != t0+2*mnt || h.late[0].Key != "u4" {
		t.Errorf("late output %+v", h.late)
	}
}

// TestSignalRacingTheClose: a batch of the key's next session arrives in the
// same instant the session closes; the run must carry it, not lose it.
func TestSignalRacingTheClose(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1)) })
	h.at(time.Minute, func() {
		h.clockW = t0 + 31*mnt
		h.signal(t0+31*mnt, ev(50*mnt, 2))
	})
	_, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u5"})
	next := continued(t, err)
	if len(h.sunk) != 1 || h.sunk[0].EventCount != 1 {
		t.Fatalf("sink got %+v", h.sunk)
	}
	if next.State == nil || len(next.State.Pending) != 1 || next.State.Pending[0].Time != t0+50*mnt {
		t.Errorf("the racing event was not carried: %+v", next.State)
	}
}

// TestBatchDuringNotification: the session closed and nothing else was
// buffered, but a batch arrives while the run waits for its close
// notification. The run must not complete without it.
func TestBatchDuringNotification(t *testing.T) {
	h := newHarnessNotifyDelay(t, 10*time.Second)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1)) })
	h.at(time.Minute, func() { h.clockW = t0 + 31*mnt })
	h.at(time.Minute+5*time.Second, func() { h.signal(t0+31*mnt, ev(50*mnt, 2)) })
	_, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u9"})
	next := continued(t, err)
	if len(h.sunk) != 1 || next.State == nil || len(next.State.Pending) != 1 {
		t.Errorf("sink %+v, carried %+v", h.sunk, next.State)
	}
}

func TestContinueAsNewSuggested(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), ev(mnt, 2), ev(40*mnt, 3)) })
	h.at(time.Minute, func() { h.clockW = t0 + 2*mnt })
	h.at(90*time.Second, func() {
		h.env.SetContinueAsNewSuggested(true)
		h.signal(t0+2*mnt, ev(3*mnt, 4))
	})
	_, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u6"})
	next := continued(t, err)
	st := next.State
	if st == nil || st.Open == nil || st.Open.Count != 2 || len(st.Pending) != 2 || len(h.sunk) != 0 {
		t.Errorf("carried state %+v, sink %v", st, h.sunk)
	}
	// The next run finishes the job from the carried state alone, with no
	// new signal: at W=t0+80m both the carried session (now 3 events) and
	// the t0+40m one close.
	h2 := newHarness(t)
	h2.clockW = t0 + 80*mnt
	if _, err = h2.run(next); err != nil {
		t.Fatal(err)
	}
	if len(h2.sunk) != 2 || h2.sunk[0].EventCount != 3 || h2.sunk[0].End != t0+3*mnt || h2.sunk[1].Start != t0+40*mnt {
		t.Errorf("after continue-as-new: %+v", h2.sunk)
	}
}

func TestExpiryWarningAndBreaks(t *testing.T) {
	h := newHarness(t)
	pl := pipeline(t, session.Charging, func(p *Pipeline) {
		p.Rules.MaxDuration = 20 * time.Minute
		p.Rules.ExpiryWarning = 5 * time.Minute
	})
	on := func(off, seq int64) session.Event {
		return session.Event{Time: t0 + off, Seq: seq, Flags: session.FlagActive}
	}
	off := func(o, seq int64) session.Event { return session.Event{Time: t0 + o, Seq: seq} }
	h.at(time.Second, func() { h.signal(t0-10*mnt, on(0, 1), off(2*mnt, 2), on(4*mnt, 3), on(10*mnt, 4), on(14*mnt, 5)) })
	h.at(time.Minute, func() { h.clockW = t0 + 15*mnt + 1 })
	h.at(2*time.Minute, func() { h.clockW = t0 + 21*mnt })
	rec, err := h.run(SessionInput{Pipeline: pl, Key: "drone"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, n := range h.notes {
		kinds = append(kinds, n.Kind)
		switch n.Kind {
		case activities.KindBreakStarted:
			if n.At != t0+2*mnt || n.IdempotencyKey() != "drone/1704082500000:break_started:1704082620000" {
				t.Errorf("break notice %+v", n)
			}
		case activities.KindExpiryWarning:
			if n.At != t0+15*mnt || n.Session.EventCount != 5 {
				t.Errorf("expiry notice %+v", n)
			}
		}
	}
	// The break and the expiry notices run concurrently: compare as a set.
	slices.Sort(kinds)
	want := []string{activities.KindBreakStarted, activities.KindExpiryWarning, activities.KindSessionClosed}
	if !slices.Equal(kinds, want) {
		t.Errorf("notifications %v, want %v", kinds, want)
	}
	// W=t0+21m passes the maximum (t0+20m-1ms) before inactivity (t0+29m).
	if rec.CloseReason != session.ReasonMaxDuration || rec.BreakCount != 1 || rec.BreakMs != 2*mnt {
		t.Errorf("record %+v", rec)
	}
}

func TestBreakExceededByWatermark(t *testing.T) {
	h := newHarness(t)
	pl := pipeline(t, session.Charging, nil)
	h.at(time.Second, func() {
		h.signal(t0-10*mnt, session.Event{Time: t0, Seq: 1, Flags: session.FlagActive}, session.Event{Time: t0 + mnt, Seq: 2})
	})
	h.at(time.Minute, func() { h.clockW = t0 + 6*mnt + 1 })
	rec, err := h.run(SessionInput{Pipeline: pl, Key: "d2"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.CloseReason != session.ReasonBreak || rec.EventCount != 1 || rec.Status != session.StatusInvalid {
		t.Errorf("record %+v", rec)
	}
}

func TestEndOfInputFinishesLikeABatch(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), ev(mnt, 2)) })
	h.at(time.Minute, func() { h.clockW, h.final = t0+mnt, true })
	rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u7"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.CloseReason != session.ReasonEndOfInput || rec.EventCount != 2 {
		t.Errorf("record %+v", rec)
	}
}

func TestSessionQueryState(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), ev(mnt, 2), ev(20*mnt, 3)) })
	h.at(time.Minute, func() { h.clockW = t0 + 5*mnt })
	h.at(2*time.Minute, func() {
		v, err := h.env.QueryWorkflow(QueryState)
		if err != nil {
			t.Fatal(err)
		}
		var s SessionState
		if err := v.Get(&s); err != nil {
			t.Fatal(err)
		}
		if s.Session == nil || s.Session.EventCount != 2 || s.Pending != 1 || s.Deadline != t0+31*mnt ||
			s.DeadlineReason != session.ReasonInactivity || s.Watermark != t0+5*mnt {
			t.Errorf("state %+v session %+v", s, s.Session)
		}
		h.clockW = t0 + 60*mnt
	})
	if _, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u8"}); err != nil {
		t.Fatal(err)
	}
}

// TestEveryDeadlineKind closes a session of each profile by each of its
// rules, with the watermark (not a later event) doing the closing.
func TestEveryDeadlineKind(t *testing.T) {
	on := func(off, seq int64) session.Event {
		return session.Event{Time: t0 + off, Seq: seq, Flags: session.FlagActive}
	}
	offE := func(off, seq int64) session.Event { return session.Event{Time: t0 + off, Seq: seq} }
	end := func(off, seq int64) session.Event {
		return session.Event{Time: t0 + off, Seq: seq, Flags: session.FlagEnd, Page: "logout"}
	}
	cases := []struct {
		name    string
		profile session.Profile
		edit    func(*Pipeline)
		events  []session.Event
		w       int64 // the clock's watermark after the events
		want    session.Reason
		count   int64
	}{
		{"clickstream inactivity", session.Clickstream, nil, []session.Event{ev(0, 1), ev(10*mnt, 2)}, t0 + 40*mnt + 1, session.ReasonInactivity, 2},
		{"clickstream max duration", session.Clickstream, nil,
			[]session.Event{ev(0, 1), ev(29*mnt, 2), ev(58*mnt, 3), ev(87*mnt, 4), ev(116*mnt, 5)}, t0 + 120*mnt, session.ReasonMaxDuration, 5},
		{"clickstream end marker", session.Clickstream, func(p *Pipeline) { p.Rules.EndMarker = session.Marker{Field: "page_name", Value: "logout"} },
			[]session.Event{ev(0, 1), end(mnt, 2)}, t0 + mnt + 1, session.ReasonEndMarker, 2},
		{"charging inactivity", session.Charging, nil, []session.Event{on(0, 1), on(mnt, 2)}, t0 + 16*mnt + 1, session.ReasonInactivity, 2},
		{"charging max duration", session.Charging, func(p *Pipeline) { p.Rules.MaxDuration = 10 * time.Minute },
			[]session.Event{on(0, 1), on(5*mnt, 2), on(9*mnt, 3)}, t0 + 10*mnt, session.ReasonMaxDuration, 3},
		{"charging break exceeded", session.Charging, nil, []session.Event{on(0, 1), offE(mnt, 2)}, t0 + 6*mnt + 1, session.ReasonBreak, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.at(time.Second, func() { h.signal(t0-10*mnt, c.events...) })
			h.at(time.Minute, func() { h.clockW = c.w })
			rec, err := h.run(SessionInput{Pipeline: pipeline(t, c.profile, c.edit), Key: "k"})
			if err != nil {
				t.Fatal(err)
			}
			if rec.CloseReason != c.want || rec.EventCount != c.count || len(h.sunk) != 1 {
				t.Errorf("closed %s with %d events (sink %d), want %s with %d", rec.CloseReason, rec.EventCount, len(h.sunk), c.want, c.count)
			}
		})
	}
}
