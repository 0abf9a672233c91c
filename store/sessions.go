package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/session"
)

// WriteSessionsInput is one flush of a SinkWorkflow.
type WriteSessionsInput struct {
	// Prefix is the pipeline's output prefix inside the bucket.
	Prefix string `json:"prefix"`
	// Sink names the writer ("sink/<pipeline>/<bucket>"); with Seq it names
	// the objects, so a retried flush overwrites its own objects.
	Sink    string           `json:"sink"`
	Bucket  int              `json:"bucket"`
	Seq     int64            `json:"seq"`
	Profile session.Profile  `json:"profile"`
	Records []session.Record `json:"records"`
}

// WriteResult lists what a write of sessions or late events put.
type WriteResult struct {
	Objects []string `json:"objects"`
	Rows    int      `json:"rows"`
}

// WriteSessions writes one flush of a SinkWorkflow as Parquet (ZSTD) to
// <Prefix>/sessions/session_date=YYYY-MM-DD/bucket=NN/<sink>-<seq>.parquet,
// one object per UTC date of the sessions' starts, rows in the order given,
// and tells wrote (if set) of each object. Object names depend only on Sink,
// Seq and the date, so a retried flush overwrites its own objects: no
// duplicate rows, no lost rows. Partition values are only in the path (Hive
// style) so DuckDB, Spark and Trino read the tree as one table. An input no
// retry can write is an error of type ErrTypeBadInput.
func WriteSessions(ctx context.Context, s3 *minio.Client, bucket string, in WriteSessionsInput, wrote Wrote) (WriteResult, error) {
	if err := checkFlush(in); err != nil {
		return WriteResult{}, BadInput("write sessions", err)
	}
	cols := slices.Concat(sessionColumns, attrColumns[in.Profile])
	return putDays(ctx, s3, bucket, cols, in.Records, wrote,
		func(r session.Record) int64 { return r.Start },
		func(date string) string {
			return fmt.Sprintf("%s/session_date=%s/bucket=%02d/%s.parquet",
				JoinPrefix(in.Prefix, sessionsDir), date, in.Bucket, objectName(in.Sink, in.Seq))
		})
}

// ReadSessions reads back every Parquet object under <prefix>/sessions/,
// sorted by key, start and end; the profile column says which attribute
// struct each record gets. It is for tests and tools: it holds everything in
// memory.
func ReadSessions(ctx context.Context, s3 *minio.Client, bucket, prefix string) ([]session.Record, error) {
	recs, err := readAll(ctx, s3, bucket, JoinPrefix(prefix, sessionsDir)+"/", decodeSessions)
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
func checkFlush(in WriteSessionsInput) error {
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
