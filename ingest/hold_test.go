package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// TestHoldNeverChangesAResult is the max hold's invariant as a property:
// holding never changes a result. The watermark the ingester publishes,
// or stamps on a batch, never passes the time of an event it still holds,
// so no session can close before its held events arrive. For random holds,
// batch sizes, streams and arrival orders (out of order within the
// lateness, produced while the ingester runs, Temporal slow and failing
// now and then):
//   - no event reaches its session below the watermark;
//   - every batch's watermark is at most its earliest event, and the
//     clock's W, after each update the ingester publishes, is at most the
//     earliest event Temporal has not accepted (held, in flight or not yet
//     read: with disorder within L none of them may be passed);
//   - no offset is committed before Temporal accepted its event;
//   - the sessions are the batch engine's;
//   - with a hold of a second or more, a key's events share few signals.
func TestHoldNeverChangesAResult(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			holdProperty(t, seed)
		})
	}
}

func holdProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 13))
	// Half the seeds hold long (1-2 s), half short (5 ms-1 s), log-uniform.
	lo, hi := 5*time.Millisecond, time.Second
	if seed%2 == 0 {
		lo, hi = time.Second, 2*time.Second
	}
	hold := time.Duration(float64(lo) * math.Pow(float64(hi)/float64(lo), rng.Float64()))
	batchEvents := 1 + rng.IntN(50)
	users, events := 5+rng.IntN(26), 100+rng.IntN(500)
	rules := testRules(t)
	lines, keys := clicks(t, users, events, seed)
	order := shuffleWithin(t, rules, lines, rng, 1+rng.Int64N(rules.Lateness.Milliseconds()/2))
	t.Logf("hold %v, BatchEvents %d, %d users, %d events", hold, batchEvents, users, len(lines))

	const parts = 4
	brokers := cluster(t, parts)
	// Keys go to partitions of the test's choosing, so that the watch knows
	// an event's position from its key and offset (the ingester sets Seq to
	// the offset) even before produce returns.
	partOf := map[string]int32{}
	for _, k := range keys {
		h := fnv.New32a()
		h.Write([]byte(k))
		partOf[k] = int32(h.Sum32() % parts)
	}
	// The watch draws from its own source: the signal workers call it
	// concurrently with this goroutine's draws.
	watch := newHoldWatch(newFakeTemporal(&rules, "clicks"), rand.New(rand.NewPCG(seed, 99)), partOf)
	lim := fastLimits()
	lim.MaxHold, lim.BatchEvents, lim.StartupWait = hold, batchEvents, 200*time.Millisecond
	group := fmt.Sprint("hold-", seed)
	late := &fakeLate{}
	_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: group,
		Temporal: watch, Late: late, Limits: lim})

	// Produced in chunks while the ingester runs. A long hold gets them all
	// within half the hold, so that a key's events span at most two holds;
	// a short one over many holds, so that the watermark moves while keys
	// hold events.
	chunks := 5 + rng.IntN(11)
	pause := min(2*hold, 200*time.Millisecond)
	if hold >= time.Second {
		pause = hold / time.Duration(2*chunks)
	}
	dec := session.NewDecoder(&rules)
	end := make([]int64, parts)
	perKey := map[string]int{}
	for from := 0; from < len(order); {
		to := min(from+1+rng.IntN(2*len(order)/chunks), len(order))
		msgs := make([]message, 0, to-from)
		for _, j := range order[from:to] {
			msgs = append(msgs, message{key: keys[j], value: lines[j], partition: partOf[keys[j]]})
		}
		where := produce(t, brokers, msgs)
		evs := make([]heldEvent, len(where))
		for i, j := range order[from:to] {
			_, e, err := dec.Decode(lines[j])
			if err != nil {
				t.Fatal(err)
			}
			evs[i] = heldEvent{where[i], e.Time}
			end[where[i].partition] = max(end[where[i].partition], where[i].offset+1)
			perKey[keys[j]]++
		}
		watch.expect(evs)
		from = to
		time.Sleep(time.Duration(rng.Int64N(int64(pause) + 1)))
	}
	watch.produced()

	waitFor(t, 60*time.Second, "all offsets committed", func() bool {
		got := committed(t, brokers, group, parts)
		for p, c := range got {
			if off, ok := watch.unaccepted(int32(p), c); !ok {
				t.Fatalf("partition %d committed at %d, but Temporal never accepted offset %d", p, c, off)
			}
		}
		return slices.Equal(got, end)
	})
	stop()

	if v := watch.fake.violations(); len(v) > 0 {
		t.Errorf("%d events arrived below the watermark, e.g. %s", len(v), v[0])
	}
	if v := watch.violations(); len(v) > 0 {
		t.Errorf("%d watermarks passed an event not yet accepted, e.g. %s", len(v), v[0])
	}
	if n := len(late.all()); n > 0 {
		t.Errorf("%d events called late; with disorder within the lateness none is", n)
	}
	if got, want := watch.fake.finish(maxTime(t, rules, lines)), batchRecords(t, rules, "clicks", lines); !reflect.DeepEqual(got, want) {
		t.Errorf("sessions differ from the batch engine's: got %d, want %d", len(got), len(want))
		diff(t, got, want)
	}

	signals := watch.signalsPerKey()
	total := 0
	for k, n := range perKey {
		total += signals[k]
		// A buffer ends full (BatchEvents) or held; reading spans at most two
		// holds, plus one for a slow start.
		if bound := (n+batchEvents-1)/batchEvents + 2; hold >= time.Second && signals[k] > bound {
			t.Errorf("key %s: %d events in %d signals, want at most %d with BatchEvents %d and a hold of %v",
				k, n, signals[k], bound, batchEvents, hold)
		}
	}
	t.Logf("%d events in %d signals (%.1f per signal)", len(lines), total, float64(len(lines))/float64(total))
}

