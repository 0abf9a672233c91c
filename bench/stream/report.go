package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is the JSON results file.
type Results struct {
	Date      string         `json:"date"`
	Started   time.Time      `json:"started"`
	Seconds   float64        `json:"seconds"`
	Machine   Machine        `json:"machine"`
	Workload  Workload       `json:"workload"`
	Pipelines []PipelineInfo `json:"pipelines"`
	Notes     []string       `json:"notes"`
	Servers   []ServerResult `json:"servers"`
	Targets   []Target       `json:"targets"`
}

// Machine describes where the run happened; the load averages show how
// busy the machine was besides the benchmark.
type Machine struct {
	CPUs       int     `json:"cpus"`
	CPUModel   string  `json:"cpu_model"`
	MemoryGiB  float64 `json:"memory_gib"`
	GoVersion  string  `json:"go_version"`
	LoadBefore string  `json:"loadavg_before"`
	LoadAfter  string  `json:"loadavg_after"`
}

// PipelineInfo states a pipeline's rules as run.
type PipelineInfo struct {
	Name  string `json:"name"`
	Topic string `json:"topic"`
	Rules string `json:"rules"`
	Sink  string `json:"sink"`
	// MaxHoldMs is the hold its ingester used, StartDelayMs its sessions'
	// start delay.
	MaxHoldMs    int64 `json:"max_hold_ms"`
	StartDelayMs int64 `json:"start_delay_ms"`
}

// Target is one of issue #7's targets judged for one server.
type Target struct {
	Server  string `json:"server"`
	Target  string `json:"target"`
	Verdict string `json:"verdict"` // met, not met, not tested, not reached
	Value   string `json:"value"`
}

func newResults(o options, started time.Time, pipelines []pipeline) *Results {
	r := &Results{
		Date: started.Format("2006-01-02"), Started: started,
		Machine: Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), MemoryGiB: memoryGiB(),
			GoVersion: runtime.Version(), LoadBefore: loadavg()},
		Workload: Workload{Users: o.users, ClickRate: o.clickRate, Devices: o.devices, ChargingRate: o.chargingRate,
			DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
			OutOfOrder: shareOutOfOrder, Duplicates: shareDuplicates, Late: shareLate, Malformed: shareMalformed,
			Partitions: partitions, MaxInFlight: o.maxInFlight, MaxHoldMs: o.maxHold.Milliseconds()},
		Notes: []string{
			"Everything but MinIO and the dev server runs in one process: generator, Kafka broker (kfake), ingesters, " +
				"Temporal worker, webhook receiver and, for temporaltest, the Temporal server itself. RSS is that process's.",
			"Close latency starts when the pipeline's clock moved its watermark past the session's deadline " +
				"(ClockState.Recent, polled every second) and ends when WriteParquet returned for the row, " +
				"or when the session_closed webhook arrived.",
			"Sessions whose deadline was passed but which had not closed when the run ended are not in the latency figures.",
		},
	}
	for _, p := range pipelines {
		hold := p.hold(o.maxHold)
		r.Pipelines = append(r.Pipelines, PipelineInfo{Name: p.cfg.Name, Topic: p.cfg.Topic, Rules: describeRules(p),
			Sink:      fmt.Sprintf("%d sinks, flush at %d records or %v", p.wf.Buckets, p.wf.Sink.MaxRecords, p.wf.Sink.MaxAge),
			MaxHoldMs: hold.Milliseconds(), StartDelayMs: p.startDelay(o).Milliseconds()})
		r.Workload.FlushIntervalMs = max(r.Workload.FlushIntervalMs, hold.Milliseconds())
	}
	return r
}

func describeRules(p pipeline) string {
	r := p.wf.Rules
	s := fmt.Sprintf("%s: gap %v, max %v, lateness %v", r.Profile, r.Gap, r.MaxDuration, r.Lateness)
	if r.BreakTolerance > 0 {
		s += fmt.Sprintf(", break tolerance %v, minimum %v", r.BreakTolerance, r.MinDuration)
	}
	if m := r.EndMarker.String(); m != "" {
		s += ", end marker " + m
	}
	return s
}

