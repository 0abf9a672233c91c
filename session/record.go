package session

import "strconv"

// Reason says why a session closed.
type Reason string

// Close reasons. When several deadlines are passed at once, the smallest
// deadline wins; equal deadlines are broken in the order listed here.
const (
	ReasonEndMarker   Reason = "end_marker"
	ReasonMaxDuration Reason = "max_duration"
	ReasonBreak       Reason = "break_exceeded"
	ReasonInactivity  Reason = "inactivity"
	ReasonEndOfInput  Reason = "end_of_input"
)

// Charging session status.
const (
	StatusValid   = "valid"
	StatusInvalid = "invalid"
)

// Record is a closed session, the unit every output (Parquet, JSON lines,
// notifications) is made of. The profile's attributes are in the embedded
// attribute struct of that profile; the other one is nil and its fields are
// absent from the JSON form.
type Record struct {
	SessionID   string `json:"session_id"`
	Key         string `json:"key"`
	Pipeline    string `json:"pipeline"`
	Profile     string `json:"profile"`
	Start       int64  `json:"session_start_time_ms"`
	End         int64  `json:"session_end_time_ms"`
	DurationMs  int64  `json:"duration_ms"`
	EventCount  int64  `json:"event_count"`
	CloseReason Reason `json:"close_reason"`
	*ClickstreamAttrs
	*ChargingAttrs
	// ClosedAtMs is the wall time of the close; batch runs leave it 0.
	ClosedAtMs int64 `json:"closed_at_ms,omitempty"`
}

// ClickstreamAttrs are the attributes of a clickstream session.
type ClickstreamAttrs struct {
	// PagesVisited holds the distinct pages in first-visit order.
	PagesVisited []string `json:"pages_visited"`
}

// ChargingAttrs are the attributes of a charging session.
type ChargingAttrs struct {
	SocStart   float64 `json:"soc_start"`
	SocEnd     float64 `json:"soc_end"`
	BreakCount int64   `json:"break_count"`
	BreakMs    int64   `json:"break_ms"`
	Status     string  `json:"status"`
}

// SessionID is the id of a key's session that starts at startMs:
// "<key>/<startMs>", and "<key>/<startMs>-<tie>" for the tie-th later session
// of the key that starts in that same millisecond (possible only after an end
// marker closed the one before at that instant). It is unique per pipeline
// and deterministic: a replay or a backfill of the same events yields the
// same ids. The Tracker assigns tie; nothing else should.
func SessionID(key string, startMs int64, tie int) string {
	id := key + "/" + strconv.FormatInt(startMs, 10)
	if tie > 0 {
		id += "-" + strconv.Itoa(tie)
	}
	return id
}
