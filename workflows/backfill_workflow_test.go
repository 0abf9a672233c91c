package workflows

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/backfill"
	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// bfMocks are the backfill activities as the workflow sees them, recording
// their calls.
type bfMocks struct {
	mu              sync.Mutex
	routed, shards  []int
	maxTimes        []int64
	prepared, clean int
	inflight, peak  atomic.Int32
	failInput       int // -1: none
	objects         int
}

func (m *bfMocks) register(env *testsuite.TestWorkflowEnvironment) {
	var a *activities.Activities
	env.RegisterActivity(a)
	busy := func() func() {
		n := m.inflight.Add(1)
		for p := m.peak.Load(); n > p && !m.peak.CompareAndSwap(p, n); p = m.peak.Load() {
		}
		time.Sleep(5 * time.Millisecond) // real time: lets parallel activities overlap
		return func() { m.inflight.Add(-1) }
	}
	env.OnActivity(a.PrepareBackfill, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in backfill.PrepareInput) (backfill.Manifest, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.prepared++
			return backfill.Manifest{Objects: m.objects, Bytes: int64(m.objects) * 100}, nil
		})
	env.OnActivity(a.RouteBackfillInput, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in backfill.RouteInput) (backfill.Routed, error) {
			defer busy()()
			m.mu.Lock()
			defer m.mu.Unlock()
			if in.Index == m.failInput {
				return backfill.Routed{}, temporal.NewNonRetryableApplicationError("corrupt", store.ErrTypeBadInput, nil)
			}
			m.routed = append(m.routed, in.Index)
			return backfill.Routed{Bytes: 100, RouteStats: backfill.RouteStats{Lines: 11, Events: 10, Invalid: 1,
				MaxTime: 1000 + int64(in.Index)}, ResumedPart: in.Index % 3}, nil
		})
	env.OnActivity(a.SessionizeBackfillShard, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in backfill.ShardInput) (backfill.ShardResult, error) {
			defer busy()()
			m.mu.Lock()
			defer m.mu.Unlock()
			m.shards = append(m.shards, in.Shard)
			m.maxTimes = append(m.maxTimes, in.MaxTime)
			return backfill.ShardResult{Events: 5, Sessions: 2, Objects: 1}, nil
		})
	env.OnActivity(a.CleanupBackfill, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in backfill.CleanupInput) (int, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.clean++
			return 3, nil
		})
}

func bfInput(t *testing.T) BackfillInput {
	rules, err := session.Defaults(session.Clickstream)
	if err != nil {
		t.Fatal(err)
	}
	req := BackfillRequest{Pipeline: "web", Rules: rules, Inputs: []string{"s3://in/history"}, Shards: 5, Out: "s3://out/bf"}
	return BackfillInput{ID: req.ID(), BackfillRequest: req}
}

// runBackfill executes the workflow with the mocks, following
// continue-as-new, and returns the result and the number of runs.
func runBackfill(t *testing.T, m *bfMocks, in BackfillInput) (BackfillProgress, int, error) {
	t.Helper()
	for runs := 1; ; runs++ {
		env := newTestEnv(bfQuietLogger())
		m.register(env)
		env.ExecuteWorkflow(BackfillWorkflow, in)
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			in = BackfillInput{}
			if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
				t.Fatal(err)
			}
			if in.State == nil {
				t.Fatal("continued without state")
			}
			continue
		}
		if err != nil {
			return BackfillProgress{}, runs, err
		}
		var res BackfillProgress
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		v, err := env.QueryWorkflow(QueryProgress)
		if err != nil {
			t.Fatal(err)
		}
		var q BackfillProgress
		if err := v.Get(&q); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(q, res) {
			t.Errorf("progress query %+v, result %+v", q, res)
		}
		return res, runs, nil
	}
}

func bfQuietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

