package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/session"
)

// Shares of messy input, as `starter generate` sends by default: out of
// order within the lateness, sent twice, later than the lateness, broken.
const (
	shareOutOfOrder = 0.05
	shareDuplicates = 0.01
	shareLate       = 0.005
	shareMalformed  = 0.001
)

// Workload is what the generator offers; it goes into the results as run.
type Workload struct {
	Users        int     `json:"users"`
	ClickRate    float64 `json:"click_rate"`
	Devices      int     `json:"devices"`
	ChargingRate float64 `json:"charging_rate"`
	DurationS    float64 `json:"duration_s"`
	WarmupS      float64 `json:"warmup_s"`
	OutOfOrder   float64 `json:"out_of_order"`
	Duplicates   float64 `json:"duplicates"`
	Late         float64 `json:"late"`
	Malformed    float64 `json:"malformed"`
	Partitions   int     `json:"partitions_per_topic"`
	MaxInFlight  int     `json:"max_in_flight"`
	// FlushIntervalMs keeps its name from when one flag set every
	// pipeline's hold: it is the longest hold of the pipelines; MaxHoldMs
	// is --max-hold, 0 when each pipeline took its own. PipelineInfo has
	// each pipeline's.
	FlushIntervalMs int64 `json:"flush_interval_ms"`
	MaxHoldMs       int64 `json:"max_hold_ms"`
}

// generator feeds the pipelines' topics with generate.Live streams, one per
// profile, each paced for its own pipeline's gap and lateness.
type generator struct {
	streams  []stream
	producer sarama.AsyncProducer
	sent     atomic.Int64
	byTopic  map[string]*atomic.Int64
	failed   atomic.Int64
	breaks   *breakIndex
	logger   *slog.Logger
}

func newGenerator(brokers []string, streams []stream, logger *slog.Logger) (*generator, error) {
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner // a key stays on one partition
	cfg.Producer.Flush.Frequency = 10 * time.Millisecond
	cfg.Producer.MaxMessageBytes = 8 << 20
	p, err := sarama.NewAsyncProducer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("generator producer: %w", err)
	}
	g := &generator{streams: streams, producer: p, byTopic: map[string]*atomic.Int64{}, breaks: newBreakIndex(), logger: logger}
	for _, s := range streams {
		g.byTopic[s.topic] = &atomic.Int64{}
	}
	go func() {
		for e := range p.Errors() {
			if g.failed.Add(1) == 1 {
				logger.Warn("produce failed (first of possibly many)", "topic", e.Msg.Topic, "error", e.Err)
			}
		}
	}()
	return g, nil
}

// stream is one generated stream and the pipeline it feeds.
type stream struct {
	kind  generate.Kind
	topic string
	rules session.Rules
	opts  generate.LiveOptions
}

// run emits every stream until ctx ends, then closes the producer.
func (g *generator) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range g.streams {
		wg.Go(func() {
			if _, err := generate.Live(ctx, s.opts, g.emitter(ctx, s)); err != nil {
				g.logger.Error("generator stopped", "topic", s.topic, "error", err)
			}
		})
	}
	wg.Wait()
	if err := g.producer.Close(); err != nil {
		g.logger.Warn("close the producer", "error", err)
	}
}

// emitter produces a stream's messages and, for charging, notes the
// status-0 telemetry that can start a break (see breakIndex). Events the
// generator made late on purpose are left out of the index: the pipeline
// drops them.
func (g *generator) emitter(ctx context.Context, s stream) generate.Emit {
	dec := session.NewDecoder(&s.rules)
	lateness := s.opts.Lateness.Milliseconds()
	sent := g.byTopic[s.topic]
	return func(_ generate.Kind, key string, v []byte) error {
		if s.kind == generate.KindCharging {
			if k, e, err := dec.Decode(v); err == nil && e.Flags&session.FlagActive == 0 &&
				e.Time >= time.Now().UnixMilli()-lateness {
				g.breaks.add(string(k), e.Time)
			}
		}
		msg := &sarama.ProducerMessage{Topic: s.topic, Value: sarama.ByteEncoder(v)}
		if key != "" {
			msg.Key = sarama.StringEncoder(key)
		}
		select {
		case g.producer.Input() <- msg:
			g.sent.Add(1)
			sent.Add(1)
		case <-ctx.Done():
		}
		return nil
	}
}

// produced is the count of messages sent to each topic so far.
func (g *generator) produced() map[string]int64 {
	out := make(map[string]int64, len(g.byTopic))
	for t, n := range g.byTopic {
		out[t] = n.Load()
	}
	return out
}
