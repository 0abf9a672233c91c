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

// ChargingOptions shape a synthetic drone-charging telemetry stream.
type ChargingOptions struct {
	Devices int       // distinct UINs; default 1,000
	Events  int       // total readings; default 100,000
	Start   time.Time // default 2024-01-01T00:00:00Z
	Seed    uint64
	Scale   float64 // as in ClickOptions
}

type reading struct {
	at     int64
	device int32
	status uint8
	soc    uint8
}

// Charging writes drone telemetry as JSON lines in event-time order, in the
// charging profile's layout (UIN, time, Charge_status, Soc_percentage,
// event_id). A drone reports every minute while docked: charging runs of 5
// to 90 minutes with short breaks (status 0 for 1–8 minutes, some beyond a
// 5-minute tolerance), idle status-0 readings between runs, and gaps with no
// telemetry at all while it flies.
func Charging(w io.Writer, o ChargingOptions) error {
	if o.Devices <= 0 {
		o.Devices = 1000
	}
	if o.Events <= 0 {
		o.Events = 100_000
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xc4a6))
	ms := scaler(o.Scale)
	start := o.Start.UnixMilli()
	out := make([]reading, 0, o.Events)
	for d := range o.Devices {
		n := o.Events / o.Devices
		if d < o.Events%o.Devices {
			n++
		}
		t := start + rng.Int64N(ms(2*time.Hour))
		soc := 5 + rng.IntN(40)
		charging, left := false, 0
		for range n {
			if left == 0 {
				switch {
				case !charging && rng.IntN(3) == 0: // flies away: no telemetry
					t += ms(20*time.Minute) + rng.Int64N(ms(2*time.Hour))
					soc = 5 + rng.IntN(40)
					charging, left = true, 5+rng.IntN(85)
				case !charging:
					charging, left = true, 5+rng.IntN(85)
				case rng.IntN(2) == 0: // a break within the run
					charging, left = false, 1+rng.IntN(8)
				default: // done: idle on the dock
					charging, left = false, 1+rng.IntN(20)
				}
			}
			left--
			t += ms(time.Minute)
			status := uint8(0)
			if charging {
				status = 1
				soc = min(100, soc+1)
			}
			out = append(out, reading{at: t, device: int32(d), status: status, soc: uint8(soc)})
		}
	}
	slices.SortStableFunc(out, func(a, b reading) int { return cmp.Compare(a.at, b.at) })

	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for i, r := range out {
		line = append(line[:0], `{"UIN":"DRN`...)
		line = strconv.AppendInt(line, int64(r.device), 10)
		line = append(line, `","time":`...)
		line = strconv.AppendInt(line, r.at, 10)
		line = append(line, `,"Charge_status":`...)
		line = strconv.AppendInt(line, int64(r.status), 10)
		line = append(line, `,"Soc_percentage":`...)
		line = strconv.AppendInt(line, int64(r.soc), 10)
		line = append(line, `,"event_id":"c-`...)
		line = strconv.AppendInt(line, int64(i), 36)
		line = append(line, "\"}\n"...)
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("write charging telemetry: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write charging telemetry: %w", err)
	}
	return nil
}
