package session

import (
	"math"
	"slices"
)

// NoWatermark is the watermark before any is known: no event is late.
const NoWatermark int64 = math.MinInt64

// Tracker is the incremental rules engine of one key. Events may be added in
// any order and in any batches; the watermark decides when they are applied:
// an event is applied once the watermark is above its time, so every event
// that can still arrive (at or above the watermark) is later than every
// applied one. That is what makes the result independent of arrival order.
//
// A Tracker is not safe for concurrent use.
type Tracker struct {
	rules    *Rules
	lim      limits
	pipeline string
	key      string

	pending []Event // not yet applied, all at or above w
	sorted  bool    // pending is in (Time, Seq) order
	w       int64   // the watermark; never decreases

	open   bool
	cur    OpenSession
	last   SessionStart // of the last closed session; Start is NoWatermark before one
	gate   func() bool  // GateTies
	seen   idSet        // identities applied to the open session
	seenAt int64        // time of the last identity put in seen

	breaks []Break // breaks since the last TakeBreaks, when tracked
	track  bool
	closed []Record
	stats  Stats
}

// Stats count what a Tracker did with its events besides sessionizing them.
type Stats struct {
	Late       int64 `json:"late"`       // below the watermark on arrival, not applied
	Duplicates int64 `json:"duplicates"` // identity seen before, not applied
	Ignored    int64 `json:"ignored"`    // could not open a session (status-0 telemetry, no start marker)
}

// NewTracker returns the engine of one key. The rules must be valid; the
// pipeline name is copied into the records.
func NewTracker(r *Rules, pipeline, key string) *Tracker {
	return &Tracker{rules: r, lim: newLimits(r), pipeline: pipeline, key: key, w: NoWatermark, sorted: true,
		last: SessionStart{Start: NoWatermark}}
}

// SessionStart is when a session started and its place among the key's
// sessions that started in that millisecond (OpenSession.Tie).
type SessionStart struct {
	Start int64 `json:"start"`
	Tie   int   `json:"tie,omitempty"`
}

// GateTies makes the numbering of a session that starts in the same
// millisecond as the key's previous one (SessionID's tie) depend on allow,
// asked once for each such session; when it says no, the session gets the
// plain "<key>/<start>" id. A workflow answers with workflow.GetVersion, so
// that its runs recorded before ties were numbered replay with the ids they
// had, and so that the version marker is written only by the rare run that
// meets a tie. Without a gate ties are always numbered.
func (t *Tracker) GateTies(allow func() bool) { t.gate = allow }

// TrackBreaks makes the tracker remember the start time of every break it
// applies, for TakeBreaks (break notifications).
func (t *Tracker) TrackBreaks() { t.track = true }

// Add buffers events. Events below the watermark are late: they are returned
// and never applied. The returned slice is nil when none is late.
func (t *Tracker) Add(events ...Event) (late []Event) {
	for _, e := range events {
		if e.Time < t.w {
			late = append(late, e)
			t.stats.Late++
			continue
		}
		if n := len(t.pending); n > 0 && t.sorted && compareEvents(t.pending[n-1], e) > 0 {
			t.sorted = false
		}
		t.pending = append(t.pending, e)
	}
	return late
}

// Advance raises the watermark to w (a lower w is ignored), applies the
// buffered events below it in time order and returns the sessions that
// closed: by an event beyond a deadline, by an end marker, or because w
// passed the open session's earliest deadline.
func (t *Tracker) Advance(w int64) []Record {
	if w <= t.w {
		return nil
	}
	t.w = w
	t.sort()
	n, _ := slices.BinarySearchFunc(t.pending, w, func(e Event, w int64) int {
		if e.Time < w {
			return -1
		}
		return 1
	})
	t.applyAll(t.pending[:n])
	t.pending = slices.Delete(t.pending, 0, n)
	if t.open {
		if d, why := t.cur.deadline(&t.lim); d < w {
			t.close(why)
		}
	}
	return t.takeClosed()
}

// Finish ends the input: it applies every buffered event and closes the open
// session, for its deadline's reason if that is below w (the largest event
// time of the input) and for end_of_input otherwise.
func (t *Tracker) Finish(w int64) []Record {
	t.sort()
	t.applyAll(t.pending)
	t.pending = t.pending[:0]
	if t.open {
		why := ReasonEndOfInput
		if d, r := t.cur.deadline(&t.lim); d < w {
			why = r
		}
		t.close(why)
	}
	if w > t.w {
		t.w = w
	}
	return t.takeClosed()
}

func (t *Tracker) sort() {
	if !t.sorted {
		slices.SortFunc(t.pending, compareEvents)
		t.sorted = true
	}
}

func (t *Tracker) applyAll(events []Event) {
	for _, e := range events {
		t.apply(e)
	}
}

