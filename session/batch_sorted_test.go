package session

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestRunSortedIsRun reads the same input with Run and RunSorted: the runs,
// one key's records each, must be Run's records in Run's order.
func TestRunSortedIsRun(t *testing.T) {
	cases := []struct {
		name  string
		lines int
		users int
	}{
		{"empty", 0, 1},
		{"one key", 50, 1},
		{"more keys than parts", 20000, 3000},
	}
	for _, c := range cases {
		for _, workers := range []int{1, 2, 3} {
			t.Run(fmt.Sprint(c.name, "/", workers), func(t *testing.T) {
				var lines []string
				for i := range c.lines {
					lines = append(lines, click(fmt.Sprintf("user-%d", i%c.users), int64(i)*11*sec, fmt.Sprintf("p%d", i%4)))
				}
				input := strings.Join(lines, "\n")
				b := Batch{Rules: rulesOf(t, Clickstream, nil), Workers: workers}
				want, wantStats, err := b.Run(context.Background(), strings.NewReader(input))
				if err != nil {
					t.Fatal(err)
				}
				sorted, stats, err := b.RunSorted(context.Background(), strings.NewReader(input))
				if err != nil {
					t.Fatal(err)
				}
				if stats != wantStats || sorted.Len() != len(want) {
					t.Fatalf("stats %+v, %d records; want %+v, %d", stats, sorted.Len(), wantStats, len(want))
				}
				i := 0
				for run := range sorted.Runs() {
					if len(run) == 0 {
						t.Fatal("an empty run")
					}
					for _, r := range run {
						if i >= len(want) || string(r.AppendJSON(nil)) != string(want[i].AppendJSON(nil)) || r.Key != run[0].Key {
							t.Fatalf("record %d differs from Run's, or its run mixes keys", i)
						}
						i++
					}
					if i < len(want) && want[i].Key == run[0].Key {
						t.Fatalf("key %s's records split over runs", run[0].Key)
					}
				}
				if i != len(want) {
					t.Fatalf("runs hold %d records, want %d", i, len(want))
				}
			})
		}
	}
}
