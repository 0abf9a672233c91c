package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/session"
)

// Reasons a message is a dead letter, in its "reason" header. They are
// stable: alerts and replays group by them.
const (
	ReasonNotJSON    = "not_json"    // not a JSON object
	ReasonMissingKey = "missing_key" // no non-empty string key
	ReasonBadTime    = "bad_time"    // no parseable event time
	ReasonTimeRange  = "time_range"  // event time outside [1970, 2100)
	ReasonBadField   = "bad_field"   // a profile field of the wrong type
	ReasonTooLarge   = "too_large"   // value above Limits.MaxValueBytes
)

// Headers a dead letter carries besides the original message's own.
const (
	HeaderReason          = "reason"
	HeaderError           = "error" // the decoder's message
	HeaderPipeline        = "pipeline"
	HeaderSourceTopic     = "source_topic"
	HeaderSourcePartition = "source_partition"
	HeaderSourceOffset    = "source_offset"
	// HeaderTruncated holds the original value's size when the broker
	// refused the whole value and only its first bytes could be kept.
	HeaderTruncated = "truncated"
)

// truncatedBytes is how much of a value is kept when the dead-letter topic
// refuses the whole message: well under Kafka's default 1 MB limit.
const truncatedBytes = 512 << 10

// reasonOf maps a decoding error to its reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, session.ErrNotJSON):
		return ReasonNotJSON
	case errors.Is(err, session.ErrMissingKey):
		return ReasonMissingKey
	case errors.Is(err, session.ErrTimeRange):
		return ReasonTimeRange
	case errors.Is(err, session.ErrBadTime):
		return ReasonBadTime
	default:
		return ReasonBadField
	}
}

// newDeadLetter is m as it goes to the dead-letter topic: the original key,
// value and headers, plus the reason and the source position.
func newDeadLetter(topic, pipeline string, m *sarama.ConsumerMessage, reason, detail string) *sarama.ProducerMessage {
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+6)
	for _, h := range m.Headers {
		if h != nil {
			headers = append(headers, sarama.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderReason), Value: []byte(reason)},
		sarama.RecordHeader{Key: []byte(HeaderError), Value: []byte(detail)},
		sarama.RecordHeader{Key: []byte(HeaderPipeline), Value: []byte(pipeline)},
		sarama.RecordHeader{Key: []byte(HeaderSourceTopic), Value: []byte(m.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderSourcePartition), Value: []byte(strconv.Itoa(int(m.Partition)))},
		sarama.RecordHeader{Key: []byte(HeaderSourceOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(m.Value), Headers: headers}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	return pm
}

// produceDeadLetters makes one attempt at writing msgs. On a partial failure
// it returns a *retryDeadLetters naming only the messages to send again, a
// message the broker refused as too large among them with its value
// truncated (HeaderTruncated says so): a dead letter must never stop the
// partition.
// SendMessages ignores contexts, so this stops waiting when ctx ends; the
// messages may still be written, and a redelivery may then write them twice
// (the source headers identify them).
func produceDeadLetters(ctx context.Context, p sarama.SyncProducer, msgs []*sarama.ProducerMessage) error {
	done := make(chan error, 1)
	go func() { done <- p.SendMessages(msgs) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("send %d dead letters: %w", len(msgs), context.Cause(ctx))
	}
	if err == nil {
		return nil
	}
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) {
		return fmt.Errorf("send %d dead letters: %w", len(msgs), err)
	}
	failed := make([]*sarama.ProducerMessage, 0, len(perrs))
	for _, pe := range perrs {
		if errors.Is(pe.Err, sarama.ErrMessageSizeTooLarge) {
			truncate(pe.Msg)
		}
		failed = append(failed, pe.Msg)
	}
	return &retryDeadLetters{msgs: failed, err: fmt.Errorf("send %d of %d dead letters: %w", len(failed), len(msgs), perrs[0].Err)}
}

// retryDeadLetters is a partial failure: only msgs are to be sent again.
type retryDeadLetters struct {
	msgs []*sarama.ProducerMessage
	err  error
}

func (e *retryDeadLetters) Error() string { return e.err.Error() }
func (e *retryDeadLetters) Unwrap() error { return e.err }

func truncate(m *sarama.ProducerMessage) {
	v, ok := m.Value.(sarama.ByteEncoder)
	if !ok || len(v) <= truncatedBytes {
		return
	}
	m.Value = v[:truncatedBytes]
	m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(HeaderTruncated), Value: []byte(strconv.Itoa(len(v)))})
}

// newDLQProducer is the default dead-letter producer: sarama's idempotent
// producer over the caller's connection settings, accepting values up to
// 16 MiB on the client side (the broker's limit decides; truncate handles
// its refusal).
func newDLQProducer(brokers []string, base *sarama.Config) (sarama.SyncProducer, error) {
	c := copyConfig(base)
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.MaxMessageBytes = 16 << 20
	c.Net.MaxOpenRequests = 1 // idempotence needs in-order requests
	c.Producer.Retry.Max = max(c.Producer.Retry.Max, 5)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("dead-letter producer config: %w", err)
	}
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("dead-letter producer for %v: %w", brokers, err)
	}
	return p, nil
}

// copyConfig returns a copy of base (a new default when nil) at a version
// with idempotent producers and consumer groups.
func copyConfig(base *sarama.Config) *sarama.Config {
	c := sarama.NewConfig()
	if base != nil {
		copied := *base
		c = &copied
	}
	if !c.Version.IsAtLeast(sarama.V2_8_0_0) {
		c.Version = sarama.V2_8_0_0
	}
	return c
}
