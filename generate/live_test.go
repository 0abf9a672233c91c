package generate

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
)

// TestLive runs the live generator on a fast fake clock and checks its
// output mix: both streams, valid events near "now", and the configured
// shares of duplicates, late and malformed messages.
func TestLive(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Millisecond) // time runs as fast as we ask
		return clock
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := map[Kind][][]byte{}
	var n int
	sleep := func(_ context.Context, d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	o := LiveOptions{Users: 50, Devices: 20, Rate: 1000, Gap: time.Second, Lateness: time.Second,
		Duplicates: 0.1, Late: 0.05, Malformed: 0.05, OutOfOrder: 0.2, Seed: 1, Now: now, Sleep: sleep}
	sent, err := Live(ctx, o, func(k Kind, key string, v []byte) error {
		got[k] = append(got[k], v)
		if n++; n == 20000 {
			cancel()
		}
		return nil
	})
	if err != nil || sent < 20000 {
		t.Fatalf("sent %d, err %v", sent, err)
	}
	if len(got[KindClick]) == 0 || len(got[KindCharging]) == 0 {
		t.Fatalf("streams: %d clicks, %d charging", len(got[KindClick]), len(got[KindCharging]))
	}
	for kind, p := range map[Kind]session.Profile{KindClick: session.Clickstream, KindCharging: session.Charging} {
		r, _ := session.Defaults(p)
		d := session.NewDecoder(&r)
		var bad, dups int
		for i, v := range got[kind] {
			if i > 0 && bytes.Equal(v, got[kind][i-1]) {
				dups++
			}
			if _, _, err := d.Decode(v); err != nil {
				bad++
			}
		}
		total := float64(len(got[kind]))
		if share := float64(bad) / total; share < 0.02 || share > 0.1 {
			t.Errorf("%v: %.3f malformed, want about 0.05", p, share)
		}
		if share := float64(dups) / total; share < 0.05 || share > 0.15 {
			t.Errorf("%v: %.3f duplicates, want about 0.1 of messages", p, share)
		}
	}
}
