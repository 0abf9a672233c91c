package workflows

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	"go.temporal.io/sdk/temporal"
)

// Names that cross process boundaries: the worker, the ingester, the
// starter and the tests all use these.
const (
	// TaskQueue is the default task queue of the workers.
	TaskQueue = "sessionflow"

	// SignalEvents carries an EventBatch to a SessionWorkflow.
	SignalEvents = "events"
	// SignalWatermark carries a WatermarkUpdate to a ClockWorkflow.
	SignalWatermark = "watermark"
	// SignalRecord carries a session.Record to a SinkWorkflow.
	SignalRecord = "record"

	// QueryState returns a SessionWorkflow's SessionState.
	QueryState = "state"
	// QueryClock returns a ClockWorkflow's ClockState.
	QueryClock = "clock"
	// QuerySink returns a SinkWorkflow's SinkState.
	QuerySink = "sink"
)

// ClockTaskQueue is the task queue of the pipelines' ClockWorkflows beside
// the sessions' queue tq. Every ingester and every waking session queries the
// clock; on the sessions' queue those queries, and the watermark updates,
// would wait behind a backlog of session tasks, and then no session closes.
func ClockTaskQueue(tq string) string { return tq + "-clock" }

// SessionWorkflowID is "session/<pipeline>/<key>": one id per key, one run
// per session.
func SessionWorkflowID(pipeline, key string) string { return "session/" + pipeline + "/" + key }

// ClockWorkflowID is "clock/<pipeline>".
func ClockWorkflowID(pipeline string) string { return "clock/" + pipeline }

// SinkWorkflowID is "sink/<pipeline>/<bucket>".
func SinkWorkflowID(pipeline string, bucket int) string {
	return fmt.Sprintf("sink/%s/%02d", pipeline, bucket)
}

// SinkBucket spreads keys over a pipeline's sinks.
func SinkBucket(key string, buckets int) int {
	if buckets <= 1 {
		return 0
	}
	return int(xxhash.Sum64String(key) % uint64(buckets))
}

// Search attributes of session workflows (registered on the namespace by the
// dev stack and the tests; see RegisterSearchAttributes).
var (
	AttrSessionKey    = temporal.NewSearchAttributeKeyKeyword("SessionKey")
	AttrSessionID     = temporal.NewSearchAttributeKeyKeyword("SessionId")
	AttrPipeline      = temporal.NewSearchAttributeKeyKeyword("Pipeline")
	AttrSessionState  = temporal.NewSearchAttributeKeyKeyword("SessionState")
	AttrCloseReason   = temporal.NewSearchAttributeKeyKeyword("CloseReason")
	AttrSessionStart  = temporal.NewSearchAttributeKeyTime("SessionStart")
	AttrLastEventTime = temporal.NewSearchAttributeKeyTime("LastEventTime")
	AttrEventCount    = temporal.NewSearchAttributeKeyInt64("EventCount")
	// Of shard workflows (unit: shard), with AttrPipeline.
	AttrShard        = temporal.NewSearchAttributeKeyInt64("Shard")
	AttrOpenSessions = temporal.NewSearchAttributeKeyInt64("OpenSessions")
)

// Session states as shown in the SessionState search attribute.
const (
	StateOpen    = "open"
	StateWaiting = "waiting" // events buffered, no session open yet
	StateClosed  = "closed"
)
