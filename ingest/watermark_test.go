package ingest

import (
	"slices"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

func TestMinWindow(t *testing.T) {
	var q minWindow
	if _, ok := q.min(); ok || !q.empty() {
		t.Fatal("a new window is not empty")
	}
	steps := []struct {
		push     [2]int64 // offset, time; {-1} for none
		popTo    int64    // popBefore this offset; 0 for none
		wantMin  int64
		wantNone bool
	}{
		{push: [2]int64{0, 50}, wantMin: 50},
		{push: [2]int64{1, 70}, wantMin: 50},
		{push: [2]int64{2, 40}, wantMin: 40}, // out of order: the minimum drops
		{push: [2]int64{3, 60}, wantMin: 40},
		{push: [2]int64{-1}, popTo: 2, wantMin: 40}, // 0 and 1 committed; 40 still pending
		{push: [2]int64{-1}, popTo: 3, wantMin: 60},
		{push: [2]int64{-1}, popTo: 4, wantNone: true},
		{push: [2]int64{4, 10}, wantMin: 10},
	}
	for i, s := range steps {
		if s.push[0] >= 0 {
			q.push(s.push[0], s.push[1])
		}
		if s.popTo > 0 {
			q.popBefore(s.popTo)
		}
		got, ok := q.min()
		if ok == s.wantNone || (ok && got != s.wantMin) {
			t.Errorf("step %d: min = %d, %v; want %d, %v", i, got, ok, s.wantMin, !s.wantNone)
		}
	}
}

// liveWatermark is a watermark of partition 0 of "clicks", counted by a
// clock at W=r with the partition's mark at mark.
func liveWatermark(t *testing.T, r, mark int64) *watermark {
	t.Helper()
	w := newWatermark("clicks", 10*time.Millisecond, time.Second)
	w.assign([]int32{0}, time.Now())
	st := workflows.ClockState{Watermark: r, Marks: []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: mark}}}
	if got := w.lookup(0, st); got != stateLive {
		t.Fatalf("lookup = %v, want live", got)
	}
	return w
}

// Rule 2: an event is late below max(R, M_p − L).
func TestClassify(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		r, mark, t int64
		want       verdict
	}{
		{r: 100, mark: 150, t: 139, want: late},   // below its partition's mark − L
		{r: 100, mark: 150, t: 140, want: onTime}, // at it
		{r: 145, mark: 150, t: 144, want: late},   // below the clock's W
		{r: session.NoWatermark, mark: 150, t: 140, want: onTime},
	} {
		w := liveWatermark(t, tc.r, tc.mark)
		if got, _ := w.classify(0, 7, tc.t, now); got != tc.want {
			t.Errorf("R=%d M=%d: classify(%d) = %v, want %v", tc.r, tc.mark, tc.t, got, tc.want)
		}
	}
	w := newWatermark("clicks", 10*time.Millisecond, time.Second)
	w.assign([]int32{0}, now)
	if got, _ := w.classify(0, 0, 5, now); got != needWake {
		t.Errorf("classify on a partition the clock does not count = %v, want needWake", got)
	}
}

// Rule 1: the mark is the acknowledged progress capped at the earliest
// uncommitted event + L, and moves only once the commit is done.
func TestProgressCapsAtUncommitted(t *testing.T) {
	now := time.Now()
	w := liveWatermark(t, 0, 100)
	for off, at := range []int64{120, 110, 130, 125} { // offsets 0..3
		if v, _ := w.classify(0, int64(off), at, now); v != onTime {
			t.Fatalf("event %d at %d: %v", off, at, v)
		}
	}
	publish := func() []workflows.PartitionMark {
		pub := w.progress(now, false)
		w.sent(pub, true)
		return pub.marks
	}
	w.acked(0, 130) // offsets 0..2 acknowledged, 3 still in flight
	w.marked(0, 3, 3)
	if got := publish(); !slices.Equal(got, []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: 120}}) {
		t.Errorf("before the commit: %v; want the mark at the earliest uncommitted (110) + L", got)
	}
	w.committed(w.snapshotMarks()) // 0..2 committed; 125 (offset 3) is the earliest left
	if got := publish(); !slices.Equal(got, []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: 130}}) {
		t.Errorf("after the commit: %v; want the acknowledged 130 (under 125 + L)", got)
	}
	if got := publish(); len(got) != 0 {
		t.Errorf("nothing changed, yet %v was published", got)
	}
}

