package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/store"
)

// LateWriter stores the events that arrive below the watermark. A nil error
// means they are durable. Written returns the sources of those one writer
// already stored for a UTC date in objects that may hold offsets from from
// on (store.LateWritten). S3Late is the real one. Implementations must be
// safe for concurrent use.
type LateWriter interface {
	WriteLate(ctx context.Context, in store.WriteLateInput) error
	Written(ctx context.Context, prefix, writer, date string, from int64) (map[string]bool, error)
}

// S3Late writes late events as Parquet under the pipeline's prefix, in the
// same layout as the workflows' own late events (store.WriteLate).
type S3Late struct {
	S3     *minio.Client
	Bucket string
}

// WriteLate writes one batch.
func (s *S3Late) WriteLate(ctx context.Context, in store.WriteLateInput) error {
	_, err := store.WriteLate(ctx, s.S3, s.Bucket, in, nil)
	return err
}

// Written lists what the writer stored.
func (s *S3Late) Written(ctx context.Context, prefix, writer, date string, from int64) (map[string]bool, error) {
	return store.LateWritten(ctx, s.S3, s.Bucket, prefix, writer, date, from)
}

// lateLedger keeps a claim from writing a late event twice. An owner that
// dies after writing a late batch but before its offsets commit (they
// commit only behind the held on-time events before them) leaves the batch
// to be read again, and its successor cuts its batches elsewhere. So, per
// UTC date, the first batch a claim writes looks up the late events its
// writer stored from the claim's first offset on, and every batch leaves
// those out. Each row names its source (topic/partition/offset), which is
// what is compared.
type lateLedger struct {
	w              LateWriter
	prefix, writer string
	from           int64 // the claim's first offset

	mu   sync.Mutex
	days map[string]map[string]bool // date → sources already written
}

func newLateLedger(w LateWriter, prefix, writer string, from int64) *lateLedger {
	return &lateLedger{w: w, prefix: prefix, writer: writer, from: from, days: make(map[string]map[string]bool)}
}

// unwritten is in without the events already written, and its name (Seq,
// Last) the offsets of those left; offsets are the events' own. It returns
// how many it left out.
func (l *lateLedger) unwritten(ctx context.Context, in store.WriteLateInput, offsets []int64) (store.WriteLateInput, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := in
	out.Events, out.Seq, out.Last = nil, -1, 0
	for i, e := range in.Events {
		date := store.Date(e.Event.Time)
		seen, ok := l.days[date]
		if !ok {
			var err error
			if seen, err = l.w.Written(ctx, l.prefix, l.writer, date, l.from); err != nil {
				return out, 0, fmt.Errorf("late events already written: %w", err)
			}
			l.days[date] = seen
		}
		if seen[e.Source] {
			continue
		}
		out.Events = append(out.Events, e)
		if out.Seq < 0 {
			out.Seq = offsets[i]
		}
		out.Last = max(out.Last, offsets[i])
	}
	return out, len(in.Events) - len(out.Events), nil
}

// lateBuffer collects a partition's late events until LateBatch of them or
// the max hold. The object a batch becomes is named after the partition
// and the offsets of its first and last events, so a batch re-read after a
// crash and cut the same way overwrites itself, and lateLedger leaves out
// what a cut elsewhere would write again.
type lateBuffer struct {
	events  []store.LateEvent
	offsets []int64
	bytes   int
	created time.Time
}

func (b *lateBuffer) add(e store.LateEvent, off int64, now time.Time) {
	if len(b.events) == 0 {
		b.created = now
	}
	b.events = append(b.events, e)
	b.offsets = append(b.offsets, off)
	b.bytes += len(e.Raw) + len(e.Key) + 64
}

// take hands out the buffered events and empties the buffer.
func (b *lateBuffer) take() lateBuffer {
	out := *b
	*b = lateBuffer{}
	return out
}
