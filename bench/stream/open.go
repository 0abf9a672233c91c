package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// The worker's memory with many sessions open at once (issue #7: worker RSS
// ≤ 1 GiB at 10,000 open sessions). It runs in a child process of its own,
// before the pipelines' one, so that neither the broker's log nor the
// pipelines' sessions are in the figure: the process holds the real worker
// (workflows.NewWorkers) and the client that opens the sessions — and, for
// temporaltest, the Temporal server.

const (
	openPipeline = "open"
	// openMaxWait keeps the sessions asleep while they are measured: this
	// phase is about what an open session costs in memory; what waking
	// costs is the pipelines' business.
	openMaxWait = 30 * time.Minute
	// openTakeInLimit bounds the wait for the worker to run every
	// session's first workflow task.
	openTakeInLimit = 10 * time.Minute
	// openSettle is how long RSS is watched once every session is in.
	openSettle = 10 * time.Second
	// openAttempts is how often a session's opening is tried.
	openAttempts = 5
	// sdkStickyCacheSize is the Go SDK's default sticky workflow cache
	// (internal defaultStickyCacheSize; the worker binary keeps it): past
	// it, sessions are evicted and replayed on their next task.
	sdkStickyCacheSize = 10_000
)

// OpenResult is the worker process's memory with --open-sessions sessions
// open.
type OpenResult struct {
	Sessions  int    `json:"sessions"` // asked for
	Started   int64  `json:"started"`  // sessions whose SignalWithStart was accepted
	Errors    int64  `json:"errors"`   // failed calls, each retried (up to openAttempts in all)
	LastError string `json:"last_error,omitempty"`
	// StartSeconds is how long the server took to accept them all;
	// TakeInSeconds how long until the workflows had taken in every first
	// signal (from the first call): then every session is open in the
	// worker's cache.
	StartSeconds  float64 `json:"start_s"`
	TakenIn       int64   `json:"taken_in"`
	TakeInSeconds float64 `json:"take_in_s"`
	AllTakenIn    bool    `json:"all_taken_in"`
	Running       int64   `json:"running"`          // running SessionWorkflows at the end (visibility)
	CacheSize     int     `json:"cache_size"`       // the sticky workflow cache, in workflows
	RSSBefore     int64   `json:"rss_before_bytes"` // with the worker started, no session yet
	MaxRSS        int64   `json:"max_rss_bytes"`    // over the phase
	RSSAfter      int64   `json:"rss_after_bytes"`
	// HeapBefore and HeapAfter are the live Go heap after a forced GC: the
	// memory the sessions hold, without what the GC has not returned yet.
	HeapBefore int64 `json:"heap_before_bytes"`
	HeapAfter  int64 `json:"heap_after_bytes"`
	ServerRSS  int64 `json:"server_rss_bytes,omitempty"` // the dev server, at the end
	// CPUSeconds is what this process (worker and client) spent from the
	// first call until every session was taken in; ServerCPUSeconds what
	// the dev server spent meanwhile: where the two cores go.
	CPUSeconds       float64 `json:"cpu_s"`
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	Error            string  `json:"error,omitempty"`
}

// PerSessionBytes is the live heap each open session adds.
func (r *OpenResult) PerSessionBytes() float64 {
	if r.TakenIn == 0 {
		return 0
	}
	return float64(r.HeapAfter-r.HeapBefore) / float64(r.TakenIn)
}

// openSessionsPipeline is the clickstream pipeline of pipelines.yaml with
// the production rules (30-minute gap, 2-hour maximum), so that nothing
// closes while the sessions are counted.
func (b *bench) openSessionsPipeline() (workflows.Pipeline, error) {
	for _, p := range b.pipelines {
		if p.wf.Rules.Profile != session.Clickstream {
			continue
		}
		wf := p.wf
		rules, err := session.Defaults(session.Clickstream)
		if err != nil {
			return wf, err
		}
		rules.EndMarker = wf.Rules.EndMarker
		wf.Name, wf.Prefix, wf.Rules, wf.MaxWait = openPipeline, openPipeline, rules, openMaxWait
		return wf, nil
	}
	return workflows.Pipeline{}, fmt.Errorf("no clickstream pipeline in pipelines.yaml")
}

