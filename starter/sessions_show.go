package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// errNoSession says a key has no session workflow in a pipeline.
var errNoSession = errors.New("no such session")

func sessionsShowCmd(sf *sessionsFlags) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show one key's live session (the workflow's state query)",
		Long: `show asks the session workflow session/<pipeline>/<key> for its state: the
open session so far (events, first and last event, profile attributes), its
next deadline, the watermark it knows and the events still waiting for it.
Once the run has completed it shows the closed session it returned.

--format json prints the workflow's status with the state query's answer
(workflows.SessionState) under "live", or the closed record under "closed".`,
		Example: `  starter sessions show --pipeline clickstream --key user-42
  starter sessions show --pipeline charging --key 52GD2997 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			if key == "" {
				return usageError{fmt.Errorf("--key is required")}
			}
			c, err := sessionsClient(cmd.Context(), sf.timeout, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := fetchSession(cmd.Context(), c, sf.pipeline, key, sf.timeout)
			if err != nil {
				return err
			}
			return writeSessionView(cmd.OutOrStdout(), sf.format, v)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the session's key (required)")
	return cmd
}

func sessionsWatchCmd(sf *sessionsFlags) *cobra.Command {
	var (
		key      string
		interval time.Duration
		count    int
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Show one key's live session again every --interval until Ctrl-C",
		Long: `watch runs 'show' every --interval and redraws it, until Ctrl-C (or after
--count refreshes). A key without a session yet, or a failed call, is shown
as such and retried at the next refresh. With --format json it writes one
JSON object per refresh instead of redrawing.`,
		Example: `  starter sessions watch --pipeline clickstream --key user-42
  starter sessions watch --pipeline charging --key 52GD2997 --interval 500ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			if key == "" {
				return usageError{fmt.Errorf("--key is required")}
			}
			if interval <= 0 {
				return usageError{fmt.Errorf("--interval must be > 0")}
			}
			if count < 0 {
				return usageError{fmt.Errorf("--count must be >= 0")}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			c, err := sessionsClient(ctx, sf.timeout, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			return watchSession(ctx, c, cmd.OutOrStdout(), sf, key, interval, count)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the session's key (required)")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many refreshes (0: until Ctrl-C)")
	return cmd
}

// sessionView is what show prints: the latest run of a key's session
// workflow and either its live state or its result.
type sessionView struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	Status     string `json:"status"` // running, completed, terminated, ...
	// Live is the state query's answer while the run is running.
	Live *workflows.SessionState `json:"live,omitempty"`
	// Closed is the session the run returned when it completed.
	Closed *session.Record `json:"closed,omitempty"`
}

// fetchSession describes the latest run of a key's session workflow and
// asks it for its state (running) or its result (completed).
func fetchSession(ctx context.Context, c client.Client, pipeline, key string, timeout time.Duration) (sessionView, error) {
	id := workflows.SessionWorkflowID(pipeline, key)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return sessionView{}, fmt.Errorf("%w: key %q has no session workflow (%s) in pipeline %q; "+
			"'starter sessions list --pipeline %s --state all' lists the keys", errNoSession, key, id, pipeline, pipeline)
	}
	if err != nil {
		return sessionView{}, fmt.Errorf("describe %s: %w", id, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	v := sessionView{WorkflowID: id, RunID: info.GetExecution().GetRunId(), Status: statusWord(info.GetStatus().String())}
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		res, err := c.QueryWorkflow(ctx, id, v.RunID, workflows.QueryState)
		var notReady *serviceerror.WorkflowNotReady
		if errors.As(err, &notReady) && info.GetExecutionTime().AsTime().After(info.GetStartTime().AsTime()) {
			return v, fmt.Errorf("%s has not run its first workflow task yet: its start delay gathers the session's first batches until %s; ask again then",
				id, info.GetExecutionTime().AsTime().UTC().Format(time.RFC3339))
		}
		if err != nil {
			return v, fmt.Errorf("query %q of %s: %w (is a worker polling task queue %q?)",
				workflows.QueryState, id, err, info.GetTaskQueue())
		}
		v.Live = new(workflows.SessionState)
		if err := res.Get(v.Live); err != nil {
			return v, fmt.Errorf("decode the state of %s: %w", id, err)
		}
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		v.Closed = new(session.Record)
		if err := c.GetWorkflow(ctx, id, v.RunID).Get(ctx, v.Closed); err != nil {
			return v, fmt.Errorf("result of %s: %w", id, err)
		}
	}
	return v, nil
}

