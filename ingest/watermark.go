package ingest

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// The watermark, as one ingester sees it.
//
// The pipeline's watermark W is kept by its ClockWorkflow: the smallest
// mark of the non-idle partitions minus the allowed lateness L, never
// decreasing. Each ingester sends the marks of the partitions it reads; a
// session's workflow applies its events as W passes them and calls any event
// below W late. The one thing that must never happen is that an event the
// ingester sent on (did not call late) is late at its workflow: it would be
// reported late after it had been counted on time, or the other way round.
// Three rules make that impossible.
//
//  1. A partition's mark is the largest acknowledged event time of the
//     partition, capped at (the earliest on-time event of the partition
//     whose offset is not committed yet) + L. While an event is read but not
//     committed, its partition's mark therefore stays at most t+L, and W, a
//     minimum over partitions that include this one, stays at most t. The cap
//     runs until the commit, not merely the acknowledgement, so that an event
//     redelivered after a crash is still not below W: its workflow drops it as
//     a duplicate, and it is counted once, on time. A partition with
//     uncommitted events is never reported idle.
//  2. An event of partition p is late iff t < max(R, M_p − L), where R is
//     the clock's W as last read and M_p the largest mark the clock can hold
//     for p (we are its only writer while we own it). That is an upper bound
//     of the clock's W for as long as p is counted, and by rule 1 the clock's
//     W cannot pass the event afterwards: the partition itself is the
//     witness, so neither other partitions, other ingesters nor rebalances
//     can break it. Compared with the bare definition (t < W) this calls
//     late, in addition, an event more than L behind its own partition's
//     acknowledged progress while some other partition lags further: the
//     price of holding the invariant with any number of ingesters.
//  3. Before it classifies an event of a partition the clock does not count
//     (new to the clock, or idle), the ingester makes the clock count it and
//     reads W back: the Temporal query is strongly consistent, so the R it
//     returns covers every W computed before the partition counted again.
//     The batch watermark is R, the clock's W as last read (never more than
//     the batch's earliest event), so a workflow's W is never above the
//     clock's.
//
// What remains after a crash (or a rebalance whose drain timed out; a
// rebalance otherwise hands over cleanly): the ingester may have signalled
// events it had not committed.
// Their successor reads them again; they are at least M_p − L (rule 1), so
// they are on time unless the successor's own progress carried M_p past
// them before it reached them, which takes a partition whose events are out
// of order by more than L. Such an event is then in its session (once: the
// second copy is never signalled) and also in the late output, where its
// source position identifies it.

// partState is a partition's standing with the clock.
type partState int

const (
	// stateUnknown: assigned, not yet looked up at the clock.
	stateUnknown partState = iota
	// stateLive: the clock counts it (non-idle), as far as we know.
	stateLive
	// stateIdle: the clock holds it idle; its next event revives it.
	stateIdle
	// stateAbsent: the clock has never heard of it (a new pipeline or a new
	// partition); its first event introduces it.
	stateAbsent
)

// partition is one partition's progress.
type partition struct {
	name  string // "topic/partition", its name at the clock
	state partState

	// Read side.
	first      int64     // time of the claim's first event (NoWatermark: none yet)
	window     minWindow // on-time events not yet committed
	ackedMax   int64     // largest acknowledged event time
	lastActive time.Time // when its last on-time event (or revival) came

	// Commit side: offsets marked in the generation, the messages before them,
	// and how many of those were committed.
	marked, markedMsgs, committedMsgs int64

	// Clock side.
	clockMark   int64 // the largest MaxTime the clock may hold for it (upper bound)
	sentMark    int64 // the largest MaxTime the clock is known to hold for it
	idlePending bool  // an idle update not yet accepted
}

// watermark is an ingester's model of its partitions and the clock. It is
// safe for concurrent use: claims, the publisher and the batcher share it.
type watermark struct {
	mu        sync.Mutex
	topic     string
	lateness  int64
	idleAfter time.Duration
	r         int64   // the clock's W as last read
	rate      float64 // the clock's pace as last read, for the batches
	parts     map[int32]*partition
	since     time.Time // when the generation's partitions were assigned
}

