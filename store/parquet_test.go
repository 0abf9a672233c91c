package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
)

// midnight is 2024-03-10T00:00Z; sessions an hour either side of it fall
// into two session_date partitions.
var midnight = time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC).UnixMilli()

const hour = int64(time.Hour / time.Millisecond)

func TestWriteParquetRoundTrip(t *testing.T) {
	b := newBucket(t)
	tests := []struct {
		name        string
		in          WriteSessionsInput
		wantObjects []string
	}{{
		name: "clickstream over midnight, unicode keys, 0 to 3 pages",
		in: WriteSessionsInput{
			Prefix: "rt/click", Sink: "sink/clicks/07", Bucket: 7, Seq: 42, Profile: session.Clickstream,
			Records: []session.Record{
				click("zoë", midnight+hour, midnight+2*hour, "home", "cart", "checkout"),
				click("ユーザー/1", midnight-hour, midnight-hour/2),
				click("🚀", midnight-2*hour, midnight+hour, []string{}...),
				click("a", midnight+hour, midnight+hour, "home"),
			},
		},
		wantObjects: []string{
			"rt/click/sessions/session_date=2024-03-09/bucket=07/sink-clicks-07-0000000042.parquet",
			"rt/click/sessions/session_date=2024-03-10/bucket=07/sink-clicks-07-0000000042.parquet",
		},
	}, {
		name: "charging",
		in: WriteSessionsInput{
			Prefix: "rt/charge", Sink: "sink/ev/00", Bucket: 0, Seq: 1, Profile: session.Charging,
			Records: []session.Record{
				charge("UIN-2", midnight, midnight+3*hour, session.ChargingAttrs{
					SocStart: 12.5, SocEnd: 80.25, BreakCount: 2, BreakMs: 600_000, Status: session.StatusValid}),
				charge("UIN-1", midnight+hour, midnight+hour+60_000, session.ChargingAttrs{
					SocStart: 50, SocEnd: 50, Status: session.StatusInvalid}),
			},
		},
		wantObjects: []string{
			"rt/charge/sessions/session_date=2024-03-10/bucket=00/sink-ev-00-0000000001.parquet",
		},
	}, {
		name: "openclose under a prefix with stray slashes",
		in: WriteSessionsInput{
			Prefix: "/rt/open/", Sink: "sink/bays/12", Bucket: 12, Seq: 9_876_543_210, Profile: session.OpenClose,
			Records: []session.Record{open("bay-3", midnight+5*hour, midnight+6*hour)},
		},
		wantObjects: []string{
			"rt/open/sessions/session_date=2024-03-10/bucket=12/sink-bays-12-9876543210.parquet",
		},
	}, {
		name:        "an empty flush writes nothing",
		in:          WriteSessionsInput{Prefix: "rt/empty", Sink: "sink/clicks/01", Bucket: 1, Profile: session.Clickstream},
		wantObjects: nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			res, err := run(t, b, WriteSessions, tt.in)
			if err != nil {
				t.Fatalf("WriteParquet: %v", err)
			}
			if !slices.Equal(res.Objects, tt.wantObjects) || res.Rows != len(tt.in.Records) {
				t.Errorf("WriteParquet = %q, %d rows; want %q, %d rows",
					res.Objects, res.Rows, tt.wantObjects, len(tt.in.Records))
			}
			if got := listKeys(t, b, tt.in.Prefix); !slices.Equal(got, tt.wantObjects) {
				t.Errorf("bucket holds %q; want %q", got, tt.wantObjects)
			}

			// Each object holds its date's records, in input order.
			for _, key := range tt.wantObjects {
				data, err := ReadObject(ctx, b.S3, b.Name, key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := decodeSessions(ctx, data)
				if err != nil {
					t.Fatalf("decode %s: %v", key, err)
				}
				var want []session.Record
				for _, r := range tt.in.Records {
					if strings.Contains(key, "session_date="+dateOf(r.Start)+"/") {
						want = append(want, normalize(r))
					}
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s holds\n%s\nwant\n%s", key, dump(got), dump(want))
				}
			}

			got, err := ReadSessions(ctx, b.S3, b.Name, tt.in.Prefix)
			if err != nil {
				t.Fatalf("ReadSessions: %v", err)
			}
			if want := sortedNormal(tt.in.Records); !reflect.DeepEqual(got, want) {
				t.Errorf("ReadSessions =\n%s\nwant\n%s", dump(got), dump(want))
			}
		})
	}
}

