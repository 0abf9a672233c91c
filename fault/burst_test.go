//go:build fault

package fault

import (
	"sync"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/ingest"
)

// rssLimit bounds the worker's resident memory through the burst. What the
// worker holds is bounded by its own limits: what it has read ahead of the
// commit (--max-uncommitted, default 100,000 messages, and at most 64 MiB
// of buffered events and dead letters), the SDK's sticky workflow cache
// (at most 10,000 workflows; this case has a few hundred open sessions),
// and the Go runtime, Temporal and Kafka clients (~60 MiB idle). 512 MiB
// is several times what those add up to here; a worker above it is not
// applying its limits.
const rssLimit = 512 << 20

// sample is one observation of the worker under the burst.
type sample struct {
	at   time.Duration // since the production started
	sent int64
	lag  int64 // messages produced, not committed
	rss  int64
}

// TestBurst produces 15,000 clicks of 300 users: the first and last
// sixth at the normal rate, the middle two thirds at ten times that rate.
// Every second it samples the worker's RSS (VmRSS) and the consumer lag
// (end offsets minus committed offsets). RSS must stay under rssLimit, the
// lag must come back to the level of normal traffic (3 s of it, plus the
// ingester's hold of it) within
// 3 minutes of the burst's end, and Parquet must equal the batch result.
func TestBurst(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: 300, events: 15000, seed: seed})
	n := len(w.msgs)
	from, to := n/6, n*5/6
	s.logf("%d messages (%d late); %d sessions expected; messages %d to %d at %.0f/s, the rest at %.0f/s",
		n, len(w.late), len(w.want), from, to, 10*normalRate, normalRate)
	worker := s.startWorker()
	started := time.Now()
	pr := s.produce(w, func(i int) float64 {
		if i >= from && i < to {
			return 10 * normalRate
		}
		return normalRate
	})

	var mu sync.Mutex
	var samples []sample
	stop, stopped := make(chan struct{}), make(chan struct{})
	s.bg.Go(func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
			rss, err := rssOf(worker)
			if err != nil {
				s.logf("rss: %v", err)
			}
			lag, err := s.lag()
			if err != nil {
				s.logf("lag: %v", err)
				continue
			}
			mu.Lock()
			samples = append(samples, sample{at: time.Since(started), sent: pr.sent.Load(), lag: lag, rss: rss})
			mu.Unlock()
		}
	})
	s.finish(w, pr)
	close(stop)
	<-stopped

	var peakRSS, peakLag int64
	var burstEnd, recovered time.Duration = -1, -1
	// Normal traffic keeps one hold of it uncommitted in the ingester's
	// key buffers on purpose (held events are not committed), 3 s besides.
	hold := ingest.DefaultMaxHold(s.rules)
	threshold := int64((3 + hold.Seconds()) * normalRate)
	for i, sm := range samples {
		peakRSS, peakLag = max(peakRSS, sm.rss), max(peakLag, sm.lag)
		if burstEnd < 0 && sm.sent >= int64(to) {
			burstEnd = sm.at
		}
		if burstEnd >= 0 && recovered < 0 && sm.lag <= threshold {
			recovered = sm.at
		}
		if i%5 == 0 {
			s.logf("t=%5.1fs produced %5d lag %5d rss %4d MiB", sm.at.Seconds(), sm.sent, sm.lag, sm.rss>>20)
		}
	}
	s.logf("peak RSS %d MiB (limit %d MiB), peak lag %d messages; burst ended at %v, lag back under %d at %v",
		peakRSS>>20, rssLimit>>20, peakLag, burstEnd.Round(time.Second), threshold, recovered.Round(time.Second))
	if peakRSS == 0 || peakRSS > rssLimit {
		t.Errorf("worker RSS peaked at %d MiB: want above 0 and under %d MiB", peakRSS>>20, rssLimit>>20)
	}
	switch {
	case burstEnd < 0:
		t.Errorf("no sample after the burst ended")
	case recovered < 0:
		t.Errorf("the lag never came back under %d messages after the burst", threshold)
	case recovered-burstEnd > 3*time.Minute:
		t.Errorf("the lag took %v after the burst to come back under %d messages: want at most 3m", recovered-burstEnd, threshold)
	}
}
