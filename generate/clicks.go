// Package generate makes synthetic event streams that look like the real
// ones: clickstream users who browse in bursts and come back hours later.
package generate

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// ClickOptions shape a synthetic clickstream.
type ClickOptions struct {
	Users  int       // distinct uuids; default 100,000
	Events int       // total events; default 1,000,000
	Start  time.Time // time of the first event; default 2024-01-01T00:00:00Z
	Seed   uint64    // same seed, same stream
	// Scale multiplies every gap and duration: 1/60 turns minutes into
	// seconds, for time-compressed rules. Default 1.
	Scale float64
}

var pages = []string{"home", "search", "selection", "review", "booking", "payment", "confirmation", "help", "account", "logout"}

type click struct {
	at   int64
	user int32
	page uint8
}

// Clicks writes the clickstream as JSON lines in event-time order, in the
// field layout of the clickstream profile. Each user's activity is a run of
// sessions: bursts of 1–20 page views seconds to minutes apart, separated by
// absences of 35 minutes to 4 hours, so every rule of the profile fires.
func Clicks(w io.Writer, o ClickOptions) error {
	if o.Users <= 0 {
		o.Users = 100_000
	}
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5e55))
	ms := scaler(o.Scale)
	start := o.Start.UnixMilli()
	events := make([]click, 0, o.Events)
	for u := range o.Users {
		n := o.Events / o.Users
		if u < o.Events%o.Users {
			n++
		}
		t := start + rng.Int64N(ms(6*time.Hour))
		left := 0
		for range n {
			if left == 0 {
				left = 1 + rng.IntN(20)
				t += ms(35*time.Minute) + rng.Int64N(ms(205*time.Minute))
			} else {
				t += ms(5*time.Second) + rng.Int64N(ms(5*time.Minute))
			}
			left--
			events = append(events, click{at: t, user: int32(u), page: uint8(rng.IntN(len(pages)))})
		}
	}
	slices.SortStableFunc(events, func(a, b click) int { return cmp.Compare(a.at, b.at) })

	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for i, e := range events {
		line = append(line[:0], `{"uuid":"user-`...)
		line = strconv.AppendInt(line, int64(e.user), 10)
		line = append(line, `","event_timestamp":"`...)
		line = strconv.AppendInt(line, e.at, 10)
		line = append(line, `","page_name":"`...)
		line = append(line, pages[e.page]...)
		line = append(line, `","event_id":"e-`...)
		line = strconv.AppendInt(line, int64(i), 36)
		line = append(line, "\"}\n"...)
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("write clicks: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write clicks: %w", err)
	}
	return nil
}

// scaler converts durations to milliseconds at a time scale.
func scaler(scale float64) func(time.Duration) int64 {
	if scale <= 0 {
		scale = 1
	}
	return func(d time.Duration) int64 { return max(1, int64(float64(d.Milliseconds())*scale)) }
}
