// Package ingest turns a Kafka topic into signals to Sessionflow's
// workflows: it decodes each message with the pipeline's rules, sends
// invalid ones to a dead-letter topic and late ones to the late-event
// output, batches the rest per key into SignalWithStart calls to the key's
// SessionWorkflow, and keeps the pipeline's ClockWorkflow informed of the
// event-time progress of every partition it reads.
//
// The effect is exactly-once although Kafka delivers at least once: an
// offset is committed only once every event before it is acknowledged
// (signal accepted by Temporal, dead letter or late event durably written),
// a redelivered event carries the identity it had the first time (its id
// field, else its topic/partition/offset), and the watermark never passes
// an event whose offset is not committed, so a redelivered event is never
// late and its workflow drops it as a duplicate. watermark.go explains the
// watermark in full.
package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// Config is one pipeline's ingester. Pipeline, Topic, Brokers, Temporal and
// Late are required; everything else has a default.
type Config struct {
	// Pipeline is the pipeline as its workflows carry it: its name, rules
	// (decoding, lateness) and output prefix.
	Pipeline workflows.Pipeline
	// Topic is the Kafka topic read; DLQTopic receives its invalid
	// messages (default "<Topic>.dlq").
	Topic    string
	DLQTopic string
	Brokers  []string
	// GroupID is the consumer group; default "sessionflow-<pipeline>".
	GroupID string
	// Source names this ingester instance in watermark updates and logs;
	// default "<hostname>-<pid>".
	Source string
	// Kafka carries the caller's TLS, SASL and client settings; it is
	// copied, never modified. Nil means sarama's defaults.
	Kafka *sarama.Config
	// Temporal receives the batches and the watermark.
	Temporal Signaller
	// Late receives the events that arrive below the watermark.
	Late LateWriter
	// DLQ, if set, is the producer for dead letters (it must be safe for
	// concurrent use, as sarama's are); by default the ingester makes an
	// idempotent one from Brokers and Kafka and closes it when Run returns.
	DLQ sarama.SyncProducer
	// Metrics, if set, receives the ingester's metrics.
	Metrics *Metrics
	Logger  *slog.Logger
	Limits  Limits
}

// Limits tune batching, memory and the watermark. The zero value of each
// field means its default.
type Limits struct {
	// BatchEvents and BatchBytes flush a key's buffer when it reaches
	// either (defaults 500 events, 256 KiB of encoded events: a signal stays
	// far below Temporal's 2 MB payload limit).
	BatchEvents int
	BatchBytes  int
	// MaxHold is the longest an event waits in its key's buffer before it
	// is signalled (default DefaultMaxHold of the pipeline's rules). Each
	// signal costs Temporal a workflow task, so a longer hold means fewer,
	// larger batches; the price is that the watermark, and with it every
	// session's close, lags up to one hold behind (see DefaultMaxHold).
	MaxHold time.Duration
	// MaxInFlight bounds the concurrent SignalWithStart calls (default 32).
	MaxInFlight int
	// MaxUncommitted bounds the messages read but not yet committed
	// (default 100,000); MaxPendingBytes bounds the memory their buffered
	// events and raw dead letters take (default 64 MiB). Past either the
	// ingester stops reading until acknowledgements catch up.
	MaxUncommitted  int
	MaxPendingBytes int
	// MaxValueBytes is the largest message value decoded; larger ones are
	// dead letters with reason too_large (default 1 MiB).
	MaxValueBytes int
	// LateBatch is the largest number of late events written as one object
	// (default 1000); they are written at least every MaxHold.
	LateBatch int
	// IdleAfter is how long a partition may go without an on-time event
	// before it stops holding the watermark back (default 30s).
	IdleAfter time.Duration
	// StartupWait is how long the first event of a partition new to the
	// clock waits for the other partitions new to the clock in its
	// consumer-group generation to show their first events, so that the
	// watermark starts at the earliest of them (default 2s).
	StartupWait time.Duration
	// PublishInterval is how often offsets are committed and the
	// watermark is sent to the clock (default 500ms; at most a few
	// signals per second reach the ClockWorkflow).
	PublishInterval time.Duration
	// DrainTimeout bounds how long a revoked partition waits for its
	// in-flight signals before abandoning them uncommitted (default 15s;
	// keep it under the consumer group's rebalance timeout).
	DrainTimeout time.Duration
}

