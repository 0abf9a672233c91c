package backfill

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/klauspost/compress/gzip"
	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/temporal"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// Input formats, told apart by their first bytes rather than their names.
var (
	gzipMagic    = []byte{0x1f, 0x8b}
	parquetMagic = []byte("PAR1")
)

// eachInputLine calls fn for every line of an input object from line from+1
// on (lines before are skipped, not decoded: that is how a retried activity
// resumes). Line numbers start at 1 and count every line, blank ones too,
// as `starter sessionize` numbers them; fn gets the line without its line
// end. JSON lines may be gzip-compressed; a Parquet file's rows become JSON
// objects, row n being line n.
func eachInputLine(ctx context.Context, s3 *minio.Client, obj inputObject, from int64, fn func(ln int64, line []byte) error) error {
	rc, err := openInput(ctx, s3, obj.URL)
	if err != nil {
		return err
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	// fn's own errors (a failed upload) pass through unclassified.
	var fnErr error
	each := func(ln int64, line []byte) error {
		if err := fn(ln, line); err != nil {
			fnErr = err
			return err
		}
		return nil
	}
	// A stream that ends early although every byte of the object was read
	// is a truncated file, which no retry mends; one that ends before is a
	// broken connection, which one may.
	classify := func(err error) error {
		if fnErr != nil {
			return fnErr
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && cr.n >= obj.Size {
			err = badData{err}
		}
		return readError(obj.URL, err)
	}
	br := bufio.NewReaderSize(cr, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return classify(err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return classify(err)
		}
		defer zr.Close()
		return classify(eachLine(ctx, zr, from, each))
	case bytes.Equal(magic, parquetMagic):
		f, cleanup, err := seekable(obj.URL, br)
		if err != nil {
			return classify(err)
		}
		defer cleanup()
		return classify(eachParquetRow(ctx, f, from, each))
	}
	return classify(eachLine(ctx, br, from, each))
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// openInput opens an s3:// URL or a local path for streaming.
func openInput(ctx context.Context, s3 *minio.Client, url string) (io.ReadCloser, error) {
	bucket, key, ok := store.ParseS3URL(url)
	if !ok {
		f, err := os.Open(url)
		if err != nil {
			return nil, localError("open input", err)
		}
		return f, nil
	}
	obj, err := s3.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error("open input", url, err)
	}
	return obj, nil
}

// seekable returns the Parquet file to read at random: a local file as it
// is, an S3 object copied to a temporary file (Parquet's footer is at the
// end, and a spooled copy bounds memory whatever the object's size).
func seekable(url string, r io.Reader) (parquet.ReaderAtSeeker, func(), error) {
	if _, _, ok := store.ParseS3URL(url); !ok {
		f, err := os.Open(url)
		if err != nil {
			return nil, nil, localError("open input", err)
		}
		return f, func() { f.Close() }, nil
	}
	f, err := os.CreateTemp("", "sessionflow-backfill-*.parquet")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, r); err != nil {
		cleanup()
		return nil, nil, err
	}
	return f, cleanup, nil
}

// readError makes corrupt input non-retryable; I/O errors stay retryable.
func readError(url string, err error) error {
	if err == nil {
		return nil
	}
	var corrupt flate.CorruptInputError
	var bad badData
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &corrupt) || errors.As(err, &bad) {
		return store.BadInput("read input", fmt.Errorf("%s: %w", url, err))
	}
	if code := minio.ToErrorResponse(err).Code; code != "" {
		return s3Error("read input", url, err)
	}
	var classified *temporal.ApplicationError
	if errors.As(err, &classified) { // a local open, a caller's error
		return err
	}
	return fmt.Errorf("read input %s: %w", url, err)
}

// badData is a Parquet file this reader cannot make sense of.
type badData struct{ error }

func (e badData) Unwrap() error { return e.error }

