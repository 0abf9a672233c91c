package generate

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// LiveOptions shape a real-time stream: event times follow the wall clock.
type LiveOptions struct {
	Users   int     // clickstream users (0: none)
	Devices int     // charging drones (0: none)
	Rate    float64 // events per second, all actors together (default 100)
	// Gap is the inactivity gap of the rules the stream is meant for: users
	// pause for 2–6 gaps between visits so their sessions close. Default 30s.
	Gap time.Duration
	// Fractions of events that are emitted out of order (up to Lateness/2
	// behind), twice, late (2×Lateness behind) or malformed.
	OutOfOrder, Duplicates, Late, Malformed float64
	Lateness                                time.Duration // default 10s
	Seed                                    uint64
	// Now and Sleep are the clock; tests pass a fake one. Defaults: the
	// wall clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration)
}

// Kind tells the two streams apart.
type Kind int

const (
	KindClick Kind = iota
	KindCharging
)

// Emit receives each generated message: its stream, key and JSON bytes.
type Emit func(kind Kind, key string, value []byte) error

// actor is one user or drone and when it speaks next.
type actor struct {
	kind    Kind
	id      int
	next    time.Time
	left    int  // events left in the current burst
	active  bool // a drone: charging now
	soc     int
	counter int
}

type actors []*actor

func (a actors) Len() int           { return len(a) }
func (a actors) Less(i, j int) bool { return a[i].next.Before(a[j].next) }
func (a actors) Swap(i, j int)      { a[i], a[j] = a[j], a[i] }
func (a *actors) Push(x any)        { *a = append(*a, x.(*actor)) }
func (a *actors) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

// Live runs until ctx ends (or Emit fails), emitting events as their actors
// act: users browse in bursts and pause for several gaps, drones charge with
// short breaks and fly off. It returns the number of messages emitted.
func Live(ctx context.Context, o LiveOptions, emit Emit) (int64, error) {
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Gap <= 0 {
		o.Gap = 30 * time.Second
	}
	if o.Lateness <= 0 {
		o.Lateness = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	n := o.Users + o.Devices
	if n == 0 {
		return 0, fmt.Errorf("no users and no devices to generate for")
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x11fe))
	step := stepFor(n, o.Rate, o.Gap)
	now := o.Now()
	h := make(actors, 0, n)
	// Start times spread over one visit-and-silence cycle, so the stream
	// starts at its steady rate instead of with everyone at once.
	cycle := 10*step + 4*o.Gap
	for i := range o.Users {
		h = append(h, &actor{kind: KindClick, id: i, next: now.Add(jitter(rng, cycle)), left: 2 + rng.IntN(20)})
	}
	for i := range o.Devices {
		h = append(h, &actor{kind: KindCharging, id: i, next: now.Add(jitter(rng, cycle)), soc: 5 + rng.IntN(40),
			active: true, left: 5 + rng.IntN(40)})
	}
	heap.Init(&h)
	var sent int64
	for {
		a := h[0]
		if wait := a.next.Sub(o.Now()); wait > 0 {
			o.Sleep(ctx, wait)
		}
		if ctx.Err() != nil {
			return sent, nil
		}
		at := o.Now()
		key, value := a.speak(rng, at, o)
		emitted := 1
		if rng.Float64() < o.Duplicates {
			emitted = 2
		}
		for range emitted {
			if err := emit(a.kind, key, value); err != nil {
				return sent, err
			}
			sent++
		}
		a.next = at.Add(a.pause(rng, step, o.Gap))
		heap.Fix(&h, 0)
	}
}

// stepFor is the pause between an actor's events within a visit such that n
// actors average about rate events/s: a visit has some ten events and is
// followed by about four gaps of silence. With too few actors for the rate
// the step bottoms out and the rate falls short.
func stepFor(n int, rate float64, gap time.Duration) time.Duration {
	perActor := float64(n) / rate // seconds per event per actor, silences included
	step := time.Duration((perActor - 0.4*gap.Seconds()) * float64(time.Second))
	return max(step, 10*time.Millisecond)
}

