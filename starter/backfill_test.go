package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/internal/rulesflag"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// runBackfillCLI runs the CLI with the backfill command, as run does once
// main registers it, and returns run's exit status.
func runBackfillCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := newRoot()
	if !hasCommand(root, "backfill") {
		root.AddCommand(backfillCmd())
	}
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&errb, "starter:", err)
		var ue usageError
		var re rulesflag.UsageError
		if errors.As(err, &ue) || errors.As(err, &re) || isFlagError(err) {
			return 2, out.String(), errb.String()
		}
		return 1, out.String(), errb.String()
	}
	return 0, out.String(), errb.String()
}

func hasCommand(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

const testPipelines = `pipelines:
  - name: web
    profile: clickstream
    topic: clicks
    rules:
      gap: 20m
      end_marker: page_name=logout
    output:
      prefix: sessions/web
`

func TestBackfillBadUsage(t *testing.T) {
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines.yaml")
	if err := os.WriteFile(pipelines, []byte(testPipelines), 0o644); err != nil {
		t.Fatal(err)
	}
	from := "s3://raw/clicks"
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"backfill", "--from", from}, "--pipeline is required"},
		{[]string{"backfill", "--pipeline", "web"}, "--from is required"},
		{[]string{"backfill", "--pipeline", "web", "--from", "s3://"}, `--from "s3://"`},
		{[]string{"backfill", "--pipeline", "web", "--from", "gs://b/x"}, `want s3://bucket/prefix or a local path`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--since", "yesterday"}, `--since: "yesterday"`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--since", "2024-02-01", "--until", "2024-01-01"}, "is not after --since"},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--shards", "0"}, "--shards 0"},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--shards", "x"}, `invalid argument "x" for "--shards"`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--out", "/tmp/out"}, `--out "/tmp/out": want s3://bucket/prefix`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--parallel", "0"}, "--parallel 0"},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--out", "s3://raw/clicks/out"}, "would read its own output"},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--profile", "web"}, `unknown profile "web"`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "--gap", "0s"}, "--gap must be at least 1ms"},
		{[]string{"backfill", "--pipelines", pipelines, "--pipeline", "web", "--from", from, "--gap", "5m"}, "--gap with --pipelines"},
		{[]string{"backfill", "--pipelines", pipelines, "--pipeline", "app", "--from", from}, `no pipeline "app"`},
		{[]string{"backfill", "--pipeline", "web", "--from", from, "extra"}, "unknown command"},
	}
	for _, c := range cases {
		code, stdout, stderr := runBackfillCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, stderr, c.want)
		}
	}
	code, _, stderr := runBackfillCLI(t, "backfill", "--pipeline", "web", "--from", filepath.Join(dir, "missing"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing local input: exit %d, %q; want exit 1", code, stderr)
	}
	code, _, stderr = runBackfillCLI(t, "backfill", "--pipelines", filepath.Join(dir, "nope.yaml"), "--pipeline", "web", "--from", from)
	if code != 1 || !strings.Contains(stderr, "read pipelines") {
		t.Errorf("missing pipelines file: exit %d, %q; want exit 1", code, stderr)
	}
}

