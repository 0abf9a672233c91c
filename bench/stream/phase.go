package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// closeGrace is how long after the input stops the benchmark still waits
// for sessions whose deadline the watermark passed in time to reach Parquet
// and the webhook.
const closeGrace = 15 * time.Second

// historyBudget bounds the counting of history after a run; a server left
// with a large backlog answers slowly.
const historyBudget = 3 * time.Minute

// bench runs everything against one Temporal server.
type bench struct {
	o         options
	name      string
	dir       string
	pipelines []pipeline
	s3        *minioServer
	logger    *slog.Logger
}

// ServerResult is one server's part of the results.
type ServerResult struct {
	Server   string          `json:"server"`
	Error    string          `json:"error,omitempty"`
	Ceiling  *CeilingResult  `json:"ceiling,omitempty"`
	Pipeline *PipelineResult `json:"pipeline,omitempty"`
	Timeline []Sample        `json:"timeline,omitempty"`
	Open     *OpenResult     `json:"open,omitempty"`
}

// run starts the server and the worker (in this process, with a webhook
// receiver and a Parquet-write timer), measures the ceiling, then runs the
// pipelines.
func (b *bench) run(ctx context.Context) (ServerResult, error) {
	res := ServerResult{Server: b.name}
	bucket := "bench-" + b.name
	srv, err := b.startServer(ctx, bucket)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	pr := &probe{closes: newCloseLog(), clock: newClockTimeline(b.pipelines)}
	wopts := worker.Options{Interceptors: []interceptor.WorkerInterceptor{pr}, MaxConcurrentWorkflowTaskPollers: b.o.wftPollers}
	c := srv.client()
	if b.o.ceilingDuration > 0 {
		concurrency := b.o.maxInFlight * len(b.pipelines)
		b.logger.Info("ceiling: SignalWithStart of a no-op workflow", "concurrency", concurrency, "for", b.o.ceilingDuration)
		cr, err := runCeiling(ctx, c, srv.pid(), pr, wopts, concurrency, b.o.ceilingSignals, b.o.ceilingDuration)
		res.Ceiling = &cr
		if err != nil {
			return res, fmt.Errorf("ceiling: %w", err)
		}
		b.logger.Info("ceiling measured", "signals_per_s", round(cr.SignalsPerSec), "mean_call_ms", round(cr.MeanCallMs),
			"errors", cr.Errors, "drain_s", round(cr.DrainSeconds), "handled_per_s", round(cr.HandledPerSec))
	}

	hook := startWebhook(pr.closes)
	defer hook.Close()
	acts := &activities.Activities{S3: b.s3.client, Bucket: bucket,
		Webhook: &activities.Webhook{URL: hook.URL + "/hook", Client: &http.Client{Timeout: 30 * time.Second}}}
	w := workflows.NewWorkers(c, workflows.TaskQueue, wopts, acts)
	if err := w.Start(); err != nil {
		return res, fmt.Errorf("start worker: %w", err)
	}
	stopWorker := sync.OnceFunc(w.Stop)
	defer stopWorker()
	pres, timeline, err := b.runPipelines(ctx, srv, bucket, pr, stopWorker)
	res.Pipeline, res.Timeline = pres, timeline
	if pres != nil && res.Ceiling != nil && res.Ceiling.SignalsPerSec > 0 {
		pres.CeilingShare = pres.SignalsPerSec / res.Ceiling.SignalsPerSec
	}
	return res, err
}

// startServer starts this child's Temporal server and makes its bucket.
func (b *bench) startServer(ctx context.Context, bucket string) (temporalServer, error) {
	b.logger.Info("starting Temporal")
	srv, err := startTemporal(ctx, b.name, b.o.bin, b.dir, b.o.dynConfig, quiet(b.logger, b.o.verbose))
	if err != nil {
		return nil, err
	}
	if err := b.s3.makeBucket(ctx, bucket); err != nil {
		srv.stop()
		return nil, err
	}
	return srv, nil
}

// countingSignaller counts what Temporal accepted from the ingesters.
type countingSignaller struct {
	ingest.Signaller
	events, signals, errors atomic.Int64
}

func (s *countingSignaller) SignalEvents(ctx context.Context, key string, batch workflows.EventBatch) error {
	if err := s.Signaller.SignalEvents(ctx, key, batch); err != nil {
		s.errors.Add(1)
		return err
	}
	s.signals.Add(1)
	s.events.Add(int64(len(batch.Events)))
	return nil
}

