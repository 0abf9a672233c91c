package ingest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// fastLimits make the tests' ingesters flush, publish and idle quickly.
func fastLimits() Limits {
	return Limits{MaxHold: 100 * time.Millisecond, PublishInterval: 50 * time.Millisecond,
		IdleAfter: 10 * time.Second, DrainTimeout: 5 * time.Second, MaxInFlight: 8}
}

// keyed is a message partitioned by its key's hash.
func keyed(key string, value []byte) message { return message{key: key, value: value, partition: -1} }

// TestOffsetsNeverPassUnacknowledgedEvents commits only what Temporal
// accepted: with signals that fail, are slow, and one key stuck for a
// while, every committed offset the broker ever shows has every message
// before it acknowledged, and in the end every event is counted exactly as
// the batch engine counts it.
func TestOffsetsNeverPassUnacknowledgedEvents(t *testing.T) {
	brokers := cluster(t, 4)
	lines, keys := clicks(t, 100, 3000, 1)
	msgs := make([]message, len(lines))
	for i := range lines {
		msgs[i] = keyed(keys[i], lines[i])
	}
	where := produce(t, brokers, msgs)
	end := make([]int64, 4)
	for _, w := range where {
		end[w.partition] = max(end[w.partition], w.offset+1)
	}
	// Event ids -> positions, to tell which offsets Temporal acknowledged.
	dec := session.NewDecoder(ptr(testRules(t)))
	pos := map[uint64]produced{}
	for i, line := range lines {
		_, e, _ := dec.Decode(line)
		pos[e.ID] = where[i]
	}

	rules := testRules(t)
	fake := newFakeTemporal(&rules, "clicks")
	stuck := keys[len(keys)/3]
	release := time.Now().Add(2 * time.Second)
	rng := rand.New(rand.NewPCG(1, 2))
	var rngMu sync.Mutex
	fake.fail = func(key string, attempt int) (time.Duration, error) {
		rngMu.Lock()
		defer rngMu.Unlock()
		if key == stuck && time.Now().Before(release) {
			return 50 * time.Millisecond, errors.New("stuck key")
		}
		delay := time.Duration(rng.IntN(20)) * time.Millisecond
		if rng.IntN(3) == 0 {
			return delay, errors.New("temporal unavailable")
		}
		return delay, nil
	}
	var ackMu sync.Mutex
	acked := make([]map[int64]bool, 4)
	for i := range acked {
		acked[i] = map[int64]bool{}
	}
	fake.onAccept = func(_ string, b workflows.EventBatch) {
		ackMu.Lock()
		defer ackMu.Unlock()
		for _, e := range b.Events {
			p := pos[e.ID]
			acked[p.partition][p.offset] = true
		}
	}
	group := "offsets"
	late := &fakeLate{}
	_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: group,
		Temporal: fake, Late: late, Limits: fastLimits()})

	// Watch the committed offsets until everything is committed.
	stuckSeen := false
	waitFor(t, 60*time.Second, "all offsets committed", func() bool {
		got := committed(t, brokers, group, 4)
		ackMu.Lock()
		defer ackMu.Unlock()
		for _, le := range late.all() { // late events are acknowledged by their write
			var p int32
			var off int64
			fmt.Sscanf(strings.TrimPrefix(le.Source, topic+"/"), "%d/%d", &p, &off)
			acked[p][off] = true
		}
		for p, c := range got {
			for off := int64(0); off < c; off++ {
				if !acked[p][off] {
					t.Fatalf("partition %d committed at %d, but offset %d was never acknowledged (late: %v)", p, c, off, late.all())
				}
			}
		}
		if time.Now().Before(release) {
			for i, k := range keys {
				if k == stuck && got[where[i].partition] > where[i].offset {
					t.Fatalf("partition %d committed at %d past the stuck key's offset %d", where[i].partition, got[where[i].partition], where[i].offset)
				}
			}
			stuckSeen = true
		}
		return slices.Equal(got, end)
	})
	stop()
	if !stuckSeen {
		t.Error("the offsets were never observed while the key was stuck")
	}
	if v := fake.violations(); len(v) > 0 {
		t.Errorf("%d events arrived below the watermark, e.g. %s", len(v), v[0])
	}
	if got, want := fake.finish(maxTime(t, rules, lines)), batchRecords(t, rules, "clicks", lines); !reflect.DeepEqual(got, want) {
		t.Errorf("sessions differ from the batch engine's: got %d, want %d", len(got), len(want))
	}
}

