package workflows

import (
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/session"
)

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

func canInput(t *testing.T, err error) *commonpb.Payloads {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	return can.Input
}

func TestClockApply(t *testing.T) {
	const late = 10 * mnt
	mark := func(p string, at int64, idle bool) PartitionMark {
		return PartitionMark{Partition: p, MaxTime: t0 + at, Idle: idle}
	}
	cases := []struct {
		name    string
		updates []WatermarkUpdate
		want    int64
	}{
		{"min over partitions minus lateness",
			[]WatermarkUpdate{{Marks: []PartitionMark{mark("c/0", 20*mnt, false), mark("c/1", 15*mnt, false)}}}, t0 + 5*mnt},
		{"an idle partition does not hold it back",
			[]WatermarkUpdate{{Marks: []PartitionMark{mark("c/0", 20*mnt, false), mark("c/1", 0, true)}}}, t0 + 10*mnt},
		{"all idle: everything read is in",
			[]WatermarkUpdate{{Marks: []PartitionMark{mark("c/0", 20*mnt, true), mark("c/1", 30*mnt, true)}}}, t0 + 20*mnt},
		{"never decreases",
			[]WatermarkUpdate{
				{Marks: []PartitionMark{mark("c/0", 20*mnt, false)}},
				{Source: "new-owner", Marks: []PartitionMark{mark("c/1", 12*mnt, false)}},
			}, t0 + 10*mnt},
		{"a partition's mark never goes back",
			[]WatermarkUpdate{
				{Marks: []PartitionMark{mark("c/0", 20*mnt, false)}},
				{Marks: []PartitionMark{mark("c/0", 5*mnt, false)}},
				{Marks: []PartitionMark{mark("c/1", 25*mnt, false)}},
			}, t0 + 10*mnt},
		{"end of input: the largest event time",
			[]WatermarkUpdate{{Marks: []PartitionMark{mark("c/0", 20*mnt, false), mark("c/1", 3*mnt, false)}, EndOfInput: true}}, t0 + 20*mnt},
	}
	for _, c := range cases {
		s := ClockState{Watermark: session.NoWatermark}
		for i, u := range c.updates {
			s.Apply(u, late, int64(i)*1000)
		}
		if s.Watermark != c.want {
			t.Errorf("%s: W = t0%+d ms, want t0%+d", c.name, s.Watermark-t0, c.want-t0)
		}
	}
}

func TestClockWorkflowRate(t *testing.T) {
	env := newTestEnv(quietLogger())
	send := func(d time.Duration, at int64) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(SignalWatermark, WatermarkUpdate{Marks: []PartitionMark{{Partition: "c/0", MaxTime: at}}})
		}, d)
	}
	// Event time runs 10x faster than wall time (a replayed backlog).
	send(time.Second, t0)
	send(11*time.Second, t0+100*sec)
	send(21*time.Second, t0+200*sec)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryClock)
		if err != nil {
			t.Fatal(err)
		}
		var s ClockState
		if err := v.Get(&s); err != nil {
			t.Fatal(err)
		}
		if s.Watermark != t0+200*sec-mnt || s.Rate < 9.9 || s.Rate > 10.1 {
			t.Errorf("clock %+v, want W t0+200s-1m at rate 10", s)
		}
		env.CancelWorkflow()
	}, 30*time.Second)
	env.ExecuteWorkflow(ClockWorkflow, ClockInput{Pipeline: "web", Lateness: time.Minute})
}

// TestClockAsOf: a session reads W as the clock held it at a moment of the
// clock's workflow time; readings older than the clock keeps still answer
// for the newest of them.
func TestClockAsOf(t *testing.T) {
	s := ClockState{Watermark: session.NoWatermark}
	update := func(atMs, maxTime int64, end bool) {
		s.Apply(WatermarkUpdate{Marks: []PartitionMark{{Partition: "c/0", MaxTime: maxTime}}, EndOfInput: end}, 0, atMs)
		s.remember(atMs)
	}
	update(1_000, 100, false)
	update(2_000, 200, false)
	update(2_000, 250, false) // two updates in one workflow task
	update(3_000, 250, false) // W stands still: no new reading
	update(4_000, 300, true)
	cases := []struct {
		asOf int64
		want int64
		end  bool
	}{
		{999, session.NoWatermark, false},
		{1_000, 100, false},
		{1_999, 100, false},
		{2_000, 250, false},
		{3_500, 250, false},
		{4_000, 300, true},
		{1 << 50, 300, true},
	}
	for _, c := range cases {
		got := s.AsOf(c.asOf)
		if got.Watermark != c.want || got.EndOfInput != c.end {
			t.Errorf("AsOf(%d) = W %d end %v, want W %d end %v", c.asOf, got.Watermark, got.EndOfInput, c.want, c.end)
		}
	}
	if n := len(s.Recent); n != 4 {
		t.Errorf("%d readings kept, want 4 (one per move of W)", n)
	}
}

func TestClockForgetsOldReadings(t *testing.T) {
	s := ClockState{Watermark: session.NoWatermark}
	for i := range int64(400) {
		s.Watermark = i
		s.remember(i * 100) // 40 s of readings, ten a second
	}
	if len(s.Recent) > recentMax {
		t.Fatalf("%d readings kept, want at most %d", len(s.Recent), recentMax)
	}
	// The last 10 s: 100 readings, and the newest one before them.
	if first := s.Recent[0].AtMs; first != 39_900-recentKeepMs {
		t.Errorf("oldest reading at %d ms, want %d", first, 39_900-recentKeepMs)
	}
	if got := s.AsOf(29_950).Watermark; got != 299 {
		t.Errorf("AsOf(29950) = %d, want 299", got)
	}
	if got := s.AsOf(29_000).Watermark; got != session.NoWatermark {
		t.Errorf("AsOf before every kept reading = %d, want no watermark", got)
	}
}

// TestClockRateAveragesSteps: W that stands still for 7 s and then catches
// up 7 s in one (a held batch, then its commit) moves at the wall's pace,
// and Rate says so after the first steps, never a fraction or a multiple.
func TestClockRateAveragesSteps(t *testing.T) {
	s := ClockState{Watermark: session.NoWatermark}
	const l = int64(5000)
	wall, mark := int64(0), t0
	s.Apply(WatermarkUpdate{Marks: []PartitionMark{{Partition: "c/0", MaxTime: mark}}}, l, wall)
	for i := range 40 {
		// 7 s with W barely moving (100 ms a second), then the jump.
		for range 7 {
			wall += 1000
			mark += 100
			s.Apply(WatermarkUpdate{Marks: []PartitionMark{{Partition: "c/0", MaxTime: mark}}}, l, wall)
		}
		wall += 1000
		mark += 8000 - 700
		s.Apply(WatermarkUpdate{Marks: []PartitionMark{{Partition: "c/0", MaxTime: mark}}}, l, wall)
		if i >= 4 && (s.Rate < 0.6 || s.Rate > 1.6) {
			t.Fatalf("step %d: rate %.2f; want about 1, the pace W keeps over its steps", i, s.Rate)
		}
	}
}
