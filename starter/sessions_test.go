package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// runSessionsCLI runs the starter as run() does, with the sessions command
// added to the root if main.go does not add it yet.
func runSessionsCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := newRoot()
	added := false
	for _, c := range root.Commands() {
		added = added || c.Name() == "sessions"
	}
	if !added {
		root.AddCommand(sessionsCmd())
	}
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&errb, "starter:", err)
		var ue usageError
		if errors.As(err, &ue) || isFlagError(err) {
			return 2, out.String(), errb.String()
		}
		return 1, out.String(), errb.String()
	}
	return 0, out.String(), errb.String()
}

func TestSessionsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sessions", "list"}, "--pipeline is required"},
		{[]string{"sessions", "list", "--pipeline", "p", "--state", "shut"}, `--state "shut": want open, closed or all`},
		{[]string{"sessions", "list", "--pipeline", "p", "--format", "yaml"}, `--format "yaml": want table or json`},
		{[]string{"sessions", "list", "--pipeline", "p", "--limit", "0"}, "--limit must be > 0"},
		{[]string{"sessions", "show", "--pipeline", "p"}, "--key is required"},
		{[]string{"sessions", "watch", "--pipeline", "p", "--key", "k", "--interval", "0s"}, "--interval must be > 0"},
		{[]string{"sessions", "show", "--pipeline", "p", "--key", "k", "--bogus"}, "unknown flag: --bogus"},
	} {
		code, _, stderr := runSessionsCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestSessionsQuery(t *testing.T) {
	for _, tc := range []struct{ state, key, want string }{
		{"open", "", "WorkflowType = 'SessionWorkflow' AND Pipeline = 'clicks' AND (SessionState = 'open' OR SessionState = 'waiting') AND ExecutionStatus = 'Running'"},
		{"closed", "u-1", "WorkflowType = 'SessionWorkflow' AND Pipeline = 'clicks' AND SessionState = 'closed' AND SessionKey = 'u-1'"},
		{"all", `o'brien\x`, `WorkflowType = 'SessionWorkflow' AND Pipeline = 'clicks' AND SessionKey = 'o\'brien\\x'`},
	} {
		got, err := sessionsQuery("clicks", tc.state, tc.key)
		if err != nil || got != tc.want {
			t.Errorf("sessionsQuery(%q, %q) = %q, %v\nwant %q", tc.state, tc.key, got, err, tc.want)
		}
	}
}

func TestSessionsTemporalUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	t.Setenv("TEMPORAL_ADDRESS", addr)
	code, _, stderr := runSessionsCLI(t, "sessions", "list", "--pipeline", "clicks", "--timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "cannot reach Temporal at "+addr) || !strings.Contains(stderr, "TEMPORAL_ADDRESS") {
		t.Errorf("exit %d, stderr %q: want exit 1 naming %s and TEMPORAL_ADDRESS", code, stderr, addr)
	}
}

