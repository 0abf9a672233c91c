package store

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/session"
)

// LateEvent is an event that arrived below the watermark it missed.
type LateEvent struct {
	Pipeline  string        `json:"pipeline"`
	Key       string        `json:"key"`
	Event     session.Event `json:"event"`
	Watermark int64         `json:"watermark"`
	// Source is where the event came from (topic/partition/offset), if known.
	Source string `json:"source,omitempty"`
	// Raw is the original message, if the writer has it.
	Raw []byte `json:"raw,omitempty"`
}

// WriteLateInput is one batch of late events of one writer.
type WriteLateInput struct {
	Prefix string `json:"prefix"`
	// Writer and Seq name the object, as Sink and Seq do for sessions.
	Writer string `json:"writer"`
	Seq    int64  `json:"seq"`
	// Last, if above zero, is the largest source offset of the events, and
	// the name ends in it too: <writer>-<seq>-<last>. The ingester names its
	// objects so, after the offsets of its partition, for LateWritten.
	Last   int64       `json:"last,omitempty"`
	Events []LateEvent `json:"events"`
}

// WriteLate writes one batch of late events as Parquet (ZSTD) to
// <Prefix>/late_events/event_date=YYYY-MM-DD/<writer>-<seq>[-<last>].parquet, one
// object per UTC date of the events' times, rows in the order given, and
// tells wrote (if set) of each object. Like WriteSessions, a retried batch
// overwrites its own objects. The session workflows write through the
// WriteLate activity, the ingester from a plain context; both name objects
// alike. An input no retry can write is an error of type ErrTypeBadInput.
//
// Of an event only its time and id are kept: the rest of session.Event is
// what the rules derived from the original message, which is in raw when the
// writer has it.
func WriteLate(ctx context.Context, s3 *minio.Client, bucket string, in WriteLateInput, wrote Wrote) (WriteResult, error) {
	if in.Writer == "" || in.Seq < 0 {
		return WriteResult{}, BadInput("write late events",
			fmt.Errorf("writer %q, seq %d: want a writer name and seq >= 0", in.Writer, in.Seq))
	}
	return putDays(ctx, s3, bucket, lateColumns, in.Events, wrote,
		func(e LateEvent) int64 { return e.Event.Time },
		func(date string) string {
			return fmt.Sprintf("%s/%s.parquet", lateDay(in.Prefix, date), lateName(in))
		})
}

// lateName is the object name of in, without its extension.
func lateName(in WriteLateInput) string {
	name := objectName(in.Writer, in.Seq)
	if in.Last > 0 {
		name += fmt.Sprintf("-%010d", in.Last)
	}
	return name
}

func lateDay(prefix, date string) string {
	return fmt.Sprintf("%s/event_date=%s", JoinPrefix(prefix, lateDir), date)
}

// LateWritten returns the sources of the late events of one writer and UTC
// date (YYYY-MM-DD) already stored in objects that may hold offsets from
// from on: those named <writer>-<seq>-<last> with last >= from, and of the
// older names without last those with seq >= from and the last one before.
// A writer that reads a partition again from its committed offset, after
// its predecessor wrote late events it did not get to commit, skips these
// and so writes each late event once however it cuts its batches.
func LateWritten(ctx context.Context, s3 *minio.Client, bucket, prefix, writer, date string, from int64) (map[string]bool, error) {
	dir := lateDay(prefix, date) + "/"
	stem := writerStem(writer)
	var keys []string
	legacy, legacySeq := "", int64(-1) // the last older name below from
	for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: dir + stem}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", dir+stem, obj.Err)
		}
		m := lateObject.FindStringSubmatch(strings.TrimPrefix(obj.Key, dir+stem))
		if m == nil {
			continue // another writer whose name starts alike ("t/1" and "t-1/2")
		}
		seq, _ := strconv.ParseInt(m[1], 10, 64)
		switch {
		case m[2] != "":
			if last, _ := strconv.ParseInt(m[2], 10, 64); last >= from {
				keys = append(keys, obj.Key)
			}
		case seq >= from:
			keys = append(keys, obj.Key)
		case seq > legacySeq:
			legacy, legacySeq = obj.Key, seq
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", dir+stem, err)
	}
	if legacy != "" {
		keys = append(keys, legacy)
	}
	seen := make(map[string]bool)
	for _, k := range keys {
		evs, err := readObject(ctx, s3, bucket, k, decodeLate)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.Source != "" {
				seen[e.Source] = true
			}
		}
	}
	return seen, nil
}

