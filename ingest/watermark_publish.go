package ingest

import (
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// The model's exchange with the clock apart from wakes: merging the clock's
// readings, and the progress and idleness updates the ingester publishes
// every PublishInterval, marks capped by rule 1 of watermark.go.

// read merges a clock reading: R, and the marks of our partitions.
func (w *watermark) read(st workflows.ClockState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.readLocked(st)
}

func (w *watermark) readLocked(st workflows.ClockState) {
	if st.Watermark >= w.r {
		w.rAt = time.Now().UnixMilli()
	}
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
