package workflows

import (
	"testing"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
)

func logoutPipeline(t *testing.T) Pipeline {
	return pipeline(t, session.Clickstream, func(p *Pipeline) {
		p.Rules.EndMarker = session.Marker{Field: "page_name", Value: "logout"}
	})
}

func logoutAt(off, seq int64) session.Event {
	return session.Event{Time: t0 + off, Seq: seq, Page: "logout", Flags: session.FlagEnd}
}

// TestTieNumberedSessionIDs: a logout and a click in the same millisecond
// make two sessions; the second, carried across continue-as-new, closes
// with the "-1" id — unless the run was recorded before tie numbering
// (GetVersion answers DefaultVersion), which keeps the id it had.
func TestTieNumberedSessionIDs(t *testing.T) {
	cases := []struct {
		name    string
		version workflow.Version // what GetVersion answers; 0: not mocked (a new run)
		want    string
	}{
		{"a new run numbers the tie", 0, "u/1704082500000-1"},
		{"a run recorded before numbering keeps the plain id", workflow.DefaultVersion, "u/1704082500000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.version != 0 {
				h.env.OnGetVersion(changeTieIDs, workflow.DefaultVersion, 1).Return(c.version)
			}
			h.at(time.Second, func() { h.signal(t0-10*mnt, logoutAt(0, 1), ev(0, 2), ev(0, 3)) })
			h.at(time.Minute, func() { h.clockW = t0 + 1 })
			_, err := h.run(SessionInput{Pipeline: logoutPipeline(t), Key: "u"})
			next := continued(t, err)
			if len(h.sunk) != 1 || h.sunk[0].SessionID != "u/1704082500000" || h.sunk[0].CloseReason != session.ReasonEndMarker {
				t.Fatalf("first run's records %+v, want the logout's session", h.sunk)
			}
			if next.State == nil || next.State.Open == nil || next.State.Open.Start != t0 || next.State.Open.Count != 2 {
				t.Fatalf("continued with %+v, want the open successor", next.State)
			}

			h2 := newHarness(t)
			if c.version != 0 {
				h2.env.OnGetVersion(changeTieIDs, workflow.DefaultVersion, 1).Return(c.version)
			}
			h2.clockW = t0 + 31*mnt
			rec, err := h2.run(next)
			if err != nil {
				t.Fatal(err)
			}
			if rec.SessionID != c.want || rec.EventCount != 2 || rec.CloseReason != session.ReasonInactivity {
				t.Errorf("successor %+v, want id %q", rec, c.want)
			}
			if len(h2.notes) != 1 || h2.notes[0].IdempotencyKey() != c.want+":"+activities.KindSessionClosed {
				t.Errorf("successor's notifications %+v", h2.notes)
			}
		})
	}
}

// TestSuccessorAfterTheClose: the logout's session closed once W passed the
// logout, so an event of that millisecond arriving afterwards (here even
// with a sender's stale watermark) is late — to the late output, never a
// second session with the closed one's id — while an event a millisecond
// later starts the successor with the plain id. This is why a run may
// complete right after its close: W is above every event it applied.
func TestSuccessorAfterTheClose(t *testing.T) {
	h := newHarnessNotifyDelay(t, 10*time.Second)
	h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1), logoutAt(0, 2)) })
	h.at(time.Minute, func() { h.clockW = t0 + 1 })
	// While the run waits for the close notification.
	h.at(time.Minute+5*time.Second, func() { h.signal(t0-10*mnt, ev(0, 3), ev(1, 4)) })
	_, err := h.run(SessionInput{Pipeline: logoutPipeline(t), Key: "u"})
	next := continued(t, err)
	if len(h.sunk) != 1 || h.sunk[0].SessionID != "u/1704082500000" || h.sunk[0].EventCount != 2 {
		t.Fatalf("records %+v", h.sunk)
	}
	if len(h.late) != 1 || h.late[0].Event.Seq != 3 || h.late[0].Watermark != t0+1 {
		t.Errorf("late output %+v, want the event in the closed session's millisecond", h.late)
	}
	if next.State == nil || len(next.State.Pending) != 1 || next.State.Pending[0].Time != t0+1 {
		t.Fatalf("continued with %+v, want the event a millisecond later", next.State)
	}
	h2 := newHarness(t)
	h2.clockW = t0 + 40*mnt
	rec, err := h2.run(next)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SessionID != "u/1704082500001" {
		t.Errorf("successor %+v", rec)
	}
}