// lateObject parses what follows "<writer>-" in a late object's name.
var lateObject = regexp.MustCompile(`^([0-9]{10,})(?:-([0-9]{10,}))?\.parquet$`)

// ReadLate reads back every Parquet object under <prefix>/late_events/,
// sorted by key, event time and event id. It is for tests and tools.
func ReadLate(ctx context.Context, s3 *minio.Client, bucket, prefix string) ([]LateEvent, error) {
	evs, err := readAll(ctx, s3, bucket, JoinPrefix(prefix, lateDir)+"/", decodeLate)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(evs, func(a, b LateEvent) int {
		return cmp.Or(strings.Compare(a.Key, b.Key),
			cmp.Compare(a.Event.Time, b.Event.Time), cmp.Compare(a.Event.ID, b.Event.ID))
	})
	return evs, nil
}

const lateDir = "late_events"

// lateColumns are the late-event columns. event_id is the event's uint64
// identity hash stored as int64 with the same 64 bits (SQL engines lack an
// unsigned 64-bit type; equality and joins work unchanged, and uint64(x)
// restores it); it is null when the event has no identity (id 0). source and
// raw are null when unknown.
var lateColumns = []column[LateEvent]{
	stringCol("pipeline", func(e *LateEvent) *string { return &e.Pipeline }),
	stringCol("key", func(e *LateEvent) *string { return &e.Key }),
	int64Col("event_time_ms", func(e *LateEvent) *int64 { return &e.Event.Time }),
	{
		field: arrow.Field{Name: "event_id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		put: func(b array.Builder, e *LateEvent) {
			appendOrNull(b.(*array.Int64Builder), int64(e.Event.ID), e.Event.ID != 0)
		},
		get: func(a arrow.Array, i int, e *LateEvent) { e.Event.ID = uint64(a.(*array.Int64).Value(i)) },
	},
	int64Col("watermark_ms", func(e *LateEvent) *int64 { return &e.Watermark }),
	{
		field: arrow.Field{Name: "source", Type: arrow.BinaryTypes.String, Nullable: true},
		put: func(b array.Builder, e *LateEvent) {
			appendOrNull(b.(*array.StringBuilder), e.Source, e.Source != "")
		},
		get: func(a arrow.Array, i int, e *LateEvent) { e.Source = strings.Clone(a.(*array.String).Value(i)) },
	},
	{
		field: arrow.Field{Name: "raw", Type: arrow.BinaryTypes.Binary, Nullable: true},
		put: func(b array.Builder, e *LateEvent) {
			appendOrNull(b.(*array.BinaryBuilder), e.Raw, len(e.Raw) > 0)
		},
		get: func(a arrow.Array, i int, e *LateEvent) { e.Raw = slices.Clone(a.(*array.Binary).Value(i)) },
	},
}

// appendOrNull appends v if ok, else a null.
func appendOrNull[V any, B interface {
	Append(V)
	AppendNull()
}](b B, v V, ok bool) {
	if ok {
		b.Append(v)
	} else {
		b.AppendNull()
	}
}

// decodeLate reads one late-events file.
func decodeLate(ctx context.Context, data []byte) ([]LateEvent, error) {
	var out []LateEvent
	err := readParquet(ctx, data, func(rec arrow.Record) error {
		set, err := bind(rec, lateColumns)
		if err != nil {
			return err
		}
		for i := range int(rec.NumRows()) {
			var e LateEvent
			set(i, &e)
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
