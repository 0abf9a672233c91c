package ingest

import (
	"context"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/store"
)

// LateWriter stores the events that arrive below the watermark. A nil error
// means they are durable. S3Late is the real one. Implementations must be
// safe for concurrent use.
type LateWriter interface {
	WriteLate(ctx context.Context, in store.WriteLateInput) error
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

// lateBuffer collects a partition's late events until LateBatch of them or
// the max hold. The object a batch becomes is named after the partition
// and the offset of its first event, so a batch re-read after a crash and
// cut the same way overwrites itself; each row names its source position
// (topic/partition/offset) for the cases where the cut differs.
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
