package workflows

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/session"
)

// sessionAttrs are the search attribute values a session last published.
type sessionAttrs struct {
	state, id, reason string
	start, last       int64
	count             int64
}

// show publishes the session's state to the Temporal UI: the current
// details shown on the workflow's page, live, and typed search attributes.
// An upsert costs a history event. A run recorded before changeLean upserts
// at each change of state (waiting, open, a new session, closed) and the
// event count and last event time when the timer wakes it. A lean run starts
// with the attributes its first signal set (key, pipeline, open) and
// upserts once, when the session closes; a run continued as new also once at
// its start, as it inherits its predecessor's (maybe closed) attributes. The
// live figures are in the details and the state query.
func (r *sessionRun) show() {
	a := sessionAttrs{state: StateWaiting}
	rec, deadline, why, open := r.tr.Open()
	switch {
	case open:
		a = sessionAttrs{state: StateOpen, id: rec.SessionID, start: rec.Start, last: rec.End, count: rec.EventCount}
	case r.closed:
		res := r.result
		a = sessionAttrs{state: StateClosed, id: res.SessionID, reason: string(res.CloseReason), start: res.Start, last: res.End, count: res.EventCount}
	}
	details := r.describe(a, deadline, why)
	if details != r.details {
		workflow.SetCurrentDetails(r.ctx, details)
		r.details = details
	}
	if !r.p.Visibility || a == r.attrs || (!r.woke && a.sameState(r.attrs)) {
		return
	}
	if r.lean && a.state != StateClosed && (r.in.State == nil || r.attrs.state != "") {
		return
	}
	updates := []temporal.SearchAttributeUpdate{
		AttrSessionKey.ValueSet(r.in.Key),
		AttrPipeline.ValueSet(r.p.Name),
		AttrSessionState.ValueSet(a.state),
	}
	if a.id != "" {
		updates = append(updates,
			AttrSessionID.ValueSet(a.id),
			AttrSessionStart.ValueSet(time.UnixMilli(a.start).UTC()),
			AttrLastEventTime.ValueSet(time.UnixMilli(a.last).UTC()),
			AttrEventCount.ValueSet(a.count))
	}
	if a.reason != "" {
		updates = append(updates, AttrCloseReason.ValueSet(a.reason))
	}
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, updates...); err != nil {
		workflow.GetLogger(r.ctx).Warn("search attributes not updated", "error", err)
		return
	}
	r.attrs = a
}

// sameState reports whether a and b differ at most in the running figures.
func (a sessionAttrs) sameState(b sessionAttrs) bool {
	a.count, a.last = b.count, b.last
	return a == b
}

func (r *sessionRun) describe(a sessionAttrs, deadline int64, why session.Reason) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", a.state)
	if a.id != "" {
		fmt.Fprintf(&b, " · session `%s` · %d events · %s → %s", a.id, a.count, stamp(a.start), stamp(a.last))
	}
	if a.reason != "" {
		fmt.Fprintf(&b, " · closed by %s", a.reason)
	}
	if a.state == StateOpen {
		fmt.Fprintf(&b, "\n\nnext: %s deadline %s", why, stamp(deadline))
	}
	if r.w != session.NoWatermark {
		fmt.Fprintf(&b, " · watermark %s", stamp(r.w))
	}
	if n := r.tr.Pending(); n > 0 {
		fmt.Fprintf(&b, " · %d events waiting for the watermark", n)
	}
	return b.String()
}

func stamp(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000Z") }

// searchAttributes are the custom attributes sessions publish.
var searchAttributes = map[string]enumspb.IndexedValueType{
	AttrSessionKey.GetName():    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrSessionID.GetName():     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrPipeline.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrSessionState.GetName():  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrCloseReason.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrSessionStart.GetName():  enumspb.INDEXED_VALUE_TYPE_DATETIME,
	AttrLastEventTime.GetName(): enumspb.INDEXED_VALUE_TYPE_DATETIME,
	AttrEventCount.GetName():    enumspb.INDEXED_VALUE_TYPE_INT,
	AttrShard.GetName():         enumspb.INDEXED_VALUE_TYPE_INT,
	AttrOpenSessions.GetName():  enumspb.INDEXED_VALUE_TYPE_INT,
}

// RegisterSearchAttributes adds the session search attributes to a
// namespace. It is idempotent: attributes already there are left alone.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range searchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes to %s: %w", namespace, err)
	}
	return nil
}
