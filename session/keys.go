package session

import (
	"cmp"
	"slices"
)

// Keys holds the trackers of one shard's open keys: the incremental engine of
// a workflow that owns the sessions of many keys. Every rule is the key's
// Tracker's; Keys only routes events to trackers, keeps the shard's one
// watermark and finds the keys that have work, without looking at the others.
//
// A key has a tracker while it has an open session or buffered events; one
// with neither is dropped, and an event of it later starts a new tracker.
// That loses nothing: a tracker keeps, besides its session and buffer, only
// what concerns events of instants the watermark has passed (the last
// session's start for the tie number, the identities of its last instant),
// and those events are late.
//
// Ties are always numbered, as in the batch engine: a shard is a workflow
// type with no runs recorded before ties were numbered, so Keys never gates
// them (Tracker.GateTies).
//
// Output follows no map: due keys are taken from heaps ordered by
// (deadline, key) and handled in key order. Keys is not safe for concurrent
// use.
type Keys struct {
	rules    *Rules
	pipeline string
	track    bool
	w        int64 // the shard's watermark; a tracker's may lag it (see Add)

	byKey map[string]*keyTracker // lookup only, never iterated
	due   keyHeap                // every tracker, by (NextDeadline, key)
	close keyHeap                // every tracker, by (NextClose, key)

	breaks []KeyBreak // taken from the trackers as they apply events
	stats  Stats      // of every tracker, dropped ones included
	moved  int        // trackers the last Advance moved, for tests
}

// keyTracker is a key's tracker with its place in the heaps.
type keyTracker struct {
	key string
	t   *Tracker
	at  [2]int64 // NextDeadline, NextClose
	pos [2]int   // index in Keys.due, Keys.close
}

// KeyBreak is a charging break that began, with its key.
type KeyBreak struct {
	Key string `json:"key"`
	Break
}

// NewKeys returns an empty set of trackers for the rules (valid) of a
// pipeline, at NoWatermark.
func NewKeys(r *Rules, pipeline string) *Keys {
	return &Keys{rules: r, pipeline: pipeline, w: NoWatermark, byKey: map[string]*keyTracker{},
		due: keyHeap{which: 0}, close: keyHeap{which: 1}}
}

// TrackBreaks makes every tracker, present and future, track breaks for
// TakeBreaks.
func (k *Keys) TrackBreaks() {
	k.track = true
	for _, e := range k.due.es {
		e.t.TrackBreaks()
	}
}

// Add buffers events of key, creating its tracker if it has none. Events
// below the shard's watermark are late: they are returned, as Tracker.Add
// returns them, and never applied. It costs the key's Tracker.NextClose
// (a copy of its tracker when it has buffered events) and O(log n).
func (k *Keys) Add(key string, events ...Event) (late []Event) {
	if len(events) == 0 {
		return nil
	}
	e := k.byKey[key]
	if e == nil {
		t := NewTracker(k.rules, k.pipeline, key)
		if k.track {
			t.TrackBreaks()
		}
		e = &keyTracker{key: key, t: t, pos: [2]int{-1, -1}}
	}
	k.catchUp(e)
	before := e.t.Stats()
	late = e.t.Add(events...)
	k.count(before, e.t.Stats())
	k.place(e)
	return late
}

// catchUp raises a tracker's watermark to the shard's. Advance moves only
// the trackers that have work; for the others, whose next deadline the
// watermark has not passed, Tracker.Advance would only raise the watermark,
// so it is raised when it matters: before an Add (so that lateness is the
// shard's) and before a State or a query.
func (k *Keys) catchUp(e *keyTracker) {
	if e.t.Watermark() < k.w {
		if recs := e.t.Advance(k.w); recs != nil {
			panic("session: Keys: a tracker not due closed a session") // a broken invariant, not bad input
		}
	}
}

// place puts a tracker where its deadlines say: in both heaps while it has
// something to wait for, else nowhere (dropped).
func (k *Keys) place(e *keyTracker) {
	at, ok := e.t.NextDeadline()
	if !ok {
		if e.pos[0] >= 0 {
			k.due.remove(e)
			k.close.remove(e)
		}
		delete(k.byKey, e.key)
		return
	}
	e.at[0] = at
	e.at[1], _ = e.t.NextClose()
	if e.pos[0] < 0 {
		k.byKey[e.key] = e
		k.due.push(e)
		k.close.push(e)
		return
	}
	k.due.fix(e)
	k.close.fix(e)
}

