package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Ingester reads one pipeline's topic as a member of its consumer group.
// Build it with New, run it with Run; it is not reusable after Run returns.
type Ingester struct {
	cfg   Config
	lim   Limits
	log   *slog.Logger
	met   *pipelineMetrics
	kafka *sarama.Config // the consumer group's
	dlq   sarama.SyncProducer
	wm    *watermark

	signals *workQueue // MaxInFlight workers for SignalWithStart calls
	// clockMu serializes what the ingester says to the clock: a wake's
	// read-publish-read must not interleave with a periodic update.
	clockMu sync.Mutex
}

// New validates cfg and builds the ingester. It connects to nothing; Run
// does.
func New(cfg Config) (*Ingester, error) {
	cfg.Limits = cfg.Limits.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + ".dlq"
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "sessionflow-" + cfg.Pipeline.Name
	}
	if cfg.Source == "" {
		host, _ := os.Hostname()
		cfg.Source = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	k := copyConfig(cfg.Kafka)
	if cfg.Kafka == nil {
		k.Consumer.Offsets.Initial = sarama.OffsetOldest
	}
	k.Consumer.Offsets.AutoCommit.Enable = false // committed in step with the watermark
	k.Consumer.Return.Errors = true
	if cooperative(k) {
		return nil, fmt.Errorf("ingest %s: the consumer group's balance strategies are all cooperative; "+
			"the ingester hands partitions over per session and needs an eager one (range, roundrobin, sticky)", cfg.Pipeline.Name)
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("ingest %s: kafka config: %w", cfg.Pipeline.Name, err)
	}
	return &Ingester{
		cfg:   cfg,
		lim:   cfg.Limits,
		log:   logger.With("pipeline", cfg.Pipeline.Name, "topic", cfg.Topic),
		met:   cfg.Metrics.forPipeline(cfg.Pipeline.Name),
		kafka: k,
		dlq:   cfg.DLQ,
		wm:    newWatermark(cfg.Topic, cfg.Pipeline.Rules.Lateness, cfg.Limits.IdleAfter),
	}, nil
}

// Run consumes until ctx ends, then hands its partitions over: buffered
// events are signalled, offsets committed, the watermark published.
func (i *Ingester) Run(ctx context.Context) error {
	if i.dlq == nil {
		p, err := newDLQProducer(i.cfg.Brokers, i.cfg.Kafka)
		if err != nil {
			return fmt.Errorf("ingest %s: %w", i.cfg.Pipeline.Name, err)
		}
		i.dlq = p
		defer p.Close()
	}
	i.signals = newWorkQueue(i.lim.MaxInFlight)
	defer i.signals.close()
	group, err := sarama.NewConsumerGroup(i.cfg.Brokers, i.cfg.GroupID, i.kafka)
	if err != nil {
		return fmt.Errorf("ingest %s: join consumer group %s at %v: %w", i.cfg.Pipeline.Name, i.cfg.GroupID, i.cfg.Brokers, err)
	}
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			i.log.Warn("kafka consumer", "error", err)
		}
	}()
	defer func() {
		if err := group.Close(); err != nil {
			i.log.Warn("leave consumer group", "error", err)
		}
		<-errsDone
	}()
	i.log.Info("ingester starting", "group", i.cfg.GroupID, "source", i.cfg.Source, "brokers", i.cfg.Brokers)
	backoff := time.Second
	for {
		err := group.Consume(ctx, []string{i.cfg.Topic}, &groupHandler{i: i})
		if ctx.Err() != nil {
			i.log.Info("ingester stopped")
			return nil
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return fmt.Errorf("ingest %s: %w", i.cfg.Pipeline.Name, err)
		}
		if err != nil {
			i.log.Warn("consumer group session failed; rejoining", "error", err, "backoff", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
	}
}

// cooperative reports whether sarama would run the group with the
// cooperative protocol: every configured strategy supports it.
func cooperative(c *sarama.Config) bool {
	strategies := c.Consumer.Group.Rebalance.GroupStrategies
	if s := c.Consumer.Group.Rebalance.Strategy; s != nil {
		strategies = []sarama.BalanceStrategy{s}
	}
	for _, s := range strategies {
		rp, ok := s.(sarama.RebalanceProtocolBalanceStrategy)
		if !ok || !slices.Contains(rp.SupportedProtocols(), sarama.RebalanceProtocolCooperative) {
			return false
		}
	}
	return len(strategies) > 0
}

// groupHandler adapts the ingester to sarama's session life cycle. With the
// default (eager) rebalance strategy every rebalance ends the session: all
// partitions are drained and handed over, and the next session starts
// afresh.
type groupHandler struct {
	i   *Ingester
	gen *generation
}

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.gen = h.i.startGeneration(sess)
	return nil
}

func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	return h.gen.consume(claim)
}

func (h *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.gen.end()
	return nil
}

// sleep waits d unless ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
