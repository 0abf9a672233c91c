package workflows

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// SinkInput starts or continues a SinkWorkflow.
type SinkInput struct {
	Pipeline Pipeline   `json:"pipeline"`
	Bucket   int        `json:"bucket"`
	State    *SinkState `json:"state,omitempty"`
}

// SinkState is a sink's buffer and bookkeeping, carried across
// continue-as-new.
type SinkState struct {
	// Seq numbers the flushes; with the sink id it names the objects.
	Seq    int64            `json:"seq"`
	Buffer []session.Record `json:"buffer,omitempty"`
	Bytes  int              `json:"bytes"`
	// Recent holds the identities of the records of the last flushes, so
	// that a record delivered twice (a retried hand-off) is written once.
	Recent []string `json:"recent,omitempty"`
	Rows   int64    `json:"rows"` // written so far by this sink
}

// recentLimit bounds the de-duplication memory: a redelivery follows its
// original within seconds, long before this many newer records.
const recentLimit = 4096

// sinkSignalsPerRun bounds a sink's history between flushes.
const sinkSignalsPerRun = 2000

// SinkWorkflow buffers the closed sessions of one bucket of a pipeline and
// writes them to Parquet when the buffer reaches its count, size or age
// limit, then continues as new so its history stays short.
func SinkWorkflow(ctx workflow.Context, in SinkInput) error {
	limits := in.Pipeline.Sink.withDefaults()
	st := SinkState{}
	if in.State != nil {
		st = *in.State
	}
	seen := make(map[string]bool, len(st.Recent)+len(st.Buffer))
	for _, id := range st.Recent {
		seen[id] = true
	}
	for _, r := range st.Buffer {
		seen[recordIdentity(r)] = true
	}
	if err := workflow.SetQueryHandler(ctx, QuerySink, func() (SinkState, error) {
		return SinkState{Seq: st.Seq, Bytes: st.Bytes, Rows: st.Rows, Buffer: st.Buffer}, nil
	}); err != nil {
		return err
	}
	logger := workflow.GetLogger(ctx)
	records := workflow.GetSignalChannel(ctx, SignalRecord)
	add := func(r session.Record) {
		id := recordIdentity(r)
		if seen[id] {
			logger.Info("duplicate record dropped", "session_id", r.SessionID)
			return
		}
		seen[id] = true
		st.Buffer = append(st.Buffer, r)
		st.Bytes += recordSize(r)
	}

	var ageTimer workflow.Future
	signals := 0
	for {
		aged := false
		if len(st.Buffer) > 0 && ageTimer == nil {
			ageTimer = workflow.NewTimerWithOptions(ctx, limits.MaxAge, workflow.TimerOptions{Summary: "flush age"})
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(records, func(c workflow.ReceiveChannel, _ bool) {
			var r session.Record
			c.Receive(ctx, &r)
			add(r)
			signals++
		})
		if ageTimer != nil {
			sel.AddFuture(ageTimer, func(workflow.Future) { aged = true })
		}
		sel.Select(ctx)
		for {
			var r session.Record
			if !records.ReceiveAsync(&r) {
				break
			}
			add(r)
			signals++
		}
		full := len(st.Buffer) >= limits.MaxRecords || st.Bytes >= limits.MaxBytes
		if (aged || full) && len(st.Buffer) > 0 {
			if err := flush(ctx, in, &st, limits); err != nil {
				return err
			}
			return continueSink(ctx, in, &st, records, add)
		}
		if signals >= sinkSignalsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return continueSink(ctx, in, &st, records, add)
		}
	}
}

// flush writes up to a payload's worth of the oldest records.
func flush(ctx workflow.Context, in SinkInput, st *SinkState, limits SinkLimits) error {
	n, size := 0, 0
	for n < len(st.Buffer) && n < limits.MaxRecords && (n == 0 || size+recordSize(st.Buffer[n]) <= limits.MaxBytes) {
		size += recordSize(st.Buffer[n])
		n++
	}
	batch := st.Buffer[:n]
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// Storage outages are waited out: the records are safe in this
		// workflow's history meanwhile.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	var a *activities.Activities
	var res store.WriteResult
	err := workflow.ExecuteActivity(ctx, a.WriteParquet, store.WriteSessionsInput{
		Prefix:  in.Pipeline.prefix(),
		Sink:    SinkWorkflowID(in.Pipeline.Name, in.Bucket),
		Bucket:  in.Bucket,
		Seq:     st.Seq,
		Profile: in.Pipeline.Rules.Profile,
		Records: batch,
	}).Get(ctx, &res)
	if err != nil {
		return fmt.Errorf("flush %d of sink %d: %w", st.Seq, in.Bucket, err)
	}
	workflow.GetLogger(ctx).Info("flushed", "seq", st.Seq, "rows", res.Rows, "objects", len(res.Objects))
	for _, r := range batch {
		st.Recent = append(st.Recent, recordIdentity(r))
	}
	if len(st.Recent) > recentLimit {
		st.Recent = slices.Clone(st.Recent[len(st.Recent)-recentLimit:])
	}
	st.Rows += int64(len(batch))
	st.Seq++
	st.Buffer = slices.Clone(st.Buffer[n:])
	st.Bytes -= size
	return nil
}

// continueSink drains the signals already delivered to this run, then
// continues as new with the buffer.
func continueSink(ctx workflow.Context, in SinkInput, st *SinkState, records workflow.ReceiveChannel, add func(session.Record)) error {
	for {
		var r session.Record
		if !records.ReceiveAsync(&r) {
			break
		}
		add(r)
	}
	in.State = st
	return workflow.NewContinueAsNewError(ctx, SinkWorkflow, in)
}

// recordIdentity tells a redelivered record from a new one. Session ids are
// unique, but a session run that started before tie-numbered ids (see
// changeTieIDs) can still hand over a record whose id a same-millisecond
// successor shares; the end time and the event count tell those apart, and
// the identity strings already in running sinks' state must keep their shape.
func recordIdentity(r session.Record) string {
	return fmt.Sprintf("%s/%d/%d", r.SessionID, r.End, r.EventCount)
}

// recordSize is the record's size as a payload, which the flush keeps under
// the 2 MB limit.
func recordSize(r session.Record) int {
	b, _ := json.Marshal(r)
	return len(b)
}