func writeSessionView(w io.Writer, format string, v sessionView) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s · %s · run %s\n", v.WorkflowID, v.Status, v.RunID)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{label}, args...)...)
	}
	switch {
	case v.Live != nil && v.Live.Session != nil:
		s := v.Live.Session
		row("state", "open")
		writeRecordRows(row, s)
		row("next deadline", "%s at %s", v.Live.DeadlineReason, utcStamp(v.Live.Deadline))
	case v.Live != nil:
		row("state", "waiting: no session open yet")
	case v.Closed != nil:
		row("state", "closed (%s)", v.Closed.CloseReason)
		writeRecordRows(row, v.Closed)
		if v.Closed.ClosedAtMs != 0 {
			row("closed at", "%s (wall time)", utcStamp(v.Closed.ClosedAtMs))
		}
	default:
		row("state", "the run is %s: it has no live state and no result", v.Status)
	}
	if l := v.Live; l != nil {
		if l.Watermark <= 0 { // event times lie in [1970, 2100): W ≤ 0 means none yet
			row("watermark", "none yet")
		} else {
			row("watermark", "%s", utcStamp(l.Watermark))
		}
		row("pending", "%d events waiting for the watermark", l.Pending)
		row("skipped", "%d duplicates, %d late, %d ignored", l.Stats.Duplicates, l.Stats.Late, l.Stats.Ignored)
	}
	return tw.Flush()
}

// writeRecordRows prints a session record's fields, one per row.
func writeRecordRows(row func(label, format string, args ...any), s *session.Record) {
	row("session", "%s", s.SessionID)
	row("events", "%d", s.EventCount)
	row("first event", "%s", utcStamp(s.Start))
	row("last event", "%s (%s after the first)", utcStamp(s.End), time.Duration(s.DurationMs)*time.Millisecond)
	if a := s.ClickstreamAttrs; a != nil {
		row("pages", "%s", strings.Join(a.PagesVisited, ", "))
	}
	if a := s.ChargingAttrs; a != nil {
		if a.Status != "" {
			row("status", "%s", a.Status)
		}
		row("state of charge", "%g%% → %g%%", a.SocStart, a.SocEnd)
		row("breaks", "%d (%s)", a.BreakCount, time.Duration(a.BreakMs)*time.Millisecond)
	}
}

func utcStamp(ms int64) string { return stamp(ms) + " UTC" }

// watchSession shows the session every interval until ctx ends or count
// refreshes are done. On a terminal each refresh redraws the screen.
func watchSession(ctx context.Context, c client.Client, out io.Writer, sf *sessionsFlags, key string, interval time.Duration, count int) error {
	redraw := sf.format == "table" && isTerminal(out)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		v, err := fetchSession(ctx, c, sf.pipeline, key, sf.timeout)
		if ctx.Err() != nil {
			return nil // Ctrl-C
		}
		var frame strings.Builder
		switch {
		case err != nil && sf.format == "json":
			json.NewEncoder(&frame).Encode(map[string]string{"error": err.Error()})
		case err != nil:
			fmt.Fprintf(&frame, "%s\n", err)
		case sf.format == "json":
			json.NewEncoder(&frame).Encode(v)
		default:
			writeSessionView(&frame, "table", v)
		}
		if sf.format == "table" {
			header := fmt.Sprintf("every %s · %s · Ctrl-C to stop\n", interval, time.Now().UTC().Format("15:04:05"))
			if redraw {
				header = "\x1b[H\x1b[2J" + header // home, clear screen
			}
			if _, err := io.WriteString(out, header+frame.String()+"\n"); err != nil {
				return err
			}
		} else if _, err := io.WriteString(out, frame.String()); err != nil {
			return err
		}
		if count > 0 && n >= count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
