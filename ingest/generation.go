package ingest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// sessionRun is one consumer-group session (a generation): the partitions
// claimed in it, the memory they hold, and the loop that commits their
// offsets and publishes their watermark.
type sessionRun struct {
	i    *Ingester
	sess sarama.ConsumerGroupSession

	// Backpressure: messages read and not committed, bytes buffered and
	// not acknowledged.
	uncommitted atomic.Int64
	pending     atomic.Int64
	commitNow   chan struct{}

	stop context.CancelFunc
	done sync.WaitGroup
}

func (i *Ingester) startSession(sess sarama.ConsumerGroupSession) *sessionRun {
	s := &sessionRun{i: i, sess: sess, commitNow: make(chan struct{}, 1)}
	parts := sess.Claims()[i.cfg.Topic]
	i.wm.assign(parts, time.Now())
	i.log.Info("partitions assigned", "partitions", parts, "generation", sess.GenerationID())
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done.Go(func() { s.loop(ctx) })
	return s
}

// loop commits and publishes every PublishInterval, and commits sooner when
// backpressure asks for it.
func (s *sessionRun) loop(ctx context.Context) {
	t := time.NewTicker(s.i.lim.PublishInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.commit()
			s.i.publish(ctx, false)
		case <-s.commitNow:
			s.commit()
		}
	}
}

// commit makes the marked offsets durable and then lets the watermark pass
// the events before them (rule 1 of watermark.go).
func (s *sessionRun) commit() {
	if s.i.crashed.Load() {
		return
	}
	cp := s.i.wm.snapshotMarks()
	s.sess.Commit()
	n := s.i.wm.committed(cp)
	s.i.met.uncommitted.Set(float64(s.uncommitted.Add(-n)))
}

// blocked reports whether reading must pause until acknowledgements and
// commits catch up.
func (s *sessionRun) blocked() bool {
	return s.uncommitted.Load() >= int64(s.i.lim.MaxUncommitted) || s.pending.Load() >= int64(s.i.lim.MaxPendingBytes)
}

func (s *sessionRun) requestCommit() {
	select {
	case s.commitNow <- struct{}{}:
	default:
	}
}

// end runs after every claim of the session returned: a last commit and a
// last report of progress (never idleness) for the partitions' next owner.
func (s *sessionRun) end() {
	s.stop()
	s.done.Wait()
	if !s.i.crashed.Load() {
		s.commit()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.i.publish(ctx, true)
		cancel()
	}
	s.i.wm.release()
	s.i.log.Info("partitions released", "generation", s.sess.GenerationID())
}
