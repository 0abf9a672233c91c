package ingest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// TestEndToEnd runs the whole streaming path on real components: an
// in-process Kafka (kfake), a Temporal server (temporaltest) with the real
// worker registration, and MinIO. 50,000 clicks of 2,000 users arrive on 4
// partitions out of order within the lateness, with a share of events far
// behind the watermark. Two ingesters share the topic; one stops halfway
// (a rebalance). Once all is committed the clock hears the end of input.
// Then the Parquet sessions must equal the batch engine's over the on-time
// events, and the late-event output must hold exactly the late ones.
func TestEndToEnd(t *testing.T) {
	events, users := 50_000, 2_000
	if raceEnabled || testing.Short() {
		events, users = 4_000, 200 // the race detector slows Temporal about eightfold
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	started := time.Now()

	brokers := cluster(t, 4)
	s3 := miniotest.Start(t)
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})))
	ts := temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseClientOptions(client.Options{Logger: quiet}))
	c := ts.GetDefaultClient()
	if err := workflows.RegisterSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	w := workflows.NewWorkers(c, workflows.TaskQueue, worker.Options{}, &activities.Activities{S3: s3.Client, Bucket: s3.Bucket})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	rules := testRules(t)
	rules.EndMarker = session.Marker{Field: "page_name", Value: "logout"}
	pipeline := workflows.Pipeline{Name: "clicks", Rules: rules, Buckets: 4, MaxWait: 2 * time.Second, Visibility: true,
		Sink: workflows.SinkLimits{MaxRecords: 1000, MaxAge: time.Second}}
	in := newE2EInput(t, rules, users, events)
	where := produce(t, brokers, in.messages)
	end := make([]int64, 4)
	high := make([]int64, 4) // the largest event time of each partition
	for i, p := range where {
		end[p.partition] = max(end[p.partition], p.offset+1)
		high[p.partition] = max(high[p.partition], in.times[i])
	}
	t.Logf("%d events (%d late) of %d users produced in %v", len(in.messages), len(in.late), users, time.Since(started).Round(time.Millisecond))

	// At most 8% of the stream uncommitted: the ingesters' memory and the
	// redelivery after the rebalance stay small.
	lim := Limits{MaxHold: time.Second, PublishInterval: 250 * time.Millisecond, MaxInFlight: 64,
		MaxUncommitted: len(in.messages) / 12, IdleAfter: time.Minute}
	ingester := func(source string) func() {
		_, stop := startIngester(t, Config{Pipeline: pipeline, Topic: topic, Brokers: brokers, GroupID: "e2e", Source: source,
			Temporal: &TemporalSignaller{Client: c, Pipeline: pipeline}, Late: &S3Late{S3: s3.Client, Bucket: s3.Bucket}, Limits: lim})
		return stop
	}
	progress := func() (done int64) {
		for _, off := range committed(t, brokers, "e2e", 4) {
			done += max(off, 0)
		}
		return done
	}
	stopA := ingester("a")
	waitFor(t, time.Minute, "a first commit", func() bool { return progress() > 0 })
	stopB := ingester("b")
	total := int64(len(in.messages))
	waitFor(t, 4*time.Minute, "a third of the input committed", func() bool { return progress() >= total/3 })
	stopA() // B takes over A's partitions: a rebalance mid-stream
	at := progress()
	t.Logf("ingester a stopped at %d of %d messages, after %v", at, total, time.Since(started).Round(time.Millisecond))
	if at >= total*9/10 {
		t.Errorf("a stopped at %d of %d messages: too late for a rebalance mid-stream", at, total)
	}
	waitFor(t, 4*time.Minute, "every message committed", func() bool {
		return slices.Equal(committed(t, brokers, "e2e", 4), end)
	})
	stopB()
	t.Logf("all consumed after %v", time.Since(started).Round(time.Millisecond))

	// The end of input: W becomes the largest event time, as in a batch run.
	marks := make([]workflows.PartitionMark, 4)
	for p := range marks {
		marks[p] = workflows.PartitionMark{Partition: fmt.Sprintf("%s/%d", topic, p), MaxTime: high[p]}
	}
	clock := &TemporalSignaller{Client: c, Pipeline: pipeline}
	if err := clock.PublishMarks(ctx, workflows.WatermarkUpdate{Source: "test", Marks: marks, EndOfInput: true}); err != nil {
		t.Fatal(err)
	}

	var got []session.Record
	deadline := time.Now().Add(6 * time.Minute) // closing 6,000 sessions takes minutes on a busy 2-core machine
	for {
		var err error
		if got, err = store.ReadSessions(ctx, s3.Client, s3.Bucket, pipeline.Name); err != nil {
			t.Fatal(err)
		}
		if len(got) >= len(in.want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d sessions in Parquet after %v", len(got), time.Since(started).Round(time.Millisecond))
	for i := range got {
		got[i].ClosedAtMs = 0
	}
	sortRecords(got)
	if !reflect.DeepEqual(got, in.want) {
		t.Errorf("Parquet holds %d sessions, the batch engine finds %d over the on-time events", len(got), len(in.want))
		diff(t, got, in.want)
	}
	ids := map[string]int{}
	for _, r := range got {
		if ids[r.SessionID]++; ids[r.SessionID] == 2 {
			t.Errorf("session_id %s in Parquet twice", r.SessionID)
		}
	}
	if ids[in.tie] != 1 {
		t.Errorf("the tie's successor %s is in Parquet %d times, want once", in.tie, ids[in.tie])
	}

	lateGot, err := store.ReadLate(ctx, s3.Client, s3.Bucket, pipeline.Name)
	if err != nil {
		t.Fatal(err)
	}
	type lateKey struct {
		key string
		t   int64
		id  uint64
	}
	var gotLate, wantLate []lateKey
	for _, e := range lateGot {
		if e.Source == "" || len(e.Raw) == 0 {
			t.Errorf("late event %s@%d was found late by its workflow, not by the ingester", e.Key, e.Event.Time)
		}
		gotLate = append(gotLate, lateKey{e.Key, e.Event.Time, e.Event.ID})
	}
	for _, e := range in.late {
		wantLate = append(wantLate, lateKey{e.Key, e.Time, e.ID})
	}
	order := func(a, b lateKey) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.t, b.t), cmp.Compare(a.id, b.id))
	}
	slices.SortFunc(gotLate, order)
	slices.SortFunc(wantLate, order)
	if !slices.Equal(gotLate, wantLate) {
		t.Errorf("late output holds %d events, want exactly the %d late ones", len(gotLate), len(wantLate))
		for i, e := range in.late {
			if !slices.Contains(gotLate, lateKey{e.Key, e.Time, e.ID}) {
				t.Logf("not in the late output: %s at %d (message %d: partition %d offset %d)",
					e.Key, e.Time, in.latePos[i], where[in.latePos[i]].partition, where[in.latePos[i]].offset)
			}
		}
	}
}

