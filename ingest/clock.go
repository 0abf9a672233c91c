package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// clockTimeout bounds one call to the clock.
const clockTimeout = 10 * time.Second

// publish sends the clock the progress of our partitions (only what
// changed) and reads its watermark back for the batches' watermarks.
func (i *Ingester) publish(ctx context.Context, final bool) {
	i.clockMu.Lock()
	defer i.clockMu.Unlock()
	pub := i.wm.progress(time.Now(), final)
	if len(pub.marks) > 0 {
		cctx, cancel := context.WithTimeout(ctx, clockTimeout)
		err := i.cfg.Temporal.PublishMarks(cctx, workflows.WatermarkUpdate{Source: i.cfg.Source, Marks: pub.marks})
		cancel()
		i.wm.sent(pub, err == nil)
		switch {
		case ctx.Err() != nil:
			return // stopping: the generation's end publishes once more
		case err != nil:
			i.met.clockErr.Inc()
			i.log.Warn("watermark not published; will retry", "error", err)
		default:
			i.met.clockOK.Inc()
			for _, m := range pub.marks {
				if m.Idle {
					i.log.Info("partition idle: it no longer holds the watermark back", "partition", m.Partition)
				}
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, clockTimeout)
	st, err := i.cfg.Temporal.ReadClock(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			i.log.Warn("clock not read", "error", err)
		}
		return
	}
	i.wm.read(st)
	if w := i.wm.clockW(); w != session.NoWatermark {
		i.met.watermark.Set(float64(w) / 1000)
		i.met.wmLag.Set(time.Since(time.UnixMilli(w)).Seconds())
	}
}

// errNotCounted: the clock's state does not show a revived partition yet.
var errNotCounted = errors.New("the clock does not count the revived partitions yet")

// wake makes the clock count partition p before p's event at t0 is
// classified: rule 3 of watermark.go. It retries until it succeeds or ctx
// ends.
func (i *Ingester) wake(ctx context.Context, p int32, t0 int64) error {
	i.clockMu.Lock()
	defer i.clockMu.Unlock()
	return i.retry(ctx, "make the clock count partition", func(ctx context.Context) error {
		if i.wm.live(p) {
			return nil
		}
		st, err := i.cfg.Temporal.ReadClock(ctx)
		if err != nil {
			return err
		}
		switch i.wm.lookup(p, st) {
		case stateLive:
			return nil
		case stateAbsent:
			for i.wm.waitingForFirst(time.Now(), i.lim.StartupWait) {
				if !sleep(ctx, 10*time.Millisecond) {
					return context.Cause(ctx)
				}
			}
		}
		pub := i.wm.planWake(p, t0)
		if err := i.cfg.Temporal.PublishMarks(ctx, workflows.WatermarkUpdate{Source: i.cfg.Source, Marks: pub.marks}); err != nil {
			return err
		}
		if st, err = i.cfg.Temporal.ReadClock(ctx); err != nil {
			return err
		}
		if !i.wm.confirmWake(pub, st, time.Now()) {
			return errNotCounted
		}
		i.log.Info("partitions counted by the clock", "marks", pub.marks, "watermark", st.Watermark)
		return nil
	})
}
