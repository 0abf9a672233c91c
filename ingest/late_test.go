package ingest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// TestLateWrittenOnceAcrossOwners: an ingester writes late batches whose
// offsets cannot commit (the on-time event before them is never accepted)
// and stops; its successor reads them again and cuts its batches elsewhere
// (another LateBatch). Every late event is written once, and the successor
// still commits them.
func TestLateWrittenOnceAcrossOwners(t *testing.T) {
	brokers := cluster(t, 1)
	rules := testRules(t)
	const w0 = int64(1_700_000_000_000) // the clock's W when both start
	var msgs []message
	var lateN int
	for i := range 40 {
		at, id := w0+int64(i)*100, fmt.Sprintf("on-%d", i) // on time
		if i%4 != 0 {
			at, id = w0-60_000+int64(i), fmt.Sprintf("late-%d", i) // far below W
			lateN++
		}
		line := fmt.Appendf(nil, `{"uuid":"u%d","event_timestamp":%d,"page_name":"home","event_id":%q}`, i%3, at, id)
		msgs = append(msgs, message{key: fmt.Sprintf("u%d", i%3), value: line, partition: 0})
	}
	produce(t, brokers, msgs)

	late := &fakeLate{}
	down := newFakeTemporal(&rules, "clicks")
	down.clock.Watermark = w0
	down.fail = func(string, int) (time.Duration, error) { return 10 * time.Millisecond, errors.New("temporal is down") }
	lim := fastLimits()
	lim.LateBatch, lim.DrainTimeout = 4, 200*time.Millisecond
	_, stopFirst := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "late-once",
		Temporal: down, Late: late, Limits: lim, Source: "first"})
	waitFor(t, 30*time.Second, "the first owner's late writes", func() bool { return len(late.all()) == lateN })
	stopFirst()
	if c := committed(t, brokers, "late-once", 1); c[0] > 0 {
		t.Fatalf("committed %v before the successor; want nothing, so that it reads the late events again", c)
	}
	firstWrites := len(late.writes)

	up := newFakeTemporal(&rules, "clicks")
	up.clock.Watermark = w0
	lim.LateBatch = 3
	_, stopSecond := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "late-once",
		Temporal: up, Late: late, Limits: lim, Source: "second"})
	waitFor(t, 30*time.Second, "all offsets committed", func() bool {
		return committed(t, brokers, "late-once", 1)[0] == int64(len(msgs))
	})
	stopSecond()

	times := map[string]int{}
	for _, e := range late.all() {
		times[e.Source]++
	}
	if len(times) != lateN {
		t.Errorf("late output holds %d distinct events; want %d", len(times), lateN)
	}
	for _, src := range slices.Sorted(maps.Keys(times)) {
		if times[src] != 1 {
			t.Errorf("late event %s written %d times; want once", src, times[src])
		}
	}
	t.Logf("first owner: %d writes; successor: %d", firstWrites, len(late.writes)-firstWrites)
}

// unwritten leaves out what the writer stored, per date, and names the
// batch after the offsets of what is left.
func TestLateLedgerUnwritten(t *testing.T) {
	const day = int64(1_700_000_000_000)
	ev := func(off, at int64) store.LateEvent {
		return store.LateEvent{Key: "k", Event: session.Event{Time: at}, Source: fmt.Sprintf("clicks/0/%d", off)}
	}
	w := &fakeLate{}
	// A predecessor wrote offsets 10 and 12 of one day and 13 of the next.
	if err := w.WriteLate(t.Context(), store.WriteLateInput{Prefix: "p", Writer: "ingest/clicks/0", Seq: 10, Last: 13,
		Events: []store.LateEvent{ev(10, day), ev(12, day), ev(13, day+86_400_000)}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		offsets  []int64
		nextDay  []bool // the event is of the next day
		wantOffs []int64
	}{
		{"all written", []int64{10, 12}, []bool{false, false}, nil},
		{"cut elsewhere", []int64{12, 14, 16}, []bool{false, false, false}, []int64{14, 16}},
		{"new first", []int64{9, 10, 11}, []bool{false, false, false}, []int64{9, 11}},
		{"per date", []int64{13, 15, 12}, []bool{false, true, true}, []int64{13, 15, 12}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLateLedger(w, "p", "ingest/clicks/0", 9)
			in := store.WriteLateInput{Prefix: "p", Writer: "ingest/clicks/0"}
			for i, off := range c.offsets {
				at := day
				if c.nextDay[i] {
					at += 86_400_000
				}
				in.Events = append(in.Events, ev(off, at))
			}
			rest, skipped, err := l.unwritten(t.Context(), in, c.offsets)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range rest.Events {
				var off int64
				fmt.Sscanf(e.Source, "clicks/0/%d", &off)
				got = append(got, off)
			}
			if !slices.Equal(got, c.wantOffs) || skipped != len(c.offsets)-len(c.wantOffs) {
				t.Fatalf("unwritten kept offsets %v, skipped %d; want %v", got, skipped, c.wantOffs)
			}
			if len(got) > 0 && (rest.Seq != got[0] || rest.Last != slices.Max(got)) {
				t.Errorf("named %d-%d; want %d-%d", rest.Seq, rest.Last, got[0], slices.Max(got))
			}
		})
	}
}
