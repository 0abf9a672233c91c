package ingest

import (
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// Rule 3 of watermark.go: making the clock count a partition (new to it, or
// idle) before that partition's events are classified.

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
