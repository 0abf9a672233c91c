package main

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionflow/sessionflow/session"
)

// PipelineResult is what one server did with the offered load. Rates are
// over the window: from the end of the warmup to when the generator
// stopped.
type PipelineResult struct {
	WindowS        float64            `json:"window_s"`
	Produced       int64              `json:"produced"`
	OfferedPerSec  float64            `json:"offered_per_s"`
	OfferedByTopic map[string]float64 `json:"offered_by_topic_per_s"`
	// Accepted counts the events Temporal accepted in signals; Events
	// those the SessionWorkflows took in. They differ when the worker falls
	// behind: Events/s is the sustained rate, end to end.
	Accepted        int64   `json:"accepted"`
	AcceptedPerSec  float64 `json:"accepted_per_s"`
	Events          int64   `json:"events"`
	EventsPerSec    float64 `json:"events_per_s"`
	EventsPerHour   float64 `json:"events_per_hour"`
	Signals         int64   `json:"signals"` // accepted
	SignalsPerSec   float64 `json:"signals_per_s"`
	EventsPerSignal float64 `json:"events_per_signal"`
	// CeilingShare is SignalsPerSec over the no-op workflow's
	// SignalWithStart rate on the same server.
	CeilingShare float64 `json:"ceiling_share,omitempty"`

	// Whole run, warmup included.
	TotalProduced int64          `json:"total_produced"`
	TotalConsumed int64          `json:"total_consumed"`
	TotalEvents   int64          `json:"total_events"` // accepted
	TotalSignals  int64          `json:"total_signals"`
	SignalErrors  int64          `json:"signal_errors"`
	DeadLetters   int64          `json:"dead_letters"`
	LateEvents    int64          `json:"late_events"`
	ParquetRows   map[string]int `json:"parquet_rows"`
	// SharedIDs counts Parquet records that carried another session's
	// session_id; the contract says 0.
	SharedIDs int `json:"shared_session_ids"`
	RowsTimed int `json:"rows_timed"` // rows whose write the benchmark saw

	History         HistoryResult `json:"history"`
	HistoryPerEvent float64       `json:"history_events_per_input_event"`
	// TasksPerEvent is the workflow tasks of all the pipeline's workflows
	// (History.Tasks) per input event, over the same denominator as
	// HistoryPerEvent: TotalEvents, the events Temporal accepted in the
	// whole run, warmup included. TasksPerEventSE is its standard error.
	TasksPerEvent   float64 `json:"workflow_tasks_per_event"`
	TasksPerEventSE float64 `json:"workflow_tasks_per_event_se"`
	HistoryError    string  `json:"history_error,omitempty"` // the history could not be counted

	Latency map[string]LatencyStats `json:"latency"` // per pipeline and "all"
	// ClockQuery is how long a query of a pipeline's ClockWorkflow took,
	// sampled every 2 s: sessions read the watermark that way, so a slow
	// answer delays every close. Failed ones count at the time they took
	// to fail (the server gives up after about 5 s).
	ClockQuery       Dist `json:"clock_query"`
	ClockQueryFailed int  `json:"clock_query_failed"`

	PeakOpen      int64 `json:"peak_open_sessions"`
	RSSAtPeakOpen int64 `json:"rss_at_peak_open_bytes"`
	RSSAt10kOpen  int64 `json:"rss_at_10k_open_bytes,omitempty"` // first sample with ≥ 10,000 open
	MaxRSS        int64 `json:"max_rss_bytes"`
	MaxServerRSS  int64 `json:"max_server_rss_bytes,omitempty"`

	LagAtStop map[string]int64 `json:"lag_at_stop"` // when the generator stopped
	MaxLag    int64            `json:"max_lag"`     // all pipelines together
	// The worker's backlog: signals Temporal accepted that the
	// SessionWorkflows had not taken in yet.
	BacklogAtStop int64 `json:"worker_backlog_at_stop"`
	MaxBacklog    int64 `json:"max_worker_backlog"`
	// KeptUp: when the generator stopped, the consumer lag was under 5 s of
	// input plus each pipeline's max hold of it, and the worker backlog
	// under 5 s of signals plus the longest start delay of them.
	KeptUp bool `json:"kept_up"`
}

// Dist is a latency distribution in seconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_s"`
	P99 float64 `json:"p99_s"`
	Max float64 `json:"max_s"`
	// Negative counts samples below zero: sessions whose deadline the
	// benchmark got wrong. It should be 0.
	Negative int `json:"negative"`
}

