package session

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// t0 is 2024-01-01T04:15:00Z, the start of seed 004's test data.
const t0 int64 = 1704082500000

const (
	sec = int64(1000)
	mnt = 60 * sec
)

// click renders a clickstream event at t0+offset.
func click(user string, offset int64, page string) string {
	return fmt.Sprintf(`{"uuid":%q,"event_timestamp":"%d","page_name":%q}`, user, t0+offset, page)
}

func clickID(user string, offset int64, page, id string) string {
	return fmt.Sprintf(`{"uuid":%q,"event_timestamp":%d,"page_name":%q,"event_id":%q}`, user, t0+offset, page, id)
}

// charge renders a charging telemetry event at t0+offset.
func charge(uin string, offset int64, status int, soc float64) string {
	return fmt.Sprintf(`{"UIN":%q,"time":%d,"Charge_status":%d,"Soc_percentage":%g}`, uin, t0+offset, status, soc)
}

func rulesOf(t *testing.T, p Profile, edit func(*Rules)) *Rules {
	t.Helper()
	r, err := Defaults(p)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&r)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return &r
}

func runLines(t *testing.T, r *Rules, lines ...string) ([]Record, BatchStats) {
	t.Helper()
	b := Batch{Rules: r}
	recs, stats, err := b.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return recs, stats
}

// want is the part of a record a scenario pins, times as offsets from t0.
type want struct {
	key        string
	start, end int64
	count      int64
	reason     Reason
}

func (w want) String() string {
	return fmt.Sprintf("%s [%s..%s] n=%d %s", w.key, time.Duration(w.start)*time.Millisecond,
		time.Duration(w.end)*time.Millisecond, w.count, w.reason)
}

func summarize(recs []Record) []want {
	out := make([]want, len(recs))
	for i, r := range recs {
		out[i] = want{r.Key, r.Start - t0, r.End - t0, r.EventCount, r.CloseReason}
	}
	return out
}

func checkSessions(t *testing.T, got []Record, wants []want) {
	t.Helper()
	g := summarize(got)
	if fmt.Sprint(g) != fmt.Sprint(wants) {
		t.Errorf("sessions:\n got %v\nwant %v", g, wants)
	}
	for _, r := range got {
		if r.DurationMs != r.End-r.Start {
			t.Errorf("%s: duration_ms %d, want end-start %d", r.SessionID, r.DurationMs, r.End-r.Start)
		}
	}
	checkIDs(t, got)
}

// checkIDs holds records to the id contract: "<key>/<start>", with "-<n>"
// for the n-th later session of the key that starts in that millisecond,
// and no id twice.
func checkIDs(t *testing.T, got []Record) {
	t.Helper()
	seen := map[string]bool{}
	tie := map[string]int{} // "<key>/<start>" → sessions seen with it
	for _, r := range got {
		base := fmt.Sprintf("%s/%d", r.Key, r.Start)
		want := base
		if n := tie[base]; n > 0 {
			want = fmt.Sprintf("%s-%d", base, n)
		}
		tie[base]++
		if r.SessionID != want {
			t.Errorf("session_id %q, want %q", r.SessionID, want)
		}
		if seen[r.SessionID] {
			t.Errorf("session_id %q twice", r.SessionID)
		}
		seen[r.SessionID] = true
	}
}

