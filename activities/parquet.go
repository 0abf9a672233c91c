package activities

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sessionflow/sessionflow/session"
)

// ErrTypeBadInput is the Temporal application error type of an activity
// input that no retry can write (an unknown profile, a record of another
// profile). Such errors are non-retryable; every other error, S3's included,
// is left to the activity's retry policy.
const ErrTypeBadInput = "SessionflowBadInput"

// WriteParquet writes one flush of a SinkWorkflow as Parquet (ZSTD) to
// <Prefix>/sessions/session_date=YYYY-MM-DD/bucket=NN/<sink>-<seq>.parquet,
// one object per UTC date of the sessions' starts, rows in the order given.
// Object names depend only on Sink, Seq and the date, so a retried flush
// overwrites its own objects: no duplicate rows, no lost rows. Partition
// values are only in the path (Hive style) so DuckDB, Spark and Trino read
// the tree as one table.
func (a *Activities) WriteParquet(ctx context.Context, in WriteParquetInput) (WriteParquetResult, error) {
	if err := checkFlush(in); err != nil {
		return WriteParquetResult{}, badInput("write sessions", err)
	}
	cols := slices.Concat(sessionColumns, attrColumns[in.Profile])
	var res WriteParquetResult
	for _, day := range splitByDate(in.Records, func(r session.Record) int64 { return r.Start }) {
		key := fmt.Sprintf("%s/session_date=%s/bucket=%02d/%s.parquet",
			joinPrefix(in.Prefix, sessionsDir), day.date, in.Bucket, objectName(in.Sink, in.Seq))
		size, err := putParquet(ctx, a.S3, a.Bucket, key, cols, day.rows)
		if err != nil {
			return res, err
		}
		activity.GetLogger(ctx).Info("wrote parquet", "key", key, "rows", len(day.rows), "bytes", size)
		res.Objects = append(res.Objects, key)
		res.Rows += len(day.rows)
	}
	return res, nil
}

// ReadSessions reads back every Parquet object under <prefix>/sessions/,
// sorted by key, start and end; the profile column says which attribute
// struct each record gets. It is for tests and tools: it holds everything in
// memory.
func ReadSessions(ctx context.Context, s3 *minio.Client, bucket, prefix string) ([]session.Record, error) {
	recs, err := readAll(ctx, s3, bucket, joinPrefix(prefix, sessionsDir)+"/", decodeSessions)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(recs, func(a, b session.Record) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
	})
	return recs, nil
}

const sessionsDir = "sessions"

// sessionColumns are the columns of every session file, named and typed as
// the record's JSON; attrColumns adds the profile's attributes.
var sessionColumns = []column[session.Record]{
	stringCol("session_id", func(r *session.Record) *string { return &r.SessionID }),
	stringCol("key", func(r *session.Record) *string { return &r.Key }),
	stringCol("pipeline", func(r *session.Record) *string { return &r.Pipeline }),
	stringCol("profile", func(r *session.Record) *string { return &r.Profile }),
	int64Col("session_start_time_ms", func(r *session.Record) *int64 { return &r.Start }),
	int64Col("session_end_time_ms", func(r *session.Record) *int64 { return &r.End }),
	int64Col("duration_ms", func(r *session.Record) *int64 { return &r.DurationMs }),
	int64Col("event_count", func(r *session.Record) *int64 { return &r.EventCount }),
	stringCol("close_reason", func(r *session.Record) *string { return (*string)(&r.CloseReason) }),
	int64Col("closed_at_ms", func(r *session.Record) *int64 { return &r.ClosedAtMs }),
}

// attrColumns are each profile's attribute columns. Their accessors create
// the attribute struct when it is missing, which only happens when reading:
// checkFlush made sure a written record has it.
var attrColumns = map[session.Profile][]column[session.Record]{
	session.Clickstream: {
		stringListCol("pages_visited", func(r *session.Record) *[]string { return &clickstream(r).PagesVisited }),
	},
	session.Charging: {
		float64Col("soc_start", func(r *session.Record) *float64 { return &charging(r).SocStart }),
		float64Col("soc_end", func(r *session.Record) *float64 { return &charging(r).SocEnd }),
		int64Col("break_count", func(r *session.Record) *int64 { return &charging(r).BreakCount }),
		int64Col("break_ms", func(r *session.Record) *int64 { return &charging(r).BreakMs }),
		stringCol("status", func(r *session.Record) *string { return &charging(r).Status }),
	},
}

