package session

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Profile names a built-in set of session rules.
type Profile string

// The built-in profiles (docs/DESIGN.md §3).
const (
	Clickstream Profile = "clickstream"
	Charging    Profile = "charging"
	OpenClose   Profile = "openclose"
)

// Profiles lists the built-in profiles in the order help texts show them.
var Profiles = []Profile{Clickstream, Charging, OpenClose}

// Marker is a `field=value` condition on an event, such as `page_name=logout`.
// The zero Marker matches nothing.
type Marker struct {
	Field string
	Value string
}

// ParseMarker parses "field=value". An empty string gives the zero Marker.
func ParseMarker(s string) (Marker, error) {
	if s == "" {
		return Marker{}, nil
	}
	field, value, ok := strings.Cut(s, "=")
	if !ok || field == "" {
		return Marker{}, fmt.Errorf("marker %q: want field=value, e.g. page_name=logout", s)
	}
	return Marker{Field: field, Value: value}, nil
}

func (m Marker) String() string {
	if m.Field == "" {
		return ""
	}
	return m.Field + "=" + m.Value
}

// Rules are a pipeline's session rules: the profile, where its fields are in
// an event, and every number of it. Start from Defaults and override.
type Rules struct {
	Profile Profile `json:"profile"`

	// Field paths are dotted (`event_details.event_name`).
	KeyField    string `json:"key_field"`
	TimeField   string `json:"time_field"`
	IDField     string `json:"id_field,omitempty"`     // optional: identity for de-duplication
	PageField   string `json:"page_field,omitempty"`   // clickstream: pages_visited
	StatusField string `json:"status_field,omitempty"` // charging: 1 charging, 0 not
	SoCField    string `json:"soc_field,omitempty"`    // charging: state of charge
	// TimeUnit is the unit of numeric event times; default milliseconds.
	TimeUnit time.Duration `json:"time_unit,omitempty"`

	StartMarker Marker `json:"start_marker,omitempty"` // when set, only such events open a session
	EndMarker   Marker `json:"end_marker,omitempty"`   // joins, then closes its session

	Gap            time.Duration `json:"gap"`                       // inactivity: last event + Gap
	MaxDuration    time.Duration `json:"max_duration"`              // a session never spans this or more; 0 = no maximum
	BreakTolerance time.Duration `json:"break_tolerance,omitempty"` // charging: longest bridged break
	MinDuration    time.Duration `json:"min_duration,omitempty"`    // charging: shorter sessions are `invalid`
	Lateness       time.Duration `json:"lateness"`                  // watermark = max event time − Lateness
	// ExpiryWarning is how long before the maximum duration an expiry
	// warning is sent; 0 sends none.
	ExpiryWarning time.Duration `json:"expiry_warning,omitempty"`
}

// Defaults returns the built-in rules of a profile.
func Defaults(p Profile) (Rules, error) {
	switch p {
	case Clickstream:
		return Rules{
			Profile: Clickstream, KeyField: "uuid", TimeField: "event_timestamp", IDField: "event_id",
			PageField: "page_name", Gap: 30 * time.Minute, MaxDuration: 2 * time.Hour,
			Lateness: 10 * time.Minute,
		}, nil
	case Charging:
		return Rules{
			Profile: Charging, KeyField: "UIN", TimeField: "time", IDField: "event_id",
			StatusField: "Charge_status", SoCField: "Soc_percentage",
			Gap: 15 * time.Minute, MaxDuration: 12 * time.Hour, BreakTolerance: 5 * time.Minute,
			MinDuration: 30 * time.Minute, Lateness: 10 * time.Minute,
		}, nil
	case OpenClose:
		return Rules{
			Profile: OpenClose, KeyField: "key", TimeField: "time", IDField: "event_id",
			StartMarker: Marker{"action", "Open"}, EndMarker: Marker{"action", "Close"},
			Gap: time.Hour, MaxDuration: 24 * time.Hour, Lateness: 10 * time.Minute,
		}, nil
	}
	return Rules{}, fmt.Errorf("unknown profile %q (want one of %s)", p, profileList())
}

func profileList() string {
	names := make([]string, len(Profiles))
	for i, p := range Profiles {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// Validate reports every problem of the rules at once, in the words of the
// flags that set them.
func (r Rules) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := Defaults(r.Profile); err != nil {
		errs = append(errs, err)
	}
	if r.KeyField == "" {
		bad("--key-field must not be empty")
	}
	if r.TimeField == "" {
		bad("--time-field must not be empty")
	}
	if r.Profile == Charging && r.StatusField == "" {
		bad("the charging profile needs a status field")
	}
	if r.Profile == OpenClose && r.StartMarker.Field == "" {
		bad("the openclose profile needs a start marker (e.g. action=Open)")
	}
	switch r.TimeUnit {
	case 0, time.Second, time.Millisecond, time.Microsecond, time.Nanosecond:
	default:
		bad("time unit %v: want s, ms, us or ns", r.TimeUnit)
	}
	if r.Gap < time.Millisecond {
		bad("--gap must be at least 1ms (got %v)", r.Gap)
	}
	if r.MaxDuration < 0 || (r.MaxDuration > 0 && r.MaxDuration < time.Millisecond) {
		bad("--max-duration must be 0 (no maximum) or at least 1ms (got %v)", r.MaxDuration)
	}
	if r.BreakTolerance < 0 {
		bad("--break-tolerance must not be negative (got %v)", r.BreakTolerance)
	}
	if r.MinDuration < 0 {
		bad("--min-duration must not be negative (got %v)", r.MinDuration)
	}
	if r.Lateness < 0 {
		bad("--lateness must not be negative (got %v)", r.Lateness)
	}
	if r.ExpiryWarning < 0 || (r.ExpiryWarning > 0 && r.MaxDuration > 0 && r.ExpiryWarning >= r.MaxDuration) {
		bad("--expiry-warning must be between 0 and --max-duration (got %v)", r.ExpiryWarning)
	}
	return errors.Join(errs...)
}

// breaks reports whether status-0 events in a session start breaks.
func (r *Rules) breaks() bool { return r.Profile == Charging }

// opens reports whether e may open a session when none is open.
func (r *Rules) opens(e Event) bool {
	switch {
	case r.Profile == Charging:
		return e.Flags&FlagActive != 0
	case r.StartMarker.Field != "":
		return e.Flags&FlagStart != 0
	}
	return true
}
