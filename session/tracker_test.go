package session

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// randomEvents makes a key-mixed event set that exercises every rule: gaps
// around the limits, repeats of identities, ties, end and start markers,
// charging breaks, and events in an end marker's millisecond (a double
// submit), which start a session with a tie-numbered id.
func randomEvents(rng *rand.Rand, r *Rules, n int) []Keyed {
	keys := []string{"a", "b", "c", "d"}
	pages := []string{"home", "search", "cart", "logout"}
	steps := []int64{0, 1, 59 * sec, 4 * mnt, 5 * mnt, 5*mnt + 1, 14 * mnt, 15 * mnt, 15*mnt + 1,
		29 * mnt, 30 * mnt, 30*mnt + 1, 45 * mnt, 2 * 60 * mnt}
	last := map[string]int64{}
	endAt := map[string]int64{} // a key's last end marker, while a tie may follow it
	events := make([]Keyed, 0, n)
	for i := range n {
		k := keys[rng.IntN(len(keys))]
		t := last[k] + steps[rng.IntN(len(steps))]
		if rng.IntN(5) == 0 { // out of order within a key
			t -= steps[rng.IntN(len(steps))]
		}
		t = max(t, 0)
		if at, ok := endAt[k]; ok { // more events in the marker's millisecond, or no more
			if rng.IntN(2) == 0 {
				t = at
			} else {
				delete(endAt, k)
			}
		}
		last[k] = max(last[k], t)
		e := Event{Time: t0 + t, Seq: int64(i + 1)}
		if rng.IntN(3) == 0 {
			e.ID = uint64(rng.IntN(40) + 1) // repeats, sometimes at other times
		}
		switch r.Profile {
		case Clickstream:
			e.Page = pages[rng.IntN(len(pages))]
			if e.Page == "logout" && r.EndMarker.Field != "" {
				e.Flags |= FlagEnd
			}
		case Charging:
			if rng.IntN(3) > 0 {
				e.Flags |= FlagActive
			}
			e.Flags |= FlagSoC
			e.SoC = float64(rng.IntN(100))
		case OpenClose:
			switch rng.IntN(4) {
			case 0:
				e.Flags |= FlagStart
			case 1:
				e.Flags |= FlagEnd
			}
		}
		if e.Flags&FlagEnd != 0 {
			endAt[k] = e.Time - t0
		}
		events = append(events, Keyed{Key: k, Event: e})
	}
	return events
}

// restored round-trips a tracker through its JSON state, as a workflow's
// continue-as-new does.
func restored(tr *Tracker, r *Rules, key string) *Tracker {
	data, err := json.Marshal(tr.State())
	if err != nil {
		panic(err)
	}
	var st TrackerState
	if err := json.Unmarshal(data, &st); err != nil {
		panic(err)
	}
	return RestoreTracker(r, "", key, st)
}

// streamed feeds events to per-key Trackers in the given arrival order and
// batching, raising the watermark at random but never above an event that
// has not arrived yet, then finishes at the input's largest time.
func streamed(rng *rand.Rand, r *Rules, arrival []Keyed) []Record {
	trackers := map[string]*Tracker{}
	var keys []string
	tracker := func(k string) *Tracker {
		if trackers[k] == nil {
			trackers[k] = NewTracker(r, "", k)
			keys = append(keys, k)
		}
		return trackers[k]
	}
	// lowest[i] is the smallest time among arrival[i:].
	lowest := make([]int64, len(arrival)+1)
	lowest[len(arrival)] = 1 << 62
	for i := len(arrival) - 1; i >= 0; i-- {
		lowest[i] = min(lowest[i+1], arrival[i].Time)
	}
	var out []Record
	w := NoWatermark
	for i := 0; i < len(arrival); {
		n := 1 + rng.IntN(8)
		for _, e := range arrival[i:min(i+n, len(arrival))] {
			if late := tracker(e.Key).Add(e.Event); late != nil {
				panic(fmt.Sprintf("event %+v is behind watermark %d", e, w))
			}
		}
		i = min(i+n, len(arrival))
		if rng.IntN(4) == 0 { // continue-as-new of every key
			for _, k := range keys {
				trackers[k] = restored(trackers[k], r, k)
			}
		}
		if rng.IntN(2) == 0 && lowest[i] > w && i < len(arrival) {
			if w == NoWatermark {
				w = lowest[i] - 3*60*mnt
			}
			w += rng.Int64N(lowest[i]-w) + 1 // up to and including lowest[i]
			for _, k := range keys {
				out = append(out, trackers[k].Advance(w)...)
			}
		}
	}
	maxTime := NoWatermark
	for _, e := range arrival {
		maxTime = max(maxTime, e.Time)
	}
	for _, k := range keys {
		out = append(out, trackers[k].Finish(maxTime)...)
	}
	slices.SortStableFunc(out, func(a, b Record) int { return compareRecords(&a, &b) })
	return out
}

