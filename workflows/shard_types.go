package workflows

import (
	"fmt"

	"github.com/sessionflow/sessionflow/session"
)

// A pipeline of unit "shard" runs one ShardWorkflow per shard instead of one
// SessionWorkflow per session: shard NN owns the open sessions of the keys
// that SinkBucket puts in bucket NN of Shards, so its Temporal cost follows
// the shards and their flushes, not the sessions.

// Units of work a pipeline can choose (config: unit).
const (
	UnitSession = "session"
	UnitShard   = "shard"
)

// SignalShardEvents carries a ShardBatch to a ShardWorkflow.
const SignalShardEvents = "shard-events"

// QueryShard returns a ShardWorkflow's ShardSummary; QueryState, with a key,
// the SessionState of that key's live session.
const QueryShard = "shard"

// ShardWorkflowID is "shard/<pipeline>/<NN>".
func ShardWorkflowID(pipeline string, shard int) string {
	return fmt.Sprintf("shard/%s/%02d", pipeline, shard)
}

// ShardInput starts or continues a ShardWorkflow.
type ShardInput struct {
	Pipeline Pipeline `json:"pipeline"`
	Shard    int      `json:"shard"`
	// State is carried across continue-as-new; nil starts a shard afresh.
	State *ShardState `json:"state,omitempty"`
}

// KeyEvents are one key's events of a ShardBatch.
type KeyEvents struct {
	Key    string          `json:"key"`
	Events []session.Event `json:"events"`
}

// ShardBatch is the payload of SignalShardEvents: the events of many keys
// of one shard, with the sender's watermark, pace and reading time as in an
// EventBatch (no event of the batch is below Watermark).
type ShardBatch struct {
	Keys      []KeyEvents `json:"keys"`
	Watermark int64       `json:"watermark"`
	Rate      float64     `json:"rate,omitempty"`
	AsOfMs    int64       `json:"as_of_ms,omitempty"`
}