// LatencyStats are the close latencies of the sessions whose deadline the
// watermark passed within the window.
type LatencyStats struct {
	Sessions  int  `json:"sessions"`
	ToClose   Dist `json:"to_close"`   // → the workflow closed it (closed_at_ms)
	ToParquet Dist `json:"to_parquet"` // → its Parquet row was written
	ToWebhook Dist `json:"to_webhook"` // → its notification arrived
	// Sessions seen on one path but not the other by the end.
	NotDurable  int `json:"not_durable"`
	NotNotified int `json:"not_notified"`
	// Closed sessions that could not be timed: the deadline is unknown (a
	// charging break the generator index lacks) or the clock's readings
	// never show the watermark above it.
	NoDeadline int `json:"no_deadline"`
	NotPassed  int `json:"not_passed"`
}

type summaryInput struct {
	o         options
	pipelines []pipeline
	samples   []Sample
	start     time.Time
	stoppedAt time.Time
	closes    []closed
	sharedIDs int
	clock     *clockTimeline
	breaks    *breakIndex
	history   HistoryResult
	rows      map[string]int
	reg       *prometheus.Registry
}

// openTarget is the open-session count the memory target is stated at.
const openTarget = 10_000

// lagAllowed is the consumer lag of a pipeline that keeps up: 5 s of its
// input plus its max hold's worth.
func lagAllowed(in summaryInput, res *PipelineResult) float64 {
	if len(in.pipelines) == 0 {
		return 5 * res.OfferedPerSec
	}
	allowed := 0.0
	for _, p := range in.pipelines {
		allowed += (5 + p.hold(in.o.maxHold).Seconds()) * res.OfferedByTopic[p.cfg.Topic]
	}
	return allowed
}

// backlogAllowed is the worker backlog of a pipeline that keeps up: 5 s of
// its signals plus the longest start delay's worth, since the batches a new
// session gathers in its delay are, to the count, signals not yet taken in.
func backlogAllowed(in summaryInput, res *PipelineResult) float64 {
	var delay time.Duration
	for _, p := range in.pipelines {
		delay = max(delay, p.startDelay(in.o))
	}
	return (5 + delay.Seconds()) * res.SignalsPerSec
}

func summarize(in summaryInput) *PipelineResult {
	res := &PipelineResult{ParquetRows: in.rows, History: in.history, SharedIDs: in.sharedIDs,
		DeadLetters: counterSum(in.reg, "sessionflow_ingest_invalid_total"),
		LateEvents:  counterSum(in.reg, "sessionflow_ingest_late_total"),
	}
	stop := in.stoppedAt.Sub(in.start).Seconds()
	if s0, s1, ok := window(in.samples, in.o.warmup.Seconds(), stop); ok {
		dt := s1.T - s0.T
		res.WindowS = dt
		res.Produced, res.Accepted, res.Signals = s1.Produced-s0.Produced, s1.Events-s0.Events, s1.Signals-s0.Signals
		res.Events = s1.HandledEvents - s0.HandledEvents
		res.OfferedPerSec = float64(res.Produced) / dt
		res.AcceptedPerSec = float64(res.Accepted) / dt
		res.OfferedByTopic = map[string]float64{}
		for t, n := range s1.ProducedBy {
			res.OfferedByTopic[t] = float64(n-s0.ProducedBy[t]) / dt
		}
		res.EventsPerSec = float64(res.Events) / dt
		res.EventsPerHour = res.EventsPerSec * 3600
		res.SignalsPerSec = float64(res.Signals) / dt
		if res.Signals > 0 {
			res.EventsPerSignal = float64(res.Accepted) / float64(res.Signals)
		}
		res.LagAtStop = s1.Lag
		res.BacklogAtStop = s1.Signals - s1.Handled
		// Kept up: neither Kafka nor the worker had more than 5 s of work
		// queued when the input stopped, beyond what is held on purpose
		// (held events are uncommitted: a hold of traffic is lag; batches
		// in a start delay are signals not yet taken in).
		res.KeptUp = float64(sum(s1.Lag)) <= lagAllowed(in, res) && float64(res.BacklogAtStop) <= backlogAllowed(in, res)
	}
	if n := len(in.samples); n > 0 {
		last := in.samples[n-1]
		res.TotalProduced, res.TotalConsumed = last.Produced, last.Consumed
		res.TotalEvents, res.TotalSignals, res.SignalErrors = last.Events, last.Signals, last.SignalErrors
	}
	if res.TotalEvents > 0 {
		res.HistoryPerEvent = float64(in.history.Total) / float64(res.TotalEvents)
		if in.history.Tasks.Error == "" {
			res.TasksPerEvent = in.history.Tasks.Total / float64(res.TotalEvents)
			res.TasksPerEventSE = in.history.Tasks.SE / float64(res.TotalEvents)
		}
	}
	res.memory(in.samples)
	for _, s := range in.samples {
		res.MaxLag = max(res.MaxLag, sum(s.Lag))
		res.MaxBacklog = max(res.MaxBacklog, s.Signals-s.Handled)
	}
	for _, c := range in.closes {
		if !c.durable.IsZero() {
			res.RowsTimed++
		}
	}
	res.Latency = latencies(in)
	return res
}