// TestSeed004 pins the clickstream scenario of seed 004: a 35-minute gap
// splits a user's activity, and 3 hours of activity every 30 minutes split at
// the 2-hour mark into 90 + 60 minute sessions.
func TestSeed004(t *testing.T) {
	r := rulesOf(t, Clickstream, nil)
	lines := []string{
		click("user-001", 0, "home"), click("user-001", 5*mnt, "search"), click("user-001", 10*mnt, "cart"),
		click("user-001", 45*mnt, "home"), click("user-001", 50*mnt, "search"), click("user-001", 55*mnt, "cart"),
	}
	for i := int64(0); i <= 6; i++ {
		lines = append(lines, click("user-002", i*30*mnt, "page"))
	}
	got, _ := runLines(t, r, lines...)
	checkSessions(t, got, []want{
		{"user-001", 0, 10 * mnt, 3, ReasonInactivity},
		{"user-001", 45 * mnt, 55 * mnt, 3, ReasonInactivity}, // the input runs on to 180 min
		{"user-002", 0, 90 * mnt, 4, ReasonMaxDuration},
		{"user-002", 120 * mnt, 180 * mnt, 3, ReasonEndOfInput},
	})
	if d := got[2].DurationMs; d != 90*mnt {
		t.Errorf("first user-002 session lasts %v, want 90m", time.Duration(d)*time.Millisecond)
	}
	if d := got[3].DurationMs; d != 60*mnt {
		t.Errorf("second user-002 session lasts %v, want 60m", time.Duration(d)*time.Millisecond)
	}
	if p := got[0].PagesVisited; fmt.Sprint(p) != "[home search cart]" {
		t.Errorf("pages_visited %v", p)
	}
}

// TestSeed000Drone pins the drone sample of seed 000: the leading status-0
// reading opens nothing, and 10 minutes of charging is under the 30-minute
// minimum.
func TestSeed000Drone(t *testing.T) {
	r := rulesOf(t, Charging, nil)
	got, stats := runLines(t, r,
		`{"UIN":"52GD2997","Soc_percentage":82,"Charge_status":0,"time":1715227208337}`,
		`{"UIN":"52GD2997","Soc_percentage":82,"Charge_status":1,"time":1715227508337}`,
		`{"UIN":"52GD2997","Soc_percentage":83,"Charge_status":1,"time":1715227808337}`,
		`{"UIN":"52GD2997","Soc_percentage":84,"Charge_status":1,"time":1715228108337}`,
	)
	if len(got) != 1 {
		t.Fatalf("got %d sessions, want 1: %+v", len(got), got)
	}
	s := got[0]
	if s.Start != 1715227508337 || s.End != 1715228108337 || s.EventCount != 3 || s.CloseReason != ReasonEndOfInput {
		t.Errorf("session %+v", s)
	}
	if s.Status != StatusInvalid || s.SocStart != 82 || s.SocEnd != 84 || s.BreakCount != 0 {
		t.Errorf("attributes %+v", *s.ChargingAttrs)
	}
	if stats.Ignored != 1 {
		t.Errorf("ignored %d events, want the leading status-0 one", stats.Ignored)
	}
}

