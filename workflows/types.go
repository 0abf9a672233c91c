// Package workflows holds Sessionflow's Temporal workflows: one
// SessionWorkflow per active session, a ClockWorkflow per pipeline that
// keeps the event-time watermark, and SinkWorkflows that batch closed
// sessions into Parquet files.
package workflows

import (
	"time"

	"github.com/sessionflow/sessionflow/session"
)

// Pipeline is what every workflow of a pipeline needs to know. It travels in
// workflow inputs so that a run never depends on worker-local config.
type Pipeline struct {
	Name  string        `json:"name"`
	Rules session.Rules `json:"rules"`
	// Prefix is the output prefix in the bucket; default the pipeline name.
	Prefix string `json:"prefix,omitempty"`
	// Buckets is the number of SinkWorkflows; default 4.
	Buckets int        `json:"buckets,omitempty"`
	Sink    SinkLimits `json:"sink"`
	Notify  Notify     `json:"notify"`
	// MaxWait bounds how long a session sleeps between looks at the clock
	// while the watermark stands still; default 1m.
	MaxWait time.Duration `json:"max_wait,omitempty"`
	// Visibility turns on the typed search attributes (they must be
	// registered on the namespace: RegisterSearchAttributes).
	Visibility bool `json:"visibility,omitempty"`
	// Unit is the unit of work: UnitSession (empty: the default) or
	// UnitShard, with Shards ShardWorkflows (shard_types.go).
	Unit   string `json:"unit,omitempty"`
	Shards int    `json:"shards,omitempty"`
	// ShardMaxOpen is the open keys a shard holds before it says to raise
	// Shards; default DefaultShardMaxOpen.
	ShardMaxOpen int `json:"shard_max_open,omitempty"`
}

// Sharded tells whether the pipeline runs ShardWorkflows.
func (p Pipeline) Sharded() bool { return p.Unit == UnitShard }

// Notify chooses which notifications a pipeline sends.
type Notify struct {
	SessionClosed bool `json:"session_closed,omitempty" yaml:"session_closed"`
	ExpiryWarning bool `json:"expiry_warning,omitempty" yaml:"expiry_warning"` // lead: Rules.ExpiryWarning
	BreakStarted  bool `json:"break_started,omitempty" yaml:"break_started"`
}

// SinkLimits decide when a SinkWorkflow flushes: whichever comes first.
type SinkLimits struct {
	MaxRecords int           `json:"max_records,omitempty" yaml:"max_records"` // default 1000
	MaxBytes   int           `json:"max_bytes,omitempty" yaml:"max_bytes"`     // default 1 MiB, well under the 2 MB payload limit
	MaxAge     time.Duration `json:"max_age,omitempty" yaml:"max_age"`         // default 10s
}

func (p Pipeline) prefix() string {
	if p.Prefix != "" {
		return p.Prefix
	}
	return p.Name
}

func (p Pipeline) buckets() int {
	if p.Buckets > 0 {
		return p.Buckets
	}
	return 4
}

func (p Pipeline) maxWait() time.Duration {
	if p.MaxWait > 0 {
		return p.MaxWait
	}
	return time.Minute
}

func (l SinkLimits) withDefaults() SinkLimits {
	if l.MaxRecords <= 0 {
		l.MaxRecords = 1000
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 20
	}
	if l.MaxAge <= 0 {
		l.MaxAge = 10 * time.Second
	}
	return l
}

// EventBatch is the payload of SignalEvents: a key's events and the
// sender's watermark at the time it sent them (no event of the batch is
// below it).
type EventBatch struct {
	Events    []session.Event `json:"events"`
	Watermark int64           `json:"watermark"`
	// Rate is the clock's pace (ClockState.Rate) as the sender last read
	// it, 0 if unknown. A new session arms its first timer with it instead
	// of waiting MaxWait before it first looks at the clock.
	Rate float64 `json:"rate,omitempty"`
	// AsOfMs is the wall time (Unix ms) at which the sender read Watermark
	// from the clock, 0 if Watermark is not that reading (a batch's earliest
	// event caps it). A run aims its timer from W as it will have moved
	// since (version 2 of changeLean), not from W as it was.
	AsOfMs int64 `json:"as_of_ms,omitempty"`
}