func (r *Results) finish(at time.Time) {
	r.Seconds = at.Sub(r.Started).Seconds()
	r.Machine.LoadAfter = loadavg()
	for _, s := range r.Servers {
		r.Targets = append(r.Targets, judge(s)...)
	}
}

func (r *Results) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results folder: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// Issue #7's targets.
const (
	targetEventsPerHour = 2_500_000
	targetHistory       = 0.5
	targetP99           = 5.0     // seconds
	targetRSS           = 1 << 30 // bytes, at openTarget open sessions
)

// judge states each target's verdict for a server.
func judge(s ServerResult) []Target {
	t := func(name, verdict, value string) Target {
		return Target{Server: s.Server, Target: name, Verdict: verdict, Value: value}
	}
	p := s.Pipeline
	if p == nil {
		if s.Open == nil {
			return nil
		}
		return []Target{judgeOpen(s, t)}
	}
	throughput := func(goal float64) (string, string) {
		v := fmt.Sprintf("%s events/h sustained of %s offered", millions(p.EventsPerHour), millions(p.OfferedPerSec*3600))
		switch {
		case p.EventsPerHour >= goal:
			return "met", v
		case p.OfferedPerSec*3600 < goal*0.98:
			return "not tested", v + " (offered less than the target)"
		}
		return "not met", v
	}
	var out []Target
	// Judged on the events the workflows took in: what Temporal accepted
	// but the worker has not handled is a backlog, not throughput.
	v, val := throughput(targetEventsPerHour)
	out = append(out, t("≥ 2.5M events/hour", v, val))
	v, val = throughput(4 * targetEventsPerHour)
	out = append(out, t("≥ 10M events/hour (4×)", v, val))
	history := fmt.Sprintf("%.2f", p.HistoryPerEvent)
	switch {
	case p.HistoryError != "":
		history = "not counted: " + p.HistoryError
	case !p.KeptUp:
		// Signals waiting for the worker have one history event each and
		// none of the workflow tasks, timers and activities they will cause.
		history += " (understated: the worker was behind)"
	}
	out = append(out, t("≤ 0.5 history events per input event", verdict(p.HistoryPerEvent <= targetHistory && p.History.Total > 0), history))
	out = append(out, judgeCost(p, t)...)
	all := p.Latency["all"]
	latency := func(d Dist, missing int) string {
		switch {
		case d.N == 0 && missing > 0:
			return fmt.Sprintf("none of %d sessions closed in the window got there by the end", missing)
		case d.N == 0:
			return "no session closed in the window"
		}
		v := fmt.Sprintf("%.1f s (n=%d)", d.P99, d.N)
		if missing > 0 {
			v += fmt.Sprintf("; %d more had not got there by the end", missing)
		}
		return v
	}
	out = append(out, t("close → Parquet p99 ≤ 5 s", verdict(all.ToParquet.N > 0 && all.ToParquet.P99 <= targetP99 && all.NotDurable == 0),
		latency(all.ToParquet, all.NotDurable)))
	out = append(out, t("no two sessions share a session_id", verdict(p.SharedIDs == 0),
		fmt.Sprintf("%d records with another session's id", p.SharedIDs)))
	out = append(out, t("close → webhook p99 ≤ 5 s", verdict(all.ToWebhook.N > 0 && all.ToWebhook.P99 <= targetP99 && all.NotNotified == 0),
		latency(all.ToWebhook, all.NotNotified)))
	switch {
	case s.Open != nil:
		out = append(out, judgeOpen(s, t))
	case p.RSSAt10kOpen > 0:
		out = append(out, t(targetRSSName, verdict(p.RSSAt10kOpen <= targetRSS), gib(p.RSSAt10kOpen)+inProcess(s.Server)))
	default:
		out = append(out, t(targetRSSName, "not reached",
			fmt.Sprintf("peak %d open sessions, RSS %s then%s", p.PeakOpen, gib(p.RSSAtPeakOpen), inProcess(s.Server))))
	}
	return out
}

