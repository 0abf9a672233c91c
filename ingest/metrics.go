package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingesters' Prometheus metrics. One value serves every
// pipeline of a process (each series is labelled with its pipeline); it is
// safe for concurrent use.
type Metrics struct {
	Messages       *prometheus.CounterVec   // pipeline, partition
	Invalid        *prometheus.CounterVec   // pipeline, reason
	Late           *prometheus.CounterVec   // pipeline
	Signals        *prometheus.CounterVec   // pipeline, outcome (ok, error)
	BatchSize      *prometheus.HistogramVec // pipeline
	ConsumerLag    *prometheus.GaugeVec     // pipeline, partition
	Watermark      *prometheus.GaugeVec     // pipeline: the clock's W, epoch seconds
	WatermarkLag   *prometheus.GaugeVec     // pipeline: wall clock − W, seconds
	InFlight       *prometheus.GaugeVec     // pipeline: SignalWithStart calls under way
	Uncommitted    *prometheus.GaugeVec     // pipeline: messages read, not yet committed
	ClockUpdates   *prometheus.CounterVec   // pipeline, outcome
	Backpressured  *prometheus.CounterVec   // pipeline: times reading paused
	AbandonedDrain *prometheus.CounterVec   // pipeline: events abandoned uncommitted at a rebalance
}

// NewMetrics makes the metrics and registers them with reg (the worker's
// own registry; tests pass a fresh one).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "sessionflow", "ingest"
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Messages: counter("messages_total", "Kafka messages consumed.", "pipeline", "partition"),
		Invalid:  counter("invalid_total", "Messages sent to the dead-letter topic, by reason.", "pipeline", "reason"),
		Late:     counter("late_total", "Events below the watermark on arrival, written to the late output.", "pipeline"),
		Signals:  counter("signals_total", "SignalWithStart calls carrying event batches, by outcome.", "pipeline", "outcome"),
		BatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_events",
			Help: "Events per signalled batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}, []string{"pipeline"}),
		ConsumerLag:    gauge("consumer_lag", "Messages between the last one read and the partition's high-water mark.", "pipeline", "partition"),
		Watermark:      gauge("watermark_seconds", "The pipeline's watermark as the clock last reported it, epoch seconds.", "pipeline"),
		WatermarkLag:   gauge("watermark_lag_seconds", "Wall clock minus the watermark.", "pipeline"),
		InFlight:       gauge("inflight_signals", "SignalWithStart calls under way.", "pipeline"),
		Uncommitted:    gauge("uncommitted_messages", "Messages read whose offsets are not committed yet.", "pipeline"),
		ClockUpdates:   counter("clock_updates_total", "Watermark updates sent to the clock, by outcome.", "pipeline", "outcome"),
		Backpressured:  counter("backpressure_total", "Times a partition stopped reading because too much was pending.", "pipeline"),
		AbandonedDrain: counter("abandoned_events_total", "Events left uncommitted when a revoked partition could not drain in time.", "pipeline"),
	}
	reg.MustRegister(m.Messages, m.Invalid, m.Late, m.Signals, m.BatchSize, m.ConsumerLag, m.Watermark,
		m.WatermarkLag, m.InFlight, m.Uncommitted, m.ClockUpdates, m.Backpressured, m.AbandonedDrain)
	return m
}

// pipelineMetrics are the series of one pipeline, resolved once.
type pipelineMetrics struct {
	m                      *Metrics
	pipeline               string
	late                   prometheus.Counter
	signalsOK, signalsErr  prometheus.Counter
	batchSize              prometheus.Observer
	watermark, wmLag       prometheus.Gauge
	inFlight, uncommitted  prometheus.Gauge
	clockOK, clockErr      prometheus.Counter
	backpressure, abandons prometheus.Counter
}

// forPipeline resolves a pipeline's series; a nil Metrics gives series that
// go nowhere.
func (m *Metrics) forPipeline(name string) *pipelineMetrics {
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry())
	}
	return &pipelineMetrics{
		m: m, pipeline: name,
		late:      m.Late.WithLabelValues(name),
		signalsOK: m.Signals.WithLabelValues(name, "ok"), signalsErr: m.Signals.WithLabelValues(name, "error"),
		batchSize: m.BatchSize.WithLabelValues(name),
		watermark: m.Watermark.WithLabelValues(name), wmLag: m.WatermarkLag.WithLabelValues(name),
		inFlight: m.InFlight.WithLabelValues(name), uncommitted: m.Uncommitted.WithLabelValues(name),
		clockOK: m.ClockUpdates.WithLabelValues(name, "ok"), clockErr: m.ClockUpdates.WithLabelValues(name, "error"),
		backpressure: m.Backpressured.WithLabelValues(name), abandons: m.AbandonedDrain.WithLabelValues(name),
	}
}

func (pm *pipelineMetrics) invalid(reason string) prometheus.Counter {
	return pm.m.Invalid.WithLabelValues(pm.pipeline, reason)
}