func TestWriteParquetColumnsAndCodec(t *testing.T) {
	b := newBucket(t)
	common := []string{"session_id", "key", "pipeline", "profile", "session_start_time_ms",
		"session_end_time_ms", "duration_ms", "event_count", "close_reason", "closed_at_ms"}
	str, i64, f64 := arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Float64
	commonTypes := []arrow.DataType{str, str, str, str, i64, i64, i64, i64, str, i64}
	tests := []struct {
		profile   session.Profile
		rec       session.Record
		wantCols  []string
		wantTypes []arrow.DataType
	}{
		{session.Clickstream, click("k", midnight, midnight+1, "p"),
			append(common, "pages_visited"),
			append(commonTypes, arrow.ListOf(str))},
		{session.Charging, charge("k", midnight, midnight+1, session.ChargingAttrs{Status: session.StatusValid}),
			append(common, "soc_start", "soc_end", "break_count", "break_ms", "status"),
			append(commonTypes, f64, f64, i64, i64, str)},
		{session.OpenClose, open("k", midnight, midnight+1), common, commonTypes},
	}
	for _, tt := range tests {
		t.Run(string(tt.profile), func(t *testing.T) {
			ctx := context.Background()
			in := WriteSessionsInput{Prefix: "cols/" + string(tt.profile), Sink: "s", Profile: tt.profile,
				Records: []session.Record{tt.rec}}
			res, err := run(t, b, WriteSessions, in)
			if err != nil {
				t.Fatalf("WriteParquet: %v", err)
			}
			data, err := ReadObject(ctx, b.S3, b.Name, res.Objects[0])
			if err != nil {
				t.Fatal(err)
			}
			pf, err := file.NewParquetReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()

			fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			schema, err := fr.Schema()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, f := range schema.Fields() {
				names = append(names, f.Name)
				if i < len(tt.wantTypes) && !arrow.TypeEqual(f.Type, tt.wantTypes[i]) {
					t.Errorf("column %s: type %s, want %s", f.Name, f.Type, tt.wantTypes[i])
				}
			}
			if !slices.Equal(names, tt.wantCols) {
				t.Errorf("columns %q; want %q", names, tt.wantCols)
			}

			rg := pf.MetaData().RowGroup(0)
			for i := range rg.NumColumns() {
				cc, err := rg.ColumnChunk(i)
				if err != nil {
					t.Fatal(err)
				}
				if cc.Compression() != compress.Codecs.Zstd {
					t.Errorf("column %s compressed with %s, want ZSTD", cc.PathInSchema(), cc.Compression())
				}
			}
		})
	}
}

// A retried flush (same Sink and Seq) overwrites its own objects; the next
// flush (Seq+1) adds objects beside them.
func TestWriteParquetRetryOverwrites(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	in := WriteSessionsInput{Prefix: "retry", Sink: "sink/clicks/03", Bucket: 3, Seq: 5, Profile: session.Clickstream,
		Records: []session.Record{
			click("a", midnight-hour, midnight-1, "x"),
			click("b", midnight+hour, midnight+2*hour, "y", "z"),
		}}

	first, err := run(t, b, WriteSessions, in)
	if err != nil {
		t.Fatalf("WriteParquet: %v", err)
	}
	keys := listKeys(t, b, in.Prefix)
	for attempt := 2; attempt <= 3; attempt++ {
		again, err := run(t, b, WriteSessions, in)
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Errorf("attempt %d wrote %+v; first attempt %+v", attempt, again, first)
		}
		if got := listKeys(t, b, in.Prefix); !slices.Equal(got, keys) {
			t.Errorf("after attempt %d the bucket holds %q; want %q", attempt, got, keys)
		}
	}
	got, err := ReadSessions(ctx, b.S3, b.Name, in.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedNormal(in.Records); !reflect.DeepEqual(got, want) {
		t.Errorf("after retries ReadSessions =\n%s\nwant\n%s", dump(got), dump(want))
	}

	next := in
	next.Seq = 6
	next.Records = []session.Record{click("c", midnight-hour, midnight-hour)}
	if _, err := run(t, b, WriteSessions, next); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, b, in.Prefix); len(got) != len(keys)+1 {
		t.Errorf("after the next flush the bucket holds %q; want %d objects", got, len(keys)+1)
	}
	got, err = ReadSessions(ctx, b.S3, b.Name, in.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedNormal(append(slices.Clone(in.Records), next.Records...)); !reflect.DeepEqual(got, want) {
		t.Errorf("after the next flush ReadSessions =\n%s\nwant\n%s", dump(got), dump(want))
	}
}