func TestBackfillWorkflowPhasesAndContinueAsNew(t *testing.T) {
	m := &bfMocks{failInput: -1, objects: 23}
	in := bfInput(t)
	in.Parallelism, in.ActivitiesPerRun = 3, 7
	res, runs, err := runBackfill(t, m, in)
	if err != nil {
		t.Fatal(err)
	}
	// 1 listing + 23 inputs + 5 shards + cleanup, at most 7 per run.
	if runs != 5 {
		t.Errorf("%d runs, want 5", runs)
	}
	slices.Sort(m.routed)
	slices.Sort(m.shards)
	if m.prepared != 1 || m.clean != 1 || len(m.routed) != 23 || m.routed[0] != 0 || m.routed[22] != 22 ||
		!slices.Equal(m.shards, []int{0, 1, 2, 3, 4}) {
		t.Errorf("prepared %d, cleaned %d, routed %v, sessionized %v: want each once", m.prepared, m.clean, m.routed, m.shards)
	}
	for _, mt := range m.maxTimes {
		if mt != 1022 {
			t.Errorf("a shard got watermark %d, want the whole input's largest time 1022", mt)
		}
	}
	if p := m.peak.Load(); p > 3 {
		t.Errorf("%d activities ran at once, want at most 3", p)
	}
	want := BackfillProgress{ID: in.ID, Pipeline: "web", Out: "s3://out/bf", Phase: PhaseDone, StartedAt: res.StartedAt,
		Objects: 23, Bytes: 2300, Routed: 23, BytesRead: 2300, Lines: 253, Events: 230, Invalid: 23, MaxTime: 1022,
		Shards: 5, Sessionized: 5, Sessions: 10, Files: 5, Resumed: 15, Runs: 4}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result\n got %+v\nwant %+v", res, want)
	}
	if res.Fraction() != 1 {
		t.Errorf("fraction %v when done", res.Fraction())
	}
}

func TestBackfillWorkflowFailsOnBadInputWithoutCleanup(t *testing.T) {
	m := &bfMocks{failInput: 4, objects: 9}
	_, _, err := runBackfill(t, m, bfInput(t))
	if err == nil || !strings.Contains(err.Error(), "route input 4") || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("error %v, want route input 4 failing", err)
	}
	if m.clean != 0 || len(m.shards) != 0 {
		t.Errorf("after a failed input: %d cleanups, shards %v; want none", m.clean, m.shards)
	}
}

func TestBackfillWorkflowRejectsBadRequests(t *testing.T) {
	for name, edit := range map[string]func(*BackfillInput){
		"no inputs":   func(in *BackfillInput) { in.Inputs = nil },
		"bad out":     func(in *BackfillInput) { in.Out = "/tmp/out" },
		"zero shards": func(in *BackfillInput) { in.Shards = 0 },
		"empty range": func(in *BackfillInput) { in.Since, in.Until = 10, 10 },
		"bad rules":   func(in *BackfillInput) { in.Rules.Gap = 0 },
		"out in input": func(in *BackfillInput) {
			in.Inputs = []string{"s3://in/history", "s3://out"}
		},
	} {
		in := bfInput(t)
		edit(&in)
		_, _, err := runBackfill(t, &bfMocks{failInput: -1}, in)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != ErrTypeBadBackfill {
			t.Errorf("%s: error %v, want %s", name, err, ErrTypeBadBackfill)
		}
	}
}

