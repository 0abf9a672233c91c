package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// The asynchronous work of a claim: signalling a key's batch, writing late
// events, sending dead letters. Each retries until it succeeds or its claim
// abandons it, then reports the offsets it acknowledged.

type opKind int

const (
	opSignal opKind = iota
	opLate
	opDeadLetters
)

// opResult is a finished operation: the offsets it made durable (all or,
// with err, none) and the memory it releases.
type opResult struct {
	kind    opKind
	offsets []int64
	last    int64 // latest event time of a signalled batch
	bytes   int64
	err     error
}

// attemptTimeout bounds one attempt of an operation.
const attemptTimeout = 30 * time.Second

// retry runs fn until it succeeds, backing off from 100ms to 10s between
// attempts and logging each failure. It gives up only when ctx ends (the
// claim abandons the operation): an acknowledgement is never invented.
func (i *Ingester) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: abandoned after %d attempts: %w", what, attempt, err)
		}
		i.log.Warn(what+" failed; retrying", "attempt", attempt, "backoff", backoff, "error", err)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("%s: abandoned after %d attempts: %w", what, attempt, context.Cause(ctx))
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// signal sends one key's batch; it runs on a signal worker.
func (i *Ingester) signal(ctx context.Context, key string, b workflows.EventBatch) error {
	i.met.inFlight.Inc()
	defer i.met.inFlight.Dec()
	return i.retry(ctx, "signal "+key, func(ctx context.Context) error {
		err := i.cfg.Temporal.SignalEvents(ctx, key, b)
		if err != nil {
			i.met.signalsErr.Inc()
		} else {
			i.met.signalsOK.Inc()
		}
		return err
	})
}

// writeLate writes one batch of late events, but for those the ledger knows
// as written: offsets are the events' own.
func (i *Ingester) writeLate(ctx context.Context, l *lateLedger, in store.WriteLateInput, offsets []int64) error {
	return i.retry(ctx, "write late events", func(ctx context.Context) error {
		rest, skipped, err := l.unwritten(ctx, in, offsets)
		if err != nil {
			return err
		}
		if skipped > 0 {
			i.log.Info("late events already written by the partition's previous owner; not written again",
				"writer", in.Writer, "events", skipped, "from_offset", offsets[0])
		}
		if len(rest.Events) == 0 {
			return nil
		}
		return i.cfg.Late.WriteLate(ctx, rest)
	})
}

// sendDeadLetters writes dead letters, sending again only those that failed.
func (i *Ingester) sendDeadLetters(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return i.retry(ctx, "send dead letters to "+i.cfg.DLQTopic, func(ctx context.Context) error {
		err := produceDeadLetters(ctx, i.dlq, msgs)
		var partial *retryDeadLetters
		if errors.As(err, &partial) {
			msgs = partial.msgs
		}
		return err
	})
}