func TestCharging(t *testing.T) {
	type chargeWant struct {
		want
		status           string
		breaks           int64
		breakMs          int64
		socStart, socEnd float64
	}
	cases := []struct {
		name  string
		edit  func(*Rules)
		lines []string
		want  []chargeWant
	}{
		{
			name: "break bridged within tolerance counts its telemetry",
			lines: []string{
				charge("d1", 0, 1, 50), charge("d1", 5*mnt, 1, 55), charge("d1", 10*mnt, 0, 56),
				charge("d1", 12*mnt, 0, 56), charge("d1", 14*mnt, 1, 57), charge("d1", 25*mnt, 1, 60),
				charge("d1", 40*mnt, 1, 70),
			},
			want: []chargeWant{{want{"d1", 0, 40 * mnt, 7, ReasonEndOfInput}, StatusValid, 1, 4 * mnt, 50, 70}},
		},
		{
			name: "break of exactly the tolerance is bridged",
			lines: []string{
				charge("d1", 0, 1, 10), charge("d1", 10*mnt, 1, 15), charge("d1", 20*mnt, 0, 20),
				charge("d1", 25*mnt, 1, 21),
			},
			want: []chargeWant{{want{"d1", 0, 25 * mnt, 4, ReasonEndOfInput}, StatusInvalid, 1, 5 * mnt, 10, 21}},
		},
		{
			name: "break one ms over the tolerance closes the session",
			lines: []string{
				charge("d1", 0, 1, 10), charge("d1", 10*mnt, 1, 15), charge("d1", 20*mnt, 0, 20),
				charge("d1", 25*mnt+1, 1, 21),
			},
			want: []chargeWant{
				{want{"d1", 0, 10 * mnt, 2, ReasonBreak}, StatusInvalid, 0, 0, 10, 15},
				{want{"d1", 25*mnt + 1, 25*mnt + 1, 1, ReasonEndOfInput}, StatusInvalid, 0, 0, 21, 21},
			},
		},
		{
			name: "a break still open at the end closes by the watermark when another key ran on",
			lines: []string{
				charge("d1", 0, 1, 10), charge("d1", 10*mnt, 1, 20), charge("d1", 20*mnt, 1, 30),
				charge("d1", 35*mnt, 1, 40), charge("d1", 40*mnt, 0, 40), charge("d2", 60*mnt, 1, 5),
			},
			want: []chargeWant{
				{want{"d1", 0, 35 * mnt, 4, ReasonBreak}, StatusValid, 0, 0, 10, 40},
				{want{"d2", 60 * mnt, 60 * mnt, 1, ReasonEndOfInput}, StatusInvalid, 0, 0, 5, 5},
			},
		},
		{
			name:  "exactly the minimum duration is valid",
			lines: []string{charge("d1", 0, 1, 1), charge("d1", 15*mnt, 1, 2), charge("d1", 30*mnt, 1, 3)},
			want:  []chargeWant{{want{"d1", 0, 30 * mnt, 3, ReasonEndOfInput}, StatusValid, 0, 0, 1, 3}},
		},
		{
			name: "status-0 telemetry outside a session is dropped",
			lines: []string{charge("d1", 0, 0, 1), charge("d1", 20*mnt, 1, 2), charge("d1", 50*mnt, 0, 2),
				charge("d1", 60*mnt, 0, 2)},
			want: []chargeWant{{want{"d1", 20 * mnt, 20 * mnt, 1, ReasonInactivity}, StatusInvalid, 0, 0, 2, 2}},
		},
		{
			name:  "15 minutes without telemetry close by inactivity",
			lines: []string{charge("d1", 0, 1, 1), charge("d1", 15*mnt+1, 1, 2)},
			want: []chargeWant{
				{want{"d1", 0, 0, 1, ReasonInactivity}, StatusInvalid, 0, 0, 1, 1},
				{want{"d1", 15*mnt + 1, 15*mnt + 1, 1, ReasonEndOfInput}, StatusInvalid, 0, 0, 2, 2},
			},
		},
		{
			name: "break and inactivity deadlines tie: break_exceeded wins",
			edit: func(r *Rules) { r.Gap = 5 * time.Minute },
			lines: []string{charge("d1", 0, 1, 1), charge("d1", 4*mnt, 1, 1), charge("d1", 8*mnt, 0, 1),
				charge("d1", 16*mnt, 1, 1)},
			want: []chargeWant{
				{want{"d1", 0, 4 * mnt, 2, ReasonBreak}, StatusInvalid, 0, 0, 1, 1},
				{want{"d1", 16 * mnt, 16 * mnt, 1, ReasonEndOfInput}, StatusInvalid, 0, 0, 1, 1},
			},
		},
		{
			name: "maximum duration of charging",
			edit: func(r *Rules) { r.MaxDuration = 20 * time.Minute },
			lines: []string{charge("d1", 0, 1, 1), charge("d1", 10*mnt, 1, 1), charge("d1", 20*mnt-1, 1, 1),
				charge("d1", 20*mnt, 1, 1)},
			want: []chargeWant{
				{want{"d1", 0, 20*mnt - 1, 3, ReasonMaxDuration}, StatusInvalid, 0, 0, 1, 1},
				{want{"d1", 20 * mnt, 20 * mnt, 1, ReasonEndOfInput}, StatusInvalid, 0, 0, 1, 1},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _ := runLines(t, rulesOf(t, Charging, c.edit), c.lines...)
			wants := make([]want, len(c.want))
			for i, w := range c.want {
				wants[i] = w.want
			}
			checkSessions(t, got, wants)
			for i := range min(len(got), len(c.want)) {
				g, w := got[i].ChargingAttrs, c.want[i]
				if g.Status != w.status || g.BreakCount != w.breaks || g.BreakMs != w.breakMs ||
					g.SocStart != w.socStart || g.SocEnd != w.socEnd {
					t.Errorf("session %d attributes %+v, want status %s breaks %d (%d ms) soc %g→%g",
						i, *g, w.status, w.breaks, w.breakMs, w.socStart, w.socEnd)
				}
			}
		})
	}
}