// e2eInput is the produced stream and what must come out of it.
type e2eInput struct {
	messages []message
	times    []int64         // event time of each message
	late     []session.Keyed // the events injected far behind the watermark
	latePos  []int           // their indexes in messages
	want     []session.Record
	tie      string // the id of a session that starts in its predecessor's millisecond
}

// newE2EInput generates the clicks, delays each by up to half the lateness
// (out of order, never late), and injects a late event every 120 messages
// in the last 40% of the stream: a click of a real user more than twice the
// lateness before the stream's earliest event. It is late whatever the
// timing: by then every partition has published a mark at or after that
// earliest event, so W, and the ingester's bound of it, are at most the
// lateness behind it. (An event merely far behind its partition's read
// position is not: W moves only as fast as marks are acknowledged and
// published, and an event that W has not passed is on time.)
//
// Halfway through, a user clicks, logs out and clicks twice more in one
// millisecond (a double submit) and logs out a second later: two sessions
// that start in the same millisecond, the second with a "-1" id.
func newE2EInput(t *testing.T, rules session.Rules, users, events int) e2eInput {
	lines, keys := clicks(t, users, events, 21)
	rng := rand.New(rand.NewPCG(21, 22))
	order := shuffleWithin(t, rules, lines, rng, rules.Lateness.Milliseconds()/2)
	dec := session.NewDecoder(&rules)
	times := make([]int64, len(lines))
	for i, line := range lines {
		_, e, _ := dec.Decode(line)
		times[i] = e.Time
	}
	earliest := slices.Min(times)
	var in e2eInput
	var tieLines [][]byte
	for n, i := range order {
		if n == len(order)/2 {
			at := times[i]
			for j, c := range []struct {
				off  int64
				page string
			}{{0, "home"}, {0, "logout"}, {0, "home"}, {0, "search"}, {1000, "logout"}} {
				line := fmt.Appendf(nil, `{"uuid":"tie-user","event_timestamp":%d,"page_name":%q,"event_id":"tie-%d"}`, at+c.off, c.page, j)
				tieLines = append(tieLines, line)
				in.messages = append(in.messages, keyed("tie-user", line))
				in.times = append(in.times, at+c.off)
			}
			in.tie = fmt.Sprintf("tie-user/%d-1", at)
		}
		if n >= len(order)*6/10 && n%120 == 0 {
			at := earliest - 2*rules.Lateness.Milliseconds() - int64(n)
			id := fmt.Sprintf("late-%d", n)
			line := fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":"home","event_id":%q}`, keys[i], at, id)
			_, e, err := dec.Decode(line)
			if err != nil {
				t.Fatal(err)
			}
			in.late = append(in.late, session.Keyed{Key: keys[i], Event: session.Event{Time: e.Time, ID: e.ID}})
			in.latePos = append(in.latePos, len(in.messages))
			in.messages = append(in.messages, keyed(keys[i], line))
			in.times = append(in.times, at)
		}
		in.messages = append(in.messages, keyed(keys[i], lines[i]))
		in.times = append(in.times, times[i])
	}
	in.want = batchRecords(t, rules, "clicks", append(slices.Clip(lines), tieLines...))
	if !slices.ContainsFunc(in.want, func(r session.Record) bool { return r.SessionID == in.tie }) {
		t.Fatalf("the batch engine has no session %s", in.tie)
	}
	return in
}
