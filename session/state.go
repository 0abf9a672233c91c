package session

// OpenSession is the state of a key's open session. It is exported so that a
// workflow can carry it across continue-as-new and show it in a query.
type OpenSession struct {
	Start int64 `json:"start"` // first event
	// Tie numbers the sessions of the key that start in the same
	// millisecond: 0 for the first, then 1, 2, … (SessionID).
	Tie   int   `json:"tie,omitempty"`
	Last  int64 `json:"last"` // last applied event, of any status
	End   int64 `json:"end"`  // last counted event: the session end
	Count int64 `json:"count"`

	Pages []string `json:"pages,omitempty"`

	SocStart   float64 `json:"soc_start,omitempty"`
	SocEnd     float64 `json:"soc_end,omitempty"`
	BreakCount int64   `json:"break_count,omitempty"`
	BreakMs    int64   `json:"break_ms,omitempty"`
	// OnBreak is set from a status-0 event until a status-1 event bridges
	// the break or the break tolerance passes.
	OnBreak     bool  `json:"on_break,omitempty"`
	BreakStart  int64 `json:"break_start,omitempty"`
	BreakEvents int64 `json:"break_events,omitempty"` // counted only if the break is bridged
}

// limits are the rules' durations in milliseconds, the unit of event times.
type limits struct {
	gap, max, brk, min int64
}

func newLimits(r *Rules) limits {
	return limits{
		gap: r.Gap.Milliseconds(),
		max: r.MaxDuration.Milliseconds(),
		brk: r.BreakTolerance.Milliseconds(),
		min: r.MinDuration.Milliseconds(),
	}
}

// deadline returns the session's earliest deadline — the last instant at
// which an event may still join — and the reason it would close for.
// Equal deadlines resolve as max_duration, break_exceeded, inactivity.
func (s *OpenSession) deadline(l *limits) (int64, Reason) {
	d, why := s.Last+l.gap, ReasonInactivity
	if s.OnBreak {
		if b := s.BreakStart + l.brk; b <= d {
			d, why = b, ReasonBreak
		}
	}
	if l.max > 0 {
		if m := s.Start + l.max - 1; m <= d {
			d, why = m, ReasonMaxDuration
		}
	}
	return d, why
}

// begin makes s a new session of its first event e, the tie-th of its key
// to start at e's time.
func (s *OpenSession) begin(e Event, tie int, pages []string) {
	*s = OpenSession{Start: e.Time, Tie: tie, Last: e.Time, End: e.Time, Count: 1, Pages: pages}
	if e.Page != "" {
		s.Pages = append(s.Pages, e.Page)
	}
	if e.Flags&FlagSoC != 0 {
		s.SocStart, s.SocEnd = e.SoC, e.SoC
	}
}

// join applies e, which is within every deadline, to the session. It reports
// whether e started a break.
func (s *OpenSession) join(e Event, breaks bool) (breakStarted bool) {
	s.Last = e.Time
	if breaks && e.Flags&FlagActive == 0 {
		if !s.OnBreak {
			s.OnBreak, s.BreakStart, s.BreakEvents = true, e.Time, 0
			breakStarted = true
		}
		s.BreakEvents++
		return breakStarted
	}
	if s.OnBreak {
		// Bridged: the break's telemetry belongs to the session after all.
		s.OnBreak = false
		s.BreakCount++
		s.BreakMs += e.Time - s.BreakStart
		s.Count += s.BreakEvents
		s.BreakEvents = 0
	}
	s.Count++
	s.End = e.Time
	if e.Page != "" && !contains(s.Pages, e.Page) {
		s.Pages = append(s.Pages, e.Page)
	}
	if e.Flags&FlagSoC != 0 {
		s.SocEnd = e.SoC
	}
	return false
}

// contains is a linear scan: sessions visit few distinct pages, and a scan of
// a short slice beats a map on both speed and garbage.
func contains(pages []string, p string) bool {
	for _, q := range pages {
		if q == p {
			return true
		}
	}
	return false
}

// record turns the session into its Record.
func (s *OpenSession) record(r *Rules, l *limits, pipeline, key string, why Reason) Record {
	rec := Record{
		SessionID:   SessionID(key, s.Start, s.Tie),
		Key:         key,
		Pipeline:    pipeline,
		Profile:     string(r.Profile),
		Start:       s.Start,
		End:         s.End,
		DurationMs:  s.End - s.Start,
		EventCount:  s.Count,
		CloseReason: why,
	}
	switch r.Profile {
	case Clickstream:
		pages := s.Pages
		if pages == nil {
			pages = []string{}
		}
		rec.ClickstreamAttrs = &ClickstreamAttrs{PagesVisited: pages}
	case Charging:
		status := StatusInvalid
		if rec.DurationMs >= l.min {
			status = StatusValid
		}
		rec.ChargingAttrs = &ChargingAttrs{
			SocStart: s.SocStart, SocEnd: s.SocEnd,
			BreakCount: s.BreakCount, BreakMs: s.BreakMs, Status: status,
		}
	}
	return rec
}