func clickstream(r *session.Record) *session.ClickstreamAttrs {
	if r.ClickstreamAttrs == nil {
		r.ClickstreamAttrs = &session.ClickstreamAttrs{}
	}
	return r.ClickstreamAttrs
}

func charging(r *session.Record) *session.ChargingAttrs {
	if r.ChargingAttrs == nil {
		r.ChargingAttrs = &session.ChargingAttrs{}
	}
	return r.ChargingAttrs
}

// checkFlush rejects a flush that no retry could write.
func checkFlush(in WriteParquetInput) error {
	if !slices.Contains(session.Profiles, in.Profile) {
		return fmt.Errorf("unknown profile %q", in.Profile)
	}
	if in.Sink == "" || in.Bucket < 0 || in.Seq < 0 {
		return fmt.Errorf("sink %q, bucket %d, seq %d: want a sink name, bucket >= 0 and seq >= 0",
			in.Sink, in.Bucket, in.Seq)
	}
	for i, r := range in.Records {
		if err := checkAttrs(in.Profile, r); err != nil {
			return fmt.Errorf("record %d (session %q): %w", i, r.SessionID, err)
		}
	}
	return nil
}

// checkAttrs checks that a record is of profile p and carries exactly that
// profile's attributes, which are the columns of p's files.
func checkAttrs(p session.Profile, r session.Record) error {
	if r.Profile != string(p) {
		return fmt.Errorf("profile %q in a %q flush", r.Profile, p)
	}
	click, charge := r.ClickstreamAttrs != nil, r.ChargingAttrs != nil
	if click != (p == session.Clickstream) || charge != (p == session.Charging) {
		return fmt.Errorf("%s record with clickstream attributes %t, charging attributes %t", p, click, charge)
	}
	return nil
}