func TestBackfillIDNamesTheRequest(t *testing.T) {
	in := bfInput(t)
	same := bfInput(t)
	if in.ID != same.ID || len(in.ID) != 16 {
		t.Fatalf("ids %q and %q of one request", in.ID, same.ID)
	}
	for name, edit := range map[string]func(*BackfillRequest){
		"pipeline": func(r *BackfillRequest) { r.Pipeline = "app" },
		"inputs":   func(r *BackfillRequest) { r.Inputs = append(r.Inputs, "/data") },
		"order":    func(r *BackfillRequest) { r.Inputs = []string{"/b", "/a"} },
		"since":    func(r *BackfillRequest) { r.Since = 1 },
		"until":    func(r *BackfillRequest) { r.Until = 1 },
		"shards":   func(r *BackfillRequest) { r.Shards = 6 },
		"out":      func(r *BackfillRequest) { r.Out = "s3://out/other" },
		"rules":    func(r *BackfillRequest) { r.Rules.Gap = time.Minute },
	} {
		r := in.BackfillRequest
		r.Inputs = slices.Clone(r.Inputs)
		edit(&r)
		if r.ID() == in.ID {
			t.Errorf("changing the %s keeps the id", name)
		}
	}
	if got := BackfillStartOptions(in, "q"); got.ID != "backfill/web/"+in.ID ||
		got.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING ||
		got.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY {
		t.Errorf("start options %+v", got)
	}
}

// ---- Integration: a real Temporal server and a real MinIO ----

// bfData is a backfill's input in MinIO and on disk, and the reference: the
// batch engine over the same lines concatenated in manifest order.
type bfData struct {
	rules    session.Rules
	pipeline string
	inputs   []string
	want     []session.Record
	stats    session.BatchStats
}

