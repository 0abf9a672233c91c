package session

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// manyKeys makes the events of several to many keys: groups of
// randomEvents' four keys, each group shifted in time, with some events
// delivered twice (the same event, as a retried signal delivers it).
func manyKeys(rng *rand.Rand, r *Rules) []Keyed {
	var events []Keyed
	for g := range 1 + rng.IntN(12) {
		shift := rng.Int64N(3*60) * mnt
		for _, e := range randomEvents(rng, r, 1+rng.IntN(60)) {
			e.Key = fmt.Sprintf("%s%02d", e.Key, g)
			e.Time += shift
			events = append(events, e)
			if rng.IntN(10) == 0 {
				events = append(events, e)
			}
		}
	}
	return events
}

// roundTrip continues a Keys as new: State, JSON and back.
func roundTrip(t *testing.T, k *Keys, r *Rules, pipeline string) *Keys {
	t.Helper()
	var s KeysState
	data, err := json.Marshal(k.State())
	if err == nil {
		err = json.Unmarshal(data, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return RestoreKeys(r, pipeline, s)
}

// checkKeys holds a Keys to its invariants: every held key is in both heaps
// at its place, with its tracker's current deadlines, none of which the
// watermark has passed; and the heaps are heaps.
func checkKeys(t *testing.T, k *Keys) {
	t.Helper()
	if len(k.due.es) != len(k.byKey) || len(k.close.es) != len(k.byKey) {
		t.Fatalf("%d keys, heaps of %d and %d", len(k.byKey), len(k.due.es), len(k.close.es))
	}
	for _, h := range []*keyHeap{&k.due, &k.close} {
		for i, e := range h.es {
			if e.pos[h.which] != i || k.byKey[e.key] != e || (i > 0 && h.less(i, (i-1)/2)) {
				t.Fatalf("heap %d: %q at %d (thinks %d) is out of place", h.which, e.key, i, e.pos[h.which])
			}
		}
	}
	for _, e := range k.due.es {
		at, ok := e.t.NextDeadline()
		if c, _ := e.t.NextClose(); !ok || at != e.at[0] || c != e.at[1] || at < k.w {
			t.Fatalf("%q: deadlines %v in the heaps, %d %d (%v) in the tracker, watermark %d", e.key, e.at, at, c, ok, k.w)
		}
	}
}

// keysStreamed feeds arrival to a Keys in random batches of several keys,
// raising the watermark at random but never above an event not yet added,
// continuing as new at random points, and finishes at the largest time.
// It returns the records and breaks in the order Keys gave them.
func keysStreamed(t *testing.T, rng *rand.Rand, r *Rules, arrival []Keyed, track bool) ([]Record, []KeyBreak, Stats) {
	t.Helper()
	lowest := make([]int64, len(arrival)+1)
	lowest[len(arrival)] = 1 << 62
	for i := len(arrival) - 1; i >= 0; i-- {
		lowest[i] = min(lowest[i+1], arrival[i].Time)
	}
	k := NewKeys(r, "p")
	if track {
		k.TrackBreaks()
	}
	var (
		out    []Record
		breaks []KeyBreak
		late   int64
	)
	take := func(recs []Record, what string) {
		for i := 1; i < len(recs); i++ {
			if recs[i].Key < recs[i-1].Key {
				t.Fatalf("%s: %q after %q, not in key order", what, recs[i].Key, recs[i-1].Key)
			}
		}
		out = append(out, recs...)
		if rng.IntN(3) > 0 || what != "Advance" { // or later, after more Advances
			b := k.TakeBreaks()
			if !slices.IsSortedFunc(b, breakOrder) {
				t.Fatalf("breaks %v not in key order", b)
			}
			breaks = append(breaks, b...)
		}
	}
	w := NoWatermark
	for i := 0; i < len(arrival); {
		// One signal: a batch of events of several keys, a key's in one Add.
		var order []string
		byKey := map[string][]Event{}
		for ; i < len(arrival) && (len(order) == 0 || rng.IntN(12) > 0); i++ {
			if e := arrival[i]; byKey[e.Key] == nil {
				order = append(order, e.Key)
			}
			byKey[arrival[i].Key] = append(byKey[arrival[i].Key], arrival[i].Event)
		}
		for _, key := range order {
			if late := k.Add(key, byKey[key]...); late != nil {
				t.Fatalf("events %+v of %q are behind watermark %d", late, key, w)
			}
		}
		checkKeys(t, k)
		if rng.IntN(4) == 0 {
			take(nil, "continue-as-new") // breaks are not in the state
			k = roundTrip(t, k, r, "p")
			if track {
				k.TrackBreaks()
			}
			checkKeys(t, k)
		}
		if rng.IntN(2) == 0 && lowest[i] > w && i < len(arrival) {
			if w == NoWatermark {
				w = lowest[i] - 3*60*mnt
			}
			w += rng.Int64N(lowest[i]-w) + 1 // up to and including lowest[i]
			take(k.Advance(w), "Advance")
			if recs := k.Advance(w - rng.Int64N(2)); recs != nil || k.moved != 0 {
				t.Fatalf("Advance at or below the watermark moved %d keys", k.moved)
			}
			checkKeys(t, k)
			if rng.IntN(3) == 0 { // a late event, of a key held or not
				e := arrival[rng.IntN(len(arrival))]
				if rng.IntN(2) == 0 {
					e.Key += "-late"
				}
				e.Time = w - 1 - rng.Int64N(10*mnt)
				if got := k.Add(e.Key, e.Event); len(got) != 1 {
					t.Fatalf("event %+v below watermark %d: late %v", e, w, got)
				}
				late++
			}
		}
	}
	take(k.Finish(lastTime(arrival)), "Finish")
	st := k.Stats()
	if k.Len() != 0 || st.Late != late {
		t.Fatalf("%d keys held after Finish; %d late, %d added late", k.Len(), st.Late, late)
	}
	st.Late = 0
	return out, breaks, st
}

// TestKeysEqualsBatch is the shard's central property: over random keys,
// orders (out of order, duplicates), batchings across keys, watermark steps
// that never pass an event not yet added, and continue-as-new points, Keys
// yields exactly the batch engine's records (ids included) and counts; with
// breaks tracked, the breaks of per-key trackers fed each key's events.
func TestKeysEqualsBatch(t *testing.T) {
	profiles := []*Rules{
		rulesOf(t, Clickstream, nil),
		rulesOf(t, Clickstream, func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} }),
		rulesOf(t, Charging, nil),
		rulesOf(t, OpenClose, nil),
		rulesOf(t, Clickstream, func(r *Rules) { r.Gap = 5 * time.Minute; r.MaxDuration = 0 }),
	}
	ties, seeds := 0, uint64(150)
	if testing.Short() {
		seeds = 30
	}
	for pi, r := range profiles {
		for seed := range seeds {
			rng := rand.New(rand.NewPCG(seed, 100+uint64(pi)))
			events := manyKeys(rng, r)
			want, wantStats := Sessionize(r, "p", slices.Clone(events))
			arrival := slices.Clone(events)
			rng.Shuffle(len(arrival), func(i, j int) { arrival[i], arrival[j] = arrival[j], arrival[i] })
			track := r.Profile == Charging || rng.IntN(2) == 0
			got, breaks, stats := keysStreamed(t, rng, r, arrival, track)
			slices.SortStableFunc(got, func(a, b Record) int { return compareRecords(&a, &b) })
			if (len(got) > 0 || len(want) > 0) && !reflect.DeepEqual(got, want) {
				t.Fatalf("%s seed %d: Keys and batch differ\nkeys  %v\nbatch %v",
					r.Profile, seed, summarize(got), summarize(want))
			}
			if stats != wantStats {
				t.Fatalf("%s seed %d: stats %+v, batch %+v", r.Profile, seed, stats, wantStats)
			}
			slices.SortStableFunc(breaks, breakOrder)
			if wantBreaks := trackerBreaks(r, events, track); !slices.Equal(breaks, wantBreaks) {
				t.Fatalf("%s seed %d: breaks\n got %v\nwant %v", r.Profile, seed, breaks, wantBreaks)
			}
			for i := 1; i < len(want); i++ {
				if want[i].Key == want[i-1].Key && want[i].Start == want[i-1].Start {
					ties++
				}
			}
		}
	}
	if ties < 20 {
		t.Errorf("only %d tie-numbered sessions; the generator must make ties", ties)
	}
	t.Logf("%d tie-numbered sessions", ties)
}

