package proc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrExited is the error of a Wait whose process exited before it was
// ready; a caller may start it again (on new ports, say).
var ErrExited = errors.New("exited before it was ready")

// Wait says how long and how often Until tries. The zero value tries every
// 250ms until the context ends.
type Wait struct {
	// What is awaited, named in the error ("MinIO at 127.0.0.1:9000").
	What string
	// Limit is how long Until tries at most; 0 leaves it to the context.
	Limit time.Duration
	// Interval is the pause between attempts; 0 means 250ms.
	Interval time.Duration
	// Proc, if set, is the process that should answer: Until gives up as
	// soon as it exits, with the end of its log in the error.
	Proc *Process
}

// Until calls ready until it returns nil. It gives up when Limit has passed
// (the error wraps ready's last error), when ctx ends (it wraps ctx.Err()
// and says ready's last error, which tells what was missing) or when Proc
// exits (it wraps ErrExited).
func (w Wait) Until(ctx context.Context, ready func() error) error {
	interval := w.Interval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	var deadline time.Time
	if w.Limit > 0 {
		deadline = time.Now().Add(w.Limit)
	}
	var exited <-chan struct{} // nil, never ready, without a process
	if w.Proc != nil {
		exited = w.Proc.Done()
	}
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if w.Proc != nil && w.Proc.Exited() {
			return w.exited(err)
		}
		pause := interval
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return w.timedOut(err)
			}
			pause = min(pause, left)
		}
		select {
		case <-ctx.Done():
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return w.timedOut(err)
			}
			return fmt.Errorf("%s not ready: %w (last attempt: %v)", w.What, ctx.Err(), err)
		case <-exited:
			return w.exited(err)
		case <-time.After(pause):
		}
	}
}

func (w Wait) timedOut(last error) error {
	return fmt.Errorf("%s not ready after %v: %w", w.What, w.Limit, last)
}

func (w Wait) exited(last error) error {
	err := fmt.Errorf("%s: %s %w (%v; last attempt: %v)", w.What, w.Proc.Name, ErrExited, w.Proc.Err(), last)
	if t := w.Proc.Tail(20); t != "" {
		err = fmt.Errorf("%w; its log %s ends:\n%s", err, w.Proc.Log, t)
	}
	return err
}
