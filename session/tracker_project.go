package session

// NextClose is the watermark past which the tracker, if no further event
// arrives, closes a session or has nothing left to do (buffered events that
// open no session, as a charger's idle reports): its buffered events played
// out, in time order, on a copy. NextDeadline stops at the earliest buffered event, where applying it
// only moves the deadline on; a streaming session that woke there would
// spend a wake-up for nothing, and events of a held batch are usually all
// ahead of the watermark when they arrive. ok is false when there is
// nothing to wait for (no open session and nothing buffered).
//
// The copy neither asks the tie gate nor records breaks, so NextClose has no
// effect on the tracker. A caller that must act when an event is applied
// (a break notice, an expiry warning of a session not open yet) wants
// NextDeadline.
func (t *Tracker) NextClose() (at int64, ok bool) {
	if len(t.pending) == 0 {
		return t.NextDeadline()
	}
	c := RestoreTracker(t.rules, t.pipeline, t.key, t.State())
	for {
		at, ok := c.NextDeadline()
		if !ok {
			return 0, false
		}
		if len(c.pending) == 0 || c.pending[0].Time > at {
			return at, true // the open session's deadline comes first
		}
		if len(c.Advance(at+1)) > 0 {
			return at, true // applying the events of at closes a session
		}
		if _, busy := c.NextDeadline(); !busy {
			return at, true // and leaves nothing to wait for
		}
	}
}
