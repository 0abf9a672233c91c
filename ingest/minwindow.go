package ingest

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