func breakOrder(a, b KeyBreak) int { return cmp.Compare(a.Key, b.Key) }

func lastTime(events []Keyed) int64 {
	return slices.MaxFunc(events, func(a, b Keyed) int { return cmp.Compare(a.Time, b.Time) }).Time
}

// trackerBreaks are the breaks of one Tracker per key fed all its events,
// in key order.
func trackerBreaks(r *Rules, events []Keyed, track bool) []KeyBreak {
	if !track {
		return nil
	}
	byKey := map[string][]Event{}
	for _, e := range events {
		byKey[e.Key] = append(byKey[e.Key], e.Event)
	}
	var out []KeyBreak
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		tr := NewTracker(r, "p", key)
		tr.TrackBreaks()
		tr.Add(byKey[key]...)
		tr.Finish(lastTime(events))
		for _, b := range tr.TakeBreaks() {
			out = append(out, KeyBreak{Key: key, Break: b})
		}
	}
	return out
}

// TestKeysAdvance: Advance moves only the keys whose deadline the watermark
// passes, returns their records in key order (not deadline order), drops
// them, and leaves the rest waiting.
func TestKeysAdvance(t *testing.T) {
	r := rulesOf(t, Clickstream, nil)
	k := NewKeys(r, "web")
	const n = 1000
	name := func(i int) string { return fmt.Sprintf("k%04d", n-1-i) } // names sort against deadlines
	for i := range n {
		k.Add(name(i), Event{Time: t0 + int64(i)*sec, Seq: 1, Page: "home"})
	}
	if at, key, ok := k.NextDeadline(); !ok || at != t0 || key != name(0) {
		t.Fatalf("next deadline %d %q %v, want the first event's", at-t0, key, ok)
	}
	if recs := k.Advance(t0 + n*sec); recs != nil || k.moved != n || k.Len() != n {
		t.Fatalf("applying every event: %d records, %d moved, %d held", len(recs), k.moved, k.Len())
	}
	held := n
	for _, tc := range []struct {
		name string
		w    int64
		keys []string // closed, in the order returned: as many moved
	}{
		{"at the first deadline: nothing", t0 + 30*mnt, nil},
		{"past four deadlines", t0 + 30*mnt + 3*sec + 1, []string{name(3), name(2), name(1), name(0)}},
		{"not raised", t0 + 30*mnt, nil},
		{"one more", t0 + 30*mnt + 4*sec + 1, []string{name(4)}},
	} {
		var keys []string
		for _, rec := range k.Advance(tc.w) {
			if keys = append(keys, rec.Key); rec.CloseReason != ReasonInactivity || rec.Pipeline != "web" {
				t.Errorf("%s: %+v", tc.name, rec)
			}
		}
		if held -= len(tc.keys); k.moved != len(tc.keys) || !slices.Equal(keys, tc.keys) || k.Len() != held {
			t.Errorf("%s: moved %d closed %v held %d, want %v %d", tc.name, k.moved, keys, k.Len(), tc.keys, held)
		}
	}
	if _, ok := k.Tracker(name(0)); ok {
		t.Error("a closed key is still held")
	}
	if at, key, _ := k.NextDeadline(); at != t0+30*mnt+5*sec || key != name(5) {
		t.Errorf("next deadline %d %q", at-t0, key)
	}
	checkKeys(t, k)
}