// A partition with uncommitted events never goes idle; one without events
// for IdleAfter does, and the hand-over at the end of a session never
// reports idleness.
func TestProgressIdle(t *testing.T) {
	start := time.Now()
	w := liveWatermark(t, 0, 100)
	w.classify(0, 0, 120, start)
	later := start.Add(2 * time.Second)
	if pub := w.progress(later, false); slices.ContainsFunc(pub.marks, func(m workflows.PartitionMark) bool { return m.Idle }) {
		t.Errorf("a partition with an uncommitted event went idle: %v", pub.marks)
	}
	w.acked(0, 120)
	w.marked(0, 1, 1)
	w.committed(w.snapshotMarks())
	if pub := w.progress(later, true); slices.ContainsFunc(pub.marks, func(m workflows.PartitionMark) bool { return m.Idle }) {
		t.Errorf("the final hand-over reported idleness: %v", pub.marks)
	}
	pub := w.progress(later, false)
	if !slices.Equal(pub.marks, []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: 120, Idle: true}}) {
		t.Errorf("silent for 2s with IdleAfter 1s: %v; want idle at 120", pub.marks)
	}
	w.sent(pub, true)
	if got, _ := w.classify(0, 1, 200, later); got != needWake {
		t.Errorf("an idle partition's next event: %v, want needWake", got)
	}
}

// Rule 3: partitions new to the clock are introduced together at the
// earliest first event − L; an idle one is revived with a mark that keeps W.
func TestPlanWake(t *testing.T) {
	now := time.Now()
	w := newWatermark("clicks", 10*time.Millisecond, time.Second)
	w.assign([]int32{0, 1, 2}, now)
	st := workflows.ClockState{Watermark: session.NoWatermark}
	w.firstEvent(0, 500)
	w.firstEvent(1, 300)
	if got := w.lookup(0, st); got != stateAbsent {
		t.Fatalf("lookup = %v, want absent", got)
	}
	if !w.waitingForFirst(now, time.Second) {
		t.Error("partition 2 has shown no event; the wake should wait for it")
	}
	if w.waitingForFirst(now.Add(time.Second), time.Second) {
		t.Error("the startup wait is over; the wake should go on")
	}
	pub := w.planWake(0, 500)
	want := []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: 290}, {Partition: "clicks/1", MaxTime: 290}}
	if !slices.Equal(pub.marks, want) {
		t.Errorf("planWake = %v, want %v (partition 2 showed nothing and stays absent)", pub.marks, want)
	}
	st = workflows.ClockState{Watermark: 280, Marks: want}
	if !w.confirmWake(pub, st, now) || !w.live(0) || !w.live(1) || w.live(2) {
		t.Error("after the clock counts them, 0 and 1 are live and 2 is not")
	}

	// An idle partition is revived at a mark that keeps W (280) where it is.
	w2 := liveWatermark(t, 280, 400)
	w2.parts[0].state = stateIdle
	if pub := w2.planWake(0, 1000); !slices.Equal(pub.marks, []workflows.PartitionMark{{Partition: "clicks/0", MaxTime: 400}}) {
		t.Errorf("revival = %v, want the partition's own mark 400", pub.marks)
	}
}

func TestBatchWatermarkNeverAboveItsEvents(t *testing.T) {
	w := liveWatermark(t, 1000, 2000)
	if got, _, asOf := w.batchWatermark(900); got != 900 || asOf != 0 {
		t.Errorf("batchWatermark(900) with R=1000 = %d as of %d, want 900 as of 0 (not a clock reading)", got, asOf)
	}
	if got, _, _ := w.batchWatermark(1500); got != 1000 {
		t.Errorf("batchWatermark(1500) with R=1000 = %d, want 1000", got)
	}
}

// TestBatchSaysWhenWWasRead: a batch carries the time of the reading its
// watermark is; a reading behind R does not make R newer.
func TestBatchSaysWhenWWasRead(t *testing.T) {
	w := liveWatermark(t, 1000, 2000)
	before := time.Now().UnixMilli()
	w.read(workflows.ClockState{Watermark: 1100})
	after := time.Now().UnixMilli()
	_, _, asOf := w.batchWatermark(1500)
	if asOf < before || asOf > after {
		t.Fatalf("as of %d; want the reading's time, within [%d, %d]", asOf, before, after)
	}
	time.Sleep(5 * time.Millisecond)
	w.read(workflows.ClockState{Watermark: 1050}) // an older reading
	if _, _, again := w.batchWatermark(1500); again != asOf {
		t.Errorf("as of %d after a reading behind R; want %d, the reading R came from", again, asOf)
	}
}

