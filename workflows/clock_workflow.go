package workflows

import (
	"cmp"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/session"
)

// PartitionMark is one input partition's progress as its ingester reports it.
type PartitionMark struct {
	Partition string `json:"partition"` // "topic/partition"
	// MaxTime is the largest event time of the partition that Temporal has
	// acknowledged (events signalled, not merely read).
	MaxTime int64 `json:"max_time"`
	// Idle partitions do not hold the watermark back.
	Idle bool `json:"idle,omitempty"`
}

// WatermarkUpdate is the payload of SignalWatermark.
type WatermarkUpdate struct {
	Source string          `json:"source"` // the ingester instance, for logs
	Marks  []PartitionMark `json:"marks"`
	// EndOfInput says no more events will come: the watermark becomes the
	// largest event time and open sessions finish as a batch run's do
	// (close_reason end_of_input unless a deadline lies below it).
	EndOfInput bool `json:"end_of_input,omitempty"`
	// SentMs is the sender's wall time (epoch ms) when the marks held. The
	// clock measures W's pace with it: updates that queue up while the
	// clock's worker is busy are all handled at one workflow time.
	SentMs int64 `json:"sent_ms,omitempty"`
}

// ClockState is the pipeline's event-time clock.
type ClockState struct {
	// Watermark is W: the smallest MaxTime of the non-idle partitions minus
	// the allowed lateness. It never decreases.
	Watermark int64 `json:"watermark"`
	// WallMs is the workflow time at which W last advanced.
	WallMs int64 `json:"wall_ms"`
	// Rate is how fast W advances, in event-time ms per wall ms (smoothed):
	// sessions use it to guess when W will pass their deadline.
	Rate float64 `json:"rate"`
	// RateSpanMs is the wall time Rate averages, up to rateWindowMs.
	RateSpanMs int64           `json:"rate_span_ms,omitempty"`
	EndOfInput bool            `json:"end_of_input,omitempty"`
	Marks      []PartitionMark `json:"marks,omitempty"` // sorted by partition
	// Recent is W over the last seconds, oldest first, each with the clock's
	// own workflow time: sessions read W as it stood when their workflow
	// task started (AsOf).
	Recent []Reading `json:"recent,omitempty"`
}

// Reading is W as the clock held it from AtMs, its workflow time, on.
type Reading struct {
	AtMs       int64 `json:"at_ms"`
	Watermark  int64 `json:"watermark"`
	EndOfInput bool  `json:"end_of_input,omitempty"`
}

// rateWindowMs is about how much wall time Rate averages W's pace over:
// longer than the swings of W's lag behind the wall under held batches
// (tens of seconds), which a session's aim must not take for a new pace.
const rateWindowMs = 60_000

// How much of W's past the clock keeps for AsOf: the last 10 s, at most 128
// readings, and always the newest reading before them.
const (
	recentKeepMs = 10_000
	recentMax    = 128
)

// ClockInput starts or continues a ClockWorkflow.
type ClockInput struct {
	Pipeline string        `json:"pipeline"`
	Lateness time.Duration `json:"lateness"`
	State    *ClockState   `json:"state,omitempty"`
}

// clockSignalsPerRun keeps a clock's history short: it continues as new
// after this many updates.
const clockSignalsPerRun = 1000

// ClockWorkflow keeps a pipeline's watermark from the marks of any number of
// ingesters and answers QueryClock. It runs for as long as the pipeline
// does, continuing as new to bound its history.
func ClockWorkflow(ctx workflow.Context, in ClockInput) error {
	state := ClockState{Watermark: session.NoWatermark}
	if in.State != nil {
		state = *in.State
	}
	if err := workflow.SetQueryHandler(ctx, QueryClock, func() (ClockState, error) { return state, nil }); err != nil {
		return err
	}
	updates := workflow.GetSignalChannel(ctx, SignalWatermark)
	for n := 0; ; n++ {
		var u WatermarkUpdate
		updates.Receive(ctx, &u)
		state.Apply(u, in.Lateness.Milliseconds(), wallMs(ctx, u))
		state.remember(workflow.Now(ctx).UnixMilli())
		if n+1 >= clockSignalsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			for updates.ReceiveAsync(&u) {
				state.Apply(u, in.Lateness.Milliseconds(), wallMs(ctx, u))
				state.remember(workflow.Now(ctx).UnixMilli())
			}
			in.State = &state
			return workflow.NewContinueAsNewError(ctx, ClockWorkflow, in)
		}
	}
}

