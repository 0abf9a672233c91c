package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// Sample is the state of a pipeline run at one instant; counters are
// cumulative since the run began.
type Sample struct {
	T             float64            `json:"t"`           // seconds since the generator started
	Produced      int64              `json:"produced"`    // messages handed to the producer
	ProducedBy    map[string]int64   `json:"produced_by"` // per topic
	Consumed      int64              `json:"consumed"`    // messages the ingesters read
	Events        int64              `json:"events"`      // events Temporal accepted in signals
	Signals       int64              `json:"signals"`
	Handled       int64              `json:"handled"`        // signals the SessionWorkflows took in: Signals − Handled is the worker's backlog
	HandledEvents int64              `json:"handled_events"` // the events those signals carried
	SignalErrors  int64              `json:"signal_errors"`
	Lag           map[string]int64   `json:"lag"`             // per pipeline: messages not yet committed
	WatermarkLag  map[string]float64 `json:"watermark_lag_s"` // per pipeline: wall clock − W
	OpenSessions  int64              `json:"open_sessions"`   // running SessionWorkflows; -1 before the first count
	RSS           int64              `json:"rss_bytes"`       // this process
	Heap          int64              `json:"heap_bytes"`      // this process's live Go heap
	ServerRSS     int64              `json:"server_rss_bytes,omitempty"`
}

// sampler takes a Sample every second.
type sampler struct {
	start     time.Time
	gen       *generator
	sigs      map[string]*countingSignaller
	reg       *prometheus.Registry
	lag       *lagReader
	clock     *clockTimeline
	probe     *probe
	serverPID int
	open      atomic.Int64
	samples   []Sample

	mu           sync.Mutex
	clockQueries []float64 // seconds
	clockFailed  int
}

func newSampler(ph *phase, lag *lagReader, pr *probe, serverPID int) *sampler {
	s := &sampler{gen: ph.gen, sigs: ph.sigs, reg: ph.reg, lag: lag, clock: pr.clock, probe: pr, serverPID: serverPID}
	s.open.Store(-1) // not counted yet
	return s
}

func (s *sampler) run(ctx context.Context, every time.Duration, progress func(Sample)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.samples = append(s.samples, s.take())
		if n%10 == 0 {
			progress(s.samples[len(s.samples)-1])
		}
	}
}

func (s *sampler) take() Sample {
	now := time.Now()
	sm := Sample{
		T:             now.Sub(s.start).Seconds(),
		Produced:      s.gen.sent.Load(),
		ProducedBy:    s.gen.produced(),
		Consumed:      counterSum(s.reg, "sessionflow_ingest_messages_total"),
		Handled:       s.probe.sessionSignals.Load(),
		HandledEvents: s.probe.sessionEvents.Load(),
		Lag:           map[string]int64{},
		WatermarkLag:  map[string]float64{},
		OpenSessions:  s.open.Load(),
		RSS:           rss(os.Getpid()),
		Heap:          heapBytes(),
	}
	for name, c := range s.sigs {
		sm.Events += c.events.Load()
		sm.Signals += c.signals.Load()
		sm.SignalErrors += c.errors.Load()
		if w := s.clock.watermark(name); w != session.NoWatermark {
			sm.WatermarkLag[name] = float64(now.UnixMilli()-w) / 1000
		}
	}
	if lag, err := s.lag.read(); err == nil {
		sm.Lag = lag
	} else if n := len(s.samples); n > 0 {
		sm.Lag = s.samples[n-1].Lag // a slow broker answer: keep the last
	}
	if s.serverPID > 0 {
		sm.ServerRSS = rss(s.serverPID)
	}
	return sm
}

// runningSessions is the visibility query of the open sessions.
const runningSessions = "WorkflowType = 'SessionWorkflow' AND ExecutionStatus = 'Running'"

// countOpen counts the running SessionWorkflows every few seconds: the
// visibility query is too heavy to run every second on a loaded server.
func (s *sampler) countOpen(ctx context.Context, c client.Client, namespace string) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		resp, err := c.CountWorkflow(qctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: namespace, Query: runningSessions,
		})
		cancel()
		if err == nil {
			s.open.Store(resp.GetCount())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// timeClockQueries times, every 2 s, what a session does to learn the
// watermark: a query of its pipeline's ClockWorkflow (through
// TemporalActivities.ClockState), which the same worker must answer.
func (s *sampler) timeClockQueries(ctx context.Context, c client.Client, pipelines []pipeline) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := workflows.ClockWorkflowID(pipelines[i%len(pipelines)].wf.Name)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		_, err := c.QueryWorkflow(qctx, id, "", workflows.QueryClock)
		took := time.Since(t0).Seconds()
		cancel()
		var notFound *serviceerror.NotFound
		if ctx.Err() != nil || errors.As(err, &notFound) { // stopping, or no watermark yet
			continue
		}
		s.mu.Lock()
		s.clockQueries = append(s.clockQueries, took)
		if err != nil {
			s.clockFailed++
		}
		s.mu.Unlock()
	}
}

// counterSum adds up every series of a counter family in reg.
func counterSum(reg *prometheus.Registry, name string) int64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return int64(sum)
}

// rss is a process's resident set size from /proc, 0 if unreadable.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// lagReader measures consumer lag the way Kafka tooling does: per
// partition, the high-water mark minus the group's committed offset. The
// ingesters commit an offset only once Temporal has accepted every event
// before it, so this is the input not yet durable in Temporal.
type lagReader struct {
	client sarama.Client
	admin  sarama.ClusterAdmin
	topics map[string]string // pipeline → topic
	groups map[string]string // pipeline → consumer group
}

func newLagReader(brokers []string, pipelines []pipeline) (*lagReader, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	c, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("lag client: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("lag admin: %w", err)
	}
	l := &lagReader{client: c, admin: admin, topics: map[string]string{}, groups: map[string]string{}}
	for _, p := range pipelines {
		l.topics[p.cfg.Name] = p.cfg.Topic
		l.groups[p.cfg.Name] = groupID(p.cfg.Name)
	}
	return l, nil
}

func (l *lagReader) read() (map[string]int64, error) {
	out := map[string]int64{}
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	for name, topic := range l.topics {
		resp, err := l.admin.ListConsumerGroupOffsets(l.groups[name], map[string][]int32{topic: ps})
		if err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
			return nil, err
		}
		var lag int64
		for _, p := range ps {
			high, err := l.client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return nil, err
			}
			var done int64
			if b := offsetBlock(resp, topic, p); b != nil && b.Offset > 0 {
				done = b.Offset
			}
			lag += max(high-done, 0)
		}
		out[name] = lag
	}
	return out, nil
}

// offsetBlock is a partition's committed offset; a group that has
// committed nothing yet has no response at all.
func offsetBlock(resp *sarama.OffsetFetchResponse, topic string, p int32) *sarama.OffsetFetchResponseBlock {
	if resp == nil {
		return nil
	}
	return resp.GetBlock(topic, p)
}

func (l *lagReader) close() { l.admin.Close() } // closes the client too

// groupID is the ingester's default consumer group (ingest.Config.GroupID).
func groupID(pipeline string) string { return "sessionflow-" + pipeline }