// TestSessionsAgainstTemporal signals sessions of two pipelines into a real
// Temporal server and reads them back with list, show and watch: an open
// session, one closed by its end marker and one whose events still wait
// for the watermark.
func TestSessionsAgainstTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := workflows.RegisterSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	// No S3: no sink flushes within the test (MaxAge below).
	workflows.Register(w, &activities.Activities{}, c)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	t.Setenv("TEMPORAL_ADDRESS", ts.GetFrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", ts.GetDefaultNamespace())

	clicks := testPipeline(t, "clicks")
	const t0 = int64(1704067200000) // 2024-01-01T00:00:00Z
	// user-a: three pages (one delivered twice, counted once), the
	// watermark past them: an open session.
	signalLines(ctx, t, c, clicks, "user-a", t0+150_000,
		`{"uuid":"user-a","event_timestamp":1704067200000,"page_name":"home","event_id":"a1"}`,
		`{"uuid":"user-a","event_timestamp":1704067260000,"page_name":"search","event_id":"a2"}`,
		`{"uuid":"user-a","event_timestamp":1704067320000,"page_name":"cart","event_id":"a3"}`,
		`{"uuid":"user-a","event_timestamp":1704067320000,"page_name":"cart","event_id":"a3"}`)
	// user-b: logs out; the end marker closes the session and the run completes.
	signalLines(ctx, t, c, clicks, "user-b", t0+90_000,
		`{"uuid":"user-b","event_timestamp":1704067200000,"page_name":"home","event_id":"b1"}`,
		`{"uuid":"user-b","event_timestamp":1704067260000,"page_name":"logout","event_id":"b2"}`)
	// user-c: no watermark yet, the event waits.
	signalLines(ctx, t, c, clicks, "user-c", session.NoWatermark,
		`{"uuid":"user-c","event_timestamp":1704067200000,"page_name":"home","event_id":"c1"}`)
	// Another pipeline's session of user-a must not show in clicks' lists.
	signalLines(ctx, t, c, testPipeline(t, "other"), "user-a", t0+150_000,
		`{"uuid":"user-a","event_timestamp":1704067200000,"page_name":"home","event_id":"x1"}`)

	t.Run("list closed json", func(t *testing.T) {
		out := awaitList(ctx, t, []string{"user-b"}, "sessions", "list", "--pipeline", "clicks", "--state", "closed", "--format", "json")
		var row sessionRow
		if err := json.Unmarshal([]byte(out), &row); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		want := sessionRow{Key: "user-b", SessionID: "user-b/1704067200000", State: "closed", EventCount: 2,
			Start: t0, LastEvent: t0 + 60_000, CloseReason: "end_marker", WorkflowID: "session/clicks/user-b",
			RunID: row.RunID, Status: "completed"}
		if row != want {
			t.Errorf("closed row %+v\nwant %+v", row, want)
		}
	})
	// After the closed list has user-b: visibility then knows it closed.
	t.Run("list open", func(t *testing.T) {
		// An open session's attributes are the ones its start set (key,
		// pipeline, open); the rest come at the close, and live in 'show'.
		out := awaitList(ctx, t, []string{"user-a", "user-c"}, "sessions", "list", "--pipeline", "clicks")
		for _, want := range []string{"KEY", "SESSION ID", "CLOSE REASON", "user-a", "user-c", "open"} {
			if !strings.Contains(out, want) {
				t.Errorf("list lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "user-b") {
			t.Errorf("open list shows the closed session of user-b:\n%s", out)
		}
	})
	t.Run("list key all", func(t *testing.T) {
		out := awaitList(ctx, t, []string{"user-a"}, "sessions", "list", "--pipeline", "other", "--key", "user-a", "--state", "all")
		if n := strings.Count(out, "\n"); n != 2 {
			t.Errorf("want a header and one row, got:\n%s", out)
		}
	})
	t.Run("show open", func(t *testing.T) {
		code, out, stderr := runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "user-a")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{
			"session/clicks/user-a · running", "state", "open", "user-a/1704067200000",
			"first event 2024-01-01 00:00:00.000 UTC", "last event 2024-01-01 00:02:00.000 UTC (2m0s after the first)",
			"pages home, search, cart", "next deadline inactivity at 2024-01-01 00:32:00.000 UTC",
			"watermark 2024-01-01 00:02:30.000 UTC", "pending 0 events", "skipped 1 duplicates, 0 late, 0 ignored",
		} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("show json", func(t *testing.T) {
		code, out, stderr := runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "user-c", "--format", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var v sessionView
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if v.Status != "running" || v.Live == nil || v.Live.Session != nil || v.Live.Pending != 1 || v.Live.Key != "user-c" {
			t.Errorf("waiting session:\n%s", out)
		}
		code, out, _ = runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "user-c")
		for _, want := range []string{"waiting: no session open yet", "watermark none yet", "pending 1 events waiting for the watermark"} {
			if code != 0 || !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("show closed", func(t *testing.T) {
		code, out, stderr := runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "user-b")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"completed", "closed (end_marker)", "user-b/1704067200000", "home, logout", "closed at"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("show delayed", func(t *testing.T) {
		// A session in its start delay has no first task to answer a query.
		sig := &ingest.TemporalSignaller{Client: c, Pipeline: clicks, TaskQueue: workflows.TaskQueue, StartDelay: time.Hour}
		e := session.Event{Time: t0, ID: 1}
		if err := sig.SignalEvents(ctx, "user-d", workflows.EventBatch{Events: []session.Event{e}, Watermark: session.NoWatermark}); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "user-d")
		if code != 1 || !strings.Contains(stderr, "session/clicks/user-d has not run its first workflow task yet: its start delay gathers") {
			t.Errorf("exit %d, stderr %q; want exit 1 saying the start delay holds the first task", code, stderr)
		}
	})
	t.Run("show missing", func(t *testing.T) {
		code, _, stderr := runSessionsCLI(t, "sessions", "show", "--pipeline", "clicks", "--key", "nobody")
		if code != 1 || !strings.Contains(stderr, `no such session: key "nobody" has no session workflow (session/clicks/nobody) in pipeline "clicks"`) {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("watch", func(t *testing.T) {
		code, out, stderr := runSessionsCLI(t, "sessions", "watch", "--pipeline", "clicks", "--key", "user-a", "--interval", "100ms", "--count", "3")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if n := strings.Count(out, "every 100ms ·"); n != 3 || strings.Count(out, "user-a/1704067200000") != 3 {
			t.Errorf("want 3 frames, got %d:\n%s", n, out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("redraws with escape codes into a buffer:\n%q", out)
		}
	})
}

// testPipeline is the clickstream profile with a logout end marker, long
// waits and sink flushes that never come within a test.
func testPipeline(t *testing.T, name string) workflows.Pipeline {
	r, err := session.Defaults(session.Clickstream)
	if err != nil {
		t.Fatal(err)
	}
	r.EndMarker = session.Marker{Field: "page_name", Value: "logout"}
	return workflows.Pipeline{Name: name, Rules: r, Visibility: true, MaxWait: time.Hour,
		Sink: workflows.SinkLimits{MaxAge: time.Hour}}
}

// signalLines decodes JSON lines as the ingester would and signals them to
// the key's session in one batch with the sender's watermark.
func signalLines(ctx context.Context, t *testing.T, c client.Client, p workflows.Pipeline, key string, watermark int64, lines ...string) {
	t.Helper()
	d := session.NewDecoder(&p.Rules)
	var events []session.Event
	for i, line := range lines {
		_, e, err := d.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		e.Seq = int64(i + 1)
		events = append(events, e)
	}
	// As the ingester signals, with the search attributes it starts a
	// session with.
	sig := &ingest.TemporalSignaller{Client: c, Pipeline: p, TaskQueue: workflows.TaskQueue}
	if err := sig.SignalEvents(ctx, key, workflows.EventBatch{Events: events, Watermark: watermark}); err != nil {
		t.Fatal(err)
	}
}

// awaitList runs a list until every key shows with its final state
// (visibility is eventually consistent) and returns its output.
func awaitList(ctx context.Context, t *testing.T, keys []string, args ...string) string {
	t.Helper()
	var out, stderr string
	for ctx.Err() == nil {
		var code int
		code, out, stderr = runSessionsCLI(t, args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		all := true
		for _, k := range keys {
			all = all && strings.Contains(out, k)
		}
		if all {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%v: keys %v never all listed; last output:\n%s%s", args, keys, out, stderr)
	return ""
}