// TestIdlePartitionsDoNotHoldTheWatermark: partitions that stop receiving
// events stop counting after IdleAfter, so the watermark follows the busy
// ones; an idle partition's next event revives it, and is late if it is
// below the watermark by then.
func TestIdlePartitionsDoNotHoldTheWatermark(t *testing.T) {
	brokers := cluster(t, 4)
	const t0 = int64(1704067200000)
	click := func(key string, at int64, p int32) message {
		return message{key: key, partition: p, value: fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d}`, key, at)}
	}
	// Partitions 2 and 3 see one event at t0, then nothing.
	produce(t, brokers, []message{click("a", t0, 0), click("b", t0, 1), click("c", t0, 2), click("d", t0, 3)})

	rules := testRules(t)
	fake := newFakeTemporal(&rules, "clicks")
	late := &fakeLate{}
	lim := fastLimits()
	lim.IdleAfter = 500 * time.Millisecond
	_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "idle",
		Temporal: fake, Late: late, Limits: lim})
	defer stop()

	// Partitions 0 and 1 keep going, a second of event time every 20ms.
	var last atomic.Int64
	last.Store(t0)
	stopProducing := make(chan struct{})
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for at := t0 + 1000; ; at += 1000 {
			select {
			case <-stopProducing:
				return
			case <-time.After(20 * time.Millisecond):
			}
			produce(t, brokers, []message{click("a", at, 0), click("b", at, 1)})
			last.Store(at)
		}
	}()
	waitFor(t, 20*time.Second, "the watermark to pass partitions 2 and 3", func() bool {
		w, _ := fake.state()
		return w > t0+20_000
	})
	_, marks := fake.state()
	for _, m := range marks {
		if idle := m.Partition == topic+"/2" || m.Partition == topic+"/3"; m.Idle != idle {
			t.Errorf("mark %+v: want idle %v", m, idle)
		}
	}
	close(stopProducing)
	<-producing

	// Partition 2 wakes up: one event far below W (late), one above it.
	next := last.Load() + 1000
	w, _ := fake.state()
	produce(t, brokers, []message{click("c", t0+1000, 2), click("c", next, 2)})
	waitFor(t, 20*time.Second, "partition 2 to count again", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return slices.ContainsFunc(fake.updates, func(u workflows.WatermarkUpdate) bool {
			return slices.Contains(u.Marks, workflows.PartitionMark{Partition: topic + "/2", MaxTime: next})
		})
	})
	got := late.all()
	if len(got) != 1 || got[0].Key != "c" || got[0].Event.Time != t0+1000 || got[0].Watermark < w ||
		got[0].Source != topic+"/2/1" || !strings.Contains(string(got[0].Raw), `"c"`) {
		t.Errorf("late events = %+v; want c's event at t0+1s, below a watermark of at least %d, source %s/2/1", got, w, topic)
	}
	if v := fake.violations(); len(v) > 0 {
		t.Errorf("%d events arrived below the watermark, e.g. %s", len(v), v[0])
	}
}

// TestCrashBetweenSignalAndCommit: an ingester dies after Temporal accepted
// batches whose offsets it had not committed. It dies as a process does,
// through its connections (see mortal): the signal that kills it is
// accepted by Temporal but never acknowledged to the ingester, and from
// then on neither Temporal nor the brokers hear from it. Its successor reads
// those batches again; they are still above the watermark (rule 1 of
// watermark.go), so the sessions drop them as duplicates: every session
// equals the batch engine's, nothing is late.
func TestCrashBetweenSignalAndCommit(t *testing.T) {
	brokers := cluster(t, 4)
	lines, keys := clicks(t, 100, 4000, 3)
	// Out of order within the lateness, as producers deliver.
	rules := testRules(t)
	rng := rand.New(rand.NewPCG(3, 4))
	order := shuffleWithin(t, rules, lines, rng, rules.Lateness.Milliseconds()/2)
	msgs := make([]message, len(lines))
	for i, j := range order {
		msgs[i] = keyed(keys[j], lines[j])
	}
	where := produce(t, brokers, msgs)
	end := make([]int64, 4)
	for _, w := range where {
		end[w.partition] = max(end[w.partition], w.offset+1)
	}

	fake := newFakeTemporal(&rules, "clicks")
	fake.fail = func(string, int) (time.Duration, error) { return 2 * time.Millisecond, nil }
	late := &fakeLate{}
	// The first ingester dies with the signal that takes Temporal past
	// crashAt events, once the group has committed offsets: the successor
	// starts from committed offsets and a clock that moved, and the batches
	// Temporal took after them come again. The dying signal waits for the
	// commit alone; the other signals go on.
	var accepted atomic.Int64
	crashAt := int64(len(lines) * 6 / 10)
	taken, die := make(chan struct{}), make(chan struct{})
	var dying sync.Once
	first := &mortal{temporal: fake, diesAfter: func(_ string, b workflows.EventBatch) bool {
		if accepted.Add(int64(len(b.Events))) < crashAt {
			return false
		}
		mine := false
		dying.Do(func() { mine = true; close(taken) })
		if mine {
			<-die
		}
		return mine
	}}
	lim := fastLimits()
	lim.MaxInFlight = 2
	lim.DrainTimeout = time.Second // a dead process drains nothing; do not wait for it
	_, stopFirst := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "crash",
		Temporal: first, Kafka: first.kafka(kafkaConfig()), Late: late, Limits: lim, Source: "first"})
	letDie := sync.OnceFunc(func() { close(die) })
	t.Cleanup(letDie) // runs before startIngester's stop: a dying signal must not hold Run up
	select {
	case <-taken:
	case <-time.After(30 * time.Second):
		t.Fatalf("Temporal did not take %d events within 30s", crashAt)
	}
	waitFor(t, 30*time.Second, "a commit before the crash", func() bool {
		return slices.Max(committed(t, brokers, "crash", 4)) > 0
	})
	letDie()
	waitFor(t, 10*time.Second, "the crash", first.dead.Load)
	stopFirst()
	before := committed(t, brokers, "crash", 4)

	_, stopSecond := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "crash",
		Temporal: fake, Late: late, Limits: fastLimits(), Source: "second"})
	waitFor(t, 60*time.Second, "all offsets committed", func() bool {
		return slices.Equal(committed(t, brokers, "crash", 4), end)
	})
	stopSecond()

	dups := fake.events - len(lines)
	t.Logf("committed at the crash: %v of %v; %d events delivered twice", before, end, dups)
	if dups <= 0 {
		t.Fatalf("no event was delivered twice: the crash did not fall between signalling and committing")
	}
	if v := fake.violations(); len(v) > 0 {
		t.Errorf("%d redelivered events arrived below the watermark, e.g. %s", len(v), v[0])
	}
	if n := len(late.all()); n > 0 {
		t.Errorf("%d events written as late; none is", n)
	}
	if got, want := fake.finish(maxTime(t, rules, lines)), batchRecords(t, rules, "clicks", lines); !reflect.DeepEqual(got, want) {
		_, marks := fake.state()
		t.Errorf("sessions differ from the batch engine's: got %d, want %d; clock marks %+v", len(got), len(want), marks)
		diff(t, got, want)
	}
}

// shuffleWithin returns an arrival order of lines in which each event is
// delayed by up to spread ms past its event time.
func shuffleWithin(t testing.TB, rules session.Rules, lines [][]byte, rng *rand.Rand, spread int64) []int {
	dec := session.NewDecoder(&rules)
	arrive := make([]int64, len(lines))
	order := make([]int, len(lines))
	for i, line := range lines {
		_, e, err := dec.Decode(line)
		if err != nil {
			t.Fatal(err)
		}
		arrive[i] = e.Time + rng.Int64N(spread)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(arrive[a] - arrive[b]) })
	return order
}

func diff(t *testing.T, got, want []session.Record) {
	t.Helper()
	index := func(rs []session.Record) map[string]session.Record {
		m := map[string]session.Record{}
		for _, r := range rs {
			m[r.SessionID] = r
		}
		return m
	}
	g, w := index(got), index(want)
	shown := 0
	for id, r := range w {
		if !reflect.DeepEqual(g[id], r) && shown < 5 {
			shown++
			t.Errorf("session %s:\n got %+v\nwant %+v", id, g[id], r)
		}
	}
	for id, r := range g {
		if _, ok := w[id]; !ok && shown < 5 {
			shown++
			t.Errorf("unexpected session %+v", r)
		}
	}
}