// TestKeysNextDeadlineTies: equal deadlines resolve by key, for
// NextDeadline and NextClose alike, and an earlier event of another key
// takes over.
func TestKeysNextDeadlineTies(t *testing.T) {
	k := NewKeys(rulesOf(t, Clickstream, nil), "")
	if _, _, ok := k.NextDeadline(); ok {
		t.Fatal("an empty Keys has a deadline")
	} else if _, _, ok := k.NextClose(); ok {
		t.Fatal("an empty Keys has a close")
	}
	for _, key := range []string{"b", "c", "a", "d"} {
		k.Add(key, Event{Time: t0 + 10*mnt, Seq: 1})
	}
	for _, tc := range []struct {
		name, add       string
		at              int64
		deadline, close string
		closeTime       int64
	}{
		{"all equal", "", t0 + 10*mnt, "a", "a", t0 + 40*mnt},
		{"an earlier event of c", "c", t0 + 5*mnt, "c", "a", t0 + 40*mnt},
		{"a later event of a", "a", t0 + 20*mnt, "c", "b", t0 + 40*mnt},
	} {
		if tc.add != "" {
			k.Add(tc.add, Event{Time: tc.at, Seq: 2})
		}
		at, key, _ := k.NextDeadline()
		c, ckey, _ := k.NextClose()
		if key != tc.deadline || c != tc.closeTime || ckey != tc.close {
			t.Errorf("%s: next deadline %d %q, close %d %q; want %q, %d %q", tc.name, at-t0, key, c-t0, ckey,
				tc.deadline, tc.closeTime-t0, tc.close)
		}
	}
	checkKeys(t, k)
}

