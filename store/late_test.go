package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/sessionflow/sessionflow/session"
)

// A successor finds the late events of its writer that it may read again,
// whatever names and cuts wrote them, and nothing of other writers.
func TestLateWritten(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	ev := func(off int64, at int64) LateEvent {
		return LateEvent{Pipeline: "clicks", Key: "k", Event: session.Event{Time: at, ID: uint64(off) + 1},
			Source: fmt.Sprintf("clicks/3/%d", off)}
	}
	day, dayBefore := midnight+hour, midnight-hour // 2024-03-10, 2024-03-09
	writes := []WriteLateInput{
		{Writer: "ingest/clicks/3", Seq: 5, Events: []LateEvent{ev(5, day), ev(9, day)}}, // older names
		{Writer: "ingest/clicks/3", Seq: 12, Events: []LateEvent{ev(12, day)}},
		{Writer: "ingest/clicks/3", Seq: 20, Last: 30, Events: []LateEvent{ev(20, day), ev(30, day)}},
		{Writer: "ingest/clicks/3", Seq: 40, Last: 41, Events: []LateEvent{ev(40, day), ev(41, dayBefore)}},
		// Writers whose names start alike: topic "clicks-3" partition 1, partition 33.
		{Writer: "ingest/clicks-3/1", Seq: 1, Last: 2, Events: []LateEvent{ev(1, day), ev(2, day)}},
		{Writer: "ingest/clicks/33", Seq: 50, Last: 60, Events: []LateEvent{ev(50, day), ev(60, day)}},
	}
	for _, in := range writes {
		in.Prefix = "p"
		if _, err := WriteLate(ctx, b.S3, b.Name, in, nil); err != nil {
			t.Fatalf("WriteLate %s-%d: %v", in.Writer, in.Seq, err)
		}
	}
	if got := listKeys(t, b, "p/late_events/event_date=2024-03-10"); !slices.Contains(got,
		"p/late_events/event_date=2024-03-10/ingest-clicks-3-0000000020-0000000030.parquet") {
		t.Fatalf("objects %q; want <writer>-<seq>-<last> names", got)
	}

	for _, c := range []struct {
		prefix, date string
		from         int64
		want         []int64 // offsets
	}{
		{"p", "2024-03-10", 0, []int64{5, 9, 12, 20, 30, 40}},
		{"p", "2024-03-10", 13, []int64{12, 20, 30, 40}}, // the last older name before from may hold more
		{"p", "2024-03-10", 30, []int64{12, 20, 30, 40}},
		{"p", "2024-03-10", 31, []int64{12, 40}},
		{"p", "2024-03-10", 42, []int64{12}},
		{"p", "2024-03-09", 0, []int64{41}},
		{"p", "2024-03-11", 0, nil},
		{"other", "2024-03-10", 0, nil},
	} {
		t.Run(fmt.Sprintf("%s/%s/from%d", c.prefix, c.date, c.from), func(t *testing.T) {
			seen, err := LateWritten(ctx, b.S3, b.Name, c.prefix, "ingest/clicks/3", c.date, c.from)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, off := range c.want {
				want = append(want, fmt.Sprintf("clicks/3/%d", off))
			}
			if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, sortedStrings(want)) {
				t.Errorf("LateWritten = %q; want %q", got, sortedStrings(want))
			}
		})
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := LateWritten(cctx, b.S3, b.Name, "p", "ingest/clicks/3", "2024-03-10", 0); err == nil {
		t.Error("LateWritten with a cancelled context: no error; want one, not an empty set")
	}
}

func sortedStrings(s []string) []string { return slices.Sorted(slices.Values(s)) }