// phase is one pipeline run's moving parts.
type phase struct {
	gen       *generator
	sigs      map[string]*countingSignaller
	ingesters []*ingest.Ingester
	reg       *prometheus.Registry
	smp       *sampler
}

// runPipelines feeds the pipelines for --duration, stops the input, and
// accounts for what happened.
func (b *bench) runPipelines(ctx context.Context, srv temporalServer, bucket string, pr *probe, stopWorker func()) (*PipelineResult, []Sample, error) {
	cluster, brokers, err := startKafka(b.pipelines)
	if err != nil {
		return nil, nil, err
	}
	defer cluster.Close()
	lag, err := newLagReader(brokers, b.pipelines)
	if err != nil {
		return nil, nil, err
	}
	defer lag.close()
	ph, err := b.newPhase(srv.client(), brokers, bucket)
	if err != nil {
		return nil, nil, err
	}
	ph.smp = newSampler(ph, lag, pr, srv.pid())

	b.logger.Info("pipelines: generator → kafka → ingesters → temporal → parquet",
		"users", b.o.users, "click_rate", b.o.clickRate, "devices", b.o.devices, "charging_rate", b.o.chargingRate, "for", b.o.duration)
	stoppedAt := ph.feed(ctx, b, srv)
	if ctx.Err() != nil {
		return nil, ph.smp.samples, ctx.Err()
	}

	// Sessions whose deadline passed in time may still be on their way to
	// Parquet and the webhook. Then the worker stops, so that the history
	// counted is a snapshot and the server answers the counting quickly.
	b.logger.Info("input stopped; waiting for the last closes", "grace", closeGrace)
	if wait := closeGrace - time.Since(stoppedAt); wait > 0 {
		time.Sleep(wait)
	}
	closes := pr.closes.snapshot()
	stopWorker()
	b.logger.Info("worker stopped; counting history")
	hctx, cancel := context.WithTimeout(ctx, historyBudget)
	hist, histErr := countHistory(hctx, srv.client(), srv.namespace())
	cancel()
	in := summaryInput{
		o: b.o, pipelines: b.pipelines, samples: ph.smp.samples, start: ph.smp.start, stoppedAt: stoppedAt,
		closes: closes, sharedIDs: pr.closes.sharedIDs(), clock: pr.clock, breaks: ph.gen.breaks, history: hist, rows: b.parquetRows(ctx, bucket), reg: ph.reg,
	}
	res := summarize(in)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	logSlowest(lctx, srv.client(), srv.namespace(), in, slowestLogged, b.logger)
	cancel()
	res.ClockQuery, res.ClockQueryFailed = dist(ph.smp.clockQueries), ph.smp.clockFailed
	if histErr != nil {
		// The other figures stand; the history ones are marked missing.
		b.logger.Warn("history not counted", "error", histErr)
		res.HistoryError, res.HistoryPerEvent = histErr.Error(), 0
		res.TasksPerEvent, res.TasksPerEventSE = 0, 0
	}
	return res, ph.smp.samples, ctx.Err()
}

// slowestLogged is how many of the slowest closes a run logs with their
// histories.
const slowestLogged = 5

// startDelay is the start delay of the pipeline's sessions given
// --start-delay, by the worker's precedence.
func (p *pipeline) startDelay(o options) time.Duration {
	return ingest.StartDelay(p.cfg.Delay(o.startDelay), p.wf.Rules, p.hold(o.maxHold))
}

// hold is the max hold of the pipeline's ingester given --max-hold (0:
// unset), by the worker's precedence, so that a plain run measures what a
// deployment of the same pipelines gets.
func (p pipeline) hold(flag time.Duration) time.Duration {
	return ingest.Limits{MaxHold: p.cfg.Hold(flag)}.Hold(p.wf.Rules)
}