const targetRSSName = "RSS ≤ 1 GiB at 10,000 open sessions"

// judgeOpen judges the memory target on the open-sessions phase.
func judgeOpen(s ServerResult, t func(name, verdict, value string) Target) Target {
	o := s.Open
	switch {
	case o.Error != "":
		return t(targetRSSName, "not tested", "open-sessions phase failed: "+o.Error)
	case o.TakenIn < openTarget:
		return t(targetRSSName, "not reached", fmt.Sprintf("%d sessions open, max RSS %s%s", o.TakenIn, gib(o.MaxRSS), inProcess(s.Server)))
	}
	return t(targetRSSName, verdict(o.MaxRSS <= targetRSS),
		fmt.Sprintf("max RSS %s with %d sessions open%s", gib(o.MaxRSS), o.TakenIn, inProcess(s.Server)))
}

func inProcess(server string) string {
	if server == serverTemporaltest {
		return "; the process holds the Temporal server too"
	}
	return ""
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// markdown is the summary table printed at the end.
func (r *Results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Streaming benchmark, %s\n\n", r.Date)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %.0f GiB, %s; load average before %s, after %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryGiB, r.Machine.GoVersion, r.Machine.LoadBefore, r.Machine.LoadAfter)
	if table := r.table(); table != "" {
		w := r.Workload
		fmt.Fprintf(&b, "Workload: %d users at %.0f events/s and %d drones at %.0f events/s for %v per server (first %v left out); "+
			"%d partitions per topic; MaxInFlight %d per pipeline.\n\n",
			w.Users, w.ClickRate, w.Devices, w.ChargingRate, time.Duration(w.DurationS*float64(time.Second)),
			time.Duration(w.WarmupS*float64(time.Second)), w.Partitions, w.MaxInFlight)
		for _, p := range r.Pipelines {
			fmt.Fprintf(&b, "- `%s` (topic `%s`): %s; %s; max hold %v\n", p.Name, p.Topic, p.Rules, p.Sink,
				time.Duration(p.MaxHoldMs)*time.Millisecond)
		}
		b.WriteString("\n" + table)
	}
	b.WriteString(r.breakdown())
	if open := r.openTable(); open != "" {
		b.WriteString("\nOpen sessions: one click each with the production clickstream rules (30-minute gap, so none closes), " +
			"opened by SignalWithStart before the pipelines run, in a process holding the worker and the client" +
			" (and temporaltest's server); RSS when the worker had taken every one in.\n" + open)
	}
	b.WriteString("\n| target | server | verdict | value |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Target, t.Server, t.Verdict, t.Value)
	}
	return b.String()
}

// openTable reports the open-sessions phase, if it ran.
func (r *Results) openTable() string {
	var b strings.Builder
	for _, s := range r.Servers {
		o := s.Open
		if o == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n| open sessions | sessions open | to open them all (s) | RSS before / max / after | live heap per session | dev server RSS | CPU meanwhile: this process / dev server (s) |\n|---|---:|---:|---:|---:|---:|---:|\n")
		}
		if o.Error != "" {
			fmt.Fprintf(&b, "| %s | failed: %s | | | | | |\n", s.Server, o.Error)
			continue
		}
		server, serverCPU := "– (in process)", "–"
		if o.ServerRSS > 0 {
			server, serverCPU = gib(o.ServerRSS), fmt.Sprintf("%.0f", o.ServerCPUSeconds)
		}
		fmt.Fprintf(&b, "| %s | %d of %d | %.0f | %s / %s / %s | %.1f KiB | %s | %.0f / %s |\n", s.Server, o.TakenIn, o.Sessions,
			o.TakeInSeconds, gib(o.RSSBefore), gib(o.MaxRSS), gib(o.RSSAfter), o.PerSessionBytes()/1024, server, o.CPUSeconds, serverCPU)
	}
	return b.String()
}