// TestKeysLateIsShardWide: the watermark is the shard's. A key Advance did
// not move, and a key new to the shard, take an event below it as late, as
// one tracker that saw every watermark would.
func TestKeysLateIsShardWide(t *testing.T) {
	k := NewKeys(rulesOf(t, Clickstream, nil), "")
	k.Add("x", Event{Time: t0, Seq: 1})
	k.Advance(t0 + 1)
	k.Advance(t0 + 10*mnt) // x's deadline is 30m: not moved
	if k.moved != 0 {
		t.Fatalf("moved %d keys", k.moved)
	}
	for i, tc := range []struct {
		key  string
		at   int64
		late bool
	}{{"x", t0 + 5*mnt, true}, {"z", t0 + 9*mnt, true}, {"x", t0 + 10*mnt, false}, {"y", t0 + 10*mnt, false}} {
		late := k.Add(tc.key, Event{Time: tc.at, Seq: int64(i + 2)})
		if (late != nil) != tc.late {
			t.Errorf("%s at %v: late %v, want %v", tc.key, time.Duration(tc.at-t0)*time.Millisecond, late, tc.late)
		}
	}
	if k.Len() != 2 || k.Stats().Late != 2 {
		t.Errorf("%d keys held, stats %+v; want x and y, 2 late", k.Len(), k.Stats())
	}
	if tr, _ := k.Tracker("x"); tr.Watermark() != t0+10*mnt {
		t.Errorf("x's tracker at watermark %d, the shard's is 10m", tr.Watermark()-t0)
	}
	checkKeys(t, k)
	k = roundTrip(t, k, rulesOf(t, Clickstream, nil), "")
	if k.Watermark() != t0+10*mnt {
		t.Errorf("restored at watermark %d", k.Watermark()-t0)
	}
	if k.Add("x", Event{Time: t0 + 9*mnt, Seq: 9}) == nil || k.Add("w", Event{Time: t0 + 9*mnt, Seq: 9}) == nil {
		t.Error("a restored Keys takes an event below its watermark")
	}
	checkKeys(t, k)
}