// window returns the first sample at or after from and the last one at or
// before to.
func window(samples []Sample, from, to float64) (Sample, Sample, bool) {
	i := slices.IndexFunc(samples, func(s Sample) bool { return s.T >= from })
	j := -1
	for k, s := range samples {
		if s.T <= to {
			j = k
		}
	}
	if i < 0 || j <= i {
		return Sample{}, Sample{}, false
	}
	return samples[i], samples[j], true
}

func (res *PipelineResult) memory(samples []Sample) {
	for _, s := range samples {
		if s.OpenSessions > res.PeakOpen {
			res.PeakOpen, res.RSSAtPeakOpen = s.OpenSessions, s.RSS
		}
		if s.OpenSessions >= openTarget && res.RSSAt10kOpen == 0 {
			res.RSSAt10kOpen = s.RSS
		}
		res.MaxRSS = max(res.MaxRSS, s.RSS)
		res.MaxServerRSS = max(res.MaxServerRSS, s.ServerRSS)
	}
}

// Why a close in the window is not timed.
const (
	whyNoDeadline = "no deadline"
	whyNotPassed  = "not passed"
)

// timedOrNot walks the closes of the window (closed after the warm-up):
// timed gets those whose deadline the watermark passed within the window,
// with the deadline and the instant W passed it (ms); untimed those whose deadline is unknown or
// was not seen passed, with why.
func timedOrNot(in summaryInput, untimed func(closed, string), timed func(c closed, deadline, at int64)) {
	rules := map[string]session.Rules{}
	for _, p := range in.pipelines {
		rules[p.wf.Name] = p.wf.Rules
	}
	from := in.start.Add(in.o.warmup).UnixMilli()
	to := in.stoppedAt.UnixMilli()
	for _, c := range in.closes {
		r, ok := rules[c.rec.Pipeline]
		if !ok || c.rec.ClosedAtMs < from {
			continue
		}
		d, ok := deadline(c.rec, r, in.breaks.after)
		if !ok {
			untimed(c, whyNoDeadline)
			continue
		}
		at, ok := in.clock.passed(c.rec.Pipeline, d)
		if !ok {
			untimed(c, whyNotPassed)
			continue
		}
		if at >= from && at <= to {
			timed(c, d, at)
		}
	}
}

// timed is timedOrNot's timed closes.
func timed(in summaryInput, f func(c closed, deadline, at int64)) {
	timedOrNot(in, func(closed, string) {}, f)
}

// latencies times every closed session whose deadline the watermark passed
// within the window, per pipeline and for all together.
func latencies(in summaryInput) map[string]LatencyStats {
	type samples struct {
		st                 LatencyStats
		close, pq, webhook []float64
	}
	acc := map[string]*samples{}
	get := func(name string) *samples {
		if acc[name] == nil {
			acc[name] = &samples{}
		}
		return acc[name]
	}
	timedOrNot(in, func(c closed, why string) {
		each([]*samples{get(c.rec.Pipeline), get("all")}, func(s *samples) {
			if why == whyNoDeadline {
				s.st.NoDeadline++
			} else {
				s.st.NotPassed++
			}
		})
	}, func(c closed, _, at int64) {
		groups := []*samples{get(c.rec.Pipeline), get("all")}
		each(groups, func(s *samples) {
			s.st.Sessions++
			s.close = append(s.close, seconds(c.rec.ClosedAtMs-at))
			if c.durable.IsZero() {
				s.st.NotDurable++
			} else {
				s.pq = append(s.pq, seconds(c.durable.UnixMilli()-at))
			}
			if c.notified.IsZero() {
				s.st.NotNotified++
			} else {
				s.webhook = append(s.webhook, seconds(c.notified.UnixMilli()-at))
			}
		})
	})
	out := map[string]LatencyStats{}
	for name, s := range acc {
		s.st.ToClose, s.st.ToParquet, s.st.ToWebhook = dist(s.close), dist(s.pq), dist(s.webhook)
		out[name] = s.st
	}
	return out
}

func each[T any](xs []T, f func(T)) {
	for _, x := range xs {
		f(x)
	}
}

func seconds(ms int64) float64 { return float64(ms) / 1000 }

func dist(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	d := Dist{N: len(s), P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
	for _, x := range s {
		if x < 0 {
			d.Negative++
		}
	}
	return d
}

// percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least p% of the values at or below it. It is 0 for none.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

func sum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func round(f float64) float64 { return math.Round(f*10) / 10 }

func roundMap(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = round(v)
	}
	return out
}