func newWatermark(topic string, lateness, idleAfter time.Duration) *watermark {
	return &watermark{topic: topic, lateness: lateness.Milliseconds(), idleAfter: idleAfter,
		r: session.NoWatermark, parts: map[int32]*partition{}}
}

// assign registers the partitions claimed in a generation.
func (w *watermark) assign(parts []int32, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since = now
	for _, p := range parts {
		w.parts[p] = &partition{
			name:  w.topic + "/" + strconv.Itoa(int(p)),
			first: session.NoWatermark, ackedMax: session.NoWatermark,
			clockMark: session.NoWatermark, sentMark: session.NoWatermark,
			lastActive: now, // idleness counts from the assignment
		}
	}
}

// firstEvent records the time of the claim's first valid event, before
// it asks for a wake: the wake of a partition new to the clock waits for
// the other new partitions' first events (see planWake).
func (w *watermark) firstEvent(p int32, t int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pt := w.parts[p]; pt != nil && pt.first == session.NoWatermark {
		pt.first = t
	}
}

// release forgets every partition (the generation ended).
func (w *watermark) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.parts)
}

// verdict is what classify decides about an event.
type verdict int

const (
	onTime verdict = iota
	late
	needWake // the clock does not count the partition: wake it, then ask again
)

// classify decides whether an event at offset off is late (rule 2) and, if
// it is on time, holds the partition's mark at t+L until it is committed
// (rule 1). thr is the watermark it was judged against.
func (w *watermark) classify(p int32, off, t int64, now time.Time) (v verdict, thr int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pt := w.parts[p]
	if pt.state != stateLive {
		return needWake, 0
	}
	thr = max(w.r, minus(pt.clockMark, w.lateness))
	if t < thr {
		return late, thr
	}
	pt.window.push(off, t)
	pt.lastActive = now
	return onTime, thr
}

// acked records that Temporal accepted events of p up to time t.
func (w *watermark) acked(p int32, t int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pt := w.parts[p]; pt != nil {
		pt.ackedMax = max(pt.ackedMax, t)
	}
}

// marked records that the generation marked offset next of p, n more messages
// being done.
func (w *watermark) marked(p int32, next, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pt := w.parts[p]; pt != nil {
		pt.marked, pt.markedMsgs = next, pt.markedMsgs+n
	}
}

// commitPoint is what a commit will make durable: every partition's marked
// offset and message count at the time of the snapshot.
type commitPoint map[int32][2]int64

func (w *watermark) snapshotMarks() commitPoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	cp := commitPoint{}
	for p, pt := range w.parts {
		cp[p] = [2]int64{pt.marked, pt.markedMsgs}
	}
	return cp
}

// committed records a successful commit of cp; it returns how many messages
// it made durable.
func (w *watermark) committed(cp commitPoint) (msgs int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, c := range cp {
		pt := w.parts[p]
		if pt == nil || c[1] <= pt.committedMsgs {
			continue
		}
		pt.window.popBefore(c[0])
		msgs += c[1] - pt.committedMsgs
		pt.committedMsgs = c[1]
	}
	return msgs
}

// batchWatermark is the watermark a batch whose earliest event is at first
// carries: the clock's W as last read, never above first; and the clock's
// pace as last read.
func (w *watermark) batchWatermark(first int64) (int64, float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return min(w.r, first), w.rate
}

// read merges a clock reading: R, and the marks of our partitions.
func (w *watermark) read(st workflows.ClockState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.readLocked(st)
}

func (w *watermark) readLocked(st workflows.ClockState) {
	w.r = max(w.r, st.Watermark)
	if st.Rate > 0 {
		w.rate = st.Rate
	}
	for _, pt := range w.parts {
		if m, ok := findMark(st, pt.name); ok {
			pt.clockMark = max(pt.clockMark, m.MaxTime)
		}
	}
}