// holdWatch stands between the ingester and fakeTemporal and checks, as
// they happen, that the watermark never passes an event Temporal has not
// accepted, and that a batch's watermark is at most its earliest event.
type holdWatch struct {
	fake      *fakeTemporal
	rng       *rand.Rand // under mu
	failOneIn int        // a signal attempt fails one time in failOneIn (0: never)

	mu       sync.Mutex // also held across a publication and its check
	partOf   map[string]int32
	byTime   []heldEvent // every event produced, sorted by time once all are
	next     int         // byTime[:next] are all accepted
	accepted map[produced]bool
	signals  map[string]int
	passed   []string
	pending  bool // events produced but not all known yet: check only what is known
}

type heldEvent struct {
	at   produced
	time int64
}

func newHoldWatch(fake *fakeTemporal, rng *rand.Rand, partOf map[string]int32) *holdWatch {
	return &holdWatch{fake: fake, rng: rng, failOneIn: 8, partOf: partOf, accepted: map[produced]bool{},
		signals: map[string]int{}, pending: true}
}

// expect registers produced events.
func (h *holdWatch) expect(evs []heldEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byTime = append(h.byTime, evs...)
	slices.SortStableFunc(h.byTime, func(a, b heldEvent) int { return cmp.Compare(a.time, b.time) })
	h.next = 0
}

// produced says every event is registered.
func (h *holdWatch) produced() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = false
}

// earliestLocked is the earliest event not accepted yet.
func (h *holdWatch) earliestLocked() (heldEvent, bool) {
	for h.next < len(h.byTime) && h.accepted[h.byTime[h.next].at] {
		h.next++
	}
	if h.next == len(h.byTime) {
		return heldEvent{}, false
	}
	return h.byTime[h.next], true
}

