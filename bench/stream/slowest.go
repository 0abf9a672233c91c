package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// slowClose is a timed session close: when W passed its deadline (ms).
type slowClose struct {
	rec              session.Record
	deadline, passed int64
}

// logSlowest logs the n closes that came longest after W passed their
// deadlines, each with its run's history as a timeline of seconds from that
// moment: what a p99 is made of. A run not found is logged as such.
func logSlowest(ctx context.Context, c client.Client, namespace string, in summaryInput, n int, logger *slog.Logger) {
	var all []slowClose
	timed(in, func(c closed, deadline, at int64) { all = append(all, slowClose{c.rec, deadline, at}) })
	slices.SortFunc(all, func(a, b slowClose) int {
		return int((b.rec.ClosedAtMs - b.passed) - (a.rec.ClosedAtMs - a.passed))
	})
	for _, s := range all[:min(n, len(all))] {
		id := workflows.SessionWorkflowID(s.rec.Pipeline, s.rec.Key)
		line, err := timeline(ctx, c, namespace, id, s)
		if err != nil {
			line = err.Error()
		}
		logger.Info("slow close", "session", s.rec.SessionID, "reason", s.rec.CloseReason,
			"latency_s", seconds(s.rec.ClosedAtMs-s.passed), "events", s.rec.EventCount, "history", line)
	}
}

// timeline is the history of the run of id that closed s, event by event:
// seconds from W passing the deadline, the event type, a timer's length.
func timeline(ctx context.Context, c client.Client, namespace, id string, s slowClose) (string, error) {
	resp, err := c.WorkflowService().ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace, PageSize: 20, Query: fmt.Sprintf("WorkflowId = '%s'", id)})
	if err != nil {
		return "", fmt.Errorf("list runs of %s: %w", id, err)
	}
	for _, info := range resp.GetExecutions() {
		if info.GetStartTime().AsTime().UnixMilli() > s.rec.ClosedAtMs || (info.GetCloseTime() != nil &&
			info.GetCloseTime().AsTime().UnixMilli() < s.rec.ClosedAtMs) {
			continue
		}
		var b strings.Builder
		err := eachEvent(ctx, c, info.GetExecution(), func(e *historypb.HistoryEvent) {
			fmt.Fprintf(&b, "%+.1f %s", seconds(e.GetEventTime().AsTime().UnixMilli()-s.passed), eventKey(e.GetEventType()))
			if a := e.GetTimerStartedEventAttributes(); a != nil {
				fmt.Fprintf(&b, "(%.1fs)", a.GetStartToFireTimeout().AsDuration().Seconds())
			}
			if a := e.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalEvents {
				var batch workflows.EventBatch
				if p := a.GetInput().GetPayloads(); len(p) == 1 && json.Unmarshal(p[0].GetData(), &batch) == nil {
					// W against the deadline, the pace, and how old the reading was.
					fmt.Fprintf(&b, "(%d events, W %+.1fs of the deadline, rate %.2f, read %.1fs before)", len(batch.Events),
						seconds(batch.Watermark-s.deadline), batch.Rate, seconds(e.GetEventTime().AsTime().UnixMilli()-batch.AsOfMs))
				}
			}
			b.WriteString("; ")
		})
		return b.String(), err
	}
	return "", fmt.Errorf("no run of %s holds the close at %d", id, s.rec.ClosedAtMs)
}
