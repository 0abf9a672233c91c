package main

import (
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"
)

// TestLocalActivityType reads the local activities of recorded lean session
// runs: the hand-off (DeliverRecord, or HandOff since version 3) that
// counts a closed session, and the clock reads and
// notices that do not.
func TestLocalActivityType(t *testing.T) {
	for _, tc := range []struct {
		history       string
		deliver, rest int
	}{
		{"lean_session_multi_batch", 1, 2},    // clock read(s) and the session_closed notice
		{"lean_session_break_started", 1, 2},  // break_started and session_closed, no clock read
		{"session_multi_batch", 0, 1},         // before lean: the clock read only
		{"lean3_session_multi_batch", 1, 1},   // clock read(s); the notice travels in HandOff
		{"lean3_session_break_started", 1, 1}, // break_started; session_closed in HandOff
	} {
		t.Run(tc.history, func(t *testing.T) {
			f, err := os.Open(filepath.Join("..", "..", "workflows", "testdata", "histories", tc.history+".json"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatal(err)
			}
			deliver, rest := 0, 0
			for _, e := range h.GetEvents() {
				switch localActivityType(e) {
				case "":
				case "DeliverRecord", "HandOff":
					deliver++
				default:
					rest++
				}
			}
			if deliver != tc.deliver || rest < tc.rest {
				t.Errorf("%d hand-offs and %d other local activities, want %d and at least %d", deliver, rest, tc.deliver, tc.rest)
			}
		})
	}
}
