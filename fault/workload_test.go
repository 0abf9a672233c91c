//go:build fault

package fault

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// The workload of a case unless it says otherwise: 8,000 clicks of 250
// users on 4 partitions, produced at normalRate (about a minute), which
// makes about 1,600 sessions. That keeps a case at about 2 minutes on two
// cores with the dev server's SQLite file as Temporal's store.
const (
	users      = 250
	events     = 8000
	normalRate = 130.0 // messages per second
)

// caseSeed is the seed of a case's workload and fault timing: $FAULT_SEED
// to replay a run, else a new one, logged either way.
func caseSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FAULT_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("FAULT_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (FAULT_SEED=%d replays it)", seed, seed)
	return seed
}

// message is one Kafka record of a workload.
type message struct {
	key       []byte // nil: produced without a key
	value     []byte
	partition int32
	time      int64  // event time; 0 for poison
	faultID   string // poison only: a header the dead letter keeps
}

// lateEvent is an injected late event as the late output must show it.
type lateEvent struct {
	key  string
	time int64
	id   uint64
}

// workload is a case's input, in produce order, and what must come out.
type workload struct {
	msgs   []message
	good   [][]byte // the on-time events: the batch engine's input
	late   []lateEvent
	poison map[string]poison // by fault id
	want   []session.Record  // the batch engine's sessions over good
}

// workloadOptions size a workload.
type workloadOptions struct {
	users, events int
	seed          uint64
	// keyless good events are produced without a Kafka key (to a partition
	// of our choice): the ingester keys by the JSON field, not the record.
	keyless int
	// poison mixes the dead letters of poisonKinds into the stream.
	poison bool
}

// newWorkload generates a clickstream (generate.Clicks, minutes as
// seconds), delays each event by up to half the lateness so that the stream
// is out of order but never late, and injects a late event every 120
// messages in the last 40% of the stream: a click of a real user stamped as
// the event a tenth as far into the stream, minus twice the lateness. By
// rule 2 of ingest/watermark.go an event is late once its partition's
// acknowledged progress is more than the lateness past it; no case holds
// the acknowledgements back before the workers have acknowledged the first
// 20% of the stream, so the injected events are late whatever the faults
// do, and must land in the late output, never in a session.
func newWorkload(t testing.TB, rules session.Rules, o workloadOptions) *workload {
	t.Helper()
	var buf bytes.Buffer
	if err := generate.Clicks(&buf, generate.ClickOptions{Users: o.users, Events: o.events, Seed: o.seed, Scale: 1.0 / 60}); err != nil {
		t.Fatalf("generate: %v", err)
	}
	dec := session.NewDecoder(&rules)
	type event struct {
		line []byte
		key  string
		time int64
		at   int64 // arrival order: time plus a delay under lateness/2
	}
	rng := rand.New(rand.NewPCG(o.seed, 0xfa17))
	var events []event
	for line := range bytes.Lines(buf.Bytes()) {
		line = bytes.TrimSpace(line)
		key, e, err := dec.Decode(line)
		if err != nil {
			t.Fatalf("generated line %q: %v", line, err)
		}
		events = append(events, event{line: line, key: string(key), time: e.Time, at: e.Time + rng.Int64N(rules.Lateness.Milliseconds()/2)})
	}
	slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })

	w := &workload{poison: map[string]poison{}}
	lateness := rules.Lateness.Milliseconds()
	keyless := map[int]bool{}
	for len(keyless) < o.keyless {
		keyless[rng.IntN(len(events))] = true
	}
	for n, e := range events {
		if n == len(events)/2 {
			w.addTies(e.time)
		}
		if n >= len(events)*6/10 && n%120 == 0 {
			at := events[n/10].time - 2*lateness
			line := fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":"home","event_id":"late-%d"}`, e.key, at, n)
			_, le, err := dec.Decode(line)
			if err != nil {
				t.Fatalf("late event: %v", err)
			}
			w.late = append(w.late, lateEvent{key: e.key, time: le.Time, id: le.ID})
			w.msgs = append(w.msgs, message{key: []byte(e.key), value: line, partition: partitionOf(e.key), time: at})
		}
		m := message{key: []byte(e.key), value: e.line, partition: partitionOf(e.key), time: e.time}
		if keyless[n] {
			m.key, m.partition = nil, int32(n%partitions)
		}
		w.msgs = append(w.msgs, m)
		w.good = append(w.good, e.line)
	}
	if o.poison {
		w.addPoison(t, rng)
	}

	b := session.Batch{Rules: &rules, Pipeline: pipelineName}
	recs, _, err := b.Run(context.Background(), bytes.NewReader(append(bytes.Join(w.good, []byte{'\n'}), '\n')))
	if err != nil {
		t.Fatalf("batch engine: %v", err)
	}
	sortRecords(recs)
	w.want = recs
	if rules.EndMarker.Field != "" && !slices.ContainsFunc(recs, func(r session.Record) bool {
		return r.Key == "tie-user" && strings.HasSuffix(r.SessionID, "-1")
	}) {
		t.Fatalf("the batch engine gives the tie user no second session in one millisecond")
	}
	return w
}

