package session

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// TestSessionIDsAfterEndMarker pins the id of every session of the same-
// millisecond cases: a later session of a key that starts in the millisecond
// of the one before (only an end marker can close a session at the instant
// of the next event) gets "-n".
func TestSessionIDsAfterEndMarker(t *testing.T) {
	logout := func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} }
	cases := []struct {
		name  string
		edit  func(*Rules)
		lines []string
		want  []string
	}{
		{
			name: "clicks in the logout's millisecond, then a later logout",
			edit: logout,
			lines: []string{click("u", 0, "logout"), click("u", 0, "home"), click("u", 0, "cart"),
				click("u", 5*mnt, "logout")},
			want: []string{"u/1704082500000", "u/1704082500000-1"},
		},
		{
			name: "three sessions in one millisecond",
			edit: logout,
			lines: []string{click("u", 0, "home"), click("u", 0, "logout"), click("u", 0, "logout"),
				click("u", 0, "home")},
			want: []string{"u/1704082500000", "u/1704082500000-1", "u/1704082500000-2"},
		},
		{
			name:  "a successor one millisecond later keeps the plain id",
			edit:  logout,
			lines: []string{click("u", 0, "home"), click("u", 0, "logout"), click("u", 1, "home")},
			want:  []string{"u/1704082500000", "u/1704082500001"},
		},
		{
			name: "numbering starts again in a new millisecond",
			edit: logout,
			lines: []string{click("u", 0, "logout"), click("u", 0, "home"), click("u", mnt, "logout"),
				click("u", 2*mnt, "logout"), click("u", 2*mnt, "home")},
			want: []string{"u/1704082500000", "u/1704082500000-1", "u/1704082620000", "u/1704082620000-1"},
		},
		{
			name:  "other keys in the same millisecond are not ties",
			edit:  logout,
			lines: []string{click("u", 0, "logout"), click("v", 0, "home"), click("u", 0, "home")},
			want:  []string{"u/1704082500000", "u/1704082500000-1", "v/1704082500000"},
		},
		{
			name:  "a redelivered end marker is a duplicate, not a session",
			edit:  logout,
			lines: []string{clickID("u", 0, "logout", "e1"), clickID("u", 0, "logout", "e1"), clickID("u", 0, "home", "e2")},
			want:  []string{"u/1704082500000", "u/1704082500000-1"},
		},
		{
			name:  "without an end marker a same-millisecond event joins",
			lines: []string{click("u", 0, "logout"), click("u", 0, "home")},
			want:  []string{"u/1704082500000"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rulesOf(t, Clickstream, c.edit)
			got, _ := runLines(t, r, c.lines...)
			var ids []string
			for _, rec := range got {
				ids = append(ids, rec.SessionID)
			}
			if !reflect.DeepEqual(ids, c.want) {
				t.Fatalf("batch ids %q, want %q", ids, c.want)
			}
			checkIDs(t, got)
			// The streaming engine, one event per batch, continue-as-new
			// after each, gives the same ids.
			keyed := decodeAll(t, r, c.lines)
			if st := streamEach(r, keyed); !reflect.DeepEqual(st, got) {
				t.Errorf("streaming %v\nbatch     %v", st, got)
			}
		})
	}
}

// TestOpenCloseTies: the openclose profile's Close and Open in one
// millisecond make two sessions with distinct ids.
func TestOpenCloseTies(t *testing.T) {
	r := rulesOf(t, OpenClose, nil)
	ev := func(off int64, action string) string {
		return fmt.Sprintf(`{"key":"door","time":%d,"action":%q}`, t0+off, action)
	}
	got, _ := runLines(t, r, ev(0, "Open"), ev(0, "Close"), ev(0, "Open"), ev(mnt, "Close"))
	if len(got) != 2 || got[0].SessionID != "door/1704082500000" || got[1].SessionID != "door/1704082500000-1" {
		t.Fatalf("sessions %+v", got)
	}
}