// backfillFlagsOf parses args as the command's flags.
func backfillFlagsOf(t *testing.T, args ...string) *backfillFlags {
	t.Helper()
	fs := pflag.NewFlagSet("backfill", pflag.ContinueOnError)
	f := bindBackfillFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBackfillRequest(t *testing.T) {
	dir := t.TempDir()
	pipelines := filepath.Join(dir, "pipelines.yaml")
	if err := os.WriteFile(pipelines, []byte(testPipelines), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if err := os.Mkdir("history", 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := backfillFlagsOf(t, "--pipelines", "pipelines.yaml", "--pipeline", "web", "--from", "history",
		"--from", "s3://raw/clicks/", "--since", "2024-01-01", "--until", "2024-01-02T12:00:00+02:00", "--shards", "8",
		"--s3-bucket", "lake").input()
	if err != nil {
		t.Fatal(err)
	}
	wantRules, _ := session.Defaults(session.Clickstream)
	wantRules.Gap, wantRules.EndMarker = 20*time.Minute, session.Marker{Field: "page_name", Value: "logout"}
	want := workflows.BackfillRequest{Pipeline: "web", Rules: wantRules, Inputs: []string{filepath.Join(dir, "history"), "s3://raw/clicks/"},
		Since: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), Until: time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli(),
		Shards: 8}
	if in.ID != want.ID() {
		t.Errorf("id %s, want the hash of the request as given, %s", in.ID, want.ID())
	}
	want.Out = "s3://lake/sessions/web/backfills/" + in.ID
	if !reflect.DeepEqual(in.BackfillRequest, want) || in.Parallelism != 4 {
		t.Errorf("request\n got %+v\nwant %+v", in.BackfillRequest, want)
	}

	// The same request from another directory, with an explicit --out.
	again, err := backfillFlagsOf(t, "--profile", "clickstream", "--gap", "20m", "--end-marker", "page_name=logout",
		"--pipeline", "web", "--from", filepath.Join(dir, "history"), "--from", "s3://raw/clicks/", "--since", "2024-01-01T00:00:00Z",
		"--until", "2024-01-02T10:00:00", "--shards", "8", "--out", "s3://lake/x").input()
	if err != nil {
		t.Fatal(err)
	}
	want.Out = "s3://lake/x"
	if !reflect.DeepEqual(again.BackfillRequest, want) || again.ID == in.ID {
		t.Errorf("request\n got %+v\nwant %+v (and another id than %s)", again.BackfillRequest, want, in.ID)
	}
}

func TestProgressLine(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	p := workflows.BackfillProgress{Phase: workflows.PhaseRouting, StartedAt: start, Objects: 8, Routed: 4, Bytes: 800,
		BytesRead: 400, Events: 1234567, Invalid: 3, Shards: 16}
	var out bytes.Buffer
	bar := newProgressBar(&out) // not a terminal: a line at a time
	bar.show(p, start.Add(30*time.Second), false)
	f := p.Fraction() // half the input read: half of routing's share
	filled := strings.Repeat("#", int(20*f)) + strings.Repeat(".", 20-int(20*f))
	eta := time.Duration(float64(30*time.Second) * (1 - f) / f).Round(time.Second)
	got := out.String()
	for _, want := range []string{fmt.Sprintf("%d%% [%s]", int(100*f), filled), "routing", "objects 4/8", "1,234,567 events", "3 invalid",
		"shards 0/16", "0 sessions written", "ETA " + eta.String()} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.ContainsAny(got, "\r\x1b") || strings.Count(got, "\n") != 1 {
		t.Errorf("not a terminal: want one plain line, got %q", got)
	}
	out.Reset()
	bar.show(p, start.Add(35*time.Second), false)
	if out.Len() != 0 {
		t.Errorf("a line 5s after the last in the same phase: %q", out.String())
	}
	p.Phase, p.Sessionized, p.Sessions = workflows.PhaseDone, 16, 98765
	bar.show(p, start.Add(time.Minute), true)
	bar.end()
	if got := out.String(); !strings.Contains(got, "100% [####################]") || !strings.Contains(got, "done in 1m0s") ||
		!strings.Contains(got, "98,765 sessions written") || strings.Contains(got, "ETA") {
		t.Errorf("done: %q", got)
	}
}

// TestBackfillCommand runs `starter backfill --wait` against a real
// Temporal server and MinIO with a worker in this process, then the same
// command again: it reports the finished backfill without running it twice.
func TestBackfillCommand(t *testing.T) {
	s3 := miniotest.Start(t)
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.NewClientWithOptions(client.Options{Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	w := worker.New(c, "starter-test", worker.Options{})
	w.RegisterWorkflow(workflows.BackfillWorkflow)
	w.RegisterActivity(&activities.Activities{S3: s3.Client, Bucket: s3.Bucket})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	t.Setenv("TEMPORAL_ADDRESS", ts.GetFrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", ts.GetDefaultNamespace())
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "none.toml"))
	t.Setenv("S3_ENDPOINT", s3.Endpoint)
	t.Setenv("S3_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("S3_SECRET_ACCESS_KEY", s3.SecretKey)

	// seed004 split over a plain file and a gzip file.
	dir := t.TempDir()
	lines := strings.SplitAfter(seed004, "\n")
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(strings.Join(lines[:7], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.jsonl.gz"), gzipped(t, strings.Join(lines[7:], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"backfill", "--pipeline", "web", "--end-marker", "page_name=logout", "--from", dir,
		"--out", "s3://" + s3.Bucket + "/cli", "--task-queue", "starter-test", "--refresh", "50ms"}
	code, stdout, stderr := runBackfillCLI(t, append(args, "--wait")...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	for _, want := range []string{"backfill backfill/web/", ": started", "/namespaces/" + ts.GetDefaultNamespace() + "/workflows/backfill%2Fweb%2F",
		"output: s3://" + s3.Bucket + "/cli/sessions/", "done: 2 objects, 14 lines, 13 events (1 invalid in s3://" + s3.Bucket + "/cli/rejects/)",
		"-> 4 sessions in"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "4 sessions written") {
		t.Errorf("stderr shows no final progress:\n%s", stderr)
	}
	got, err := store.ReadSessions(context.Background(), s3.Client, s3.Bucket, "cli")
	if err != nil {
		t.Fatal(err)
	}
	// The same sessions as `starter sessionize` of the concatenation.
	_, sessionized, _ := runCLI(t, seed004, "sessionize", "--pipeline", "web", "--end-marker", "page_name=logout")
	if n := strings.Count(sessionized, "\n"); len(got) != n || n != 4 {
		t.Errorf("backfill wrote %d sessions, sessionize %d", len(got), n)
	}
	for _, r := range got {
		if !strings.Contains(sessionized, fmt.Sprintf(`"session_id":%q`, r.SessionID)) ||
			!strings.Contains(sessionized, fmt.Sprintf(`"close_reason":%q`, r.CloseReason)) {
			t.Errorf("session %s (%s) is not in sessionize's output", r.SessionID, r.CloseReason)
		}
	}

	// Again: the same workflow, already done, nothing new.
	id := stdout[len("backfill "):strings.Index(stdout, ":")]
	code, stdout, stderr = runBackfillCLI(t, args...)
	if code != 0 || !strings.Contains(stdout, "backfill "+id+": already done") || !strings.Contains(stdout, "-> 4 sessions") {
		t.Errorf("re-run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if again, _ := store.ReadSessions(context.Background(), s3.Client, s3.Bucket, "cli"); len(again) != len(got) {
		t.Errorf("re-run: %d sessions, want %d", len(again), len(got))
	}

	// Without --wait, a new request prints its id and link and returns.
	code, stdout, _ = runBackfillCLI(t, append(args[:len(args)-2], "--shards", "3")...)
	if code != 0 || !strings.Contains(stdout, ": started") || !strings.Contains(stdout, "ui:") || strings.Contains(stdout, "done:") {
		t.Errorf("no --wait: exit %d, stdout %s", code, stdout)
	}
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