// MinActors is how many users and drones it takes to sustain rate events/s
// with pauses of a few gaps between visits.
func MinActors(rate float64, gap time.Duration) int {
	return int(rate*(0.4*gap.Seconds()+0.01)) + 1
}

func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(d) + 1))
}

// speak makes the actor's next message.
func (a *actor) speak(rng *rand.Rand, now time.Time, o LiveOptions) (string, []byte) {
	a.counter++
	t := now.UnixMilli()
	switch r := rng.Float64(); {
	case r < o.Late:
		t -= 2 * o.Lateness.Milliseconds()
	case r < o.Late+o.OutOfOrder:
		t -= rng.Int64N(o.Lateness.Milliseconds()/2 + 1)
	}
	if rng.Float64() < o.Malformed {
		return "", malformed(rng, a, t)
	}
	var line []byte
	if a.kind == KindClick {
		key := "user-" + strconv.Itoa(a.id)
		line = append(line, `{"uuid":"`...)
		line = append(line, key...)
		line = append(line, `","event_timestamp":`...)
		line = strconv.AppendInt(line, t, 10)
		line = append(line, `,"page_name":"`...)
		page := pages[rng.IntN(len(pages)-1)]
		if a.left == 1 && rng.IntN(3) == 0 {
			page = "logout"
		}
		line = append(line, page...)
		line = append(line, `","event_id":"`...)
		line = append(line, key...)
		line = append(line, '-')
		line = strconv.AppendInt(line, int64(a.counter), 10)
		return key, append(line, `"}`...)
	}
	key := "DRN" + strconv.Itoa(a.id)
	status := 0
	if a.active {
		status = 1
		a.soc = min(100, a.soc+1)
	}
	line = append(line, `{"UIN":"`...)
	line = append(line, key...)
	line = append(line, `","time":`...)
	line = strconv.AppendInt(line, t, 10)
	line = append(line, `,"Charge_status":`...)
	line = strconv.AppendInt(line, int64(status), 10)
	line = append(line, `,"Soc_percentage":`...)
	line = strconv.AppendInt(line, int64(a.soc), 10)
	line = append(line, `,"event_id":"`...)
	line = append(line, key...)
	line = append(line, '-')
	line = strconv.AppendInt(line, int64(a.counter), 10)
	return key, append(line, `"}`...)
}

// pause is the wait before the actor's next message: short within a burst,
// several inactivity gaps between bursts.
func (a *actor) pause(rng *rand.Rand, step, gap time.Duration) time.Duration {
	if a.left > 0 {
		a.left--
	}
	if a.left > 0 {
		return step/2 + jitter(rng, step)
	}
	if a.kind == KindClick {
		a.left = 1 + rng.IntN(20)
		return 2*gap + jitter(rng, 4*gap)
	}
	// A drone alternates charging runs and breaks, and sometimes flies off.
	switch {
	case !a.active:
		a.active, a.left = true, 5+rng.IntN(40)
		return step
	case rng.IntN(3) == 0:
		a.active, a.left = false, 1+rng.IntN(3)
		return step
	default:
		a.active, a.left = false, 0
		a.soc = 5 + rng.IntN(40)
		return 2*gap + jitter(rng, 4*gap)
	}
}

// malformed returns one of the kinds of bad input a real stream carries.
func malformed(rng *rand.Rand, a *actor, t int64) []byte {
	switch rng.IntN(4) {
	case 0:
		return []byte(`{"uuid":"user-` + strconv.Itoa(a.id) + `","event_timestamp":"not a time"}`)
	case 1:
		return []byte(`{"page_name":"home","event_timestamp":` + strconv.FormatInt(t, 10) + `}`)
	case 2:
		return []byte(`{"uuid": broken json`)
	default:
		return []byte("\xff\xfe binary garbage")
	}
}