// clockW returns R, the clock's W as last read.
func (w *watermark) clockW() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.r
}

// publication is a watermark update and what to do once Temporal answers.
type publication struct {
	marks []workflows.PartitionMark
	parts []*partition
}

// progress computes the marks to send now and applies them to the model at
// once, as if the clock had them already: the model must stay an upper
// bound of the clock, also while the update is in flight or if its outcome
// is unknown. final is the hand-over at the end of a generation: it reports
// progress but never idleness.
func (w *watermark) progress(now time.Time, final bool) publication {
	w.mu.Lock()
	defer w.mu.Unlock()
	var pub publication
	for _, pt := range w.sortedParts() {
		if pt.state == stateUnknown {
			continue
		}
		mark := max(pt.sentMark, pt.desired(w.lateness))
		goIdle := !final && pt.state == stateLive && pt.window.empty() && now.Sub(pt.lastActive) >= w.idleAfter
		switch {
		case goIdle || (pt.state == stateIdle && pt.idlePending):
			pt.state, pt.idlePending = stateIdle, true
			mark = max(mark, pt.clockMark)
			if mark == session.NoWatermark {
				continue // never had a mark: the clock does not count it
			}
			pub.add(pt, workflows.PartitionMark{Partition: pt.name, MaxTime: mark, Idle: true})
		case pt.state == stateLive && mark > pt.sentMark:
			pub.add(pt, workflows.PartitionMark{Partition: pt.name, MaxTime: mark})
		default:
			continue
		}
		pt.clockMark = max(pt.clockMark, mark)
	}
	return pub
}

// desired is the mark rule 1 allows: the acknowledged progress, capped at
// the earliest uncommitted event + L.
func (pt *partition) desired(lateness int64) int64 {
	d := pt.ackedMax
	if t, ok := pt.window.min(); ok {
		d = min(d, t+lateness)
	}
	return d
}

func (pub *publication) add(pt *partition, m workflows.PartitionMark) {
	pub.marks = append(pub.marks, m)
	pub.parts = append(pub.parts, pt)
}

// sent records Temporal's answer to a publication. A failed update leaves
// the model as it was made: an upper bound either way.
func (w *watermark) sent(pub publication, ok bool) {
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, pt := range pub.parts {
		m := pub.marks[i]
		pt.sentMark = max(pt.sentMark, m.MaxTime)
		if m.Idle && pt.state == stateIdle {
			pt.idlePending = false
		}
	}
}

// lookup merges a clock reading and places every partition not looked up
// yet: live, idle, or absent from the clock. It returns p's state.
func (w *watermark) lookup(p int32, st workflows.ClockState) partState {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.readLocked(st)
	for _, pt := range w.parts {
		if pt.state != stateUnknown {
			continue
		}
		m, found := findMark(st, pt.name)
		switch {
		case !found:
			pt.state = stateAbsent
			continue
		case m.Idle:
			pt.state = stateIdle
		default:
			pt.state = stateLive
		}
		pt.sentMark = max(pt.sentMark, m.MaxTime)
	}
	return w.parts[p].state
}

// waitingForFirst reports whether a partition absent from the clock has not
// shown its first event yet, within startup of the generation's start.
func (w *watermark) waitingForFirst(now time.Time, startup time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.since) >= startup {
		return false
	}
	for _, pt := range w.parts {
		if pt.state == stateAbsent && pt.first == session.NoWatermark {
			return true
		}
	}
	return false
}