// TestStreamingEqualsBatch is the central property: for random event sets,
// any arrival order and any batching, with no event behind the watermark,
// the incremental engine yields exactly the batch result.
func TestStreamingEqualsBatch(t *testing.T) {
	profiles := []*Rules{
		rulesOf(t, Clickstream, nil),
		rulesOf(t, Clickstream, func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} }),
		rulesOf(t, Charging, nil),
		rulesOf(t, OpenClose, nil),
		rulesOf(t, Clickstream, func(r *Rules) { r.Gap = 5 * time.Minute; r.MaxDuration = 0 }),
	}
	ties := 0 // sessions that start in their predecessor's millisecond
	for pi, r := range profiles {
		for seed := range uint64(300) {
			rng := rand.New(rand.NewPCG(seed, uint64(pi)))
			events := randomEvents(rng, r, 1+rng.IntN(120))
			want, _ := Sessionize(r, "", slices.Clone(events))
			arrival := slices.Clone(events)
			rng.Shuffle(len(arrival), func(i, j int) { arrival[i], arrival[j] = arrival[j], arrival[i] })
			got := streamed(rng, r, arrival)
			if (len(got) > 0 || len(want) > 0) && !reflect.DeepEqual(got, want) {
				t.Fatalf("%s seed %d: streaming and batch differ\nstreaming %v\nbatch     %v",
					r.Profile, seed, summarize(got), summarize(want))
			}
			checkIDs(t, want)
			for i := 1; i < len(want); i++ {
				if want[i].Key == want[i-1].Key && want[i].Start == want[i-1].Start {
					ties++
				}
			}
		}
	}
	if ties < 100 {
		t.Errorf("only %d sessions started in their predecessor's millisecond; the generator must make ties", ties)
	}
	t.Logf("%d tie-numbered sessions", ties)
}

func TestTrackerWatermark(t *testing.T) {
	r := rulesOf(t, Clickstream, nil)
	tr := NewTracker(r, "web", "u")
	tr.Add(Event{Time: t0, Seq: 1}, Event{Time: t0 + 10*mnt, Seq: 2})
	if recs := tr.Advance(t0 + 5*mnt); recs != nil {
		t.Fatalf("nothing may close yet, got %v", recs)
	}
	if tr.Pending() != 1 {
		t.Errorf("pending %d, want the event above the watermark", tr.Pending())
	}
	if late := tr.Add(Event{Time: t0 + 4*mnt, Seq: 3}); len(late) != 1 {
		t.Errorf("an event below the watermark must come back as late, got %v", late)
	}
	if late := tr.Add(Event{Time: t0 + 5*mnt, Seq: 4}); late != nil {
		t.Errorf("an event at the watermark is not late")
	}
	tr.Advance(t0) // lower: ignored
	if tr.Watermark() != t0+5*mnt {
		t.Errorf("watermark went down to %d", tr.Watermark())
	}
	rec, deadline, why, ok := tr.Open()
	if !ok || rec.EventCount != 1 || deadline != t0+30*mnt || why != ReasonInactivity {
		t.Errorf("open session %+v deadline %d %s", rec, deadline-t0, why)
	}
	// Watermark at the deadline: an event there could still join.
	if recs := tr.Advance(t0 + 40*mnt); recs != nil {
		t.Fatalf("deadline 40m not passed by watermark 40m, got %v", summarize(recs))
	}
	recs := tr.Advance(t0 + 40*mnt + 1)
	if len(recs) != 1 || recs[0].EventCount != 3 || recs[0].CloseReason != ReasonInactivity || recs[0].Pipeline != "web" {
		t.Fatalf("close by watermark: %+v", recs)
	}
	if st := tr.Stats(); st.Late != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerBreaks(t *testing.T) {
	tr := NewTracker(rulesOf(t, Charging, nil), "", "d")
	tr.TrackBreaks()
	tr.Add(Event{Time: t0, Flags: FlagActive}, Event{Time: t0 + mnt}, Event{Time: t0 + 2*mnt, Flags: FlagActive},
		Event{Time: t0 + 3*mnt})
	tr.Advance(t0 + 3*mnt + 1)
	id := SessionID("d", t0, 0)
	if got := tr.TakeBreaks(); !reflect.DeepEqual(got, []Break{{id, t0 + mnt}, {id, t0 + 3*mnt}}) {
		t.Errorf("breaks %v", got)
	}
	if at, ok := tr.NextDeadline(); !ok || at != t0+8*mnt {
		t.Errorf("next deadline %d, want the break's end", at-t0)
	}
}