// newPhase builds the generator and the ingesters.
func (b *bench) newPhase(c client.Client, brokers []string, bucket string) (*phase, error) {
	gen, err := newGenerator(brokers, b.streams(), b.logger)
	if err != nil {
		return nil, err
	}
	kcfg, err := ingest.KafkaOptions{ClientID: "sessionflow-bench"}.Config()
	if err != nil {
		return nil, err
	}
	ph := &phase{gen: gen, sigs: map[string]*countingSignaller{}, reg: prometheus.NewRegistry()}
	met := ingest.NewMetrics(ph.reg)
	logger := quiet(b.logger, b.o.verbose).With("component", "ingest")
	for _, p := range b.pipelines {
		sig := &countingSignaller{Signaller: &ingest.TemporalSignaller{Client: c, Pipeline: p.wf, StartDelay: p.startDelay(b.o)}}
		ing, err := ingest.New(ingest.Config{
			Pipeline: p.wf, Topic: p.cfg.Topic, Brokers: brokers, Kafka: kcfg, GroupID: groupID(p.cfg.Name),
			Temporal: sig, Late: &ingest.S3Late{S3: b.s3.client, Bucket: bucket}, Metrics: met, Logger: logger,
			Limits: ingest.Limits{MaxInFlight: b.o.maxInFlight, MaxHold: p.hold(b.o.maxHold)},
		})
		if err != nil {
			return nil, err
		}
		ph.sigs[p.cfg.Name] = sig
		ph.ingesters = append(ph.ingesters, ing)
	}
	return ph, nil
}

// feed runs the ingesters, the generator and the watchers for --duration,
// then stops the generator and the ingesters (which hand their partitions
// over: buffered events signalled, offsets committed). It returns when the
// input stopped.
func (ph *phase) feed(ctx context.Context, b *bench, srv temporalServer) time.Time {
	ingCtx, stopIngest := context.WithCancel(ctx)
	var ingesting sync.WaitGroup
	for _, ing := range ph.ingesters {
		ingesting.Go(func() {
			if err := ing.Run(ingCtx); err != nil {
				b.logger.Error("ingester failed", "error", err)
			}
		})
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	ph.smp.start = time.Now()
	watching.Go(func() { ph.smp.countOpen(watchCtx, srv.client(), srv.namespace()) })
	watching.Go(func() { ph.smp.timeClockQueries(watchCtx, srv.client(), b.pipelines) })
	watching.Go(func() { ph.smp.run(watchCtx, time.Second, b.progress) })

	genCtx, stopGen := context.WithTimeout(ctx, b.o.duration)
	ph.gen.run(genCtx)
	stopGen()
	stoppedAt := time.Now()
	stopIngest()
	ingesting.Wait()
	stopWatch()
	watching.Wait()
	// One more look after the hand-over: the lag left behind.
	ph.smp.samples = append(ph.smp.samples, ph.smp.take())
	return stoppedAt
}

// streams are the generated inputs, one per pipeline, paced for its rules.
func (b *bench) streams() []stream {
	var out []stream
	for i, p := range b.pipelines {
		r := p.wf.Rules
		opts := generate.LiveOptions{Gap: r.Gap, Lateness: r.Lateness, Seed: b.o.seed + uint64(i),
			OutOfOrder: shareOutOfOrder, Duplicates: shareDuplicates, Late: shareLate, Malformed: shareMalformed}
		kind := generate.KindClick
		switch r.Profile {
		case session.Clickstream:
			opts.Users, opts.Rate = b.o.users, b.o.clickRate
		case session.Charging:
			kind, opts.Devices, opts.Rate = generate.KindCharging, b.o.devices, b.o.chargingRate
		}
		if opts.Users+opts.Devices == 0 {
			continue
		}
		out = append(out, stream{kind: kind, topic: p.cfg.Topic, rules: r, opts: opts})
	}
	return out
}

func (b *bench) progress(s Sample) {
	b.logger.Info("progress", "t", fmt.Sprintf("%.0fs", s.T), "produced", s.Produced,
		"signalled_events", s.Events, "signals", s.Signals, "worker_backlog", s.Signals-s.Handled,
		"lag", s.Lag, "watermark_lag_s", roundMap(s.WatermarkLag), "open_sessions", s.OpenSessions, "rss_mib", s.RSS>>20)
}

// parquetRows counts the session rows in S3 per pipeline: a check that what
// the Parquet-write timer saw is what is there.
func (b *bench) parquetRows(ctx context.Context, bucket string) map[string]int {
	out := map[string]int{}
	for _, p := range b.pipelines {
		prefix := p.wf.Prefix
		if prefix == "" {
			prefix = p.wf.Name // the workflows' default
		}
		recs, err := store.ReadSessions(ctx, b.s3.client, bucket, prefix)
		if err != nil {
			b.logger.Warn("parquet not read", "pipeline", p.cfg.Name, "error", err)
			continue
		}
		out[p.cfg.Name] = len(recs)
	}
	return out
}