// runOpen starts the server and the worker, opens --open-sessions sessions
// of one event each through the ingesters' signaller, waits until the
// worker has taken every one in, and measures the process.
func (b *bench) runOpen(ctx context.Context) (ServerResult, error) {
	res := ServerResult{Server: b.name}
	wf, err := b.openSessionsPipeline()
	if err != nil {
		return res, err
	}
	bucket := "bench-open-" + b.name
	srv, err := b.startServer(ctx, bucket)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	pr := &probe{closes: newCloseLog()}
	acts := &activities.Activities{S3: b.s3.client, Bucket: bucket,
		Webhook: &activities.Webhook{URL: "http://127.0.0.1:1/unused", Client: &http.Client{Timeout: time.Second}}}
	w := workflows.NewWorkers(srv.client(), workflows.TaskQueue,
		worker.Options{Interceptors: []interceptor.WorkerInterceptor{pr}, MaxConcurrentWorkflowTaskPollers: b.o.wftPollers}, acts)
	if err := w.Start(); err != nil {
		return res, fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()

	or := &OpenResult{Sessions: b.o.openSessions, CacheSize: sdkStickyCacheSize}
	res.Open = or
	or.HeapBefore, or.RSSBefore = liveHeap(), rss(os.Getpid())
	var maxRSS atomic.Int64
	maxRSS.Store(or.RSSBefore)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-t.C:
				if v := rss(os.Getpid()); v > maxRSS.Load() {
					maxRSS.Store(v)
				}
			}
		}
	}()

	b.logger.Info("open sessions: one event each, production clickstream rules", "sessions", b.o.openSessions,
		"concurrency", b.o.maxInFlight*len(b.pipelines))
	start := time.Now()
	cpu0, serverCPU0 := cpuSeconds(os.Getpid()), cpuSeconds(srv.pid())
	openSessions(ctx, &ingest.TemporalSignaller{Client: srv.client(), Pipeline: wf}, or, b.o.maxInFlight*len(b.pipelines))
	or.StartSeconds = time.Since(start).Seconds()
	if or.Started == 0 {
		return res, fmt.Errorf("no session opened: %s", or.LastError)
	}
	b.logger.Info("sessions accepted; waiting for the worker to take them in", "started", or.Started,
		"errors", or.Errors, "took_s", round(or.StartSeconds))
	or.AllTakenIn = waitUntil(ctx, openTakeInLimit, func() bool { return pr.sessionSignals.Load() >= or.Started })
	or.TakeInSeconds = time.Since(start).Seconds()
	or.TakenIn = pr.sessionSignals.Load()
	or.CPUSeconds = cpuSeconds(os.Getpid()) - cpu0
	if srv.pid() != 0 {
		or.ServerCPUSeconds = cpuSeconds(srv.pid()) - serverCPU0
	}
	time.Sleep(openSettle)
	stopWatch()
	or.RSSAfter, or.HeapAfter = rss(os.Getpid()), liveHeap()
	or.MaxRSS = max(maxRSS.Load(), or.RSSAfter)
	if pid := srv.pid(); pid != 0 {
		or.ServerRSS = rss(pid)
	}
	if n, err := srv.client().CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: srv.namespace(), Query: runningSessions}); err == nil {
		or.Running = n.GetCount()
	}
	b.logger.Info("open sessions measured", "taken_in", or.TakenIn, "take_in_s", round(or.TakeInSeconds),
		"running", or.Running, "rss_mib", or.RSSAfter>>20, "max_rss_mib", or.MaxRSS>>20,
		"heap_per_session_kib", round(or.PerSessionBytes()/1024), "cpu_s", round(or.CPUSeconds), "server_cpu_s", round(or.ServerCPUSeconds))
	return res, nil
}

// openSessions SignalWithStarts one session per key with concurrency calls
// in flight. Each batch is one click applied at once (the watermark it
// carries is past it), so the session is open, not merely buffered.
func openSessions(ctx context.Context, sig ingest.Signaller, or *OpenResult, concurrency int) {
	var next, ok, failed atomic.Int64
	var lastErr atomic.Value
	now := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(or.Sessions) {
					return
				}
				key := "open-" + strconv.FormatInt(i, 10)
				e := session.Event{Time: now - 10_000, ID: uint64(i), Page: "home"}
				// A loaded server times calls out; the ingesters retry, and
				// so does this (the event's ID makes a repeat harmless).
				for range openAttempts {
					err := sig.SignalEvents(ctx, key, workflows.EventBatch{Events: []session.Event{e}, Watermark: now - 5_000, Rate: 1})
					if err == nil {
						ok.Add(1)
						break
					}
					if ctx.Err() != nil {
						return
					}
					failed.Add(1)
					lastErr.Store(err.Error())
				}
			}
		})
	}
	wg.Wait()
	or.Started, or.Errors = ok.Load(), failed.Load()
	if msg, ok := lastErr.Load().(string); ok {
		or.LastError = msg
	}
}

// cpuSeconds is the user and system CPU time a process has used, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ); 0 if
// unreadable.
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, may hold spaces: count from its ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(utime+stime) / 100
}

// liveHeap is the Go heap's live objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	return heapBytes()
}