func TestWriteParquetBadInputIsNotRetried(t *testing.T) {
	b := newBucket(t)
	good := func() WriteSessionsInput {
		return WriteSessionsInput{Prefix: "bad", Sink: "sink/clicks/00", Profile: session.Clickstream,
			Records: []session.Record{click("a", midnight, midnight+1, "x")}}
	}
	tests := []struct {
		name string
		edit func(*WriteSessionsInput)
		want string
	}{
		{"record of another profile", func(in *WriteSessionsInput) {
			in.Records = append(in.Records, charge("b", midnight, midnight+1, session.ChargingAttrs{}))
		}, `record 1 (session "b/1710028800000"): profile "charging" in a "clickstream" flush`},
		{"unknown profile", func(in *WriteSessionsInput) { in.Profile = "sessions" }, `unknown profile "sessions"`},
		{"clickstream record without attributes", func(in *WriteSessionsInput) {
			in.Records[0].ClickstreamAttrs = nil
		}, "clickstream record with clickstream attributes false, charging attributes false"},
		{"clickstream record with charging attributes", func(in *WriteSessionsInput) {
			in.Records[0].ChargingAttrs = &session.ChargingAttrs{}
		}, "clickstream record with clickstream attributes true, charging attributes true"},
		{"no sink name", func(in *WriteSessionsInput) { in.Sink = "" }, "want a sink name"},
		{"negative seq", func(in *WriteSessionsInput) { in.Seq = -1 }, "seq >= 0"},
		{"negative bucket", func(in *WriteSessionsInput) { in.Bucket = -1 }, "bucket >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := good()
			tt.edit(&in)
			_, err := run(t, b, WriteSessions, in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != ErrTypeBadInput {
				t.Fatalf("WriteParquet error = %v; want a non-retryable %s", err, ErrTypeBadInput)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteParquet error = %v; want it to say %q", err, tt.want)
			}
		})
	}
	if got := listKeys(t, b, "bad"); len(got) != 0 {
		t.Errorf("bad input wrote %q", got)
	}
}

// An S3 failure is transient as far as the activity can tell (the store is
// down, the bucket not yet created): the retry policy must get to retry it.
func TestWriteParquetS3ErrorIsRetried(t *testing.T) {
	b := newBucket(t)
	b.Name = "no-such-bucket"
	in := WriteSessionsInput{Prefix: "p", Sink: "s", Profile: session.OpenClose,
		Records: []session.Record{open("k", midnight, midnight+1)}}
	_, err := run(t, b, WriteSessions, in)
	if err == nil {
		t.Fatal("WriteParquet to a missing bucket succeeded")
	}
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.NonRetryable() {
		t.Errorf("WriteParquet error %v; want a retryable application error", err)
	}
	wantKey := "write p/sessions/session_date=2024-03-10/bucket=00/s-0000000000.parquet: "
	if !strings.Contains(err.Error(), wantKey) {
		t.Errorf("WriteParquet error = %v; want it to name the object (%q)", err, wantKey)
	}
}

func TestWriteLateRoundTrip(t *testing.T) {
	b := newBucket(t)
	ctx := context.Background()
	in := WriteLateInput{Prefix: "late", Writer: "ingest/clicks/3", Seq: 7, Events: []LateEvent{
		{Pipeline: "clicks", Key: "zoë", Event: session.Event{Time: midnight + hour, ID: math.MaxUint64 - 1, Page: "home"},
			Watermark: midnight + 2*hour, Source: "clicks/3/1234", Raw: []byte(`{"uuid":"zoë"}`)},
		{Pipeline: "clicks", Key: "ユーザー", Event: session.Event{Time: midnight - hour, Seq: 3, Flags: session.FlagEnd},
			Watermark: midnight},
		{Pipeline: "clicks", Key: "a", Event: session.Event{Time: midnight + hour, ID: 12345},
			Watermark: midnight + 2*hour, Raw: []byte{0, 0xff, '\n'}},
	}}
	res, err := run(t, b, WriteLate, in)
	if err != nil {
		t.Fatalf("WriteLate: %v", err)
	}
	wantObjects := []string{
		"late/late_events/event_date=2024-03-09/ingest-clicks-3-0000000007.parquet",
		"late/late_events/event_date=2024-03-10/ingest-clicks-3-0000000007.parquet",
	}
	if !slices.Equal(res.Objects, wantObjects) || res.Rows != 3 {
		t.Errorf("WriteLate = %q, %d rows; want %q, 3 rows", res.Objects, res.Rows, wantObjects)
	}
	if got := listKeys(t, b, in.Prefix); !slices.Equal(got, wantObjects) {
		t.Errorf("bucket holds %q; want %q", got, wantObjects)
	}

	got, err := ReadLate(ctx, b.S3, b.Name, in.Prefix)
	if err != nil {
		t.Fatalf("ReadLate: %v", err)
	}
	// Sorted by key, time, id; of the event only its time and id are kept.
	want := []LateEvent{in.Events[2], in.Events[0], in.Events[1]}
	for i := range want {
		want[i].Event = session.Event{Time: want[i].Event.Time, ID: want[i].Event.ID}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadLate =\n%+v\nwant\n%+v", got, want)
	}
}

