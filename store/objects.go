package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeBadInput is the Temporal application error type of an activity
// input that no retry can write (an unknown profile, a record of another
// profile). Such errors are non-retryable; every other error, S3's included,
// is left to the activity's retry policy.
const ErrTypeBadInput = "SessionflowBadInput"

// BadInput makes err non-retryable, of type ErrTypeBadInput: this is the one
// place that decides that, for the backfill's activities too.
func BadInput(op string, err error) error {
	return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeBadInput, err)
}

// dated is the rows of one UTC day, in their input order.
type dated[T any] struct {
	date string // YYYY-MM-DD
	rows []T
}

// splitByDate groups rows by the UTC date of ms(row), dates ascending.
func splitByDate[T any](rows []T, ms func(T) int64) []dated[T] {
	var days []dated[T]
	for _, r := range rows {
		date := Date(ms(r))
		i := slices.IndexFunc(days, func(d dated[T]) bool { return d.date == date })
		if i < 0 {
			i = len(days)
			days = append(days, dated[T]{date: date})
		}
		days[i].rows = append(days[i].rows, r)
	}
	slices.SortFunc(days, func(a, b dated[T]) int { return strings.Compare(a.date, b.date) })
	return days
}

// Date is the UTC date (YYYY-MM-DD) of a time in ms: the event_date and
// session_date of an object's path.
func Date(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }

// JoinPrefix puts dir under the pipeline prefix, ignoring stray slashes.
func JoinPrefix(prefix, dir string) string {
	if p := strings.Trim(prefix, "/"); p != "" {
		return p + "/" + dir
	}
	return dir
}

// objectName is "<writer>-<seq>": the writer's slashes become dashes so the
// name is one path segment, and seq is zero-padded so names sort by seq.
func objectName(writer string, seq int64) string {
	return fmt.Sprintf("%s%010d", writerStem(writer), seq)
}

// writerStem is what every object name of writer starts with: "<writer>-".
func writerStem(writer string) string { return strings.ReplaceAll(writer, "/", "-") + "-" }

// putDays writes rows as one Parquet object per UTC date of ms(row), named
// key(date), and tells wrote (if set) of each object.
func putDays[T any](ctx context.Context, s3 *minio.Client, bucket string, cols []column[T], rows []T, wrote Wrote,
	ms func(T) int64, key func(date string) string) (WriteResult, error) {
	var res WriteResult
	for _, day := range splitByDate(rows, ms) {
		k := key(day.date)
		size, err := putParquet(ctx, s3, bucket, k, cols, day.rows)
		if err != nil {
			return res, err
		}
		if wrote != nil {
			wrote(k, len(day.rows), size)
		}
		res.Objects = append(res.Objects, k)
		res.Rows += len(day.rows)
	}
	return res, nil
}

// putParquet encodes rows and uploads them as key, returning the object's
// size. Its errors, S3's included, are plain wrapped errors and therefore
// retried. It needs no activity context, so the ingester can use it too.
func putParquet[T any](ctx context.Context, s3 *minio.Client, bucket, key string, cols []column[T], rows []T) (int, error) {
	data, err := encode(memory.DefaultAllocator, cols, rows)
	if err == nil {
		_, err = s3.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: "application/vnd.apache.parquet"})
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return len(data), nil
}

// readAll decodes every .parquet object under prefix, in listing order.
func readAll[T any](ctx context.Context, s3 *minio.Client, bucket, prefix string,
	decode func(context.Context, []byte) ([]T, error)) ([]T, error) {
	var out []T
	for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, obj.Err)
		}
		if !strings.HasSuffix(obj.Key, ".parquet") {
			continue
		}
		rows, err := readObject(ctx, s3, bucket, obj.Key, decode)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	// The listing ends quietly when ctx does: that is not an empty prefix.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, nil
}

// readObject decodes one Parquet object.
func readObject[T any](ctx context.Context, s3 *minio.Client, bucket, key string,
	decode func(context.Context, []byte) ([]T, error)) ([]T, error) {
	data, err := ReadObject(ctx, s3, bucket, key)
	if err == nil {
		var rows []T
		if rows, err = decode(ctx, data); err == nil {
			return rows, nil
		}
	}
	return nil, fmt.Errorf("read %s: %w", key, err)
}

// ReadObject returns the content of one object.
func ReadObject(ctx context.Context, s3 *minio.Client, bucket, key string) ([]byte, error) {
	obj, err := s3.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// ParseS3URL splits s3://bucket/prefix. The prefix has no leading or
// trailing slash; it may be empty.
func ParseS3URL(s string) (bucket, prefix string, ok bool) {
	rest, found := strings.CutPrefix(s, "s3://")
	if !found {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	return bucket, strings.Trim(prefix, "/"), bucket != ""
}

// Wrote is told of each object a write puts: its key, rows and size in
// bytes. The writes take it rather than logging themselves because the
// ingester calls them outside any activity.
type Wrote func(key string, rows, size int)

// ActivityLog is the Wrote of an activity: it logs each object on the
// activity's logger, so ctx must be an activity's.
func ActivityLog(ctx context.Context) Wrote {
	logger := activity.GetLogger(ctx)
	return func(key string, rows, size int) {
		logger.Info("wrote parquet", "key", key, "rows", rows, "bytes", size)
	}
}
