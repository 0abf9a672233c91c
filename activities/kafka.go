package activities

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
)

// NewKafkaNotifier returns the producer for Activities.Kafka. It applies the
// settings of sarama's idempotent producer — so a broker-side retry cannot
// write a notification twice — on top of cfg, which carries the caller's
// TLS, SASL and client id (a new default config when cfg is nil). cfg itself
// is not modified. Close the producer when the worker stops.
func NewKafkaNotifier(brokers []string, cfg *sarama.Config) (sarama.SyncProducer, error) {
	if len(brokers) == 0 {
		return nil, fmt.Errorf("kafka notifier: %w: no brokers", ErrNotifyConfig)
	}
	c := sarama.NewConfig()
	if cfg != nil {
		copied := *cfg
		c = &copied
	}
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true // a SyncProducer waits for them
	c.Producer.Return.Errors = true
	c.Net.MaxOpenRequests = 1 // idempotence needs in-order requests
	c.Producer.Retry.Max = max(c.Producer.Retry.Max, 3)
	if !c.Version.IsAtLeast(sarama.V2_8_0_0) {
		c.Version = sarama.V2_8_0_0
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("kafka notifier: %w", err)
	}
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("kafka notifier: connect to %v: %w", brokers, err)
	}
	return p, nil
}

// idempotencyHeader names the HTTP header and the Kafka record header that
// carry Notification.IdempotencyKey, so receivers can drop duplicates.
const idempotencyHeader = "Idempotency-Key"

// produce sends one notification keyed by session id, so a session's
// notices stay in order on one partition. Like Webhook.post it reports
// through the outcome. SendMessage ignores contexts, so produce stops
// waiting when ctx ends; the message may still be written afterwards,
// which the idempotency header lets consumers absorb.
func produce(ctx context.Context, p sarama.SyncProducer, topic, key string, value []byte, idemKey string) outcome {
	o := outcome{target: "kafka", dest: "topic " + topic}
	if topic == "" {
		o.err = fmt.Errorf("%w: Kafka is set but NotifyTopic is empty", ErrNotifyConfig)
		return o
	}
	msg := &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(key),
		Value:   sarama.ByteEncoder(value),
		Headers: []sarama.RecordHeader{{Key: []byte(idempotencyHeader), Value: []byte(idemKey)}},
	}
	type acked struct {
		partition int32
		offset    int64
		err       error
	}
	done := make(chan acked, 1)
	go func() {
		partition, offset, err := p.SendMessage(msg)
		done <- acked{partition, offset, err}
	}()
	select {
	case r := <-done:
		o.err = r.err
		if r.err == nil {
			o.status = fmt.Sprintf("acked partition %d offset %d", r.partition, r.offset)
		}
	case <-ctx.Done():
		o.err = fmt.Errorf("waiting for the broker's ack: %w", context.Cause(ctx))
	}
	return o
}