// encode gives back all the memory it takes from its allocator.
func TestEncodeReleasesMemory(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := []session.Record{click("a", 1, 2, "x", "y"), click("b", 3, 4)}
	if _, err := encode(mem, slices.Concat(sessionColumns, attrColumns[session.Clickstream]), recs); err != nil {
		t.Fatal(err)
	}
	late := []LateEvent{{Key: "a", Raw: []byte("r")}, {Key: "b", Source: "s"}}
	if _, err := encode(mem, lateColumns, late); err != nil {
		t.Fatal(err)
	}
}

// bucket is where a test writes: a fresh MinIO server's bucket.
type bucket struct {
	S3   *minio.Client
	Name string
}

func newBucket(t *testing.T) *bucket {
	srv := miniotest.Start(t)
	return &bucket{S3: srv.Client, Name: srv.Bucket}
}

// run executes write into b as an activity, as activities.Activities does,
// in Temporal's test activity environment: that gives it the activity
// context ActivityLog needs and sends the input and the result through the
// same JSON conversion a worker does.
func run[In any](t *testing.T, b *bucket, write func(context.Context, *minio.Client, string, In, Wrote) (WriteResult, error), in In) (WriteResult, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(func(ctx context.Context, in In) (WriteResult, error) {
		return write(ctx, b.S3, b.Name, in, ActivityLog(ctx))
	}, activity.RegisterOptions{Name: "write"})
	val, err := env.ExecuteActivity("write", in)
	if err != nil {
		return WriteResult{}, err
	}
	var res WriteResult
	if err := val.Get(&res); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	return res, nil
}

// listKeys lists every object under prefix, in key order.
func listKeys(t *testing.T, b *bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for obj := range b.S3.ListObjectsIter(context.Background(), b.Name,
		minio.ListObjectsOptions{Prefix: strings.Trim(prefix, "/") + "/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list %s: %v", prefix, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

func base(key string, start, end int64, p session.Profile) session.Record {
	return session.Record{
		SessionID: session.SessionID(key, start, 0), Key: key, Pipeline: "pipe-" + string(p), Profile: string(p),
		Start: start, End: end, DurationMs: end - start, EventCount: 3,
		CloseReason: session.ReasonInactivity, ClosedAtMs: end + 30_000,
	}
}

func click(key string, start, end int64, pages ...string) session.Record {
	r := base(key, start, end, session.Clickstream)
	r.ClickstreamAttrs = &session.ClickstreamAttrs{PagesVisited: pages}
	return r
}

func charge(key string, start, end int64, attrs session.ChargingAttrs) session.Record {
	r := base(key, start, end, session.Charging)
	r.CloseReason = session.ReasonBreak
	r.ChargingAttrs = &attrs
	return r
}

func open(key string, start, end int64) session.Record {
	r := base(key, start, end, session.OpenClose)
	r.CloseReason, r.ClosedAtMs = session.ReasonEndMarker, 0
	return r
}

// normalize is r as it reads back: pages_visited is never nil.
func normalize(r session.Record) session.Record {
	if r.ClickstreamAttrs != nil && r.PagesVisited == nil {
		r.ClickstreamAttrs = &session.ClickstreamAttrs{PagesVisited: []string{}}
	}
	return r
}

// sortedNormal is recs normalized in ReadSessions' order.
func sortedNormal(recs []session.Record) []session.Record {
	var out []session.Record
	for _, r := range recs {
		out = append(out, normalize(r))
	}
	slices.SortStableFunc(out, func(a, b session.Record) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
	})
	return out
}

func dateOf(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }

func dump(recs []session.Record) string {
	var b strings.Builder
	for _, r := range recs {
		j, _ := json.Marshal(r)
		b.WriteString("\t" + string(j) + "\n")
	}
	return b.String()
}
