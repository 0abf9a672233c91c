package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// A session's close latency runs from the moment the pipeline's clock
// passed the session's deadline (its watermark went above it) to the moment
// its Parquet row was written (the sink's WriteParquet activity returned)
// and to the moment its session_closed notification reached our webhook.
// Everything runs on one machine, so all three instants come from one clock.

// sessionRef names a session across pipelines.
type sessionRef struct {
	pipeline, id string
}

// closeLog collects, per session, its record and when it became durable
// and when it was notified. Safe for concurrent use.
type closeLog struct {
	mu       sync.Mutex
	sessions map[sessionRef]*closed
	// shared counts records that came with the session_id of a different
	// session (another start, end, count or reason): ids must be unique per
	// pipeline, and a retried write repeats the same record.
	shared int
}

type closed struct {
	rec      session.Record
	durable  time.Time
	notified time.Time
}

func newCloseLog() *closeLog { return &closeLog{sessions: map[sessionRef]*closed{}} }

// entry returns the session's entry, keeping the first record seen.
func (l *closeLog) entry(rec session.Record) *closed {
	ref := sessionRef{rec.Pipeline, rec.SessionID}
	c := l.sessions[ref]
	if c == nil {
		c = &closed{rec: rec}
		l.sessions[ref] = c
	}
	return c
}

// wrote notes a flush: a retried flush keeps the first success.
func (l *closeLog) wrote(recs []session.Record, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		c := l.entry(r)
		if c.durable.IsZero() {
			c.durable = at
		}
		if !sameSession(c.rec, r) {
			l.shared++
		}
	}
}

// sameSession reports whether a and b are one session's record, written
// twice (a retried flush), rather than two sessions with one id.
func sameSession(a, b session.Record) bool {
	return a.Start == b.Start && a.End == b.End && a.EventCount == b.EventCount && a.CloseReason == b.CloseReason
}

// sharedIDs is the number of records written with another session's id.
func (l *closeLog) sharedIDs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shared
}

// notified notes a notification; a retried delivery keeps the first.
func (l *closeLog) notified(rec session.Record, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.entry(rec); c.notified.IsZero() {
		c.notified = at
	}
}

func (l *closeLog) snapshot() []closed {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]closed, 0, len(l.sessions))
	for _, c := range l.sessions {
		out = append(out, *c)
	}
	return out
}

// webhook receives the notifications and notes when each session_closed
// arrived.
func startWebhook(log *closeLog) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var n activities.Notification
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if n.Kind == activities.KindSessionClosed {
			log.notified(n.Session, at)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// clockTimeline is each pipeline's watermark over wall time, as its
// ClockWorkflow computes it. The probe feeds it every watermark update the
// clock takes in, at the clock's own workflow time, and it applies them with
// the clock's rule (workflows.ClockState.Apply). Reading the clock with
// queries instead would miss readings whenever a loaded worker answers
// late, and would add to the load.
type clockTimeline struct {
	mu       sync.Mutex
	lateness map[string]int64 // pipeline → ms
	state    map[string]*workflows.ClockState
	readings map[string][]workflows.Reading // pipeline → by AtMs
}

func newClockTimeline(pipelines []pipeline) *clockTimeline {
	t := &clockTimeline{lateness: map[string]int64{}, state: map[string]*workflows.ClockState{},
		readings: map[string][]workflows.Reading{}}
	for _, p := range pipelines {
		t.lateness[p.wf.Name] = p.wf.Rules.Lateness.Milliseconds()
		t.state[p.wf.Name] = &workflows.ClockState{Watermark: session.NoWatermark}
	}
	return t
}

// observe applies an update the pipeline's clock took in at nowMs, its
// workflow time, and notes W if it moved.
func (t *clockTimeline) observe(pipeline string, u workflows.WatermarkUpdate, nowMs int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.state[pipeline]
	if !ok {
		return
	}
	wall := u.SentMs
	if wall <= 0 {
		wall = nowMs
	}
	before := st.Watermark
	st.Apply(u, t.lateness[pipeline], wall)
	if st.Watermark > before {
		t.readings[pipeline] = append(t.readings[pipeline], workflows.Reading{AtMs: nowMs, Watermark: st.Watermark})
	}
}

// watermark is a pipeline's W now, or NoWatermark.
func (t *clockTimeline) watermark(pipeline string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.state[pipeline]; ok {
		return st.Watermark
	}
	return session.NoWatermark
}

// passed returns the wall time (epoch ms) at which the pipeline's watermark
// first went above d.
func (t *clockTimeline) passed(pipeline string, d int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return firstAbove(t.readings[pipeline], d)
}

// firstAbove finds the first reading whose watermark is above d; the
// watermark never decreases, so the readings are sorted by it too.
func firstAbove(readings []workflows.Reading, d int64) (int64, bool) {
	i := sort.Search(len(readings), func(i int) bool { return readings[i].Watermark > d })
	if i == len(readings) {
		return 0, false
	}
	return readings[i].AtMs, true
}

// breakIndex remembers the status-0 telemetry of each drone, to find when
// a charging session's last break began: the record does not carry it.
type breakIndex struct {
	mu    sync.Mutex
	times map[string][]int64
}

func newBreakIndex() *breakIndex { return &breakIndex{times: map[string][]int64{}} }

func (b *breakIndex) add(key string, t int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.times[key] = append(b.times[key], t)
}

// after returns the first status-0 time of key after t: the start of the
// break that follows a session's last status-1 event.
func (b *breakIndex) after(key string, t int64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := b.times[key]
	if !slices.IsSorted(ts) { // a few events are emitted out of order
		slices.Sort(ts)
	}
	i := sort.Search(len(ts), func(i int) bool { return ts[i] > t })
	if i == len(ts) {
		return 0, false
	}
	return ts[i], true
}

// deadline is the instant the watermark had to pass for the record to
// close: the deadline its close reason names (session/state.go), or the end
// marker's own time. A charging session closes for a break only while on
// one, and the break's deadline is then always before the inactivity one,
// so Last = End holds for the other reasons.
func deadline(rec session.Record, r session.Rules, breaks func(key string, after int64) (int64, bool)) (int64, bool) {
	switch rec.CloseReason {
	case session.ReasonInactivity:
		return rec.End + r.Gap.Milliseconds(), true
	case session.ReasonMaxDuration:
		return rec.Start + r.MaxDuration.Milliseconds() - 1, true
	case session.ReasonEndMarker:
		return rec.End, true
	case session.ReasonBreak:
		if start, ok := breaks(rec.Key, rec.End); ok {
			return start + r.BreakTolerance.Milliseconds(), true
		}
	}
	return 0, false
}