// newBFData generates n events of a profile and stores them as objects
// JSON lines gzip-compressed, plain JSON lines and Parquet under
// history/<pipeline>/, plus one local gzip file. Objects are cut from the
// stream out of time order, so each key's events are spread over all
// objects; a few lines are invalid, and a few events are repeated in a
// later object (the same event id: they count once).
func newBFData(t testing.TB, s3 *miniotest.Server, p session.Profile, n, objects int) *bfData {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch p {
	case session.Clickstream:
		err = generate.Clicks(&buf, generate.ClickOptions{Users: max(100, n/100), Events: n, Seed: 21})
	case session.Charging:
		err = generate.Charging(&buf, generate.ChargingOptions{Devices: max(20, n/500), Events: n, Seed: 22})
	}
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	rules, _ := session.Defaults(p)
	d := &bfData{rules: rules, pipeline: "bf-" + string(p)}
	per := (len(lines) + objects) / (objects + 1) // the last share goes to a local file
	var parts [][]string
	for i := 0; i < len(lines); i += per {
		parts = append(parts, lines[i:min(len(lines), i+per)])
	}
	// Invalid lines, and events repeated across objects.
	for i, part := range parts {
		part = slices.Clone(part)
		part[len(part)/3] = `{"not":"an event"}`
		if i > 0 {
			part = append(part, parts[i-1][7], parts[i-1][len(parts[i-1])/2])
		}
		parts[i] = part
	}
	ctx := context.Background()
	prefix := "history/" + d.pipeline
	var concat []string
	// Object k holds part (k*5+2) mod objects: names sort in another order
	// than time. The last part is a local file, the second input.
	for k := range objects {
		part := parts[(k*5+2)%objects]
		var data []byte
		name := fmt.Sprintf("%s/day=%02d/part-%d", prefix, k%3, k)
		switch k % 3 {
		case 0:
			data, name = bfGzip(t, strings.Join(part, "\n")+"\n"), name+".jsonl.gz"
		case 1:
			data, name = bfParquet(t, p, part), name+".parquet"
		case 2:
			data, name = []byte(strings.Join(part, "\n")), name+".jsonl"
		}
		if _, err := s3.Client.PutObject(ctx, s3.Bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s3.Client.PutObject(ctx, s3.Bucket, prefix+"/_SUCCESS", bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// Manifest order: keys sorted (day=00/part-0, day=00/part-3, …).
	var keys []string
	for obj := range s3.Client.ListObjectsIter(ctx, s3.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if !strings.HasSuffix(obj.Key, "_SUCCESS") {
			keys = append(keys, obj.Key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		var k int
		fmt.Sscanf(key[strings.LastIndex(key, "part-")+5:], "%d", &k)
		concat = append(concat, parts[(k*5+2)%objects]...)
	}
	local := filepath.Join(t.TempDir(), "last.jsonl.gz")
	if err := os.WriteFile(local, bfGzip(t, strings.Join(parts[len(parts)-1], "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	concat = append(concat, parts[len(parts)-1]...)
	d.inputs = []string{"s3://" + s3.Bucket + "/" + prefix, local}

	b := session.Batch{Rules: &d.rules, Pipeline: d.pipeline}
	if d.want, d.stats, err = b.Run(ctx, strings.NewReader(strings.Join(concat, "\n"))); err != nil {
		t.Fatal(err)
	}
	return d
}

func bfGzip(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bfParquet stores generated lines as Parquet with typed columns: the event
// time as a timestamp (clickstream) or an int64 (charging), statuses and
// SoC as numbers. A line that is not an event becomes a row without a key.
func bfParquet(t testing.TB, p session.Profile, lines []string) []byte {
	var fields []arrow.Field
	if p == session.Clickstream {
		fields = []arrow.Field{{Name: "uuid", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "event_timestamp", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
			{Name: "page_name", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "event_id", Type: arrow.BinaryTypes.String, Nullable: true}}
	} else {
		fields = []arrow.Field{{Name: "UIN", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "time", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
			{Name: "Charge_status", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
			{Name: "Soc_percentage", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
			{Name: "event_id", Type: arrow.BinaryTypes.String, Nullable: true}}
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	str := func(i int, s string) {
		if s == "" {
			b.Field(i).AppendNull()
		} else {
			b.Field(i).(*array.StringBuilder).Append(s)
		}
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		num := func(k string) (int64, bool) { f, ok := m[k].(float64); return int64(f), ok }
		if p == session.Clickstream {
			str(0, s("uuid"))
			if ms, err := strconv.ParseInt(s("event_timestamp"), 10, 64); err == nil {
				b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(ms))
			} else {
				b.Field(1).AppendNull()
			}
			str(2, s("page_name"))
			str(3, s("event_id"))
			continue
		}
		str(0, s("UIN"))
		for j, k := range []string{"time", "Charge_status", "Soc_percentage"} {
			v, ok := num(k)
			switch {
			case !ok:
				b.Field(1 + j).AppendNull()
			case j == 0:
				b.Field(1).(*array.Int64Builder).Append(v)
			case j == 1:
				b.Field(2).(*array.Int8Builder).Append(int8(v))
			default:
				b.Field(3).(*array.Float64Builder).Append(float64(v))
			}
		}
		str(4, s("event_id"))
	}
	rec := b.NewRecord()
	defer rec.Release()
	var out bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &out, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(4096)),
		pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// bfCluster is a Temporal server, a MinIO and a worker that can be replaced.
type bfCluster struct {
	t     *testing.T
	ts    *temporaltest.TestServer
	c     client.Client
	s3    *miniotest.Server
	acts  *activities.Activities
	queue string
	mu    sync.Mutex
	w     worker.Worker
}

func newBFCluster(t *testing.T) *bfCluster {
	s3 := miniotest.Start(t)
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	cl := &bfCluster{t: t, ts: ts, s3: s3, queue: "backfill-test",
		c:    ts.NewClientWithOptions(client.Options{Logger: bfQuietLogger()}),
		acts: &activities.Activities{S3: s3.Client, Bucket: s3.Bucket}}
	cl.startWorker()
	t.Cleanup(func() { cl.mu.Lock(); cl.w.Stop(); cl.mu.Unlock() })
	return cl
}

func (cl *bfCluster) startWorker() {
	w := worker.New(cl.c, cl.queue, worker.Options{})
	w.RegisterWorkflow(BackfillWorkflow)
	w.RegisterActivity(cl.acts)
	if err := w.Start(); err != nil {
		cl.t.Fatal(err)
	}
	cl.w = w
}

// restartWorker stops the worker (its activities are abandoned mid-way)
// and starts a new one.
func (cl *bfCluster) restartWorker() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.w.Stop()
	time.Sleep(time.Second)
	cl.startWorker()
}

func (d *bfData) input(out string, shards int) BackfillInput {
	req := BackfillRequest{Pipeline: d.pipeline, Rules: d.rules, Inputs: d.inputs, Shards: shards, Out: out}
	return BackfillInput{ID: req.ID(), BackfillRequest: req, Parallelism: 3, HeartbeatTimeout: 5 * time.Second}
}

func (cl *bfCluster) start(ctx context.Context, in BackfillInput) client.WorkflowRun {
	cl.t.Helper()
	run, err := cl.c.ExecuteWorkflow(ctx, BackfillStartOptions(in, cl.queue), BackfillWorkflow, in)
	if err != nil {
		cl.t.Fatal(err)
	}
	return run
}

// check compares the backfill's Parquet with the batch engine's records,
// row for row, and its rejects with the invalid lines, one each.
func (cl *bfCluster) check(ctx context.Context, d *bfData, res BackfillProgress) {
	t := cl.t
	t.Helper()
	_, prefix, _ := store.ParseS3URL(res.Out)
	got, err := store.ReadSessions(ctx, cl.s3.Client, cl.s3.Bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(d.want) {
		t.Errorf("%d sessions in Parquet, want %d", len(got), len(d.want))
	}
	bad := 0
	for i := range min(len(got), len(d.want)) {
		g, w := got[i], d.want[i]
		g.ClosedAtMs, w.ClosedAtMs = 0, 0
		if !reflect.DeepEqual(g, w) && bad < 5 {
			bad++
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			t.Errorf("session %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
	if res.Events != d.stats.Events || res.Invalid != d.stats.Invalid || res.Lines != d.stats.Lines ||
		res.MaxTime != d.stats.MaxTime || res.Sessions != d.stats.Sessions || res.Duplicates != d.stats.Duplicates ||
		res.Ignored != d.stats.Ignored {
		t.Errorf("backfill counts %+v\nbatch counts %+v", res, d.stats)
	}
	seen := map[string]int{}
	for obj := range cl.s3.Client.ListObjectsIter(ctx, cl.s3.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		switch {
		case strings.Contains(obj.Key, "/_tmp/"):
			t.Errorf("intermediate object %s left after the backfill", obj.Key)
		case strings.Contains(obj.Key, "/rejects/"):
			o, err := cl.s3.Client.GetObject(ctx, cl.s3.Bucket, obj.Key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(o)
			for dec.More() {
				var r struct {
					Source string `json:"source"`
					Line   int64  `json:"line"`
					Reason string `json:"reason"`
				}
				if err := dec.Decode(&r); err != nil {
					t.Fatal(err)
				}
				seen[fmt.Sprintf("%s:%d", r.Source, r.Line)]++
			}
			o.Close()
		}
	}
	if int64(len(seen)) != d.stats.Invalid {
		t.Errorf("%d rejected lines, want %d", len(seen), d.stats.Invalid)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("reject %s written %d times", k, n)
		}
	}
}

// outObjects lists the backfill's output objects with their ETags.
func (cl *bfCluster) outObjects(ctx context.Context, out string) map[string]string {
	_, prefix, _ := store.ParseS3URL(out)
	objs := map[string]string{}
	for obj := range cl.s3.Client.ListObjectsIter(ctx, cl.s3.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		objs[obj.Key] = obj.ETag
	}
	return objs
}

var updateBackfillHistory = flag.Bool("update-backfill-history", false, "save the integration test's backfill history into testdata/backfill for TestBackfillReplay")

// bfHistoryDir holds recorded backfill histories; it is apart from
// testdata/histories, whose replayer registers the streaming workflows only.
var bfHistoryDir = filepath.Join("testdata", "backfill")

// TestBackfillIntegration runs backfills through a real Temporal server and
// a real MinIO: the Parquet they write equals the batch engine's sessions
// over the same events concatenated, also when the worker is killed in the
// middle, and re-running a request returns the finished backfill without
// writing anything.
func TestBackfillIntegration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl := newBFCluster(t)
	clicks := newBFData(t, cl.s3, session.Clickstream, 200_000, 6)
	t.Logf("clickstream: %d lines, %d events, %d invalid, %d duplicates -> %d sessions",
		clicks.stats.Lines, clicks.stats.Events, clicks.stats.Invalid, clicks.stats.Duplicates, len(clicks.want))

	var first BackfillProgress
	var firstRun client.WorkflowRun
	t.Run("straight", func(t *testing.T) {
		cl.t = t
		in := clicks.input("s3://"+cl.s3.Bucket+"/out/straight", 8)
		in.ActivitiesPerRun = 6 // several runs: continue-as-new mid-phase
		firstRun = cl.start(ctx, in)
		if err := firstRun.Get(ctx, &first); err != nil {
			t.Fatal(err)
		}
		if first.Runs < 2 {
			t.Errorf("the backfill ran in %d run(s); want it to continue as new", first.Runs+1)
		}
		cl.check(ctx, clicks, first)
		cl.replay(ctx, firstRun)
	})

	t.Run("rerun", func(t *testing.T) {
		cl.t = t
		if firstRun == nil {
			t.Skip("needs the straight run")
		}
		in := clicks.input("s3://"+cl.s3.Bucket+"/out/straight", 8)
		in.ActivitiesPerRun = 6
		before := cl.outObjects(ctx, in.Out)
		run := cl.start(ctx, in)
		var again BackfillProgress
		if err := run.Get(ctx, &again); err != nil {
			t.Fatal(err)
		}
		if run.GetID() != firstRun.GetID() || run.GetRunID() != firstRun.GetRunID() {
			t.Errorf("re-run started %s/%s, want the finished %s/%s", run.GetID(), run.GetRunID(), firstRun.GetID(), firstRun.GetRunID())
		}
		if !reflect.DeepEqual(again, first) {
			t.Errorf("re-run result %+v, want %+v", again, first)
		}
		if after := cl.outObjects(ctx, in.Out); !reflect.DeepEqual(after, before) {
			t.Errorf("re-run changed the output: %d objects before, %d after", len(before), len(after))
		}
	})

	t.Run("worker-restart", func(t *testing.T) {
		cl.t = t
		in := clicks.input("s3://"+cl.s3.Bucket+"/out/restart", 8)
		in.PartLines = 4000 // many parts: the kill lands between two
		run := cl.start(ctx, in)
		if again := cl.start(ctx, in); again.GetRunID() != run.GetRunID() {
			t.Errorf("starting the running backfill again began run %s, want to attach to %s", again.GetRunID(), run.GetRunID())
		}
		cl.killWhenResumable(ctx, run.GetID())
		var res BackfillProgress
		if err := run.Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		if res.Resumed == 0 {
			t.Error("no activity resumed from a heartbeat after the worker was replaced")
		}
		t.Logf("after the restart %d activities resumed from their heartbeats", res.Resumed)
		cl.check(ctx, clicks, res)
	})

	t.Run("charging", func(t *testing.T) {
		cl.t = t
		charging := newBFData(t, cl.s3, session.Charging, 30_000, 4)
		var res BackfillProgress
		if err := cl.start(ctx, charging.input("s3://"+cl.s3.Bucket+"/out/charging", 3)).Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		cl.check(ctx, charging, res)
	})
}

// killWhenResumable waits until a routing activity has heartbeated a part
// (so a new attempt resumes rather than restarts), then replaces the worker.
func (cl *bfCluster) killWhenResumable(ctx context.Context, id string) {
	t := cl.t
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := cl.c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, pa := range d.GetPendingActivities() {
			var prog struct {
				NextPart int `json:"next_part"`
			}
			if pa.GetHeartbeatDetails() == nil ||
				converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &prog) != nil || prog.NextPart == 0 {
				continue
			}
			t.Logf("killing the worker while %s is at part %d", pa.GetActivityType().GetName(), prog.NextPart)
			cl.restartWorker()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no routing activity heartbeated a part within 2 minutes")
}

// replay replays the backfill's first run (listing, routing, continue-as-new)
// and its last run (sessionizing, clean-up) against today's code and, with
// -update-backfill-history, saves them for TestBackfillReplay.
func (cl *bfCluster) replay(ctx context.Context, run client.WorkflowRun) {
	t := cl.t
	// The first run is the continued one that started first.
	resp, err := cl.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: cl.ts.GetDefaultNamespace(),
		Query: fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'ContinuedAsNew'", run.GetID())})
	if err != nil || len(resp.GetExecutions()) == 0 {
		t.Fatalf("no continued run of %s: %v", run.GetID(), err)
	}
	first := slices.MinFunc(resp.GetExecutions(), func(a, b *workflowpb.WorkflowExecutionInfo) int {
		return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
	})
	for name, runID := range map[string]string{"first_run": first.GetExecution().GetRunId(), "last_run": ""} {
		var h historypb.History
		it := cl.c.GetWorkflowHistory(ctx, run.GetID(), runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, e)
		}
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(BackfillWorkflow)
		if err := r.ReplayWorkflowHistory(nil, &h); err != nil {
			t.Errorf("replay of the %s of %s: %v", name, run.GetID(), err)
		}
		if !*updateBackfillHistory {
			continue
		}
		data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(bfHistoryDir, "backfill_"+name+".json")
		if err := os.MkdirAll(bfHistoryDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %s (%d events)", file, len(h.Events))
	}
}

// TestBackfillReplay replays recorded backfill histories (the first and the
// last run of the integration test's straight backfill, regenerated with
// -update-backfill-history): a change that breaks determinism for running
// backfills fails here.
func TestBackfillReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(bfHistoryDir, "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("found %d histories in %s, want 2 (regenerate with: go test -run 'TestBackfillIntegration/straight' -update-backfill-history ./workflows)",
			len(files), bfHistoryDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(BackfillWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkBackfill measures a backfill end to end (temporaltest + MinIO,
// one worker, 8 gzip JSON-lines objects, 16 shards, parallelism 4) against
// the batch engine over the same data as one plain file, as `starter
// sessionize` reads it. The size is SESSIONFLOW_BENCH_EVENTS clickstream
// events (default 1,000,000) of events/50 users; run with -benchtime 1x.
//
// Besides wall-clock rates it reports CPU seconds (this process, plus the
// MinIO server for the backfill), which other load on the machine does not
// skew, and the phase split the progress query saw.
func BenchmarkBackfill(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("SESSIONFLOW_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	s3 := miniotest.Start(b)
	var buf bytes.Buffer
	if err := generate.Clicks(&buf, generate.ClickOptions{Users: max(100, n/50), Events: n, Seed: 3}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	const objects = 8
	for k, start := 0, 0; k < objects; k++ {
		end := len(data)
		if k < objects-1 {
			end = start + len(data)/objects
			end += bytes.IndexByte(data[end:], '\n') + 1
		}
		obj := bfGzip(b, string(data[start:end]))
		if _, err := s3.Client.PutObject(ctx, s3.Bucket, fmt.Sprintf("bench/part-%d.jsonl.gz", k), bytes.NewReader(obj),
			int64(len(obj)), minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		start = end
	}
	file := filepath.Join(b.TempDir(), "clicks.jsonl")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	data, buf = nil, bytes.Buffer{}
	rules, _ := session.Defaults(session.Clickstream)

	ts := temporaltest.NewServer()
	defer ts.Stop()
	c := ts.NewClientWithOptions(client.Options{Logger: bfQuietLogger()})
	w := worker.New(c, "bench", worker.Options{})
	w.RegisterWorkflow(BackfillWorkflow)
	w.RegisterActivity(&activities.Activities{S3: s3.Client, Bucket: s3.Bucket})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		f, err := os.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		self0, _ := bfCPU()
		started := time.Now()
		batch := session.Batch{Rules: &rules, Pipeline: "bench"}
		_, st, err := batch.Run(ctx, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		batchTime := time.Since(started)
		self1, _ := bfCPU()
		batchCPU := self1 - self0
		b.StartTimer()

		req := BackfillRequest{Pipeline: "bench", Rules: rules, Inputs: []string{"s3://" + s3.Bucket + "/bench"},
			Shards: 16, Out: fmt.Sprintf("s3://%s/bench-out/%d", s3.Bucket, i)}
		in := BackfillInput{ID: req.ID(), BackfillRequest: req}
		self0, minio0 := bfCPU()
		started = time.Now()
		run, err := c.ExecuteWorkflow(ctx, BackfillStartOptions(in, "bench"), BackfillWorkflow, in)
		if err != nil {
			b.Fatal(err)
		}
		phases := bfWatchPhases(ctx, c, run.GetID(), started)
		var res BackfillProgress
		if err := run.Get(ctx, &res); err != nil {
			b.Fatal(err)
		}
		took := time.Since(started)
		self1, minio1 := bfCPU()
		split := phases()
		if res.Sessions != st.Sessions || res.Events != st.Events {
			b.Fatalf("backfill: %d events, %d sessions; batch: %d events, %d sessions", res.Events, res.Sessions, st.Events, st.Sessions)
		}
		cpu := (self1 - self0) + (minio1 - minio0)
		rate, batchRate := float64(res.Events)/took.Seconds(), float64(st.Events)/batchTime.Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(batchRate, "batch-events/s")
		b.ReportMetric(rate/batchRate, "ratio")
		b.ReportMetric(cpu.Seconds(), "cpu-s")
		b.ReportMetric(batchCPU.Seconds(), "batch-cpu-s")
		b.Logf("%d events -> %d sessions in %d Parquet objects", res.Events, res.Sessions, res.Files)
		b.Logf("backfill   %7v wall (%.0f events/s), %v CPU (worker %v + MinIO %v); routing %v, sessionizing %v",
			took.Round(time.Millisecond), rate, cpu.Round(10*time.Millisecond), (self1 - self0).Round(10*time.Millisecond),
			(minio1 - minio0).Round(10*time.Millisecond), split[0].Round(time.Millisecond), split[1].Round(time.Millisecond))
		b.Logf("batch file %7v wall (%.0f events/s), %v CPU; wall ratio %.2f, CPU ratio %.2f",
			batchTime.Round(time.Millisecond), batchRate, batchCPU.Round(10*time.Millisecond), rate/batchRate,
			batchCPU.Seconds()/cpu.Seconds())
	}
}

// bfWatchPhases polls the progress query; the function it returns stops
// polling and gives the time spent routing and sessionizing.
func bfWatchPhases(ctx context.Context, c client.Client, id string, started time.Time) func() [2]time.Duration {
	at := map[string]time.Duration{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if v, err := c.QueryWorkflow(ctx, id, "", QueryProgress); err == nil {
				var p BackfillProgress
				if v.Get(&p) == nil {
					if _, ok := at[p.Phase]; !ok {
						at[p.Phase] = time.Since(started)
					}
				}
			}
		}
	}()
	return func() [2]time.Duration {
		close(stop)
		<-done
		return [2]time.Duration{at[PhaseSessionizing] - at[PhaseRouting], at[PhaseCleaning] - at[PhaseSessionizing]}
	}
}

// bfCPU returns the CPU time used so far by this process and by the MinIO
// servers it started (Linux /proc; zero elsewhere).
func bfCPU() (self, minio time.Duration) {
	ticks := func(stat []byte) (time.Duration, string) {
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		if len(f) < 13 {
			return 0, ""
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(u+s) * 10 * time.Millisecond, f[1] // USER_HZ is 100 on Linux
	}
	me := strconv.Itoa(os.Getpid())
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		self, _ = ticks(stat)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("minio")) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if t, parent := ticks(stat); parent == me {
				minio += t
			}
		}
	}
	return self, minio
}
