package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"
	"golang.org/x/sync/errgroup"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// stream is one pipeline's input: JSON lines, as `starter sessionize` reads
// them, and the events the ingester would decode from them.
type stream struct {
	pipeline workflows.Pipeline
	lines    []byte
	keys     []string
	events   []session.Event // Seq = line number, as an offset would be
	want     []session.Record
}

// compressed returns a profile's rules with minutes turned into seconds.
func compressed(t *testing.T, p session.Profile) session.Rules {
	r, err := session.Defaults(p)
	if err != nil {
		t.Fatal(err)
	}
	r.Gap, r.MaxDuration, r.BreakTolerance, r.MinDuration = r.Gap/60, r.MaxDuration/60, r.BreakTolerance/60, r.MinDuration/60
	r.Lateness = 5 * time.Second
	return r
}

func newStream(t *testing.T, p session.Profile, n int) *stream {
	var buf bytes.Buffer
	var err error
	switch p {
	case session.Clickstream:
		err = generate.Clicks(&buf, generate.ClickOptions{Users: 200, Events: n, Seed: 11, Scale: 1.0 / 60})
	case session.Charging:
		err = generate.Charging(&buf, generate.ChargingOptions{Devices: 100, Events: n, Seed: 12, Scale: 1.0 / 60})
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{lines: buf.Bytes(), pipeline: workflows.Pipeline{
		Name: string(p), Rules: compressed(t, p), Buckets: 3, MaxWait: 2 * time.Second, Visibility: true,
		Sink:   workflows.SinkLimits{MaxRecords: 200, MaxAge: time.Second},
		Notify: workflows.Notify{SessionClosed: true},
	}}
	// The reference: the batch engine, exactly as `starter sessionize` runs it.
	b := session.Batch{Rules: &s.pipeline.Rules, Pipeline: s.pipeline.Name}
	if s.want, _, err = b.Run(context.Background(), bytes.NewReader(s.lines)); err != nil {
		t.Fatal(err)
	}
	d := session.NewDecoder(&s.pipeline.Rules)
	for i, line := range bytes.Split(bytes.TrimSpace(s.lines), []byte{'\n'}) {
		key, e, err := d.Decode(line)
		if err != nil {
			t.Fatal(err)
		}
		e.Seq = int64(i + 1)
		s.keys = append(s.keys, string(key))
		s.events = append(s.events, e)
	}
	return s
}

// feed plays the ingester: events arrive out of order within the allowed
// lateness (never behind the watermark), a key's events of a chunk travel in
// one signal, some signals are delivered twice, and the clock hears the
// largest acknowledged event time after every chunk. At the end it declares
// the end of input, so sessions finish as the batch run's do.
func (s *stream) feed(ctx context.Context, t *testing.T, c client.Client, midway func()) {
	late := s.pipeline.Rules.Lateness.Milliseconds()
	rng := rand.New(rand.NewPCG(7, uint64(len(s.events))))
	order := make([]int, len(s.events))
	arrive := make([]int64, len(s.events))
	for i := range order {
		order[i] = i
		arrive[i] = s.events[i].Time + rng.Int64N(late)
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(arrive[a] - arrive[b]) })

	maxSent := session.NoWatermark
	const chunk = 400
	for from := 0; from < len(order); from += chunk {
		if from >= len(order)/2 && midway != nil {
			midway()
			midway = nil
		}
		w := session.NoWatermark
		if maxSent != session.NoWatermark {
			w = maxSent - late
		}
		batches := map[string][]session.Event{}
		var keys []string
		for _, i := range order[from:min(from+chunk, len(order))] {
			k := s.keys[i]
			if batches[k] == nil {
				keys = append(keys, k)
			}
			batches[k] = append(batches[k], s.events[i])
			maxSent = max(maxSent, s.events[i].Time)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, k := range keys {
			batch := workflows.EventBatch{Events: batches[k], Watermark: w}
			sends := 1 + btoi(rng.IntN(20) == 0) // sometimes a redelivery
			g.Go(func() error {
				for range sends {
					if err := s.signal(gctx, c, k, batch); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		s.clock(ctx, t, c, workflows.WatermarkUpdate{Source: "test", SentMs: time.Now().UnixMilli(),
			Marks: []workflows.PartitionMark{{Partition: s.pipeline.Name + "/0", MaxTime: maxSent}}})
	}
	s.clock(ctx, t, c, workflows.WatermarkUpdate{Source: "test", EndOfInput: true,
		Marks: []workflows.PartitionMark{{Partition: s.pipeline.Name + "/0", MaxTime: maxSent}}})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *stream) signal(ctx context.Context, c client.Client, key string, b workflows.EventBatch) error {
	id := workflows.SessionWorkflowID(s.pipeline.Name, key)
	_, err := c.SignalWithStartWorkflow(ctx, id, workflows.SignalEvents, b, client.StartWorkflowOptions{
		ID: id, TaskQueue: workflows.TaskQueue, StaticSummary: "session of " + key,
	}, workflows.SessionWorkflow, workflows.SessionInput{Pipeline: s.pipeline, Key: key})
	return err
}

func (s *stream) clock(ctx context.Context, t *testing.T, c client.Client, u workflows.WatermarkUpdate) {
	id := workflows.ClockWorkflowID(s.pipeline.Name)
	_, err := c.SignalWithStartWorkflow(ctx, id, workflows.SignalWatermark, u, client.StartWorkflowOptions{
		ID: id, TaskQueue: workflows.ClockTaskQueue(workflows.TaskQueue),
	}, workflows.ClockWorkflow, workflows.ClockInput{Pipeline: s.pipeline.Name, Lateness: s.pipeline.Rules.Lateness})
	if err != nil {
		t.Fatal(err)
	}
}

// webhook counts session_closed notifications by idempotency key.
type webhook struct {
	mu   sync.Mutex
	seen map[string]int
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var n activities.Notification
	if err := json.Unmarshal(body, &n); err != nil || r.Header.Get("Idempotency-Key") != n.IdempotencyKey() {
		http.Error(w, "bad notification", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.seen[n.IdempotencyKey()]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestIntegration runs both profiles through a real Temporal server and a
// real MinIO and checks that the Parquet output equals the batch engine's
// sessions, row for row, with one webhook per session — once straight
// through and once with the worker killed and replaced halfway.
func TestIntegration(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "straight"
		if restart {
			name = "worker-restart"
		}
		t.Run(name, func(t *testing.T) { runIntegration(t, restart) })
	}
}

func runIntegration(t *testing.T, restart bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s3 := miniotest.Start(t)
	hook := &webhook{seen: map[string]int{}}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()

	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := workflows.RegisterSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	acts := &activities.Activities{S3: s3.Client, Bucket: s3.Bucket, Webhook: &activities.Webhook{URL: hookSrv.URL}}
	start := func() workflows.Workers {
		w := workflows.NewWorkers(c, workflows.TaskQueue, worker.Options{}, acts)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := start()
	defer func() { w.Stop() }()

	events := 3000
	if raceEnabled {
		// The race detector slows the in-process server and the worker
		// about eightfold: 1,000 events of each profile took minutes to
		// close on a 2-core machine. The full size runs without it.
		events = 600
	}
	streams := []*stream{newStream(t, session.Clickstream, events), newStream(t, session.Charging, events)}
	var midway func()
	if restart {
		var once sync.Once
		midway = func() {
			once.Do(func() {
				w.Stop() // in-flight activities and workflow tasks are abandoned
				time.Sleep(time.Second)
				w = start()
			})
		}
	}
	var g errgroup.Group
	for _, s := range streams {
		g.Go(func() error { s.feed(ctx, t, c, midway); return nil })
	}
	g.Wait()

	repeats := 0
	for _, s := range streams {
		got := s.awaitParquet(ctx, t, s3, c)
		if len(got) != len(s.want) {
			t.Errorf("%s: %d sessions in Parquet, want %d", s.pipeline.Name, len(got), len(s.want))
		}
		compareRecords(t, s.pipeline.Name, got, s.want)
		for _, r := range s.want {
			key := r.SessionID + ":" + activities.KindSessionClosed
			hook.mu.Lock()
			n := hook.seen[key]
			hook.mu.Unlock()
			// At least once: a close task the server turns back (a batch
			// for the key arrived meanwhile) runs its local activities
			// again, and receivers drop the repeat by its Idempotency-Key.
			if n < 1 {
				t.Errorf("%s: webhook got no session_closed for %s", s.pipeline.Name, r.SessionID)
			} else if n > 1 {
				repeats += n - 1
			}
		}
	}
	total := 0
	for _, s := range streams {
		total += len(s.want)
	}
	t.Logf("%d of %d session_closed notices repeated", repeats, total)
	if !restart && repeats*10 > total {
		t.Errorf("%d of %d session_closed notices repeated: more than a turned-back close task explains", repeats, total)
	}
	if *updateHistories && !restart {
		saveHistories(ctx, t, c, ts.GetDefaultNamespace())
	}
	// Sessions are findable by their search attributes.
	resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: ts.GetDefaultNamespace(), Query: "Pipeline = 'clickstream' AND SessionState = 'closed'",
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCount() == 0 {
		t.Error("no closed sessions are visible through the Pipeline and SessionState search attributes")
	}
}

// awaitParquet polls MinIO until the sinks have written as many rows as the
// batch run found, or the context ends.
func (s *stream) awaitParquet(ctx context.Context, t *testing.T, s3 *miniotest.Server, c client.Client) []session.Record {
	deadline := time.Now().Add(5 * time.Minute)
	read := func() []session.Record {
		got, err := store.ReadSessions(ctx, s3.Client, s3.Bucket, s.pipeline.Name)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for {
		got := read()
		if len(got) >= len(s.want) {
			time.Sleep(2 * time.Second) // let any duplicate show up too
			return read()
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: only %d of %d sessions reached Parquet in time", s.pipeline.Name, len(got), len(s.want))
			s.explain(t, c, got)
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// explain logs the live state of a few sessions that never reached Parquet.
func (s *stream) explain(t *testing.T, c client.Client, got []session.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	have := map[string]bool{}
	for _, r := range got {
		have[r.SessionID] = true
	}
	if v, err := c.QueryWorkflow(ctx, workflows.ClockWorkflowID(s.pipeline.Name), "", workflows.QueryClock); err == nil {
		var cs workflows.ClockState
		v.Get(&cs)
		t.Logf("clock: W=%d rate=%.1f end=%v", cs.Watermark, cs.Rate, cs.EndOfInput)
	}
	shown := 0
	for _, r := range s.want {
		if have[r.SessionID] || shown == 3 {
			continue
		}
		shown++
		id := workflows.SessionWorkflowID(s.pipeline.Name, r.Key)
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Logf("%s: describe: %v", id, err)
			continue
		}
		t.Logf("%s missing: workflow %s, history %d events", r.SessionID, d.GetWorkflowExecutionInfo().GetStatus(),
			d.GetWorkflowExecutionInfo().GetHistoryLength())
		if v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryState); err == nil {
			var st workflows.SessionState
			v.Get(&st)
			b, _ := json.Marshal(st)
			t.Logf("  state %s", b)
		}
	}
}

// compareRecords checks the streaming result against the batch one, ignoring
// only the wall-clock closed_at_ms.
func compareRecords(t *testing.T, name string, got, want []session.Record) {
	t.Helper()
	for _, r := range got {
		if r.ClosedAtMs == 0 {
			t.Errorf("%s: %s has no closed_at_ms", name, r.SessionID)
			break
		}
	}
	norm := func(rs []session.Record) map[string][]session.Record {
		m := map[string][]session.Record{}
		for _, r := range rs {
			r.ClosedAtMs = 0
			m[r.SessionID] = append(m[r.SessionID], r)
		}
		return m
	}
	g, w := norm(got), norm(want)
	bad := 0
	for id, ws := range w {
		if !reflect.DeepEqual(g[id], ws) && bad < 5 {
			bad++
			t.Errorf("%s: session %s\n got %s\nwant %s", name, id, show(g[id]), show(ws))
		}
	}
	for id, gs := range g {
		if _, ok := w[id]; !ok && bad < 5 {
			bad++
			t.Errorf("%s: unexpected session %s", name, show(gs))
		}
	}
}

func show(rs []session.Record) string {
	b, _ := json.Marshal(rs)
	return string(b)
}
