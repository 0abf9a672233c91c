package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/workflows"
)

func sessionsListCmd(sf *sessionsFlags) *cobra.Command {
	var (
		state, key string
		limit      int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a pipeline's sessions through Temporal visibility",
		Long: `list finds a pipeline's session workflows through Temporal visibility and
prints one row per workflow run: key, session id, state, event count, first
and last event time (UTC) and close reason.

--state open lists the live sessions: running workflows whose session is
open, or waiting (events buffered until the watermark passes them).
--state closed lists the runs whose session closed; the Parquet output holds
every closed session, visibility only the runs' last state. --state all
lists every run.

Visibility is eventually consistent: a session signalled a moment ago may
take a second to show up.`,
		Example: `  starter sessions list --pipeline clickstream
  starter sessions list --pipeline clickstream --key user-42 --state all
  starter sessions list --pipeline charging --state closed --limit 500 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			query, err := sessionsQuery(sf.pipeline, state, key)
			if err != nil {
				return err
			}
			if limit <= 0 {
				return usageError{fmt.Errorf("--limit must be > 0")}
			}
			c, err := sessionsClient(cmd.Context(), sf.timeout, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			rows, err := listSessions(cmd.Context(), c, query, limit, sf.timeout)
			if err != nil {
				return err
			}
			if sf.format == "json" {
				return writeSessionRowsJSON(cmd.OutOrStdout(), rows)
			}
			return writeSessionRows(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().StringVar(&state, "state", "open", "sessions to list: open, closed or all")
	cmd.Flags().StringVar(&key, "key", "", "only this key's sessions")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many runs (newest first)")
	return cmd
}

// sessionsQuery is the visibility query of a list.
func sessionsQuery(pipeline, state, key string) (string, error) {
	q := []string{"WorkflowType = 'SessionWorkflow'", workflows.AttrPipeline.GetName() + " = " + quoteQuery(pipeline)}
	st := workflows.AttrSessionState.GetName()
	switch state {
	case "open":
		q = append(q, fmt.Sprintf("(%s = '%s' OR %s = '%s')", st, workflows.StateOpen, st, workflows.StateWaiting),
			"ExecutionStatus = 'Running'")
	case "closed":
		q = append(q, fmt.Sprintf("%s = '%s'", st, workflows.StateClosed))
	case "all":
	default:
		return "", usageError{fmt.Errorf("--state %q: want open, closed or all", state)}
	}
	if key != "" {
		q = append(q, workflows.AttrSessionKey.GetName()+" = "+quoteQuery(key))
	}
	return strings.Join(q, " AND "), nil
}

// quoteQuery quotes a string for a visibility query. Temporal takes single
// or double quotes; a backslash escapes the quote inside.
func quoteQuery(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// sessionRow is one session workflow run as visibility shows it.
type sessionRow struct {
	Key         string `json:"key"`
	SessionID   string `json:"session_id,omitempty"`
	State       string `json:"state"`
	EventCount  int64  `json:"event_count"`
	Start       int64  `json:"session_start_time_ms,omitempty"`
	LastEvent   int64  `json:"last_event_time_ms,omitempty"`
	CloseReason string `json:"close_reason,omitempty"`
	WorkflowID  string `json:"workflow_id"`
	RunID       string `json:"run_id"`
	Status      string `json:"status"` // the run's execution status: running, completed, continued_as_new, ...
}

// listSessions pages through visibility until it has limit rows.
func listSessions(ctx context.Context, c client.Client, query string, limit int, timeout time.Duration) ([]sessionRow, error) {
	var rows []sessionRow
	var token []byte
	for len(rows) < limit {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := c.ListWorkflow(cctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: query, PageSize: int32(min(limit-len(rows), 1000)), NextPageToken: token,
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list sessions (query %s): %w", query, err)
		}
		for _, e := range resp.GetExecutions() {
			rows = append(rows, newSessionRow(e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(),
				e.GetStatus().String(), e.GetSearchAttributes()))
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	return rows[:min(len(rows), limit)], nil
}

func newSessionRow(workflowID, runID, status string, sa *commonpb.SearchAttributes) sessionRow {
	r := sessionRow{WorkflowID: workflowID, RunID: runID, Status: statusWord(status)}
	fields := sa.GetIndexedFields()
	decode := func(name string, into any) {
		if p, ok := fields[name]; ok {
			// A value that does not decode stays empty: one odd row must
			// not hide the others.
			_ = converter.GetDefaultDataConverter().FromPayload(p, into)
		}
	}
	var start, last time.Time
	decode(workflows.AttrSessionKey.GetName(), &r.Key)
	decode(workflows.AttrSessionID.GetName(), &r.SessionID)
	decode(workflows.AttrSessionState.GetName(), &r.State)
	decode(workflows.AttrEventCount.GetName(), &r.EventCount)
	decode(workflows.AttrCloseReason.GetName(), &r.CloseReason)
	decode(workflows.AttrSessionStart.GetName(), &start)
	decode(workflows.AttrLastEventTime.GetName(), &last)
	if !start.IsZero() {
		r.Start = start.UnixMilli()
	}
	if !last.IsZero() {
		r.LastEvent = last.UnixMilli()
	}
	return r
}

// statusWord turns WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW (or the
// proto's short name ContinuedAsNew) into continued_as_new.
func statusWord(s string) string {
	s = strings.TrimPrefix(s, "WORKFLOW_EXECUTION_STATUS_")
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func writeSessionRows(w io.Writer, rows []sessionRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSESSION ID\tSTATE\tEVENTS\tSTART (UTC)\tLAST EVENT (UTC)\tCLOSE REASON")
	for _, r := range rows {
		state := r.State
		if r.Status != "running" && r.Status != "completed" {
			state += " (" + r.Status + ")" // terminated, failed, continued_as_new, ...
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Key, orDash(r.SessionID), state, r.EventCount,
			msOrDash(r.Start), msOrDash(r.LastEvent), orDash(r.CloseReason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "(no sessions match; visibility may lag a second behind the workflows)")
		return err
	}
	return nil
}

func writeSessionRowsJSON(w io.Writer, rows []sessionRow) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func msOrDash(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return stamp(ms)
}
