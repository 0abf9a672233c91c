package session

import "cmp"

// Flags describe what an event means to the rules, decided once at decode time.
type Flags uint8

const (
	// FlagStart marks an explicit session start (openclose `action=Open`).
	FlagStart Flags = 1 << iota
	// FlagEnd marks an end marker: the event joins its session and closes it.
	FlagEnd
	// FlagActive is a charging event with status 1 (charging); without it a
	// charging event is status-0 telemetry.
	FlagActive
	// FlagSoC says the event carries a state-of-charge reading in SoC.
	FlagSoC
)

// Event is one input event reduced to what the rules need. It is small and
// free of the key (a key's events travel together) so that batches of them
// fit in Temporal signals.
type Event struct {
	// Time is the event time in epoch milliseconds.
	Time int64 `json:"t"`
	// Seq is the arrival position among the key's events; it orders events
	// of equal Time.
	Seq int64 `json:"s,omitempty"`
	// ID is the hash of the event's identity (its id field, else its source
	// position). Zero means the event has no identity that could repeat.
	ID    uint64  `json:"id,omitempty"`
	Flags Flags   `json:"f,omitempty"`
	Page  string  `json:"p,omitempty"`
	SoC   float64 `json:"soc,omitempty"`
}

// compareEvents orders events by time, then arrival.
func compareEvents(a, b Event) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}