// wallMs is when an update's marks held: the sender's time if it gave one.
func wallMs(ctx workflow.Context, u WatermarkUpdate) int64 {
	if u.SentMs > 0 {
		return u.SentMs
	}
	return workflow.Now(ctx).UnixMilli()
}

// Apply merges an update's marks and moves the watermark forward: marks
// merge by maximum, W is the least non-idle mark minus the lateness (the
// largest mark when all are idle, the largest without lateness at the end of
// input), and W never decreases. nowMs is the update's wall time, for the
// pace. It is the one statement of the rule; test fakes of the clock call it.
func (s *ClockState) Apply(u WatermarkUpdate, lateness, nowMs int64) {
	for _, m := range u.Marks {
		i, found := slices.BinarySearchFunc(s.Marks, m.Partition, func(a PartitionMark, p string) int {
			return cmp.Compare(a.Partition, p)
		})
		if found {
			m.MaxTime = max(m.MaxTime, s.Marks[i].MaxTime)
			s.Marks[i] = m
		} else {
			s.Marks = slices.Insert(s.Marks, i, m)
		}
	}
	if len(s.Marks) == 0 {
		return
	}
	low, high, active := int64(0), s.Marks[0].MaxTime, false
	for _, m := range s.Marks {
		high = max(high, m.MaxTime)
		if !m.Idle && (!active || m.MaxTime < low) {
			low, active = m.MaxTime, true
		}
	}
	w := high - lateness // every partition idle: all that was read is in
	if active {
		w = low - lateness
	}
	if u.EndOfInput {
		w, s.EndOfInput = high, true
	}
	if w <= s.Watermark {
		return
	}
	if s.Watermark != session.NoWatermark && nowMs > s.WallMs {
		// Each step weighs by the wall time it spans: the mean pace over
		// the clock's first rateWindowMs, then over about the last one. W
		// moves in steps (a held batch caps it, its commit releases it),
		// and the pace of the last step alone swings between a fraction
		// and several times the true one, which aims the sessions' timers
		// that much late or early.
		dt := nowMs - s.WallMs
		rate := float64(w-s.Watermark) / float64(dt)
		s.RateSpanMs = min(s.RateSpanMs+dt, rateWindowMs)
		a := float64(dt) / float64(s.RateSpanMs)
		s.Rate = (1-a)*s.Rate + a*rate
	}
	s.Watermark, s.WallMs = w, nowMs
}

// remember notes W, if it moved, as the clock's reading from nowMs (its
// workflow time: the same server clock as the sessions' task times).
func (s *ClockState) remember(nowMs int64) {
	if n := len(s.Recent); n > 0 && s.Recent[n-1].Watermark == s.Watermark && s.Recent[n-1].EndOfInput == s.EndOfInput {
		return
	}
	s.Recent = append(s.Recent, Reading{AtMs: nowMs, Watermark: s.Watermark, EndOfInput: s.EndOfInput})
	drop := max(0, len(s.Recent)-recentMax)
	for drop+1 < len(s.Recent) && s.Recent[drop+1].AtMs <= nowMs-recentKeepMs {
		drop++
	}
	if drop > 0 {
		s.Recent = slices.Delete(s.Recent, 0, drop)
	}
}

// AsOf is the clock as it stood at workflow time ms: W and the end of input
// of its newest reading not after ms, or no watermark if it kept none that
// old. Marks and Recent are left out.
//
// Why sessions need it: an ingester lets W pass an event once Temporal has
// acknowledged the event's signal, but a workflow task sees only the signals
// that arrived before it started. A task that read the clock's latest W
// could judge late, or close a session before, the events of a batch that
// arrived while the task ran. W as of the task's start is passed only by
// events whose batches the task already holds.
func (s ClockState) AsOf(ms int64) ClockState {
	out := ClockState{Watermark: session.NoWatermark, Rate: s.Rate}
	for _, r := range s.Recent {
		if r.AtMs > ms {
			break
		}
		out.Watermark, out.EndOfInput = r.Watermark, r.EndOfInput
	}
	return out
}