// breakdown says where a session run's history events come from.
func (r *Results) breakdown() string {
	var b strings.Builder
	for _, s := range r.Servers {
		if s.Pipeline == nil || s.Pipeline.History.SessionRun.Sampled == 0 {
			continue
		}
		run := s.Pipeline.History.SessionRun
		types := slices.SortedFunc(maps.Keys(run.ByType), func(a, b string) int {
			return cmp.Compare(run.ByType[b], run.ByType[a])
		})
		var parts []string
		for _, t := range types[:min(len(types), 8)] {
			parts = append(parts, fmt.Sprintf("%s %.1f", strings.ToLower(t), run.ByType[t]))
		}
		fmt.Fprintf(&b, "\n%s: a closed SessionWorkflow run has %.1f history events on average (%d sampled): %s.%s\n",
			s.Server, run.Events, run.Sampled, strings.Join(parts, ", "), costSentence(s.Pipeline))
	}
	return b.String()
}

// table has a column per server and a row per figure of the pipelines.
func (r *Results) table() string {
	if !slices.ContainsFunc(r.Servers, func(s ServerResult) bool { return s.Pipeline != nil || s.Error != "" }) {
		return ""
	}
	var b strings.Builder
	b.WriteString("| |")
	for _, s := range r.Servers {
		fmt.Fprintf(&b, " %s |", s.Server)
	}
	b.WriteString("\n|---|")
	for range r.Servers {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |", row.name)
		for _, s := range r.Servers {
			v := "–"
			switch {
			case s.Error != "" && s.Pipeline == nil:
				v = "failed"
			case s.Pipeline != nil:
				v = row.value(s)
			}
			fmt.Fprintf(&b, " %s |", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// rows of the summary table.
var rows = []struct {
	name  string
	value func(ServerResult) string
}{
	{"offered (events/s)", func(s ServerResult) string {
		var parts []string
		for _, t := range slices.Sorted(maps.Keys(s.Pipeline.OfferedByTopic)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", t, s.Pipeline.OfferedByTopic[t]))
		}
		return fmt.Sprintf("%.0f (%s)", s.Pipeline.OfferedPerSec, strings.Join(parts, ", "))
	}},
	{"accepted by Temporal (events/s)", func(s ServerResult) string { return fmt.Sprintf("%.0f", s.Pipeline.AcceptedPerSec) }},
	{"sustained: taken in by the workflows (events/s)", func(s ServerResult) string {
		return fmt.Sprintf("%.0f", s.Pipeline.EventsPerSec)
	}},
	{"sustained (events/hour)", func(s ServerResult) string { return millions(s.Pipeline.EventsPerHour) }},
	{"signals/s (accepted)", func(s ServerResult) string { return fmt.Sprintf("%.0f", s.Pipeline.SignalsPerSec) }},
	{"events per signal", func(s ServerResult) string { return fmt.Sprintf("%.2f", s.Pipeline.EventsPerSignal) }},
	{"no-op SignalWithStart ceiling: accepted (signals/s)", func(s ServerResult) string {
		if s.Ceiling == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f (%d in flight)", s.Ceiling.SignalsPerSec, s.Ceiling.Concurrency)
	}},
	{"no-op ceiling: accepted and taken in by the worker (signals/s)", func(s ServerResult) string {
		if s.Ceiling == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f (drain %.0f s)", s.Ceiling.HandledPerSec, s.Ceiling.DrainSeconds)
	}},
	{"no-op ceiling: CPU ms per signal taken in, this process / dev server", func(s ServerResult) string {
		c := s.Ceiling
		if c == nil || c.Handled == 0 {
			return "–"
		}
		per := func(sec float64) float64 { return 1000 * sec / float64(c.Handled) }
		if c.ServerCPUSeconds == 0 {
			return fmt.Sprintf("%.1f / – (in process)", per(c.CPUSeconds))
		}
		return fmt.Sprintf("%.1f / %.1f", per(c.CPUSeconds), per(c.ServerCPUSeconds))
	}},
	{"pipeline signals/s ÷ ceiling", func(s ServerResult) string { return fmt.Sprintf("%.2f", s.Pipeline.CeilingShare) }},
	{"history events per input event", func(s ServerResult) string {
		if s.Pipeline.HistoryError != "" {
			return "not counted"
		}
		return fmt.Sprintf("%.2f", s.Pipeline.HistoryPerEvent)
	}},
	{"workflow tasks per input event, all workflows (± s.e.)", tasksPerEventRow},
	{"closed session run: workflow tasks / history events / timer wake-ups / upserts", sessionRunRow},
	{"closed session: runs / workflow tasks / timer wake-ups / upserts", sessionRow},
	{"deadline → workflow closes p50 / p99 (s)", func(s ServerResult) string { return pair(s.Pipeline.Latency["all"].ToClose) }},
	{"deadline → Parquet row p50 / p99 (s)", func(s ServerResult) string { return pair(s.Pipeline.Latency["all"].ToParquet) }},
	{"deadline → webhook p50 / p99 (s)", func(s ServerResult) string { return pair(s.Pipeline.Latency["all"].ToWebhook) }},
	{"clock query (how sessions read W) p50 / p99 (ms)", func(s ServerResult) string {
		d := s.Pipeline.ClockQuery
		if d.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f / %.0f (%d of %d failed)", 1000*d.P50, 1000*d.P99, s.Pipeline.ClockQueryFailed, d.N)
	}},
	{"sessions timed (not yet in Parquet / notified at the end)", func(s ServerResult) string {
		l := s.Pipeline.Latency["all"]
		return fmt.Sprintf("%d (%d / %d)", l.Sessions, l.NotDurable, l.NotNotified)
	}},
	{"peak running SessionWorkflows", func(s ServerResult) string { return fmt.Sprintf("%d", s.Pipeline.PeakOpen) }},
	{"process RSS at that peak / max", func(s ServerResult) string {
		return gib(s.Pipeline.RSSAtPeakOpen) + " / " + gib(s.Pipeline.MaxRSS)
	}},
	{"dev server process RSS max", func(s ServerResult) string {
		if s.Pipeline.MaxServerRSS == 0 {
			return "– (in process)"
		}
		return gib(s.Pipeline.MaxServerRSS)
	}},
	{"consumer lag when input stopped / max (messages)", func(s ServerResult) string {
		return fmt.Sprintf("%d / %d", sum(s.Pipeline.LagAtStop), s.Pipeline.MaxLag)
	}},
	{"worker backlog when input stopped / max (signals)", func(s ServerResult) string {
		return fmt.Sprintf("%d / %d", s.Pipeline.BacklogAtStop, s.Pipeline.MaxBacklog)
	}},
	{"kept up with the offered load", func(s ServerResult) string {
		if s.Pipeline.KeptUp {
			return "yes"
		}
		return "no"
	}},
}

func pair(d Dist) string {
	if d.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f", d.P50, d.P99)
}

func millions(v float64) string { return fmt.Sprintf("%.2fM", v/1e6) }

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// plot draws the PNGs next to the results file with bench/stream/plot.py. A
// missing matplotlib is a warning: the JSON has every number.
func plot(ctx context.Context, root, results string, logger *slog.Logger) {
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(root, "bench", "stream", "plot.py"), results)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logger.Warn("plots not drawn", "error", err, "output", strings.TrimSpace(string(out)))
		return
	}
	logger.Info("plots drawn", "files", strings.Fields(string(out)))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memoryGiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
		}
	}
	return float64(kb) / (1 << 20)
}