// Advance raises the shard's watermark to w (a lower w is ignored) and
// advances the trackers that have work: those whose NextDeadline w passes
// (at < w; at the deadline itself Tracker.Advance would do nothing). It
// returns the sessions that closed, by key, then as each tracker returned
// them, and drops the trackers left with nothing open and nothing buffered.
// It costs O(d log n) for d due keys of n, whatever n.
func (k *Keys) Advance(w int64) []Record {
	k.moved = 0
	if w <= k.w {
		return nil
	}
	k.w = w
	var due []*keyTracker
	for len(k.due.es) > 0 && k.due.es[0].at[0] < w {
		e := k.due.es[0]
		k.due.remove(e)
		k.close.remove(e)
		due = append(due, e)
	}
	slices.SortFunc(due, func(a, b *keyTracker) int { return cmp.Compare(a.key, b.key) })
	var out []Record
	for _, e := range due {
		before := e.t.Stats()
		out = append(out, e.t.Advance(w)...)
		k.count(before, e.t.Stats())
		k.takeBreaks(e)
		k.place(e)
	}
	k.moved = len(due)
	return out
}

// Finish ends the input, as Tracker.Finish with w the largest event time of
// the input, for every key in key order, and drops every tracker.
func (k *Keys) Finish(w int64) []Record {
	all := k.sorted()
	var out []Record
	for _, e := range all {
		before := e.t.Stats()
		out = append(out, e.t.Finish(w)...)
		k.count(before, e.t.Stats())
		k.takeBreaks(e)
		delete(k.byKey, e.key)
	}
	k.due.es, k.close.es = nil, nil
	k.w = max(k.w, w)
	return out
}

// sorted returns every tracker in key order.
func (k *Keys) sorted() []*keyTracker {
	all := slices.Clone(k.due.es)
	slices.SortFunc(all, func(a, b *keyTracker) int { return cmp.Compare(a.key, b.key) })
	return all
}

func (k *Keys) takeBreaks(e *keyTracker) {
	for _, b := range e.t.TakeBreaks() {
		k.breaks = append(k.breaks, KeyBreak{Key: e.key, Break: b})
	}
}

func (k *Keys) count(before, after Stats) {
	k.stats.Late += after.Late - before.Late
	k.stats.Duplicates += after.Duplicates - before.Duplicates
	k.stats.Ignored += after.Ignored - before.Ignored
}

// NextDeadline returns the earliest Tracker.NextDeadline over the keys, ties
// by key: the instant the watermark must pass for Advance to have work. ok
// is false when no key is held.
func (k *Keys) NextDeadline() (at int64, key string, ok bool) {
	return k.due.top()
}

// NextClose returns the earliest Tracker.NextClose over the keys, ties by
// key: the watermark past which, with no further event, some key closes a
// session or has nothing left to do. A shard that sends no notices when an
// event is applied (breaks) may aim its timer there instead of at
// NextDeadline. ok is false when no key is held.
func (k *Keys) NextClose() (at int64, key string, ok bool) {
	return k.close.top()
}

// Watermark returns the shard's watermark.
func (k *Keys) Watermark() int64 { return k.w }

// Len returns the number of keys held: those with an open session or
// buffered events.
func (k *Keys) Len() int { return len(k.byKey) }

// Stats returns the late, duplicate and ignored events of every key since
// NewKeys, carried across State and RestoreKeys. (A key's own
// Tracker.Stats count only since its tracker was made or restored.)
func (k *Keys) Stats() Stats { return k.stats }

// Tracker returns the tracker of key, at the shard's watermark, for a
// query (Open, Pending, NextDeadline, State). Calling Add, Advance, Finish,
// GateTies or TakeBreaks on it bypasses Keys and breaks it.
func (k *Keys) Tracker(key string) (*Tracker, bool) {
	e, ok := k.byKey[key]
	if !ok {
		return nil, false
	}
	k.catchUp(e)
	return e.t, true
}