func TestClickstreamBoundaries(t *testing.T) {
	logout := func(r *Rules) { r.EndMarker = Marker{"page_name", "logout"} }
	cases := []struct {
		name  string
		edit  func(*Rules)
		lines []string
		want  []want
	}{
		{
			name:  "an event exactly at last+gap joins",
			lines: []string{click("u", 0, "a"), click("u", 30*mnt, "b")},
			want:  []want{{"u", 0, 30 * mnt, 2, ReasonEndOfInput}},
		},
		{
			name:  "one ms after last+gap splits",
			lines: []string{click("u", 0, "a"), click("u", 30*mnt+1, "b")},
			want:  []want{{"u", 0, 0, 1, ReasonInactivity}, {"u", 30*mnt + 1, 30*mnt + 1, 1, ReasonEndOfInput}},
		},
		{
			name: "an event one ms before start+max joins",
			lines: []string{click("u", 0, "a"), click("u", 30*mnt, "a"), click("u", 60*mnt, "a"),
				click("u", 90*mnt, "a"), click("u", 120*mnt-1, "a")},
			want: []want{{"u", 0, 120*mnt - 1, 5, ReasonEndOfInput}},
		},
		{
			name: "an event exactly at start+max starts a new session",
			lines: []string{click("u", 0, "a"), click("u", 30*mnt, "a"), click("u", 60*mnt, "a"),
				click("u", 90*mnt, "a"), click("u", 120*mnt, "a")},
			want: []want{{"u", 0, 90 * mnt, 4, ReasonMaxDuration}, {"u", 120 * mnt, 120 * mnt, 1, ReasonEndOfInput}},
		},
		{
			name: "inactivity and max deadlines tie: max_duration wins",
			lines: []string{click("u", 0, "a"), click("u", 30*mnt, "a"), click("u", 60*mnt, "a"),
				click("u", 90*mnt-1, "a"), click("u", 150*mnt, "a")},
			want: []want{{"u", 0, 90*mnt - 1, 4, ReasonMaxDuration}, {"u", 150 * mnt, 150 * mnt, 1, ReasonEndOfInput}},
		},
		{
			name:  "simultaneous events keep input order",
			lines: []string{click("u", 5*mnt, "b"), click("u", 0, "x"), click("u", 5*mnt, "a")},
			want:  []want{{"u", 0, 5 * mnt, 3, ReasonEndOfInput}},
		},
		{
			name: "duplicates by event id count once, the earliest wins",
			lines: []string{clickID("u", 0, "a", "e1"), clickID("u", 0, "a", "e1"), clickID("u", 2*mnt, "b", "e2"),
				clickID("u", 1*mnt, "b", "e2"), clickID("u", 3*mnt, "c", "e3")},
			want: []want{{"u", 0, 3 * mnt, 3, ReasonEndOfInput}},
		},
		{
			name: "an end marker joins and closes its session",
			edit: logout,
			lines: []string{click("u", 0, "home"), click("u", 5*mnt, "logout"), click("u", 6*mnt, "home"),
				click("v", 7*mnt, "logout")},
			want: []want{{"u", 0, 5 * mnt, 2, ReasonEndMarker}, {"u", 6 * mnt, 6 * mnt, 1, ReasonEndOfInput},
				{"v", 7 * mnt, 7 * mnt, 1, ReasonEndMarker}},
		},
		{
			name: "a redelivered end marker does not open a session",
			edit: logout,
			lines: []string{clickID("u", 0, "home", "a"), clickID("u", 5*mnt, "logout", "b"),
				clickID("u", 5*mnt, "logout", "b")},
			want: []want{{"u", 0, 5 * mnt, 2, ReasonEndMarker}},
		},
		{
			name:  "an end marker beyond the gap closes the old session by inactivity first",
			edit:  logout,
			lines: []string{click("u", 0, "home"), click("u", 40*mnt, "logout")},
			want:  []want{{"u", 0, 0, 1, ReasonInactivity}, {"u", 40 * mnt, 40 * mnt, 1, ReasonEndMarker}},
		},
		{
			// After 90s the max deadline (179.999s) is below the inactivity one (180s).
			name:  "gap and max are configurable",
			edit:  func(r *Rules) { r.Gap = 90 * time.Second; r.MaxDuration = 3 * time.Minute },
			lines: []string{click("u", 0, "a"), click("u", 90*sec, "a"), click("u", 181*sec, "a"), click("u", 200*sec, "a")},
			want:  []want{{"u", 0, 90 * sec, 2, ReasonMaxDuration}, {"u", 181 * sec, 200 * sec, 2, ReasonEndOfInput}},
		},
		{
			name:  "no maximum when max-duration is 0",
			edit:  func(r *Rules) { r.MaxDuration = 0 },
			lines: []string{click("u", 0, "a"), click("u", 30*mnt, "a"), click("u", 60*mnt, "a"), click("u", 90*mnt, "a"), click("u", 120*mnt, "a"), click("u", 150*mnt, "a")},
			want:  []want{{"u", 0, 150 * mnt, 6, ReasonEndOfInput}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _ := runLines(t, rulesOf(t, Clickstream, c.edit), c.lines...)
			checkSessions(t, got, c.want)
		})
	}
	t.Run("pages of simultaneous events in input order", func(t *testing.T) {
		got, _ := runLines(t, rulesOf(t, Clickstream, nil), click("u", 5*mnt, "b"), click("u", 0, "x"), click("u", 5*mnt, "a"))
		if p := fmt.Sprint(got[0].PagesVisited); p != "[x b a]" {
			t.Errorf("pages_visited %s, want [x b a]", p)
		}
	})
}

