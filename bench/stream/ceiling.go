package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Temporal's own ceiling: SignalWithStart of a workflow that does nothing
// but receive, at the concurrency the ingesters signal with, against the
// same server, from a worker in this process. The pipeline's signals/s
// divided by this is how much of what Temporal can take the pipeline uses.

const (
	noopWorkflowName = "BenchNoopWorkflow"
	noopTaskQueue    = "bench-noop" // its own queue: a backlog left behind cannot slow the pipelines
	noopSignal       = "noop"
	noopKeys         = 5000 // workflow ids the signals go round
	// noopDrainLimit bounds the wait for the worker to take in every
	// accepted signal after the load stops.
	noopDrainLimit = time.Minute
)

// noopWorkflow receives signals and completes after n of them, draining
// the ones already delivered so that none is lost with the run (a later
// SignalWithStart then starts the next run).
func noopWorkflow(ctx workflow.Context, n int) error {
	ch := workflow.GetSignalChannel(ctx, noopSignal)
	for range n {
		ch.Receive(ctx, nil)
	}
	for ch.ReceiveAsync(nil) {
	}
	return nil
}

// CeilingResult is the no-op workflow's SignalWithStart throughput.
type CeilingResult struct {
	Concurrency   int     `json:"concurrency"`
	SignalsPerRun int     `json:"signals_per_run"`
	PayloadBytes  int     `json:"payload_bytes"`
	Seconds       float64 `json:"seconds"`
	Signals       int64   `json:"signals"`
	Errors        int64   `json:"errors"`
	LastError     string  `json:"last_error,omitempty"`
	MeanCallMs    float64 `json:"mean_call_ms"`
	// SignalsPerSec is what the server accepted while the load ran: the
	// raw SignalWithStart throughput, the ceiling the pipeline's signals/s
	// is compared with.
	SignalsPerSec float64 `json:"signals_per_s"`
	// DrainSeconds is how long the worker then took to take in the signals
	// accepted but not yet handled (at most a minute: Drained says whether
	// it got there). HandledPerSec is the signals the workflows took in
	// over the load and the drain: the rate at which signals can be both
	// accepted and handled.
	DrainSeconds  float64 `json:"drain_s"`
	Drained       bool    `json:"drained"`
	Handled       int64   `json:"handled"`
	HandledPerSec float64 `json:"handled_per_s"`
	// CPUSeconds is what this process (client and worker, and temporaltest)
	// spent over the load and the drain; ServerCPUSeconds what the dev
	// server spent.
	CPUSeconds       float64 `json:"cpu_s"`
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
}

// ceilingPayload is about one signalled event with its batch envelope.
var ceilingPayload = make([]byte, 200)

func runCeiling(ctx context.Context, c client.Client, serverPID int, p *probe, opts worker.Options, concurrency, perRun int, d time.Duration) (CeilingResult, error) {
	w := worker.New(c, noopTaskQueue, opts)
	w.RegisterWorkflowWithOptions(noopWorkflow, workflow.RegisterOptions{Name: noopWorkflowName})
	if err := w.Start(); err != nil {
		return CeilingResult{}, fmt.Errorf("start the no-op worker: %w", err)
	}
	defer w.Stop()
	cpu0, serverCPU0 := cpuSeconds(os.Getpid()), cpuSeconds(serverPID)
	res, err := signalLoad(ctx, c, concurrency, perRun, d)
	if err != nil {
		return res, err
	}
	drain := time.Now()
	res.Drained = waitUntil(ctx, noopDrainLimit, func() bool { return p.noopSignals.Load() >= res.Signals })
	res.DrainSeconds = time.Since(drain).Seconds()
	res.Handled = p.noopSignals.Load()
	res.HandledPerSec = float64(res.Handled) / (res.Seconds + res.DrainSeconds)
	res.CPUSeconds, res.ServerCPUSeconds = cpuSeconds(os.Getpid())-cpu0, cpuSeconds(serverPID)-serverCPU0
	return res, nil
}

// signalLoad keeps concurrency SignalWithStart calls going for d. Calls
// under way at the end finish and count: a call must not get a shorter RPC
// timeout for starting late in the window (the SDK derives it from the
// context's deadline).
func signalLoad(ctx context.Context, c client.Client, concurrency, perRun int, d time.Duration) (CeilingResult, error) {
	res := CeilingResult{Concurrency: concurrency, SignalsPerRun: perRun, PayloadBytes: len(ceilingPayload)}
	var next, ok, failed, busyNs atomic.Int64
	var lastErr atomic.Value // string: an atomic.Value keeps one concrete type
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				id := "bench-noop/" + strconv.FormatInt(next.Add(1)%noopKeys, 10)
				t0 := time.Now()
				_, err := c.SignalWithStartWorkflow(ctx, id, noopSignal, ceilingPayload,
					client.StartWorkflowOptions{ID: id, TaskQueue: noopTaskQueue}, noopWorkflowName, perRun)
				switch {
				case err == nil:
					ok.Add(1)
					busyNs.Add(int64(time.Since(t0)))
				case ctx.Err() == nil:
					failed.Add(1)
					lastErr.Store(err.Error())
				}
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Signals, res.Errors = ok.Load(), failed.Load()
	if msg, ok := lastErr.Load().(string); ok {
		res.LastError = msg
	}
	res.SignalsPerSec = float64(res.Signals) / res.Seconds
	if res.Signals == 0 {
		return res, fmt.Errorf("no SignalWithStart succeeded in %v: %s", d, res.LastError)
	}
	res.MeanCallMs = float64(busyNs.Load()) / float64(res.Signals) / 1e6
	return res, nil
}

// waitUntil polls cond every 100ms until it holds (true), limit passes or
// ctx ends (false).
func waitUntil(ctx context.Context, limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