// TakeBreaks returns the breaks applied since the last call (only with
// TrackBreaks), in key order, a key's in the order they began. Breaks are
// not part of State: take them before.
func (k *Keys) TakeBreaks() []KeyBreak {
	out := k.breaks
	k.breaks = nil
	slices.SortStableFunc(out, func(a, b KeyBreak) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// KeysState is everything a Keys knows, in a form that survives
// serialization, for a shard workflow's continue-as-new: the watermark, the
// shard's counts, and each key's tracker in key order.
type KeysState struct {
	Watermark int64      `json:"w"`
	Keys      []KeyState `json:"keys,omitempty"`
	Stats     Stats      `json:"stats"`
}

// KeyState is a key's TrackerState without what the shard holds once for
// all its keys: the watermark (every tracker is at the shard's in a State)
// and the counts (Keys.Stats). It keeps a shard's state small; every other
// field is the TrackerState's.
type KeyState struct {
	Key     string        `json:"k"`
	Pending []Event       `json:"pending,omitempty"`
	Open    *OpenSession  `json:"open,omitempty"`
	Seen    []uint64      `json:"seen,omitempty"`
	SeenAt  int64         `json:"seen_at,omitempty"`
	Last    *SessionStart `json:"last,omitempty"`
}

// State returns the state of every key, in key order. Closed records not
// yet returned by Advance or Finish, and breaks not yet taken, are not part
// of it.
func (k *Keys) State() KeysState {
	s := KeysState{Watermark: k.w, Stats: k.stats}
	if len(k.due.es) > 0 {
		s.Keys = make([]KeyState, 0, len(k.due.es))
	}
	for _, e := range k.sorted() {
		k.catchUp(e)
		ts := e.t.State()
		s.Keys = append(s.Keys, KeyState{Key: e.key, Pending: ts.Pending, Open: ts.Open, Seen: ts.Seen,
			SeenAt: ts.SeenAt, Last: ts.Last})
	}
	return s
}

// RestoreKeys returns the Keys in the given state. TrackBreaks is not part
// of the state: call it again.
func RestoreKeys(r *Rules, pipeline string, s KeysState) *Keys {
	k := NewKeys(r, pipeline)
	k.w, k.stats = s.Watermark, s.Stats
	for _, ks := range s.Keys {
		t := RestoreTracker(r, pipeline, ks.Key, TrackerState{Watermark: s.Watermark, Pending: ks.Pending,
			Open: ks.Open, Seen: ks.Seen, SeenAt: ks.SeenAt, Last: ks.Last})
		k.place(&keyTracker{key: ks.Key, t: t, pos: [2]int{-1, -1}})
	}
	return k
}

// keyHeap is a binary min-heap of trackers by (at[which], key) that knows
// each tracker's index (pos[which]), so that a tracker whose deadline moved
// is fixed in place.
type keyHeap struct {
	es    []*keyTracker
	which int
}

func (h *keyHeap) less(i, j int) bool {
	a, b := h.es[i], h.es[j]
	if a.at[h.which] != b.at[h.which] {
		return a.at[h.which] < b.at[h.which]
	}
	return a.key < b.key
}

func (h *keyHeap) swap(i, j int) {
	h.es[i], h.es[j] = h.es[j], h.es[i]
	h.es[i].pos[h.which], h.es[j].pos[h.which] = i, j
}

func (h *keyHeap) top() (at int64, key string, ok bool) {
	if len(h.es) == 0 {
		return 0, "", false
	}
	return h.es[0].at[h.which], h.es[0].key, true
}

func (h *keyHeap) push(e *keyTracker) {
	e.pos[h.which] = len(h.es)
	h.es = append(h.es, e)
	h.up(len(h.es) - 1)
}

func (h *keyHeap) remove(e *keyTracker) {
	i, n := e.pos[h.which], len(h.es)-1
	if i != n {
		h.swap(i, n)
	}
	h.es[n] = nil
	h.es = h.es[:n]
	e.pos[h.which] = -1
	if i != n {
		h.fixAt(i)
	}
}

func (h *keyHeap) fix(e *keyTracker) { h.fixAt(e.pos[h.which]) }

func (h *keyHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *keyHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (h *keyHeap) down(i int) bool {
	start, n := i, len(h.es)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h.less(r, c) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