// TestKeysDrop: a key is dropped once it has nothing open and nothing
// buffered: closed by an end marker, by inactivity, or with only events
// that open no session; a later event makes it anew, with the batch's id.
func TestKeysDrop(t *testing.T) {
	r := rulesOf(t, Clickstream, func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} })
	k := NewKeys(r, "")
	k.Add("m", Event{Time: t0, Seq: 1, Page: "logout", Flags: FlagEnd})
	k.Add("g", Event{Time: t0, Seq: 1, Page: "home"})
	recs := k.Advance(t0 + 1)
	if len(recs) != 1 || recs[0].SessionID != SessionID("m", t0, 0) || k.Len() != 1 {
		t.Fatalf("end marker: %v, %d held", summarize(recs), k.Len())
	}
	if _, ok := k.Tracker("m"); ok {
		t.Error("m is held after its session closed")
	}
	if recs := k.Advance(t0 + 30*mnt + 1); len(recs) != 1 || recs[0].Key != "g" || k.Len() != 0 {
		t.Fatalf("inactivity: %v, %d held", summarize(recs), k.Len())
	}
	k.Add("m", Event{Time: t0 + 31*mnt, Seq: 2, Page: "home"})
	if tr, ok := k.Tracker("m"); !ok || tr.Pending() != 1 {
		t.Fatal("m is not held again")
	}
	if recs := k.Finish(t0 + 31*mnt); len(recs) != 1 || recs[0].SessionID != SessionID("m", t0+31*mnt, 0) {
		t.Fatalf("reopened: %v", recs)
	}

	c := NewKeys(rulesOf(t, Charging, nil), "")
	c.Add("idle", Event{Time: t0, Seq: 1}, Event{Time: t0 + mnt, Seq: 2}) // status 0: opens nothing
	if c.Advance(t0+2*mnt) != nil || c.Len() != 0 || c.Stats().Ignored != 2 {
		t.Errorf("idle reports: %d held, stats %+v", c.Len(), c.Stats())
	}
}

// TestKeysBreaks: breaks come with their keys, in key order, each key's in
// the order they began, including those of a session that closed and was
// dropped in the same Advance; TrackBreaks reaches trackers already made.
func TestKeysBreaks(t *testing.T) {
	k := NewKeys(rulesOf(t, Charging, nil), "")
	for _, key := range []string{"b", "a"} {
		k.Add(key, Event{Time: t0, Flags: FlagActive}, Event{Time: t0 + mnt}, Event{Time: t0 + 2*mnt, Flags: FlagActive},
			Event{Time: t0 + 3*mnt})
	}
	k.TrackBreaks()
	k.Add("c", Event{Time: t0 - 10*mnt, Flags: FlagActive}, Event{Time: t0 - 9*mnt})
	recs := k.Advance(t0 + 3*mnt + 1) // every break is applied; c's exceeded its 5m
	if len(recs) != 1 || recs[0].Key != "c" || recs[0].CloseReason != ReasonBreak || k.Len() != 2 {
		t.Fatalf("records %v, %d held", summarize(recs), k.Len())
	}
	a, b, c := SessionID("a", t0, 0), SessionID("b", t0, 0), SessionID("c", t0-10*mnt, 0)
	want := []KeyBreak{{"a", Break{a, t0 + mnt}}, {"a", Break{a, t0 + 3*mnt}},
		{"b", Break{b, t0 + mnt}}, {"b", Break{b, t0 + 3*mnt}}, {"c", Break{c, t0 - 9*mnt}}}
	if got := k.TakeBreaks(); !slices.Equal(got, want) {
		t.Errorf("breaks\n got %v\nwant %v", got, want)
	}
	if got := k.TakeBreaks(); got != nil {
		t.Errorf("breaks taken twice: %v", got)
	}
	// Breaks of two Advances, taken at once: still in key order.
	k.Add("b", Event{Time: t0 + 4*mnt, Flags: FlagActive}, Event{Time: t0 + 5*mnt})
	k.Advance(t0 + 5*mnt + 1)
	k.Add("a", Event{Time: t0 + 6*mnt, Flags: FlagActive}, Event{Time: t0 + 7*mnt})
	k.Advance(t0 + 7*mnt + 1)
	want = []KeyBreak{{"a", Break{a, t0 + 7*mnt}}, {"b", Break{b, t0 + 5*mnt}}}
	if got := k.TakeBreaks(); !slices.Equal(got, want) {
		t.Errorf("breaks of two Advances\n got %v\nwant %v", got, want)
	}
}