// apply runs the rules on one event; events arrive here in time order.
func (t *Tracker) apply(e Event) {
	if e.ID != 0 {
		if t.seen.has(e.ID) {
			t.stats.Duplicates++
			return
		}
	}
	if t.open {
		if d, why := t.cur.deadline(&t.lim); e.Time > d {
			t.close(why)
		}
	}
	if t.open {
		if t.cur.join(e, t.rules.breaks()) && t.track {
			t.breaks = append(t.breaks, Break{SessionID: SessionID(t.key, t.cur.Start, t.cur.Tie), Start: e.Time})
		}
	} else {
		if !t.rules.opens(e) {
			t.stats.Ignored++
			return
		}
		// Identities of the previous session matter only for events of its
		// very last instant (an end marker's redelivery); later ones cannot
		// repeat them.
		if e.Time > t.seenAt && t.seen.len() > 0 {
			t.seen.clear()
		}
		t.cur.begin(e, t.tie(e.Time), nil)
		t.open = true
	}
	if e.ID != 0 {
		t.seen.add(e.ID) // not there: it would be a duplicate
		t.seenAt = e.Time
	}
	if e.Flags&FlagEnd != 0 {
		t.close(ReasonEndMarker)
	}
}

// tie is the tie number of a session that starts at time start. Sessions
// of a key start in time order, so only the last closed one can share the
// millisecond.
func (t *Tracker) tie(start int64) int {
	if start != t.last.Start || (t.gate != nil && !t.gate()) {
		return 0
	}
	return t.last.Tie + 1
}

func (t *Tracker) close(why Reason) {
	t.closed = append(t.closed, t.cur.record(t.rules, &t.lim, t.pipeline, t.key, why))
	t.last = SessionStart{Start: t.cur.Start, Tie: t.cur.Tie}
	t.cur = OpenSession{}
	t.open = false
}

func (t *Tracker) takeClosed() []Record {
	if len(t.closed) == 0 {
		return nil
	}
	out := t.closed
	t.closed = nil
	return out
}

// Watermark returns the tracker's watermark.
func (t *Tracker) Watermark() int64 { return t.w }

// Pending returns how many events wait for the watermark.
func (t *Tracker) Pending() int { return len(t.pending) }

// Stats returns the counts of late, duplicate and ignored events.
func (t *Tracker) Stats() Stats { return t.stats }

// Open returns the open session, if any, as a provisional record (no close
// reason yet) with its earliest deadline and that deadline's reason.
func (t *Tracker) Open() (rec Record, deadline int64, why Reason, ok bool) {
	if !t.open {
		return Record{}, 0, "", false
	}
	deadline, why = t.cur.deadline(&t.lim)
	rec = t.cur.record(t.rules, &t.lim, t.pipeline, t.key, "")
	return rec, deadline, why, true
}

// NextDeadline returns the instant the watermark must pass for the tracker to
// have work: the earlier of the open session's earliest deadline and the
// earliest buffered event. ok is false when there is neither.
func (t *Tracker) NextDeadline() (at int64, ok bool) {
	at = math.MaxInt64
	if t.open {
		at, _ = t.cur.deadline(&t.lim)
		ok = true
	}
	if len(t.pending) > 0 {
		t.sort()
		at, ok = min(at, t.pending[0].Time), true
	}
	return at, ok
}

// Break is a charging break that began.
type Break struct {
	SessionID string `json:"session_id"`
	Start     int64  `json:"start"`
}

// TakeBreaks returns the breaks applied since the last call (only with
// TrackBreaks).
func (t *Tracker) TakeBreaks() []Break {
	out := t.breaks
	t.breaks = nil
	return out
}

// TrackerState is everything a Tracker knows, in a form that survives
// serialization: a workflow carries it across continue-as-new.
type TrackerState struct {
	Watermark int64        `json:"w"`
	Pending   []Event      `json:"pending,omitempty"`
	Open      *OpenSession `json:"open,omitempty"`
	Seen      []uint64     `json:"seen,omitempty"` // sorted, for a stable encoding
	SeenAt    int64        `json:"seen_at,omitempty"`
	// Last is the start of the last closed session while an event may still
	// start another in that millisecond (the watermark is not above it).
	Last  *SessionStart `json:"last,omitempty"`
	Stats Stats         `json:"stats"`
}

// State returns the tracker's state. Closed records not yet returned by
// Advance or Finish are not part of it.
func (t *Tracker) State() TrackerState {
	t.sort()
	s := TrackerState{Watermark: t.w, Pending: slices.Clone(t.pending), SeenAt: t.seenAt, Stats: t.stats}
	if t.open {
		cur := t.cur
		cur.Pages = slices.Clone(cur.Pages)
		s.Open = &cur
	}
	if t.last.Start != NoWatermark && t.last.Start >= t.w {
		last := t.last
		s.Last = &last
	}
	s.Seen = t.seen.appendTo(nil)
	slices.Sort(s.Seen)
	return s
}

// RestoreTracker returns a tracker in the given state.
func RestoreTracker(r *Rules, pipeline, key string, s TrackerState) *Tracker {
	t := NewTracker(r, pipeline, key)
	t.w, t.seenAt, t.stats = s.Watermark, s.SeenAt, s.Stats
	t.pending = slices.Clone(s.Pending)
	t.sorted = slices.IsSortedFunc(t.pending, compareEvents)
	if s.Open != nil {
		t.cur, t.open = *s.Open, true
		t.cur.Pages = slices.Clone(s.Open.Pages)
	}
	if s.Last != nil {
		t.last = *s.Last
	}
	for _, id := range s.Seen {
		if !t.seen.has(id) {
			t.seen.add(id)
		}
	}
	return t
}