// addTies adds a user who clicks, logs out and clicks twice more in the
// logout's millisecond (a double submit), then logs out a second later: two
// sessions that start in one millisecond, which must get distinct ids
// (the pipeline's end marker is page_name=logout).
func (w *workload) addTies(at int64) {
	for i, c := range []struct {
		off  int64
		page string
	}{{0, "home"}, {0, "logout"}, {0, "home"}, {0, "search"}, {1000, "logout"}} {
		key := "tie-user"
		line := fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":%q,"event_id":"tie-%d"}`, key, at+c.off, c.page, i)
		w.msgs = append(w.msgs, message{key: []byte(key), value: line, partition: partitionOf(key), time: at + c.off})
		w.good = append(w.good, line)
	}
}

// partitionOf is where a key's events go, as a hash partitioner would put
// them.
func partitionOf(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % partitions)
}

func sortRecords(rs []session.Record) {
	slices.SortStableFunc(rs, func(a, b session.Record) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
	})
}

// --- producing ----------------------------------------------------------------

// production is a workload being produced in the background.
type production struct {
	done chan struct{}
	err  error
	sent atomic.Int64
	// where each message landed, valid once done is closed
	offsets []int64
	// allCommitted stops the progress log
	allCommitted atomic.Bool
}

// produce writes w's messages in order at rate(i) messages per second (i
// is the index of the next message), in 100ms slices.
func (s *stack) produce(w *workload, rate func(i int) float64) *production {
	pr := &production{done: make(chan struct{}), offsets: make([]int64, len(w.msgs))}
	p, err := sarama.NewSyncProducerFromClient(s.kclient)
	if err != nil {
		s.t.Fatalf("producer: %v", err)
	}
	s.bg.Go(func() { s.logProgress(pr, len(w.msgs)) })
	s.bg.Go(func() {
		defer close(pr.done)
		defer p.Close()
		next := time.Now()
		for i := 0; i < len(w.msgs); {
			if err := s.t.Context().Err(); err != nil {
				pr.err = fmt.Errorf("produce: the test ended: %w", err)
				return
			}
			r := rate(i)
			n := min(max(1, int(r/10)), len(w.msgs)-i)
			batch := make([]*sarama.ProducerMessage, n)
			for j, m := range w.msgs[i : i+n] {
				pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(m.value), Partition: m.partition}
				if m.key != nil {
					pm.Key = sarama.ByteEncoder(m.key)
				}
				if m.faultID != "" {
					pm.Headers = []sarama.RecordHeader{{Key: []byte(headerFaultID), Value: []byte(m.faultID)}}
				}
				batch[j] = pm
			}
			if err := p.SendMessages(batch); err != nil {
				pr.err = fmt.Errorf("produce messages %d to %d: %w", i, i+n, err)
				return
			}
			for j, pm := range batch {
				pr.offsets[i+j] = pm.Offset
			}
			i += n
			pr.sent.Store(int64(i))
			next = next.Add(time.Duration(float64(n) / r * float64(time.Second)))
			time.Sleep(time.Until(next))
		}
	})
	return pr
}

