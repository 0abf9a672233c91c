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
	rAt       int64   // when r was read (Unix ms)
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
// carries: the clock's W as last read, never above first; the clock's pace
// as last read; and when W was read, 0 if first capped it.
func (w *watermark) batchWatermark(first int64) (wm int64, rate float64, asOf int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if first < w.r {
		return first, w.rate, 0 // not a reading of the clock
	}
	return w.r, w.rate, w.rAt
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