// eachLine reads lines, numbering them from 1, and passes those after from
// to fn without their "\n" or "\r\n". A last line without a line end counts.
func eachLine(ctx context.Context, r io.Reader, from int64, fn func(ln int64, line []byte) error) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 1<<20)
	}
	var long []byte
	for ln := int64(1); ; {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			long = append(long, chunk...)
			line = long
		}
		if len(line) > 0 {
			if ln > from {
				line = bytes.TrimSuffix(line, []byte{'\n'})
				line = bytes.TrimSuffix(line, []byte{'\r'})
				if err := fn(ln, line); err != nil {
					return err
				}
			}
			if ln%8192 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			ln++
		}
		long = long[:0]
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// eachParquetRow turns the rows of a Parquet file into JSON objects, one
// field per column (null columns are left out, structs become nested
// objects, lists arrays, timestamps RFC 3339 strings in UTC), and passes
// them to fn as lines: row n (from 1) is line n. Row groups wholly before
// from are not read.
func eachParquetRow(ctx context.Context, r parquet.ReaderAtSeeker, from int64, fn func(ln int64, line []byte) error) error {
	pf, err := file.NewParquetReader(r)
	if err != nil {
		return badData{err}
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		return badData{err}
	}
	var groups []int
	ln := int64(1) // line number of the first row of the first group read
	for g := range pf.NumRowGroups() {
		n := pf.MetaData().RowGroup(g).NumRows()
		if len(groups) == 0 && ln+n-1 <= from {
			ln += n
			continue
		}
		groups = append(groups, g)
	}
	if len(groups) == 0 {
		return nil
	}
	rr, err := fr.GetRecordReader(ctx, nil, groups)
	if err != nil {
		return badData{err}
	}
	defer rr.Release()
	var line []byte
	var write []jsonField
	var schema *arrow.Schema
	for rr.Next() {
		rec := rr.Record()
		if schema == nil || !schema.Equal(rec.Schema()) {
			schema = rec.Schema()
			write = jsonFields(schema.Fields())
		}
		cols := rec.Columns()
		for i := range int(rec.NumRows()) {
			if ln > from {
				line = appendObject(line[:0], write, cols, i)
				if err := fn(ln, line); err != nil {
					return err
				}
			}
			ln++
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return badData{err}
	}
	return nil
}

// jsonField writes one column's value as a JSON member.
type jsonField struct {
	name  []byte // `"name":`
	value func(buf []byte, a arrow.Array, i int) []byte
}

func jsonFields(fields []arrow.Field) []jsonField {
	out := make([]jsonField, len(fields))
	for j, f := range fields {
		name := session.AppendJSONString(nil, f.Name)
		out[j] = jsonField{name: append(name, ':'), value: jsonValue(f.Type)}
	}
	return out
}

// appendObject writes row i of cols as a JSON object, leaving out nulls.
func appendObject(buf []byte, fields []jsonField, cols []arrow.Array, i int) []byte {
	buf = append(buf, '{')
	first := true
	for j, f := range fields {
		if cols[j].IsNull(i) {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, f.name...)
		buf = f.value(buf, cols[j], i)
	}
	return append(buf, '}')
}

// jsonValue returns the writer of a non-null value of type t.
func jsonValue(t arrow.DataType) func(buf []byte, a arrow.Array, i int) []byte {
	switch t := t.(type) {
	case *arrow.StringType:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return session.AppendJSONString(buf, a.(*array.String).Value(i))
		}
	case *arrow.LargeStringType:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return session.AppendJSONString(buf, a.(*array.LargeString).Value(i))
		}
	case *arrow.BinaryType:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return session.AppendJSONString(buf, string(a.(*array.Binary).Value(i)))
		}
	case *arrow.BooleanType:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return strconv.AppendBool(buf, a.(*array.Boolean).Value(i))
		}
	case *arrow.Int8Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Int8).Value(i)) })
	case *arrow.Int16Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Int16).Value(i)) })
	case *arrow.Int32Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Int32).Value(i)) })
	case *arrow.Int64Type:
		return intValue(func(a arrow.Array, i int) int64 { return a.(*array.Int64).Value(i) })
	case *arrow.Uint8Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Uint8).Value(i)) })
	case *arrow.Uint16Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Uint16).Value(i)) })
	case *arrow.Uint32Type:
		return intValue(func(a arrow.Array, i int) int64 { return int64(a.(*array.Uint32).Value(i)) })
	case *arrow.Uint64Type:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return strconv.AppendUint(buf, a.(*array.Uint64).Value(i), 10)
		}
	case *arrow.Float32Type:
		return floatValue(func(a arrow.Array, i int) float64 { return float64(a.(*array.Float32).Value(i)) }, 32)
	case *arrow.Float64Type:
		return floatValue(func(a arrow.Array, i int) float64 { return a.(*array.Float64).Value(i) }, 64)
	case *arrow.TimestampType:
		unit := t.Unit
		return func(buf []byte, a arrow.Array, i int) []byte {
			ts := a.(*array.Timestamp).Value(i).ToTime(unit)
			buf = append(buf, '"')
			buf = ts.AppendFormat(buf, time.RFC3339Nano)
			return append(buf, '"')
		}
	case *arrow.Date32Type:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return session.AppendJSONString(buf, a.(*array.Date32).Value(i).FormattedString())
		}
	case *arrow.Date64Type:
		return func(buf []byte, a arrow.Array, i int) []byte {
			return session.AppendJSONString(buf, a.(*array.Date64).Value(i).FormattedString())
		}
	case *arrow.StructType:
		fields := jsonFields(t.Fields())
		return func(buf []byte, a arrow.Array, i int) []byte {
			s := a.(*array.Struct)
			cols := make([]arrow.Array, s.NumField())
			for j := range cols {
				cols[j] = s.Field(j)
			}
			return appendObject(buf, fields, cols, i)
		}
	case *arrow.ListType:
		elem := jsonValue(t.Elem())
		return func(buf []byte, a arrow.Array, i int) []byte {
			l := a.(*array.List)
			start, end := l.ValueOffsets(i)
			return appendArray(buf, elem, l.ListValues(), int(start), int(end))
		}
	case *arrow.LargeListType:
		elem := jsonValue(t.Elem())
		return func(buf []byte, a arrow.Array, i int) []byte {
			l := a.(*array.LargeList)
			start, end := l.ValueOffsets(i)
			return appendArray(buf, elem, l.ListValues(), int(start), int(end))
		}
	case *arrow.DictionaryType:
		value := jsonValue(t.ValueType)
		return func(buf []byte, a arrow.Array, i int) []byte {
			d := a.(*array.Dictionary)
			return value(buf, d.Dictionary(), d.GetValueIndex(i))
		}
	case arrow.DecimalType:
		// The decimal's text is a valid JSON number.
		return func(buf []byte, a arrow.Array, i int) []byte { return append(buf, a.ValueStr(i)...) }
	}
	// Anything else (intervals, maps, unions…) as its text.
	return func(buf []byte, a arrow.Array, i int) []byte { return session.AppendJSONString(buf, a.ValueStr(i)) }
}

func intValue(get func(arrow.Array, int) int64) func([]byte, arrow.Array, int) []byte {
	return func(buf []byte, a arrow.Array, i int) []byte { return strconv.AppendInt(buf, get(a, i), 10) }
}

func floatValue(get func(arrow.Array, int) float64, bits int) func([]byte, arrow.Array, int) []byte {
	return func(buf []byte, a arrow.Array, i int) []byte {
		f := get(a, i)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(buf, "null"...)
		}
		return strconv.AppendFloat(buf, f, 'g', -1, bits)
	}
}

func appendArray(buf []byte, elem func([]byte, arrow.Array, int) []byte, vals arrow.Array, start, end int) []byte {
	buf = append(buf, '[')
	for k := start; k < end; k++ {
		if k > start {
			buf = append(buf, ',')
		}
		if vals.IsNull(k) {
			buf = append(buf, "null"...)
		} else {
			buf = elem(buf, vals, k)
		}
	}
	return append(buf, ']')
}