func (h *holdWatch) SignalEvents(ctx context.Context, key string, b workflows.EventBatch) error {
	h.mu.Lock()
	delay := time.Duration(h.rng.IntN(5)) * time.Millisecond
	fail := h.failOneIn > 0 && h.rng.IntN(h.failOneIn) == 0
	first := slices.MinFunc(b.Events, func(a, b session.Event) int { return cmp.Compare(a.Time, b.Time) })
	if b.Watermark > first.Time {
		h.passed = append(h.passed, fmt.Sprintf("%s: batch watermark %d above its earliest event %d", key, b.Watermark, first.Time))
	}
	h.mu.Unlock()
	time.Sleep(delay)
	if fail {
		return errors.New("temporal unavailable")
	}
	if err := h.fake.SignalEvents(ctx, key, b); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.signals[key]++
	for _, e := range b.Events {
		h.accepted[produced{h.partOf[key], e.Seq}] = true // the ingester sets Seq to the offset
	}
	return nil
}

func (h *holdWatch) PublishMarks(ctx context.Context, u workflows.WatermarkUpdate) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fake.PublishMarks(ctx, u); err != nil {
		return err
	}
	w, _ := h.fake.state()
	if e, ok := h.earliestLocked(); ok && w > e.time {
		h.passed = append(h.passed, fmt.Sprintf("W=%d after %+v passed the event at %d (partition %d, offset %d), not accepted yet%s",
			w, u.Marks, e.time, e.at.partition, e.at.offset, map[bool]string{true: " (still producing)"}[h.pending]))
	}
	return nil
}

func (h *holdWatch) ReadClock(ctx context.Context) (workflows.ClockState, error) {
	return h.fake.ReadClock(ctx)
}

// unaccepted returns the first offset of partition p below committed that
// Temporal did not accept; ok when there is none.
func (h *holdWatch) unaccepted(p int32, committed int64) (off int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for off := int64(0); off < committed; off++ {
		if !h.accepted[produced{p, off}] {
			return off, false
		}
	}
	return 0, true
}

func (h *holdWatch) violations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.passed)
}

func (h *holdWatch) signalsPerKey() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.signals)
}

// TestHoldEndsWhenReadingPauses: a hold far longer than the test does not
// keep a partition that reached MaxUncommitted or MaxPendingBytes waiting;
// it signals what it holds at once (claimConsumer.run), and its offsets
// are committed only once Temporal accepted those signals.
func TestHoldEndsWhenReadingPauses(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  func(*Limits)
	}{
		{"MaxUncommitted", func(l *Limits) { l.MaxUncommitted = 40 }},
		{"MaxPendingBytes", func(l *Limits) { l.MaxPendingBytes = 40 * 110 }}, // about 40 clicks (eventBytes)
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const parts = 2
			brokers := cluster(t, parts)
			rules := testRules(t)
			lines, keys := clicks(t, 20, 600, 7)
			partOf := map[string]int32{}
			msgs := make([]message, len(lines))
			for i := range lines {
				if _, ok := partOf[keys[i]]; !ok {
					partOf[keys[i]] = int32(len(partOf) % parts)
				}
				msgs[i] = message{key: keys[i], value: lines[i], partition: partOf[keys[i]]}
			}
			produce(t, brokers, msgs)
			watch := newHoldWatch(newFakeTemporal(&rules, "clicks"), rand.New(rand.NewPCG(7, 7)), partOf)
			watch.failOneIn = 0 // the pauses are the point; retries' backoff would only slow them
			lim := fastLimits()
			lim.MaxHold, lim.StartupWait = time.Hour, 200*time.Millisecond
			tc.lim(&lim)
			group := "pause-" + tc.name
			_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: group,
				Temporal: watch, Late: &fakeLate{}, Limits: lim})
			defer stop()
			// What stays held is below the limit that pauses reading: at most
			// about 40 messages per generation, of 600.
			waitFor(t, 30*time.Second, "all but the last held messages committed", func() bool {
				var done int64
				for p, c := range committed(t, brokers, group, parts) {
					if off, ok := watch.unaccepted(int32(p), c); !ok {
						t.Fatalf("partition %d committed at %d, but Temporal never accepted offset %d", p, c, off)
					}
					done += max(c, 0)
				}
				return done >= int64(len(lines))-100
			})
		})
	}
}