// logProgress logs what is produced and committed every 10 seconds until
// everything is committed or the test ends.
func (s *stack) logProgress(pr *production, total int) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.t.Context().Done():
			return
		case <-tick.C:
		}
		if pr.allCommitted.Load() {
			return
		}
		s.logf("progress: %d of %d produced, %d committed", pr.sent.Load(), total, s.committedTotal())
	}
}

// steady is a constant produce rate.
func steady(perSecond float64) func(int) float64 { return func(int) float64 { return perSecond } }

// waitProduced waits until frac of the n messages are produced.
func (s *stack) waitProduced(pr *production, frac float64, n int) {
	s.t.Helper()
	target := int64(frac * float64(n))
	s.waitFor(5*time.Minute, fmt.Sprintf("%.0f%% of the input produced", 100*frac), func() bool {
		return pr.sent.Load() >= target
	})
}

// --- the end of a case: close everything and compare -------------------------------

// finish waits until the whole workload is produced and committed, tells
// the clock the input ended (the watermark becomes each partition's largest
// event time, as at the end of a batch run, so every session closes), waits
// for the sessions in Parquet and checks them and the late output.
func (s *stack) finish(w *workload, pr *production) {
	s.t.Helper()
	<-pr.done
	if pr.err != nil {
		s.t.Fatal(pr.err)
	}
	end := make([]int64, partitions)
	high := make([]int64, partitions)
	for i, m := range w.msgs {
		end[m.partition] = max(end[m.partition], pr.offsets[i]+1)
		high[m.partition] = max(high[m.partition], m.time)
	}
	s.logf("all %d messages produced; waiting for the commit", len(w.msgs))
	s.waitFor(10*time.Minute, "every message committed", func() bool {
		offs, err := s.committed()
		return err == nil && slices.Equal(offs, end)
	})
	pr.allCommitted.Store(true)
	s.logf("all committed")

	marks := make([]workflows.PartitionMark, partitions)
	for p := range marks {
		marks[p] = workflows.PartitionMark{Partition: fmt.Sprintf("%s/%d", topic, p), MaxTime: high[p]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clock := &ingest.TemporalSignaller{Client: s.tc, Pipeline: s.pipeline}
	if err := clock.PublishMarks(ctx, workflows.WatermarkUpdate{Source: "fault-test", Marks: marks, EndOfInput: true,
		SentMs: time.Now().UnixMilli()}); err != nil {
		s.t.Fatalf("end of input: %v", err)
	}

	got := s.awaitSessions(ctx, w.want)
	checkSessions(s.t, got, w.want)
	s.checkLate(ctx, w)
	s.checkProcesses()
}

// awaitSessions reads the Parquet sessions until every wanted one is there
// (or 5 minutes passed), then once more after the sinks' flush age, so
// that a duplicate or an extra session written late is seen too.
func (s *stack) awaitSessions(ctx context.Context, want []session.Record) []session.Record {
	s.t.Helper()
	read := func() []session.Record {
		recs, err := store.ReadSessions(ctx, s.s3, bucket, pipelineName)
		if err != nil {
			s.t.Fatalf("read sessions: %v", err)
		}
		return recs
	}
	complete := func(got []session.Record) bool {
		ids := make(map[string]bool, len(got))
		for _, r := range got {
			ids[r.SessionID] = true
		}
		for _, r := range want {
			if !ids[r.SessionID] {
				return false
			}
		}
		return true
	}
	endOfInput := time.Now()
	deadline := endOfInput.Add(5 * time.Minute)
	for !complete(read()) {
		if time.Now().After(deadline) {
			s.logf("not every session in Parquet 5m after the end of input")
			break
		}
		time.Sleep(2 * time.Second)
	}
	if time.Now().Before(deadline) {
		// How long the last sessions took to close and reach Parquet once
		// the input ended: the cases compare it.
		s.logf("all %d sessions in Parquet %v after the end of input", len(want), time.Since(endOfInput).Round(time.Second))
	}
	time.Sleep(3 * s.pipeline.Sink.MaxAge)
	got := read()
	s.logf("%d session rows in Parquet (%d distinct), the batch engine finds %d", len(got), distinct(got), len(want))
	return got
}

// distinct is the number of different session ids in rs.
func distinct(rs []session.Record) int {
	ids := map[string]bool{}
	for _, r := range rs {
		ids[r.SessionID] = true
	}
	return len(ids)
}

// checkSessions asserts that got, the Parquet rows, are exactly want: no
// session_id twice, none missing, none extra, every field equal but the
// wall time of the close.
func checkSessions(t testing.TB, got, want []session.Record) {
	t.Helper()
	count := map[string]int{}
	for _, r := range got {
		count[r.SessionID]++
	}
	var dups []string
	for id, n := range count {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", id, n))
		}
	}
	if len(dups) > 0 {
		slices.Sort(dups)
		t.Errorf("%d sessions written more than once, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
	got = slices.Clone(got)
	for i := range got {
		got[i].ClosedAtMs = 0
	}
	sortRecords(got)
	if reflect.DeepEqual(got, want) {
		return
	}
	t.Errorf("Parquet holds %d session rows, the batch engine finds %d sessions over the on-time events", len(got), len(want))
	g, w := map[string]session.Record{}, map[string]session.Record{}
	for _, r := range got {
		g[r.SessionID] = r
	}
	for _, r := range want {
		w[r.SessionID] = r
	}
	var missing, extra, differ []string
	for _, r := range want {
		if gr, ok := g[r.SessionID]; !ok {
			missing = append(missing, fmt.Sprintf("%+v", r))
		} else if !reflect.DeepEqual(gr, r) {
			differ = append(differ, fmt.Sprintf("%s:\n   got %+v %v\n  want %+v %v", r.SessionID, gr, pages(gr), r, pages(r)))
		}
	}
	for _, r := range got {
		if _, ok := w[r.SessionID]; !ok {
			extra = append(extra, fmt.Sprintf("%+v %v", r, pages(r)))
		}
	}
	for _, l := range []struct {
		what  string
		items []string
	}{{"missing", missing}, {"not in the batch result", extra}, {"different", differ}} {
		if len(l.items) > 0 {
			t.Errorf("%d sessions %s, e.g.:\n  %s", len(l.items), l.what, strings.Join(l.items[:min(5, len(l.items))], "\n  "))
		}
	}
}

func pages(r session.Record) []string {
	if r.ClickstreamAttrs == nil {
		return nil
	}
	return r.PagesVisited
}

// checkLate asserts that the late output holds exactly the injected late
// events, each once, each found late by the ingester (with its source
// position and original bytes), not by a session workflow.
func (s *stack) checkLate(ctx context.Context, w *workload) {
	s.t.Helper()
	rows, err := store.ReadLate(ctx, s.s3, bucket, pipelineName)
	if err != nil {
		s.t.Fatalf("read late events: %v", err)
	}
	var got []lateEvent
	sources := map[string]int{}
	for _, e := range rows {
		if e.Source == "" || len(e.Raw) == 0 {
			s.t.Errorf("late event %s@%d was found late by its workflow, not by the ingester", e.Key, e.Event.Time)
		}
		sources[e.Source]++
		got = append(got, lateEvent{e.Key, e.Event.Time, e.Event.ID})
	}
	for src, n := range sources {
		if n > 1 {
			s.t.Errorf("late event from %s written %d times", src, n)
		}
	}
	order := func(a, b lateEvent) int {
		return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.time, b.time), cmp.Compare(a.id, b.id))
	}
	want := slices.Clone(w.late)
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if !slices.Equal(got, want) {
		s.t.Errorf("late output holds %d events, want exactly the %d injected late ones", len(got), len(want))
		for _, e := range want {
			if !slices.Contains(got, e) {
				s.t.Logf("not in the late output: %s at %d", e.key, e.time)
			}
		}
		for _, e := range got {
			if !slices.Contains(want, e) {
				s.t.Logf("late but not injected late: %s at %d", e.key, e.time)
			}
		}
		return
	}
	s.logf("late output: exactly the %d injected late events", len(got))
}