// TestBatchCarriesTheClocksPace: batches carry the pace of the clock's last
// reading, so that a new session can time its first look at the clock; a
// reading without a pace keeps the one before.
func TestBatchCarriesTheClocksPace(t *testing.T) {
	w := liveWatermark(t, 1000, 2000)
	if _, rate, _ := w.batchWatermark(1500); rate != 0 {
		t.Errorf("pace before any reading with one = %v, want 0 (unknown)", rate)
	}
	w.read(workflows.ClockState{Watermark: 1100, Rate: 1.5})
	w.read(workflows.ClockState{Watermark: 1200})
	if wm, rate, _ := w.batchWatermark(1500); wm != 1200 || rate != 1.5 {
		t.Errorf("batchWatermark(1500) = %d, %v; want 1200, 1.5", wm, rate)
	}
}

func TestOffsetTracker(t *testing.T) {
	var o offsetTracker
	for _, off := range []int64{10, 11, 13, 14} { // 12 was compacted away
		o.read(off)
	}
	if _, _, ok := o.advance(); ok {
		t.Error("advanced with nothing acknowledged")
	}
	o.ack(11)
	o.ack(14)
	if _, _, ok := o.advance(); ok {
		t.Error("advanced past the unacknowledged 10")
	}
	o.ack(10)
	if next, n, ok := o.advance(); !ok || next != 12 || n != 2 {
		t.Errorf("advance = %d, %d, %v; want 12, 2 (13 is still pending)", next, n, ok)
	}
	o.ack(13)
	if next, n, ok := o.advance(); !ok || next != 15 || n != 2 || o.outstanding() != 0 {
		t.Errorf("advance = %d, %d, %v; want 15, 2 and nothing outstanding", next, n, ok)
	}
}

func TestBatcher(t *testing.T) {
	start := time.Now()
	b := newBatcher(Limits{BatchEvents: 3, BatchBytes: 1 << 20, MaxHold: time.Second})
	ev := func(at int64) session.Event { return session.Event{Time: at} }
	if full := b.add([]byte("a"), ev(5), 0, start); full != nil {
		t.Fatal("flushed after one event")
	}
	b.add([]byte("b"), ev(1), 1, start.Add(100*time.Millisecond))
	b.add([]byte("a"), ev(3), 2, start)
	full := b.add([]byte("a"), ev(4), 3, start)
	if full == nil || full.key != "a" || len(full.events) != 3 || full.first != 3 || full.last != 5 ||
		!slices.Equal(full.offsets, []int64{0, 2, 3}) {
		t.Fatalf("full buffer = %+v; want a's 3 events, offsets 0 2 3, times 3..5", full)
	}
	if due := b.due(start.Add(time.Second)); len(due) != 0 {
		t.Errorf("b is 900ms old, yet due: %v", due)
	}
	if due := b.due(start.Add(1100 * time.Millisecond)); len(due) != 1 || due[0].key != "b" {
		t.Errorf("due = %v, want b", due)
	}
	if b.events != 0 || len(b.all()) != 0 {
		t.Error("buffers left after everything was handed out")
	}
	big := newBatcher(Limits{BatchEvents: 100, BatchBytes: 300, MaxHold: time.Second})
	var out *keyBuffer
	for i := 0; out == nil; i++ {
		out = big.add([]byte("k"), session.Event{Time: int64(i), Page: "page"}, int64(i), start)
	}
	if out.bytes < 300 || len(out.events) != 3 {
		t.Errorf("byte limit: %d events, %d bytes; want 3 events reaching 300 bytes", len(out.events), out.bytes)
	}
}

// After a rebalance a partition the clock counts is not idled before its
// claim had IdleAfter to show an event: idleness counts from the assignment.
func TestNoIdleRightAfterAssignment(t *testing.T) {
	start := time.Now()
	w := liveWatermark(t, 0, 100) // assigned now, found live
	if pub := w.progress(start.Add(500*time.Millisecond), false); len(pub.marks) != 0 {
		t.Errorf("half the idle time after the assignment: %v", pub.marks)
	}
	if pub := w.progress(start.Add(2*time.Second), false); len(pub.marks) != 1 || !pub.marks[0].Idle {
		t.Errorf("twice the idle time after the assignment: %v; want idle", pub.marks)
	}
}
