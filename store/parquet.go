package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

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
