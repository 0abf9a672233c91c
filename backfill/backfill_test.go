package backfill

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/cespare/xxhash/v2"
	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sessionflow/sessionflow/internal/miniotest"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

func TestEachLineNumbersLikeTheBatchEngine(t *testing.T) {
	long := strings.Repeat("x", 3<<20) // longer than the reader's buffer
	tests := []struct {
		name  string
		input string
		from  int64
		want  []string // "ln:text"
	}{
		{"plain", "a\nb\n", 0, []string{"1:a", "2:b"}},
		{"no final newline", "a\nb", 0, []string{"1:a", "2:b"}},
		{"crlf and blank lines keep their numbers", "a\r\n\r\n\nb\r\n", 0, []string{"1:a", "2:", "3:", "4:b"}},
		{"resume after line 2", "a\nb\nc\nd", 2, []string{"3:c", "4:d"}},
		{"resume past the end", "a\nb\n", 5, nil},
		{"empty", "", 0, nil},
		{"long line", "a\n" + long + "\nb\n", 0, []string{"1:a", "2:" + long, "3:b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := eachLine(context.Background(), strings.NewReader(tt.input), tt.from, func(ln int64, line []byte) error {
				got = append(got, fmt.Sprintf("%d:%s", ln, line))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %.80q, want %.80q", got, tt.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr\x00nul\x1f",
		"zoë ユーザー 🚀", "bad \xff utf-8", "<html>&"} {
		b := session.AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q -> %s -> %q", s, b, back)
		}
	}
}

// parquetFile writes one Parquet file with every column kind the reader
// turns into JSON, two rows per row group.
func parquetFile(t *testing.T) []byte {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "uuid", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "soc", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "details", Type: arrow.StructOf(arrow.Field{Name: "page", Type: arrow.BinaryTypes.String, Nullable: true}), Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	uuid := b.Field(0).(*array.StringBuilder)
	ts := b.Field(1).(*array.TimestampBuilder)
	n := b.Field(2).(*array.Int32Builder)
	soc := b.Field(3).(*array.Float64Builder)
	ok := b.Field(4).(*array.BooleanBuilder)
	det := b.Field(5).(*array.StructBuilder)
	page := det.FieldBuilder(0).(*array.StringBuilder)
	tags := b.Field(6).(*array.ListBuilder)
	tag := tags.ValueBuilder().(*array.StringBuilder)
	for i := range 5 {
		uuid.Append(fmt.Sprintf("user-%d", i))
		ts.Append(arrow.Timestamp(1704067200000 + int64(i)*1500))
		if i == 2 {
			n.AppendNull()
			soc.AppendNull()
			det.AppendNull()
			tags.AppendNull()
		} else {
			n.Append(int32(i))
			soc.Append(float64(i) + 0.5)
			det.Append(true)
			page.Append(`ho"me`)
			tags.Append(true)
			tag.Append("a")
			tag.Append("b")
		}
		ok.Append(i%2 == 0)
	}
	rec := b.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(2)),
		pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParquetRowsBecomeJSONLines(t *testing.T) {
	data := parquetFile(t)
	want := []string{
		`1:{"uuid":"user-0","ts":"2024-01-01T00:00:00Z","n":0,"soc":0.5,"ok":true,"details":{"page":"ho\"me"},"tags":["a","b"]}`,
		`2:{"uuid":"user-1","ts":"2024-01-01T00:00:01.5Z","n":1,"soc":1.5,"ok":false,"details":{"page":"ho\"me"},"tags":["a","b"]}`,
		`3:{"uuid":"user-2","ts":"2024-01-01T00:00:03Z","ok":true}`,
		`4:{"uuid":"user-3","ts":"2024-01-01T00:00:04.5Z","n":3,"soc":3.5,"ok":false,"details":{"page":"ho\"me"},"tags":["a","b"]}`,
		`5:{"uuid":"user-4","ts":"2024-01-01T00:00:06Z","n":4,"soc":4.5,"ok":true,"details":{"page":"ho\"me"},"tags":["a","b"]}`,
	}
	// Resuming skips whole row groups (two rows each) and rows within one.
	for from := range int64(6) {
		var got []string
		err := eachParquetRow(context.Background(), bytes.NewReader(data), from, func(ln int64, line []byte) error {
			if !json.Valid(line) {
				t.Errorf("line %d is not JSON: %s", ln, line)
			}
			got = append(got, fmt.Sprintf("%d:%s", ln, line))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[from:]) {
			t.Errorf("from %d:\n got %q\nwant %q", from, got, want[from:])
		}
	}
	if err := eachParquetRow(context.Background(), bytes.NewReader([]byte("PAR1 not really")), 0,
		func(int64, []byte) error { return nil }); err == nil {
		t.Error("a broken Parquet file read without error")
	}
}

func TestPieceRoundTrip(t *testing.T) {
	events := []session.Keyed{
		{Key: "user-1", Event: session.Event{Time: 1704067200000, Seq: backfillSeq(3, 17), ID: 0xdeadbeefcafef00d, Page: "home"}},
		{Key: "DRN7", Event: session.Event{Time: 5, Seq: 1, Flags: session.FlagActive | session.FlagSoC, SoC: 81.25}},
		{Key: "DRN7", Event: session.Event{Time: 6, Seq: 2, Flags: session.FlagSoC}}, // a SoC reading of 0
		{Key: "DRN8", Event: session.Event{Time: 7, Seq: 3, SoC: -1}},
		{Key: "ユーザー", Event: session.Event{Time: 0, Seq: backfillSeq(maxInputs-1, 1<<40-1), Flags: session.FlagEnd}},
	}
	raw := slices.Clone(pieceHeader)
	for _, e := range events {
		raw = appendPieceEvent(raw, []byte(e.Key), e.Event)
	}
	binary.LittleEndian.PutUint64(raw[len(pieceMagic):], uint64(len(events)))
	back, err := decompressPiece(compressPiece(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePiece(back, map[string]string{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, events)
	}
	if _, err := decodePiece(raw[:len(raw)-3], map[string]string{}, nil); err == nil {
		t.Error("a truncated piece decoded without error")
	}
	if _, err := decompressPiece([]byte("not s2")); err == nil {
		t.Error("garbage decompressed without error")
	}
}

func TestRouterRejectsFiltersAndRoutes(t *testing.T) {
	rules, _ := session.Defaults(session.Clickstream)
	r := newRouter(&rules, 2, "s3://in/a.jsonl", 1000, 3000, 4)
	lines := []string{
		`{"uuid":"u1","event_timestamp":1000,"page_name":"home"}`, // 1: first instant of the range
		``,                                     // 2: blank: neither a line nor invalid
		`{"uuid":"u2","event_timestamp":999}`,  // 3: before since
		`{"uuid":"u2","event_timestamp":3000}`, // 4: until is exclusive
		`not json`,                             // 5
		`{"uuid":"","event_timestamp":2000}`,   // 6: empty key
		`{"uuid":"u2","event_timestamp":2999,"event_id":"x"}`, // 7
	}
	for i, l := range lines {
		r.add(int64(i+1), []byte(l))
	}
	want := RouteStats{Lines: 6, Events: 2, Invalid: 2, Filtered: 2, MaxTime: 2999}
	if r.stats != want {
		t.Errorf("stats %+v, want %+v", r.stats, want)
	}
	var rejects []reject
	for _, l := range strings.Split(strings.TrimSpace(string(r.rejects)), "\n") {
		var rj reject
		if err := json.Unmarshal([]byte(l), &rj); err != nil {
			t.Fatal(err)
		}
		rejects = append(rejects, rj)
	}
	if len(rejects) != 2 || rejects[0].Line != 5 || rejects[1].Line != 6 || rejects[0].Source != "s3://in/a.jsonl" ||
		!strings.Contains(rejects[0].Reason, "not a JSON object") || !strings.Contains(rejects[1].Reason, "empty") ||
		rejects[0].Raw != "not json" {
		t.Errorf("rejects %+v", rejects)
	}
	var routed []session.Keyed
	for shard := range r.shards {
		got, err := decodePiece(r.piece(shard), map[string]string{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range got {
			if want := int(xxhash.Sum64String(e.Key) % 4); want != shard {
				t.Errorf("%s routed to shard %d, want %d", e.Key, shard, want)
			}
		}
		routed = append(routed, got...)
	}
	slices.SortFunc(routed, func(a, b session.Keyed) int { return strings.Compare(a.Key, b.Key) })
	if len(routed) != 2 || routed[0].Seq != backfillSeq(2, 1) || routed[1].Seq != backfillSeq(2, 7) ||
		routed[0].Page != "home" || routed[1].ID == 0 {
		t.Errorf("routed %+v", routed)
	}
}

// TestSessionizeWithWatermarkMatchesBatch: sessionizing shards separately
// with the whole input's largest time gives exactly the batch engine's
// records over all of it, and the stats agree.
func TestSessionizeWithWatermarkMatchesBatch(t *testing.T) {
	for _, p := range []session.Profile{session.Clickstream, session.Charging, session.OpenClose} {
		t.Run(string(p), func(t *testing.T) {
			rules, _ := session.Defaults(p)
			rules.EndMarker = session.Marker{Field: "page_name", Value: "logout"}
			if p == session.OpenClose {
				rules.EndMarker = session.Marker{Field: "action", Value: "Close"}
			}
			var lines []string
			for i := range 400 {
				k := fmt.Sprintf("k%d", i%7)
				at := int64(1_700_000_000_000) + int64(i)*int64(4*time.Minute/time.Millisecond)*int64(1+i%3)/2
				page := []string{"home", "cart", "logout"}[i%3]
				action := []string{"Open", "x", "Close"}[i%3]
				lines = append(lines, fmt.Sprintf(`{"uuid":%q,"UIN":%q,"key":%q,"event_timestamp":%d,"time":%d,"page_name":%q,"Charge_status":%d,"action":%q}`,
					k, k, k, at, at, page, i%2, action))
			}
			// One key's very last event sets the watermark for all.
			lines = append(lines, fmt.Sprintf(`{"uuid":"late","UIN":"late","key":"late","event_timestamp":%d,"time":%d,"Charge_status":1,"action":"Open"}`,
				int64(1_800_000_000_000), int64(1_800_000_000_000)))
			b := session.Batch{Rules: &rules, Pipeline: "p"}
			want, wantStats, err := b.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")))
			if err != nil {
				t.Fatal(err)
			}
			r := newRouter(&rules, 0, "x", 0, 0, 3)
			for i, l := range lines {
				r.add(int64(i+1), []byte(l))
			}
			var got []session.Record
			var st session.Stats
			for shard := range r.shards {
				events, err := decodePiece(r.piece(shard), map[string]string{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) == 0 {
					continue
				}
				recs, s := sessionizeWithWatermark(&rules, "p", events, r.stats.MaxTime)
				got = append(got, recs...)
				st.Duplicates += s.Duplicates
				st.Ignored += s.Ignored
			}
			slices.SortStableFunc(got, compareRecordsForTest)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("sharded sessions differ from the batch:\n got %d %+v\nwant %d %+v", len(got), got, len(want), want)
			}
			if st != wantStats.Stats {
				t.Errorf("stats %+v, want %+v", st, wantStats.Stats)
			}
			if r.stats.MaxTime != wantStats.MaxTime {
				t.Errorf("max time %d, want %d", r.stats.MaxTime, wantStats.MaxTime)
			}
		})
	}
}

func compareRecordsForTest(a, b session.Record) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if a.Start != b.Start {
		return int(a.Start - b.Start)
	}
	return int(a.End - b.End)
}

// backfillEnv runs the backfill activities in Temporal's test activity
// environment, as a worker would.
type backfillEnv struct {
	t   *testing.T
	a   *testActivities
	s3  *miniotest.Server
	hb  any // heartbeat details the next activity starts with
	out string
}

// testActivities registers the engine under its activity names, as
// activities.Activities does, which this package cannot import.
type testActivities struct{ s3 *minio.Client }

func (a *testActivities) PrepareBackfill(ctx context.Context, in PrepareInput) (Manifest, error) {
	return Prepare(ctx, a.s3, in)
}

func (a *testActivities) RouteBackfillInput(ctx context.Context, in RouteInput) (Routed, error) {
	return Route(ctx, a.s3, in)
}

func (a *testActivities) SessionizeBackfillShard(ctx context.Context, in ShardInput) (ShardResult, error) {
	return SessionizeShard(ctx, a.s3, in)
}

func (a *testActivities) CleanupBackfill(ctx context.Context, in CleanupInput) (int, error) {
	return Cleanup(ctx, a.s3, in)
}

func newBackfillEnv(t *testing.T) *backfillEnv {
	srv := miniotest.Start(t)
	return &backfillEnv{t: t, a: &testActivities{s3: srv.Client}, s3: srv,
		out: "s3://" + srv.Bucket + "/bf"}
}

func exec[Out any](e *backfillEnv, fn any, in any) (Out, error) {
	e.t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(e.a)
	if e.hb != nil {
		env.SetHeartbeatDetails(e.hb)
		e.hb = nil
	}
	var out Out
	val, err := env.ExecuteActivity(fn, in)
	if err != nil {
		return out, err
	}
	if err := val.Get(&out); err != nil {
		e.t.Fatalf("decode result: %v", err)
	}
	return out, nil
}

func (e *backfillEnv) put(key string, data []byte) {
	e.t.Helper()
	if _, err := e.s3.Client.PutObject(context.Background(), e.s3.Bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// objects returns every object under prefix with its content.
func (e *backfillEnv) objects(prefix string) map[string][]byte {
	e.t.Helper()
	out := map[string][]byte{}
	for obj := range e.s3.Client.ListObjectsIter(context.Background(), e.s3.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			e.t.Fatal(obj.Err)
		}
		data, err := store.ReadObject(context.Background(), e.s3.Client, e.s3.Bucket, obj.Key)
		if err != nil {
			e.t.Fatal(err)
		}
		out[obj.Key] = data
	}
	return out
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func clickLine(user string, at int64, page, id string) string {
	return fmt.Sprintf(`{"uuid":%q,"event_timestamp":"%d","page_name":%q,"event_id":%q}`, user, at, page, id)
}

// TestBackfillActivities runs the four activities by hand over local files
// and S3 objects of every format and checks the result against the batch
// engine over the same lines concatenated in manifest order.
func TestBackfillActivities(t *testing.T) {
	e := newBackfillEnv(t)
	const t0 = int64(1704067200000)
	minute := int64(time.Minute / time.Millisecond)
	var a, b, c []string // three inputs; users' events spread over all of them
	for i := range 60 {
		at := t0 + int64(i)*7*minute
		a = append(a, clickLine(fmt.Sprintf("u%d", i%5), at, "home", fmt.Sprintf("a%d", i)))
		b = append(b, clickLine(fmt.Sprintf("u%d", i%4), at+3*minute, "cart", fmt.Sprintf("b%d", i)))
		c = append(c, clickLine(fmt.Sprintf("u%d", i%3), at+5*minute, "pay", fmt.Sprintf("c%d", i)))
	}
	a[10] = "garbage"
	b[20] = `{"uuid":"u1"}`
	c[30] = a[31] // a duplicate event id across inputs: counts once
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "in", "_skip"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "in", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1.jsonl.gz", gz(t, strings.Join(a, "\n")+"\n"))
	write("2.jsonl", []byte(strings.Join(b, "\r\n")))
	write("_SUCCESS", nil)
	write(".2.jsonl.crc", []byte("junk"))
	write("_skip/x.jsonl", []byte("junk"))
	e.put("raw/c/part-0.json", []byte(strings.Join(c[:30], "\n")+"\n"))
	e.put("raw/c/part-1.json.gz", gz(t, strings.Join(c[30:], "\n")+"\n"))
	e.put("raw/c/_SUCCESS", nil)
	e.put("raw/cc/not-this.json", []byte("junk")) // a sibling sharing the prefix's text

	inputs := []string{filepath.Join(dir, "in"), "s3://" + e.s3.Bucket + "/raw/c"}
	const id = "0123abcd"
	m, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: id, Out: e.out, Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	if m.Objects != 4 {
		t.Fatalf("manifest has %d objects, want 4 (hidden files and siblings skipped)", m.Objects)
	}
	rules, _ := session.Defaults(session.Clickstream)
	rules.Gap = 10 * time.Minute
	since, until := t0+30*minute, t0+400*minute
	var total RouteStats
	for i := range m.Objects {
		r, err := exec[Routed](e, e.a.RouteBackfillInput, RouteInput{ID: id, Out: e.out, Index: i, Rules: rules,
			Since: since, Until: until, Shards: 3, PartLines: 16})
		if err != nil {
			t.Fatalf("route %d: %v", i, err)
		}
		total.Lines += r.Lines
		total.Events += r.Events
		total.Invalid += r.Invalid
		total.Filtered += r.Filtered
		total.MaxTime = max(total.MaxTime, r.MaxTime)
	}
	var sessions int64
	for shard := range 3 {
		s, err := exec[ShardResult](e, e.a.SessionizeBackfillShard, ShardInput{ID: id, Out: e.out, Pipeline: "clicks",
			Rules: rules, Shard: shard, MaxTime: total.MaxTime})
		if err != nil {
			t.Fatalf("sessionize %d: %v", shard, err)
		}
		sessions += s.Sessions
	}

	// The reference: the batch engine over the inputs concatenated in
	// manifest order (local directory, then the S3 prefix), with the same
	// time range applied.
	var concat []string
	for _, l := range slices.Concat(a, b, c) {
		var ev struct {
			T string `json:"event_timestamp"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.T != "" {
			var at int64
			fmt.Sscan(ev.T, &at)
			if at < since || at >= until {
				continue
			}
		}
		concat = append(concat, l)
	}
	batch := session.Batch{Rules: &rules, Pipeline: "clicks"}
	want, wantStats, err := batch.Run(context.Background(), strings.NewReader(strings.Join(concat, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.ReadSessions(context.Background(), e.s3.Client, e.s3.Bucket, "bf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || sessions != int64(len(want)) {
		t.Errorf("backfill sessions differ from the batch engine's:\n got %d %+v\nwant %d %+v", len(got), got, len(want), want)
	}
	if total.Invalid != 2 || total.Events != wantStats.Events || total.MaxTime != wantStats.MaxTime || total.Filtered == 0 {
		t.Errorf("routing stats %+v; batch %+v", total, wantStats)
	}
	rejects := e.objects("bf/rejects/")
	var rj []string
	for _, data := range rejects {
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r reject
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			rj = append(rj, fmt.Sprintf("%s:%d", filepath.Base(r.Source), r.Line))
		}
	}
	slices.Sort(rj)
	if !slices.Equal(rj, []string{"1.jsonl.gz:11", "2.jsonl:21"}) {
		t.Errorf("rejects %v", rj)
	}

	n, err := exec[int](e, e.a.CleanupBackfill, CleanupInput{ID: id, Out: e.out})
	if err != nil || n == 0 {
		t.Fatalf("cleanup: %d objects, %v", n, err)
	}
	if left := e.objects("bf/_tmp/"); len(left) != 0 {
		t.Errorf("%d intermediate objects left after cleanup", len(left))
	}
}

// TestRouteResumesFromHeartbeat: an attempt that starts with an earlier
// attempt's heartbeat writes only the parts after it, byte for byte what a
// single attempt writes, and ends with the same counts — for gzip JSON
// lines and for Parquet (whose rows are skipped by row group).
func TestRouteResumesFromHeartbeat(t *testing.T) {
	e := newBackfillEnv(t)
	var lines []string
	for i := range 50 {
		lines = append(lines, clickLine(fmt.Sprintf("u%d", i%6), 1704067200000+int64(i)*60_000, "home", fmt.Sprint(i)))
	}
	lines[12] = "{broken"
	e.put("in/a.jsonl.gz", gz(t, strings.Join(lines, "\n")))
	e.put("in/b.parquet", parquetFile(t))
	rules, _ := session.Defaults(session.Clickstream)
	rules.TimeField = "event_timestamp"
	const id = "resume"
	if _, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: id, Out: e.out,
		Inputs: []string{"s3://" + e.s3.Bucket + "/in"}}); err != nil {
		t.Fatal(err)
	}
	for index, r := range []session.Rules{rules, func() session.Rules { r := rules; r.TimeField = "ts"; return r }()} {
		route := RouteInput{ID: id, Out: e.out, Index: index, Rules: r, Shards: 4, PartLines: 2}
		if index == 0 {
			route.PartLines = 10
		}
		whole, err := exec[Routed](e, e.a.RouteBackfillInput, route)
		if err != nil {
			t.Fatal(err)
		}
		written := e.objects("bf/")
		if _, err := removeAll(context.Background(), e.s3.Client, e.s3.Bucket, "bf/"); err != nil {
			t.Fatal(err)
		}
		// The state an attempt that died during part 2 left: parts 0 and 1
		// done, counted by a router that saw their lines.
		partial := newRouter(&r, index, "", 0, 0, 4)
		err = eachInputLine(context.Background(), e.s3.Client, inputObject{URL: "s3://" + e.s3.Bucket + "/in/" + []string{"a.jsonl.gz", "b.parquet"}[index]}, 0,
			func(ln int64, line []byte) error {
				if ln <= 2*route.PartLines {
					partial.add(ln, line)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		partial.stats.Parts = 2
		for key := range written {
			if strings.Contains(key, "/shard=") && (strings.HasSuffix(key, "-00000.sfe") || strings.HasSuffix(key, "-00001.sfe")) {
				partial.stats.Pieces++
			}
		}
		e.put(manifestKey("bf", id, 0), written[manifestKey("bf", id, 0)])
		e.hb = routeProgress{NextPart: 2, Stats: partial.stats}
		resumed, err := exec[Routed](e, e.a.RouteBackfillInput, route)
		if err != nil {
			t.Fatal(err)
		}
		if resumed.ResumedPart != 2 {
			t.Errorf("input %d: resumed at part %d, want 2", index, resumed.ResumedPart)
		}
		resumed.ResumedPart = 0
		if resumed.RouteStats != whole.RouteStats {
			t.Errorf("input %d: resumed stats %+v, want %+v", index, resumed.RouteStats, whole.RouteStats)
		}
		again := e.objects("bf/")
		for key, data := range again {
			if !bytes.Equal(data, written[key]) {
				t.Errorf("input %d: %s differs from the single attempt's", index, key)
			}
			if strings.Contains(key, "-00000.") || strings.Contains(key, "-00001.") {
				t.Errorf("input %d: the resumed attempt rewrote %s of a part it had done", index, key)
			}
		}
		if len(again) == 0 || len(again) >= len(written) {
			t.Errorf("input %d: resumed attempt wrote %d objects, single attempt %d", index, len(again), len(written))
		}
		if _, err := removeAll(context.Background(), e.s3.Client, e.s3.Bucket, "bf/rejects/"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionizeResumesFromHeartbeat: an attempt that starts with an
// earlier attempt's heartbeat writes only the chunks after it, byte for byte
// what one attempt writes.
func TestSessionizeResumesFromHeartbeat(t *testing.T) {
	defer func(n int) { chunkRows = n }(chunkRows)
	chunkRows = 4
	e := newBackfillEnv(t)
	var lines []string
	for i := range 60 {
		lines = append(lines, clickLine(fmt.Sprintf("u%02d", i%20), 1704067200000+int64(i/20)*3_600_000, "home", fmt.Sprint(i)))
	}
	e.put("in/a.jsonl", []byte(strings.Join(lines, "\n")))
	rules, _ := session.Defaults(session.Clickstream)
	const id = "chunks"
	if _, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: id, Out: e.out,
		Inputs: []string{"s3://" + e.s3.Bucket + "/in"}}); err != nil {
		t.Fatal(err)
	}
	routed, err := exec[Routed](e, e.a.RouteBackfillInput, RouteInput{ID: id, Out: e.out, Rules: rules, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	shard := ShardInput{ID: id, Out: e.out, Pipeline: "p", Rules: rules, MaxTime: routed.MaxTime}
	whole, err := exec[ShardResult](e, e.a.SessionizeBackfillShard, shard)
	if err != nil {
		t.Fatal(err)
	}
	written := e.objects("bf/sessions/")
	if whole.Sessions != 60 || whole.Objects != len(written) || len(written) != 15 {
		t.Fatalf("one attempt: %+v, %d objects; want 60 sessions in 15 chunks", whole, len(written))
	}
	if _, err := removeAll(context.Background(), e.s3.Client, e.s3.Bucket, "bf/sessions/"); err != nil {
		t.Fatal(err)
	}
	e.hb = shardProgress{Chunks: 10, Objects: 10}
	resumed, err := exec[ShardResult](e, e.a.SessionizeBackfillShard, shard)
	if err != nil {
		t.Fatal(err)
	}
	again := e.objects("bf/sessions/")
	if resumed.ResumedChunk != 10 || resumed.Objects != 15 || resumed.Sessions != 60 || len(again) != 5 {
		t.Errorf("resumed: %+v, %d objects written; want chunks 10 to 14 only", resumed, len(again))
	}
	for key, data := range again {
		if !bytes.Equal(data, written[key]) {
			t.Errorf("%s differs from the single attempt's", key)
		}
	}
}

func TestListLocalFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b.jsonl", "sub/a.jsonl", "_SUCCESS", "sub/.hidden"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(data, "b.jsonl"), filepath.Join(data, "c.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(data, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := listLocal(filepath.Join(dir, "link"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range got {
		rel, _ := filepath.Rel(data, o.URL)
		names = append(names, rel)
	}
	if want := []string{"b.jsonl", "c.jsonl", "sub/a.jsonl"}; !slices.Equal(names, want) {
		t.Errorf("listed %v, want %v", names, want)
	}
}

func TestBackfillBadInputsAreNotRetried(t *testing.T) {
	e := newBackfillEnv(t)
	rules, _ := session.Defaults(session.Clickstream)
	e.put("in/broken.json.gz", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 'x', 'y', 'z'})
	for name, call := range map[string]func() error{
		"missing local path": func() error {
			_, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: "x1", Out: e.out,
				Inputs: []string{filepath.Join(t.TempDir(), "nope")}})
			return err
		},
		"empty prefix": func() error {
			_, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: "x1", Out: e.out,
				Inputs: []string{"s3://" + e.s3.Bucket + "/nothing-here"}})
			return err
		},
		"relative path": func() error {
			_, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: "x1", Out: e.out, Inputs: []string{"in/x"}})
			return err
		},
		"bad id": func() error {
			_, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: "../x", Out: e.out})
			return err
		},
		"corrupt gzip": func() error {
			if _, err := exec[Manifest](e, e.a.PrepareBackfill, PrepareInput{ID: "x2", Out: e.out,
				Inputs: []string{"s3://" + e.s3.Bucket + "/in/broken.json.gz"}}); err != nil {
				return err
			}
			_, err := exec[Routed](e, e.a.RouteBackfillInput, RouteInput{ID: "x2", Out: e.out, Rules: rules, Shards: 2})
			return err
		},
	} {
		err := call()
		var appErr *temporal.ApplicationError
		if err == nil || !errors.As(err, &appErr) || !appErr.NonRetryable() {
			t.Errorf("%s: error %v, want a non-retryable application error", name, err)
		}
	}
}