// planWake prepares rule 3 for partition p, whose event at t0 is to be
// classified while the clock does not count p.
//
// An idle partition is revived alone, with a hold mark that keeps W where
// it is: its events below W are late, as they are for any idle partition.
//
// Partitions absent from the clock are introduced together, once each has
// shown its first event (or the startup wait is over), with the earliest of
// those events minus L as their hold: the clock must not run ahead on the
// partition that happened to be read first while another one still holds
// older events. A partition that showed nothing stays absent until its
// first event.
func (w *watermark) planWake(p int32, t0 int64) publication {
	w.mu.Lock()
	defer w.mu.Unlock()
	pt := w.parts[p]
	var pub publication
	if pt.state == stateIdle {
		hold := w.hold(t0)
		mark := max(pt.sentMark, hold)
		pt.clockMark = max(pt.clockMark, mark)
		pub.add(pt, workflows.PartitionMark{Partition: pt.name, MaxTime: mark})
		return pub
	}
	if pt.first == session.NoWatermark {
		pt.first = t0
	}
	earliest := t0
	var absent []*partition
	for _, q := range w.sortedParts() {
		if q.state == stateAbsent && q.first != session.NoWatermark {
			absent = append(absent, q)
			earliest = min(earliest, q.first)
		}
	}
	hold := w.hold(earliest)
	for _, q := range absent {
		q.clockMark = max(q.clockMark, hold)
		pub.add(q, workflows.PartitionMark{Partition: q.name, MaxTime: hold})
	}
	return pub
}

// hold is the mark that keeps W where it is, or just below t for a clock
// without a watermark yet.
func (w *watermark) hold(t int64) int64 {
	if w.r == session.NoWatermark {
		return t - w.lateness
	}
	return min(t-w.lateness, w.r)
}

// confirmWake checks a clock reading taken after pub was accepted: it must
// count every partition pub revived. Then they are live, and R covers every
// W computed while they were not counted.
func (w *watermark) confirmWake(pub publication, st workflows.ClockState, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range pub.marks {
		got, ok := findMark(st, m.Partition)
		if !ok || got.Idle || got.MaxTime < m.MaxTime {
			return false
		}
	}
	w.readLocked(st)
	for i, pt := range pub.parts {
		pt.state, pt.idlePending, pt.lastActive = stateLive, false, now
		pt.sentMark = max(pt.sentMark, pub.marks[i].MaxTime)
	}
	return true
}

// live reports whether the clock counts partition p.
func (w *watermark) live(p int32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	pt := w.parts[p]
	return pt != nil && pt.state == stateLive
}

func (w *watermark) sortedParts() []*partition {
	ids := make([]int32, 0, len(w.parts))
	for p := range w.parts {
		ids = append(ids, p)
	}
	slices.Sort(ids)
	out := make([]*partition, len(ids))
	for i, p := range ids {
		out[i] = w.parts[p]
	}
	return out
}

func findMark(st workflows.ClockState, name string) (workflows.PartitionMark, bool) {
	for _, m := range st.Marks {
		if m.Partition == name {
			return m, true
		}
	}
	return workflows.PartitionMark{}, false
}

// minus is a − b for a mark, keeping "no mark" as it is.
func minus(a, b int64) int64 {
	if a == session.NoWatermark {
		return a
	}
	return a - b
}

// minWindow holds the (offset, time) of uncommitted events in offset order
// and answers the earliest time among them in O(1): a monotonic queue, whose
// times increase from front to back. The last event pushed stays until its
// offset is committed, so the window is empty exactly when every event is.
type minWindow struct {
	buf  []timed
	head int
}

type timed struct{ off, t int64 }

func (q *minWindow) push(off, t int64) {
	for len(q.buf) > q.head && q.buf[len(q.buf)-1].t >= t {
		q.buf = q.buf[:len(q.buf)-1]
	}
	q.buf = append(q.buf, timed{off, t})
}

// popBefore drops the events below offset off (committed).
func (q *minWindow) popBefore(off int64) {
	for q.head < len(q.buf) && q.buf[q.head].off < off {
		q.head++
	}
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	} else if q.head > 1024 && q.head > len(q.buf)/2 {
		q.buf = append(q.buf[:0], q.buf[q.head:]...)
		q.head = 0
	}
}

func (q *minWindow) min() (int64, bool) {
	if q.empty() {
		return 0, false
	}
	return q.buf[q.head].t, true
}

func (q *minWindow) empty() bool { return q.head == len(q.buf) }
