package ingest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// generation is what the ingester holds for one consumer-group generation
// (one sarama session, from Setup to Cleanup): the partitions claimed in it,
// the memory they hold, and the loop that commits their offsets and
// publishes their watermark.
type generation struct {
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

func (i *Ingester) startGeneration(sess sarama.ConsumerGroupSession) *generation {
	g := &generation{i: i, sess: sess, commitNow: make(chan struct{}, 1)}
	parts := sess.Claims()[i.cfg.Topic]
	i.wm.assign(parts, time.Now())
	i.log.Info("partitions assigned", "partitions", parts, "generation", sess.GenerationID())
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	g.done.Go(func() { g.loop(ctx) })
	return g
}

// loop commits and publishes every PublishInterval, and commits sooner when
// backpressure asks for it.
func (g *generation) loop(ctx context.Context) {
	t := time.NewTicker(g.i.lim.PublishInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.commit()
			g.i.publish(ctx, false)
		case <-g.commitNow:
			g.commit()
		}
	}
}

// commit makes the marked offsets durable and then lets the watermark pass
// the events before them (rule 1 of watermark.go).
func (g *generation) commit() {
	cp := g.i.wm.snapshotMarks()
	g.sess.Commit()
	n := g.i.wm.committed(cp)
	g.i.met.uncommitted.Set(float64(g.uncommitted.Add(-n)))
}

// blocked reports whether reading must pause until acknowledgements and
// commits catch up.
func (g *generation) blocked() bool {
	return g.uncommitted.Load() >= int64(g.i.lim.MaxUncommitted) || g.pending.Load() >= int64(g.i.lim.MaxPendingBytes)
}

func (g *generation) requestCommit() {
	select {
	case g.commitNow <- struct{}{}:
	default:
	}
}

// end runs after every claim of the generation returned: a last commit and a
// last report of progress (never idleness) for the partitions' next owner.
func (g *generation) end() {
	g.stop()
	g.done.Wait()
	g.commit()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	g.i.publish(ctx, true)
	cancel()
	g.i.wm.release()
	g.i.log.Info("partitions released", "generation", g.sess.GenerationID())
}