// decodeSessions reads one session file. Columns are found by name, so a
// file may have its columns in any order and extra ones.
func decodeSessions(ctx context.Context, data []byte) ([]session.Record, error) {
	var out []session.Record
	err := readParquet(ctx, data, func(rec arrow.Record) error {
		common, err := bind(rec, sessionColumns)
		if err != nil {
			return err
		}
		attrs := map[string]func(int, *session.Record){}
		for i := range int(rec.NumRows()) {
			var r session.Record
			common(i, &r)
			set, ok := attrs[r.Profile]
			if !ok {
				p := session.Profile(r.Profile)
				if !slices.Contains(session.Profiles, p) {
					return fmt.Errorf("row %d: unknown profile %q", i, p)
				}
				if set, err = bind(rec, attrColumns[p]); err != nil {
					return fmt.Errorf("%s row %d: %w", p, i, err)
				}
				attrs[r.Profile] = set
			}
			set(i, &r)
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// badInput makes err non-retryable: this is the one place that decides that.
func badInput(op string, err error) error {
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
		date := time.UnixMilli(ms(r)).UTC().Format(time.DateOnly)
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

// joinPrefix puts dir under the pipeline prefix, ignoring stray slashes.
func joinPrefix(prefix, dir string) string {
	if p := strings.Trim(prefix, "/"); p != "" {
		return p + "/" + dir
	}
	return dir
}

// objectName is "<writer>-<seq>": the writer's slashes become dashes so the
// name is one path segment, and seq is zero-padded so names sort by seq.
func objectName(writer string, seq int64) string {
	return fmt.Sprintf("%s-%010d", strings.ReplaceAll(writer, "/", "-"), seq)
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
		data, err := getObject(ctx, s3, bucket, obj.Key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", obj.Key, err)
		}
		rows, err := decode(ctx, data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", obj.Key, err)
		}
		out = append(out, rows...)
	}
	// The listing ends quietly when ctx does: that is not an empty prefix.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, nil
}

func getObject(ctx context.Context, s3 *minio.Client, bucket, key string) ([]byte, error) {
	obj, err := s3.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// encode writes rows as one Parquet file with ZSTD-compressed columns. The
// Arrow schema is stored in the file so that Arrow readers get the exact
// types back.
func encode[T any](mem memory.Allocator, cols []column[T], rows []T) ([]byte, error) {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = c.field
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range rows {
		for j, c := range cols {
			c.put(b.Field(j), &rows[i])
		}
	}
	rec := b.NewRecord()
	defer rec.Release()

	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf,
		parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd), parquet.WithAllocator(mem)),
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem)))
	if err != nil {
		return nil, fmt.Errorf("parquet writer: %w", err)
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return nil, fmt.Errorf("parquet write: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("parquet close: %w", err)
	}
	return buf.Bytes(), nil
}

// readParquet calls each for every record batch of the Parquet file data.
// Batches are released after each returns.
func readParquet(ctx context.Context, data []byte, each func(arrow.Record) error) error {
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
	if err != nil {
		return err
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return err
	}
	defer rr.Release()
	for rr.Next() {
		if err := each(rr.Record()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// column is one Parquet column of rows of type T: its Arrow field, how a
// row's value is appended to a builder of that type, and how it is set from
// an array of that type. Writer and reader share the definition, so they
// cannot disagree about a name or a type.
type column[T any] struct {
	field arrow.Field
	put   func(b array.Builder, row *T)
	get   func(a arrow.Array, i int, row *T)
}

// bind finds cols in rec by name and returns a function that sets a row
// from rec's row i. Null values leave the row's field as it is.
func bind[T any](rec arrow.Record, cols []column[T]) (func(i int, row *T), error) {
	arrs := make([]arrow.Array, len(cols))
	for j, c := range cols {
		idx := rec.Schema().FieldIndices(c.field.Name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("column %q: found %d times, want once", c.field.Name, len(idx))
		}
		if got := rec.Schema().Field(idx[0]).Type; !sameType(c.field.Type, got) {
			return nil, fmt.Errorf("column %q: type %s, want %s", c.field.Name, got, c.field.Type)
		}
		arrs[j] = rec.Column(idx[0])
	}
	return func(i int, row *T) {
		for j, c := range cols {
			if arrs[j].IsValid(i) {
				c.get(arrs[j], i, row)
			}
		}
	}, nil
}

// sameType compares types up to nullability and field names, which other
// Parquet writers choose differently (a list's element is "element" or
// "item", nullable or not).
func sameType(want, got arrow.DataType) bool {
	if want.ID() != got.ID() {
		return false
	}
	if w, ok := want.(*arrow.ListType); ok {
		return sameType(w.Elem(), got.(*arrow.ListType).Elem())
	}
	return true
}

// stringCol is a required string. Reading copies the value out of the Arrow
// buffer, which Value aliases.
func stringCol[T any](name string, at func(*T) *string) column[T] {
	return column[T]{
		field: arrow.Field{Name: name, Type: arrow.BinaryTypes.String},
		put:   func(b array.Builder, row *T) { b.(*array.StringBuilder).Append(*at(row)) },
		get:   func(a arrow.Array, i int, row *T) { *at(row) = strings.Clone(a.(*array.String).Value(i)) },
	}
}

func int64Col[T any](name string, at func(*T) *int64) column[T] {
	return column[T]{
		field: arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Int64},
		put:   func(b array.Builder, row *T) { b.(*array.Int64Builder).Append(*at(row)) },
		get:   func(a arrow.Array, i int, row *T) { *at(row) = a.(*array.Int64).Value(i) },
	}
}

func float64Col[T any](name string, at func(*T) *float64) column[T] {
	return column[T]{
		field: arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64},
		put:   func(b array.Builder, row *T) { b.(*array.Float64Builder).Append(*at(row)) },
		get:   func(a arrow.Array, i int, row *T) { *at(row) = a.(*array.Float64).Value(i) },
	}
}

// stringListCol is a list<string>; reading always gives a non-nil slice, as
// the session engine makes (an empty list is "[]" in JSON, not null). The
// elements are declared nullable because that is what pqarrow writes to the
// Parquet schema either way; none is ever null.
func stringListCol[T any](name string, at func(*T) *[]string) column[T] {
	return column[T]{
		field: arrow.Field{Name: name, Type: arrow.ListOf(arrow.BinaryTypes.String)},
		put: func(b array.Builder, row *T) {
			lb := b.(*array.ListBuilder)
			vb := lb.ValueBuilder().(*array.StringBuilder)
			lb.Append(true)
			for _, s := range *at(row) {
				vb.Append(s)
			}
		},
		get: func(a arrow.Array, i int, row *T) {
			l := a.(*array.List)
			vals := l.ListValues().(*array.String)
			start, end := l.ValueOffsets(i)
			list := make([]string, 0, end-start)
			for k := start; k < end; k++ {
				list = append(list, strings.Clone(vals.Value(int(k))))
			}
			*at(row) = list
		},
	}
}
