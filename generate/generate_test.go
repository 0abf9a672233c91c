package generate

import (
	"bytes"
	"context"
	"testing"

	"github.com/sessionflow/sessionflow/session"
)

// TestStreamsExerciseTheRules: generated streams decode without error, come
// in time order, and produce sessions closed for each reason the profile has.
func TestStreamsExerciseTheRules(t *testing.T) {
	cases := []struct {
		profile session.Profile
		write   func(*bytes.Buffer) error
		reasons []session.Reason
	}{
		{session.Clickstream, func(b *bytes.Buffer) error { return Clicks(b, ClickOptions{Users: 50, Events: 5000, Seed: 3}) },
			[]session.Reason{session.ReasonInactivity, session.ReasonEndOfInput}},
		{session.Charging, func(b *bytes.Buffer) error {
			return Charging(b, ChargingOptions{Devices: 30, Events: 6000, Seed: 3, Scale: 1.0 / 60})
		}, []session.Reason{session.ReasonBreak, session.ReasonInactivity}},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := c.write(&buf); err != nil {
			t.Fatal(err)
		}
		r, _ := session.Defaults(c.profile)
		if c.profile == session.Charging { // time-compressed: minutes become seconds
			r.Gap, r.BreakTolerance, r.MinDuration = r.Gap/60, r.BreakTolerance/60, r.MinDuration/60
		}
		var last int64
		d := session.NewDecoder(&r)
		for i, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte{'\n'}) {
			_, e, err := d.Decode(line)
			if err != nil {
				t.Fatalf("%s line %d: %v", c.profile, i+1, err)
			}
			if e.Time < last {
				t.Fatalf("%s line %d goes back in time", c.profile, i+1)
			}
			last = e.Time
		}
		b := session.Batch{Rules: &r}
		recs, stats, err := b.Run(context.Background(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[session.Reason]int{}
		for _, rec := range recs {
			seen[rec.CloseReason]++
		}
		for _, want := range c.reasons {
			if seen[want] == 0 {
				t.Errorf("%s: no session closed by %s (%v, %+v)", c.profile, want, seen, stats)
			}
		}
	}
}