// TestKeysStateDeterministic: the state is in key order and the same bytes
// whatever order the keys were added in and whichever keys Advance moved.
func TestKeysStateDeterministic(t *testing.T) {
	r := rulesOf(t, Clickstream, nil)
	events := manyKeys(rand.New(rand.NewPCG(1, 2)), r)
	build := func(order []Keyed, steps []int64) *Keys {
		k := NewKeys(r, "")
		for _, e := range order {
			k.Add(e.Key, e.Event)
		}
		for _, w := range steps {
			k.Advance(w)
		}
		return k
	}
	reversed := slices.Clone(events)
	slices.Reverse(reversed)
	at := lastTime(events) - 40*mnt
	one := build(events, []int64{at})
	two := build(reversed, []int64{at - 50*mnt, at - 20*mnt, at})
	a, _ := json.Marshal(one.State())
	b, _ := json.Marshal(two.State())
	if !bytes.Equal(a, b) {
		t.Fatalf("states differ:\n%s\n%s", a, b)
	}
	if s := one.State(); !slices.IsSortedFunc(s.Keys, func(x, y KeyState) int { return cmp.Compare(x.Key, y.Key) }) ||
		len(s.Keys) != one.Len() {
		t.Errorf("state keys not in key order, or not all %d of them", one.Len())
	}
}

// TestKeyStateCoversTrackerState: KeyState copies every TrackerState field
// but the two the shard holds once (Watermark, Stats). A field added to
// TrackerState must be carried by KeyState too, or continue-as-new loses it.
func TestKeyStateCoversTrackerState(t *testing.T) {
	fields := func(t reflect.Type, skip ...string) (names []string) {
		for i := range t.NumField() {
			if !slices.Contains(skip, t.Field(i).Name) {
				names = append(names, t.Field(i).Name)
			}
		}
		return names
	}
	tracker, key := fields(reflect.TypeFor[TrackerState](), "Watermark", "Stats"), fields(reflect.TypeFor[KeyState](), "Key")
	if !slices.Equal(tracker, key) {
		t.Errorf("TrackerState has %v, KeyState %v: update keys.go", tracker, key)
	}
}

// BenchmarkKeys is a shard with 20,000 open clickstream sessions: each op
// adds an event of one key (its session goes on, or closes at its maximum
// duration and another opens) and moves the watermark past one key's
// deadline. It reports the time in Advance alone, and the state's JSON
// bytes per open key (three events a session, with identities).
func BenchmarkKeys(b *testing.B) {
	r, _ := Defaults(Clickstream)
	const n = 20_000
	step := r.Gap.Milliseconds() / n // a key's events are a gap apart
	pages := []string{"home", "search", "product", "cart", "checkout"}
	k := NewKeys(&r, "web")
	ev := func(j int) Event {
		return Event{Time: t0 + int64(j)*step, Seq: int64(j + 1), ID: uint64(j)*0x9e3779b97f4a7c15 + 1, Page: pages[j%len(pages)]}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%05d", i)
	}
	j := 0
	for ; j < 3*n; j++ { // three events a key: a session's ids and pages
		k.Add(keys[j%n], ev(j))
	}
	k.Advance(ev(j).Time)
	if k.Len() != n {
		b.Fatalf("%d keys", k.Len())
	}
	data, _ := json.Marshal(k.State())
	stateBytes := float64(len(data)) / float64(k.Len())
	closed, advancing := 0, time.Duration(0)
	b.ResetTimer()
	for b.Loop() {
		k.Add(keys[j%n], ev(j))
		j++
		start := time.Now()
		closed += len(k.Advance(ev(j).Time))
		advancing += time.Since(start)
	}
	if k.Len() < n-1 {
		b.Fatalf("%d keys open", k.Len())
	}
	b.ReportMetric(float64(closed)/float64(b.N), "closed/op")
	b.ReportMetric(float64(advancing.Nanoseconds())/float64(b.N), "ns/advance")
	b.ReportMetric(stateBytes, "state-bytes/key")
}
