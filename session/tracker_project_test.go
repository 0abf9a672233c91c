package session

import (
	"math/rand/v2"
	"testing"
)

// TestNextClose: NextClose is exactly the watermark past which the tracker
// closes a session, or has nothing left to do, with no further events:
// advancing a copy to it closes nothing and leaves it waiting, one
// millisecond more closes something or leaves it idle. Random keys of both
// profiles, random buffered events and watermarks.
func TestNextClose(t *testing.T) {
	for _, p := range []Profile{Clickstream, Charging} {
		r := rulesOf(t, p, nil)
		rng := rand.New(rand.NewPCG(uint64(len(p)), 7))
		for round := range 500 {
			tr := NewTracker(r, "", "k")
			n := 1 + rng.IntN(12)
			var evs []Event
			for i := range n {
				e := Event{Time: t0 + rng.Int64N(3*60)*mnt, Seq: int64(i + 1), Page: "home"}
				if p == Charging && rng.IntN(3) > 0 {
					e.Flags = FlagActive
				}
				evs = append(evs, e)
			}
			tr.Add(evs...)
			tr.Advance(t0 + rng.Int64N(3*60)*mnt) // some applied, some still buffered
			at, ok := tr.NextClose()
			before := tr.State()
			if _, busy := tr.NextDeadline(); ok != busy {
				t.Fatalf("%s round %d: NextClose ok %v, NextDeadline %v", p, round, ok, busy)
			}
			if !ok {
				continue
			}
			c := RestoreTracker(r, "", "k", before)
			if recs := c.Advance(at); len(recs) > 0 {
				t.Fatalf("%s round %d: W=%d (NextClose) already closes %d sessions", p, round, at-t0, len(recs))
			}
			if _, busy := c.NextDeadline(); !busy {
				t.Fatalf("%s round %d: idle at W=%d (NextClose) already", p, round, at-t0)
			}
			c = RestoreTracker(r, "", "k", before)
			if recs := c.Advance(at + 1); len(recs) == 0 {
				if _, busy := c.NextDeadline(); busy {
					t.Fatalf("%s round %d: W=%d+1 closes nothing and leaves the tracker waiting", p, round, at-t0)
				}
			}
			if after := tr.State(); after.Watermark != before.Watermark || len(after.Pending) != len(before.Pending) {
				t.Fatalf("%s round %d: NextClose changed the tracker", p, round)
			}
		}
	}
}