// The defaults of Limits, which a zero (or negative) field takes; the
// worker's flags show them. MaxHold's depends on the rules: DefaultMaxHold.
const (
	DefaultBatchEvents     = 500
	DefaultBatchBytes      = 256 << 10
	DefaultMaxInFlight     = 32
	DefaultMaxUncommitted  = 100_000
	DefaultMaxPendingBytes = 64 << 20
	DefaultMaxValueBytes   = 1 << 20
	DefaultLateBatch       = 1000
	DefaultIdleAfter       = 30 * time.Second
	DefaultStartupWait     = 2 * time.Second
	DefaultPublishInterval = 500 * time.Millisecond
	DefaultDrainTimeout    = 15 * time.Second
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.BatchEvents, DefaultBatchEvents)
	def(&l.BatchBytes, DefaultBatchBytes)
	def(&l.MaxInFlight, DefaultMaxInFlight)
	def(&l.MaxUncommitted, DefaultMaxUncommitted)
	def(&l.MaxPendingBytes, DefaultMaxPendingBytes)
	def(&l.MaxValueBytes, DefaultMaxValueBytes)
	def(&l.LateBatch, DefaultLateBatch)
	defDur(&l.IdleAfter, DefaultIdleAfter)
	defDur(&l.StartupWait, DefaultStartupWait)
	defDur(&l.PublishInterval, DefaultPublishInterval)
	defDur(&l.DrainTimeout, DefaultDrainTimeout)
	return l
}

// The bounds of DefaultMaxHold. MinDefaultMaxHold is also the hold of
// rules without a gap, the one-second hold of the ingester before holds
// were derived from the rules.
const (
	MinDefaultMaxHold = time.Second
	MaxDefaultMaxHold = time.Minute
)

// DefaultMaxHold is the hold of a pipeline that sets none: a quarter of
// the rules' gap, within [MinDefaultMaxHold, MaxDefaultMaxHold]; without a
// gap, MinDefaultMaxHold.
//
// A held event holds the watermark back: rule 1 of watermark.go caps its
// partition's mark at its time + L until it is signalled and committed, so
// every session closes up to one hold later in wall time than it would
// with events signalled at once. A quarter of the gap keeps that delay
// small against the inactivity a session waits out anyway, and still spans
// the clicks of one burst, so that a session takes one or two signals (one
// workflow task each) instead of one per second of activity. The cap keeps
// production rules (gap 30 min) closing within a minute of their deadlines
// and bounds the memory held (about hold × event rate events; MaxUncommitted
// and MaxPendingBytes still bound it, and a reader stopped by either sends
// its buffers at once).
func DefaultMaxHold(r session.Rules) time.Duration {
	if r.Gap <= 0 {
		return MinDefaultMaxHold
	}
	return min(max(r.Gap/4, MinDefaultMaxHold), MaxDefaultMaxHold)
}

// DefaultStartDelay is the start delay (TemporalSignaller.StartDelay) of a
// pipeline that sets none: twice the hold, so that the first two or three
// batches of a session's first burst reach its first workflow task instead
// of one task each, but never more than half the shortest time from a
// session's first event to anything due (its gap, break tolerance, expiry
// warning or maximum duration), so that the task comes well before any
// deadline. Without a gap it is 0: sessions start at once.
func DefaultStartDelay(r session.Rules, hold time.Duration) time.Duration {
	if r.Gap <= 0 {
		return 0
	}
	due := r.Gap
	for _, d := range []time.Duration{r.BreakTolerance, r.MaxDuration, r.MaxDuration - r.ExpiryWarning} {
		if d > 0 {
			due = min(due, d)
		}
	}
	return min(2*hold, due/2)
}

// StartDelay is the start delay in effect for rules r and hold: set's if
// set (0: none), else DefaultStartDelay.
func StartDelay(set *time.Duration, r session.Rules, hold time.Duration) time.Duration {
	if set != nil {
		return max(*set, 0)
	}
	return DefaultStartDelay(r, hold)
}

// Hold is the hold in effect for rules r: MaxHold if set, else
// DefaultMaxHold(r).
func (l Limits) Hold(r session.Rules) time.Duration {
	if l.MaxHold > 0 {
		return l.MaxHold
	}
	return DefaultMaxHold(r)
}

// maxSignalBytes keeps a batch, with the pipeline that rides along in the
// workflow input, well below Temporal's 2 MB payload limit.
const maxSignalBytes = 1 << 20

// Validate reports the first thing wrong with the config, before anything
// connects.
func (c *Config) Validate() error {
	var errs []error
	if c.Pipeline.Name == "" {
		errs = append(errs, errors.New("ingest: the pipeline has no name"))
	} else if err := c.Pipeline.Rules.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ingest %s: rules: %w", c.Pipeline.Name, err))
	}
	if c.Topic == "" {
		errs = append(errs, fmt.Errorf("ingest %s: no topic (set topic: in the pipelines file)", c.Pipeline.Name))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, fmt.Errorf("ingest %s: no Kafka brokers (--kafka-brokers or KAFKA_BROKERS)", c.Pipeline.Name))
	}
	if c.Temporal == nil {
		errs = append(errs, fmt.Errorf("ingest %s: no Temporal signaller", c.Pipeline.Name))
	}
	if c.Late == nil {
		errs = append(errs, fmt.Errorf("ingest %s: no late-event writer", c.Pipeline.Name))
	}
	if c.Limits.BatchBytes > maxSignalBytes {
		errs = append(errs, fmt.Errorf("ingest %s: BatchBytes %d: want at most %d (Temporal's payload limit is 2 MB)",
			c.Pipeline.Name, c.Limits.BatchBytes, maxSignalBytes))
	}
	return errors.Join(errs...)
}
