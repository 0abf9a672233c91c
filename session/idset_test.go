package session

import (
	"fmt"
	"slices"
	"testing"
)

// TestIDSet holds idSet to a map, through the move from its slice to its
// map and back after a clear.
func TestIDSet(t *testing.T) {
	cases := []struct {
		name string
		adds int // distinct identities added before the checks
	}{
		{"empty", 0},
		{"one", 1},
		{"slice full", smallIDs},
		{"one past the slice", smallIDs + 1},
		{"many", 10 * smallIDs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s idSet
			for round := range 2 { // the second after a clear
				want := map[uint64]bool{}
				for i := range c.adds {
					id := uint64(i*7919 + round + 1)
					s.add(id)
					want[id] = true
				}
				if s.len() != len(want) {
					t.Fatalf("round %d: len %d, want %d", round, s.len(), len(want))
				}
				for id := range uint64(c.adds*7919 + 3) {
					if s.has(id) != want[id] {
						t.Fatalf("round %d: has(%d) = %v, want %v", round, id, s.has(id), want[id])
					}
				}
				got := s.appendTo(nil)
				slices.Sort(got)
				var wantIDs []uint64
				for id := range want {
					wantIDs = append(wantIDs, id)
				}
				slices.Sort(wantIDs)
				if fmt.Sprint(got) != fmt.Sprint(wantIDs) {
					t.Fatalf("round %d: ids %v, want %v", round, got, wantIDs)
				}
				s.clear()
				if s.len() != 0 || (c.adds > 0 && s.has(1+uint64(round))) {
					t.Fatalf("round %d: not empty after clear", round)
				}
			}
		})
	}
}
