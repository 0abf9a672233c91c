//go:build fault

package fault

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/internal/proc"
)

// TestWorkerKilled SIGKILLs the only worker at three random points of the
// ingestion and restarts it after a random pause of 0.5-3 s: no hand-over,
// no flush, uncommitted messages read again by the next process, workflow
// tasks and activities of the dead process timed out and retried. It
// produces at 100 messages/s (80 s) so that three kills, each followed by
// a rebalance that waits out the dead member's 10 s session, fit in the
// stream.
func TestWorkerKilled(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed})
	s.logf("%d messages (%d late); %d sessions expected", len(w.msgs), len(w.late), len(w.want))
	worker := s.startWorker()
	pr := s.produce(w, steady(100))

	// Kill points as fractions of the input produced: the first in
	// [20%, 30%), each next 15-20% later. Before each kill the worker must
	// own its partitions and have committed what was produced at the
	// previous kill: each incarnation does some work, and the injected late
	// events stay late (see newWorkload).
	rng := rand.New(rand.NewPCG(seed, 2))
	points := []float64{0.20 + 0.10*rng.Float64()}
	for len(points) < 3 {
		points = append(points, points[len(points)-1]+0.15+0.05*rng.Float64())
	}
	var caughtUp int64 // produced at the previous kill
	for k, f := range points {
		s.waitProduced(pr, f, len(w.msgs))
		// A process that dies while its JoinGroup is pending stays in
		// kfake's group for good (see RELIABILITY.md); a real broker would
		// expire it. So the worker must own its partitions first.
		s.waitFor(2*time.Minute, "the worker owning the partitions", func() bool { return s.groupStable(1) })
		s.waitFor(5*time.Minute, "the worker catching up", func() bool { return s.committedTotal() >= caughtUp })
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond) // anywhere between two commits
		worker.Kill()
		caughtUp = pr.sent.Load()
		s.logf("SIGKILL %d of %d (at %.0f%% produced): worker pid %d, %d of %d messages committed, %d produced",
			k+1, len(points), 100*f, worker.Pid(), s.committedTotal(), len(w.msgs), caughtUp)
		if caughtUp == int64(len(w.msgs)) {
			t.Errorf("kill %d came after the last message was produced: not during ingestion", k+1)
		}
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		worker = s.startWorker()
	}
	s.finish(w, pr)
}

// TestTwoWorkersOneKilled runs two workers in the consumer group (and on
// the task queue) and SIGKILLs one mid-stream: the group rebalances once
// the dead member's session times out, and the survivor finishes alone.
func TestTwoWorkersOneKilled(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed})
	s.logf("%d messages (%d late); %d sessions expected", len(w.msgs), len(w.late), len(w.want))
	a := s.startWorker()
	s.startWorker()
	pr := s.produce(w, steady(normalRate))
	// Both must own partitions before one dies, or there is no rebalance.
	s.waitFor(2*time.Minute, "two workers owning partitions", func() bool { return s.groupStable(2) })
	s.waitProduced(pr, 0.4, len(w.msgs))
	a.Kill()
	s.logf("SIGKILL worker-1 (pid %d): %d of %d messages committed, %d produced",
		a.Pid(), s.committedTotal(), len(w.msgs), pr.sent.Load())
	s.waitFor(2*time.Minute, "the survivor owning every partition", func() bool { return s.groupStable(1) })
	s.logf("rebalanced: worker-2 alone in the group, %d produced", pr.sent.Load())
	if pr.sent.Load() == int64(len(w.msgs)) {
		t.Errorf("the rebalance ended after the last message was produced: not mid-stream")
	}
	s.finish(w, pr)
}

// groupStable reports whether the ingesters' consumer group is stable with
// n members, each owning at least one partition.
func (s *stack) groupStable(n int) bool {
	gs, err := s.admin.DescribeConsumerGroups([]string{groupID})
	if err != nil || len(gs) == 0 || gs[0].State != "Stable" || len(gs[0].Members) != n {
		return false
	}
	for _, m := range gs[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil || a == nil || len(a.Topics[topic]) == 0 {
			return false
		}
	}
	return true
}

// TestTemporalRestart stops the dev server (SIGTERM, SIGKILL after 15s)
// for 15 seconds mid-stream and restarts it on the same SQLite file and
// ports. While it is down no message produced after the stop may be
// committed: an offset is committed only once Temporal has accepted the
// signal that carries it. (Offsets acknowledged before the stop may still
// be committed during the outage: the ingester commits on its own ticker.)
func TestTemporalRestart(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed})
	s.logf("%d messages (%d late); %d sessions expected", len(w.msgs), len(w.late), len(w.want))
	s.startWorker()
	pr := s.produce(w, steady(normalRate))
	s.waitProduced(pr, 0.35, len(w.msgs))

	killed := s.temporal.Stop(proc.Grace)
	atStop := s.endOffsets()
	s.logf("temporal stopped (SIGKILL needed: %v): %d of %d messages committed, %d produced",
		killed, s.committedTotal(), len(w.msgs), pr.sent.Load())
	time.Sleep(15 * time.Second)
	offs, err := s.committed()
	if err != nil {
		t.Fatal(err)
	}
	for p := range offs {
		if offs[p] > atStop[p] {
			t.Errorf("partition %d committed up to %d while Temporal was down, past its end offset %d at the stop: "+
				"messages acknowledged before their signals were accepted", p, offs[p], atStop[p])
		}
	}
	if err := s.runTemporal(); err != nil {
		t.Fatalf("restart temporal: %v", err)
	}
	s.logf("temporal restarted on %s with the same database: %d committed, %d produced", s.temporalAddr, s.committedTotal(), pr.sent.Load())
	if pr.sent.Load() == int64(len(w.msgs)) {
		t.Errorf("the restart came after the last message was produced: not mid-stream")
	}
	s.finish(w, pr)
}

// TestMinIOStopped stops MinIO for 30 seconds mid-stream and restarts it
// on the same data folder and port: Parquet flushes and late-event writes
// fail meanwhile and must be retried, neither lost nor doubled.
func TestMinIOStopped(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed})
	s.logf("%d messages (%d late); %d sessions expected", len(w.msgs), len(w.late), len(w.want))
	s.startWorker()
	pr := s.produce(w, steady(normalRate))
	s.waitProduced(pr, 0.3, len(w.msgs))

	stopped := time.Now()
	killed := s.minio.Stop(proc.Grace)
	s.logf("minio stopped (SIGKILL needed: %v) at %d of %d messages committed", killed, s.committedTotal(), len(w.msgs))
	time.Sleep(30*time.Second - time.Since(stopped))
	if err := s.runMinIO(); err != nil {
		t.Fatalf("restart minio: %v", err)
	}
	s.logf("minio restarted on %s after %v; %d produced", s.s3Addr, time.Since(stopped).Round(time.Second), pr.sent.Load())
	if pr.sent.Load() == int64(len(w.msgs)) {
		t.Errorf("the restart came after the last message was produced: not mid-stream")
	}
	s.finish(w, pr)
}
