package workflows

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
)

// TestHandOffInOneLocalActivity: a version-3 run closes with one local
// activity for the record and its notice, and falls back to the task
// queue's activities for what that one could not do, the notice only
// after the record.
func TestHandOffInOneLocalActivity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handOff func(HandOffInput) (HandOffResult, error)
		paths   []string
		notes   int
	}{
		{"both in the task", nil, []string{"hand-off"}, 1},
		{"delivery fails", func(HandOffInput) (HandOffResult, error) {
			return HandOffResult{}, errors.New("sink unreachable")
		}, []string{"hand-off", "hand-off", "hand-off", "deliver", "notify"}, 1},
		{"notice fails, retried", func(HandOffInput) (HandOffResult, error) {
			return HandOffResult{NoticeError: "503"}, nil
		}, []string{"hand-off", "notify"}, 1},
		{"notice refused", func(HandOffInput) (HandOffResult, error) {
			return HandOffResult{NoticeError: "400", NoticeFinal: true}, nil
		}, []string{"hand-off"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.handOff = tc.handOff
			h.at(time.Second, func() { h.signal(t0-10*mnt, ev(0, 1)) })
			h.at(2*time.Second, func() { h.signal(t0 + 40*mnt) })
			rec, err := h.run(SessionInput{Pipeline: pipeline(t, session.Clickstream, nil), Key: "u1"})
			if err != nil {
				t.Fatal(err)
			}
			if len(h.sunk) == 0 || h.sunk[len(h.sunk)-1].SessionID != rec.SessionID {
				t.Errorf("sink got %+v, want the record %s", h.sunk, rec.SessionID)
			}
			if !slices.Equal(h.paths, tc.paths) {
				t.Errorf("activities %v, want %v", h.paths, tc.paths)
			}
			if len(h.notes) != tc.notes {
				t.Errorf("%d notices delivered, want %d", len(h.notes), tc.notes)
			}
		})
	}
}

// fakeNotifier answers Notify with err.
type fakeNotifier struct {
	err  error
	sent int
}

func (f *fakeNotifier) Notify(context.Context, activities.Notification) error {
	f.sent++
	return f.err
}

// TestHandOffActivity: the activity delivers first and tells the notice's
// failure apart from the delivery's, a refusal from a retryable one.
func TestHandOffActivity(t *testing.T) {
	refused := temporal.NewNonRetryableApplicationError("400", activities.ErrTypeNotifyRejected, nil)
	for _, tc := range []struct {
		name      string
		deliver   error
		notify    error
		notice    bool
		want      HandOffResult
		wantErr   bool
		wantSends int
	}{
		{"record and notice", nil, nil, true, HandOffResult{}, false, 1},
		{"record only", nil, nil, false, HandOffResult{}, false, 0},
		{"delivery fails: no notice", errors.New("unavailable"), nil, true, HandOffResult{}, true, 0},
		{"notice fails", nil, errors.New("503"), true, HandOffResult{NoticeError: "503"}, false, 1},
		{"notice refused", nil, refused, true, HandOffResult{NoticeError: refused.Error(), NoticeFinal: true}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &mocks.Client{}
			c.On("SignalWithStartWorkflow", mock.Anything, SinkWorkflowID("web", 1), SignalRecord, mock.Anything,
				mock.Anything, mock.Anything, mock.Anything).
				Return(nil, tc.deliver).Once()
			n := &fakeNotifier{err: tc.notify}
			var env testsuite.WorkflowTestSuite
			aenv := env.NewTestActivityEnvironment()
			aenv.RegisterActivity(&TemporalActivities{Client: c, Notifier: n})
			in := HandOffInput{Deliver: DeliverInput{Pipeline: Pipeline{Name: "web"}, Bucket: 1, Record: session.Record{SessionID: "u1/1"}}}
			if tc.notice {
				in.Notice = &activities.Notification{Kind: activities.KindSessionClosed, SessionID: "u1/1"}
			}
			var ta *TemporalActivities
			v, err := aenv.ExecuteActivity(ta.HandOff, in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			var got HandOffResult
			if err == nil {
				if err := v.Get(&got); err != nil {
					t.Fatal(err)
				}
			}
			if got != tc.want || n.sent != tc.wantSends {
				t.Errorf("result %+v after %d sends, want %+v after %d", got, n.sent, tc.want, tc.wantSends)
			}
			c.AssertExpectations(t)
		})
	}
}