// TestTieSurvivesContinueAsNew: the last closed session's start travels in
// the tracker state while an event may still tie with it, and only then.
func TestTieSurvivesContinueAsNew(t *testing.T) {
	r := rulesOf(t, Clickstream, func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} })
	tr := NewTracker(r, "", "u")
	tr.Add(Event{Time: t0, Seq: 1, Flags: FlagEnd, Page: "logout"})
	// Applied at W = t0+1: closed, and no event at t0 can come any more.
	if recs := tr.Advance(t0 + 1); len(recs) != 1 {
		t.Fatalf("closed %v", recs)
	}
	if st := tr.State(); st.Last != nil {
		t.Errorf("state keeps the last start %+v below the watermark", st.Last)
	}
	// Finish applies events at the watermark's millisecond: a tie can
	// follow, so the state must carry the start.
	tr = NewTracker(r, "", "u")
	tr.Add(Event{Time: t0, Seq: 1, Flags: FlagEnd, Page: "logout"}, Event{Time: t0, Seq: 2, Page: "home"})
	tr.Finish(t0)
	if st := tr.State(); st.Last == nil || *st.Last != (SessionStart{Start: t0, Tie: 1}) {
		t.Errorf("state's last start %+v, want %d tie 1", st.Last, t0)
	}
}

// TestGateTies: a gate that says no keeps the plain id (a workflow run
// recorded before ties were numbered), and it is asked only at a tie.
func TestGateTies(t *testing.T) {
	r := rulesOf(t, Clickstream, func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} })
	for _, allow := range []bool{false, true} {
		asked := 0
		tr := NewTracker(r, "", "u")
		tr.GateTies(func() bool { asked++; return allow })
		tr.Add(Event{Time: t0, Seq: 1, Page: "home"}, Event{Time: t0 + 1, Seq: 2, Page: "logout", Flags: FlagEnd},
			Event{Time: t0 + 2, Seq: 3, Page: "home"})
		tr.Advance(t0 + 2) // two sessions, no tie
		tr.Add(Event{Time: t0 + 2, Seq: 4, Page: "logout", Flags: FlagEnd}, Event{Time: t0 + 2, Seq: 5, Page: "home"})
		recs := tr.Finish(t0 + 2)
		want := "u/1704082500002"
		if allow {
			want += "-1"
		}
		if len(recs) != 2 || recs[1].SessionID != want || asked != 1 {
			t.Errorf("allow=%v: ids %v, gate asked %d times; want %q after one question", allow, recs, asked, want)
		}
	}
}

// decodeAll decodes lines as a batch run reads them: Seq is the line number.
func decodeAll(t *testing.T, r *Rules, lines []string) []Keyed {
	t.Helper()
	d := NewDecoder(r)
	var out []Keyed
	for i, l := range lines {
		key, e, err := d.Decode([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		e.Seq = int64(i + 1)
		out = append(out, Keyed{Key: string(key), Event: e})
	}
	return out
}

// streamEach feeds each key's events to its tracker one at a time, raising
// the watermark to each event's time as it goes and restoring the tracker
// from its state after every event, then finishes at the largest time.
func streamEach(r *Rules, events []Keyed) []Record {
	trackers := map[string]*Tracker{}
	var keys []string
	maxTime := NoWatermark
	for _, e := range events {
		maxTime = max(maxTime, e.Time)
	}
	var out []Record
	for _, e := range events {
		tr := trackers[e.Key]
		if tr == nil {
			tr = NewTracker(r, "", e.Key)
			keys = append(keys, e.Key)
		}
		out = append(out, tr.Advance(e.Time)...)
		tr.Add(e.Event)
		trackers[e.Key] = restored(tr, r, e.Key)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, trackers[k].Finish(maxTime)...)
	}
	slices.SortStableFunc(out, func(a, b Record) int { return compareRecords(&a, &b) })
	return out
}