func TestOpenClose(t *testing.T) {
	ev := func(key string, off int64, action string) string {
		return fmt.Sprintf(`{"key":%q,"time":"%s","action":%q}`, key,
			time.UnixMilli(t0+off).UTC().Format("2006-01-02T15:04:05.000-0700"), action)
	}
	got, stats := runLines(t, rulesOf(t, OpenClose, nil),
		ev("door", 0, "Open"), ev("door", 10*mnt, "Move"), ev("door", 20*mnt, "Close"),
		ev("door", 30*mnt, "Move"), ev("door", 35*mnt, "Close"), ev("door", 40*mnt, "Open"),
	)
	checkSessions(t, got, []want{
		{"door", 0, 20 * mnt, 3, ReasonEndMarker},
		{"door", 40 * mnt, 40 * mnt, 1, ReasonEndOfInput},
	})
	if stats.Ignored != 2 {
		t.Errorf("ignored %d events outside sessions, want 2", stats.Ignored)
	}
}

func TestRulesValidate(t *testing.T) {
	cases := []struct {
		edit func(*Rules)
		want string
	}{
		{func(r *Rules) { r.Gap = 0 }, "--gap must be at least 1ms"},
		{func(r *Rules) { r.MaxDuration = -time.Second }, "--max-duration"},
		{func(r *Rules) { r.KeyField = "" }, "--key-field must not be empty"},
		{func(r *Rules) { r.Profile = "sessions" }, `unknown profile "sessions"`},
		{func(r *Rules) { r.ExpiryWarning = 3 * time.Hour }, "--expiry-warning"},
		{func(r *Rules) { r.TimeUnit = time.Minute }, "time unit"},
	}
	for _, c := range cases {
		r, _ := Defaults(Clickstream)
		c.edit(&r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, c.want)
		}
	}
	for _, p := range Profiles {
		r, _ := Defaults(p)
		if err := r.Validate(); err != nil {
			t.Errorf("defaults of %s: %v", p, err)
		}
	}
	if _, err := ParseMarker("logout"); err == nil {
		t.Error("ParseMarker(logout) accepted a marker without =")
	}
}
