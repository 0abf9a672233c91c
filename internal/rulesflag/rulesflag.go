// Package rulesflag binds the command-line flags that override a profile's
// session rules. The starter's sessionize and backfill commands share it so
// the flags mean the same in both.
package rulesflag

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/sessionflow/sessionflow/session"
)

// Flags are the flags that override a profile's built-in rules. Only flags
// given on the command line override; the rest keep the profile's defaults.
type Flags struct {
	fs                                            *pflag.FlagSet
	profile                                       string
	gap, maxDuration, breakTolerance, minDuration time.Duration
	lateness, expiryWarning                       time.Duration
	keyField, timeField, idField, timeUnit        string
	pageField, statusField, socField              string
	startMarker, endMarker                        string
}

// Add defines the rule flags on fs.
func Add(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.profile, "profile", string(session.Clickstream), "session rules: clickstream, charging or openclose")
	fs.DurationVar(&f.gap, "gap", 0, "inactivity gap that closes a session (profile default: clickstream 30m, charging 15m, openclose 1h)")
	fs.DurationVar(&f.maxDuration, "max-duration", 0, "maximum session duration, 0 for none (default: clickstream 2h, charging 12h, openclose 24h)")
	fs.DurationVar(&f.breakTolerance, "break-tolerance", 0, "charging: longest break (status 0) that is bridged (default 5m)")
	fs.DurationVar(&f.minDuration, "min-duration", 0, "charging: shorter sessions get status invalid (default 30m)")
	fs.DurationVar(&f.lateness, "lateness", 0, "allowed lateness behind the newest event (default 10m)")
	fs.DurationVar(&f.expiryWarning, "expiry-warning", 0, "send an expiry warning this long before the maximum duration (default: none)")
	fs.StringVar(&f.keyField, "key-field", "", "dotted path of the session key (default: clickstream uuid, charging UIN, openclose key)")
	fs.StringVar(&f.timeField, "time-field", "", "dotted path of the event time (default: clickstream event_timestamp, charging and openclose time)")
	fs.StringVar(&f.idField, "id-field", "", "dotted path of the event id used to drop duplicates (default event_id)")
	fs.StringVar(&f.timeUnit, "time-unit", "ms", "unit of numeric event times: s, ms, us or ns")
	fs.StringVar(&f.pageField, "page-field", "", "clickstream: dotted path of the page name (default page_name)")
	fs.StringVar(&f.statusField, "status-field", "", "charging: dotted path of the charge status (default Charge_status)")
	fs.StringVar(&f.socField, "soc-field", "", "charging: dotted path of the state of charge (default Soc_percentage)")
	fs.StringVar(&f.startMarker, "start-marker", "", "field=value that opens a session; only such events open one (openclose default action=Open)")
	fs.StringVar(&f.endMarker, "end-marker", "", "field=value that ends its session at once, e.g. page_name=logout (openclose default action=Close)")
	return f
}

var timeUnits = map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "us": time.Microsecond, "ns": time.Nanosecond}

// UsageError marks an error in the flags' values.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Rules returns the profile's defaults with the given flags applied,
// validated. Errors are UsageErrors.
func (f *Flags) Rules() (*session.Rules, error) {
	r, err := session.Defaults(session.Profile(f.profile))
	if err != nil {
		return nil, UsageError{fmt.Errorf("--profile: %w", err)}
	}
	set := f.fs.Changed
	// flag -> {value given, rule it overrides}
	for name, d := range map[string][2]*time.Duration{
		"gap": {&f.gap, &r.Gap}, "max-duration": {&f.maxDuration, &r.MaxDuration},
		"break-tolerance": {&f.breakTolerance, &r.BreakTolerance}, "min-duration": {&f.minDuration, &r.MinDuration},
		"lateness": {&f.lateness, &r.Lateness}, "expiry-warning": {&f.expiryWarning, &r.ExpiryWarning},
	} {
		if set(name) {
			*d[1] = *d[0]
		}
	}
	for name, s := range map[string][2]*string{
		"key-field": {&f.keyField, &r.KeyField}, "time-field": {&f.timeField, &r.TimeField},
		"id-field": {&f.idField, &r.IDField}, "page-field": {&f.pageField, &r.PageField},
		"status-field": {&f.statusField, &r.StatusField}, "soc-field": {&f.socField, &r.SoCField},
	} {
		if set(name) {
			*s[1] = *s[0]
		}
	}
	unit, ok := timeUnits[f.timeUnit]
	if !ok {
		return nil, UsageError{fmt.Errorf("--time-unit %q: want s, ms, us or ns", f.timeUnit)}
	}
	r.TimeUnit = unit
	for name, dst := range map[string]*session.Marker{"start-marker": &r.StartMarker, "end-marker": &r.EndMarker} {
		if !set(name) {
			continue
		}
		m, err := session.ParseMarker(f.fs.Lookup(name).Value.String())
		if err != nil {
			return nil, UsageError{fmt.Errorf("--%s: %w", name, err)}
		}
		*dst = m
	}
	if err := r.Validate(); err != nil {
		return nil, UsageError{err}
	}
	return &r, nil
}
