package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestBatchInvalidLines(t *testing.T) {
	input := strings.Join([]string{
		click("u", 0, "a"),
		`not json`,
		``,
		`{"uuid":"u"}`,
		click("u", mnt, "b"),
		`{"uuid":"","event_timestamp":1}`,
		`{"uuid":"v","event_timestamp":"9999-01-01T00:00:00Z"}`,
		click("v", 2*mnt, "c") + "\r",
	}, "\n") // no final newline
	type inv struct {
		line int64
		err  error
	}
	var got []inv
	b := Batch{Rules: rulesOf(t, Clickstream, nil), Workers: 3, OnInvalid: func(line int64, raw []byte, err error) error {
		got = append(got, inv{line, err})
		return nil
	}}
	recs, stats, err := b.Run(context.Background(), strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	wantInv := []inv{{2, ErrNotJSON}, {4, ErrBadTime}, {6, ErrMissingKey}, {7, ErrTimeRange}}
	if len(got) != len(wantInv) {
		t.Fatalf("invalid lines %v, want %v", got, wantInv)
	}
	for i, w := range wantInv {
		if got[i].line != w.line || !errors.Is(got[i].err, w.err) {
			t.Errorf("invalid %d: line %d %v, want line %d %v", i, got[i].line, got[i].err, w.line, w.err)
		}
	}
	checkSessions(t, recs, []want{{"u", 0, mnt, 2, ReasonEndOfInput}, {"v", 2 * mnt, 2 * mnt, 1, ReasonEndOfInput}})
	if stats.Lines != 7 || stats.Events != 3 || stats.Invalid != 4 || stats.Sessions != 2 {
		t.Errorf("stats %+v", stats)
	}
}

func TestBatchStrictStopsAtFirstInvalid(t *testing.T) {
	var lines []string
	for i := range 50000 {
		lines = append(lines, click(fmt.Sprintf("u%d", i%100), int64(i)*sec, "p"))
	}
	lines[30000] = "{broken"
	lines[45000] = "{broken too"
	stop := errors.New("strict")
	var first int64
	b := Batch{Rules: rulesOf(t, Clickstream, nil), OnInvalid: func(line int64, _ []byte, err error) error {
		first = line
		return stop
	}}
	_, _, err := b.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")))
	if !errors.Is(err, stop) || first != 30001 {
		t.Errorf("err %v at line %d, want the strict error at line 30001", err, first)
	}
}

// TestBatchChunking runs an input of several chunks, with one line longer
// than a chunk, at several worker counts: the result must not depend on how
// the input was cut or spread.
func TestBatchChunking(t *testing.T) {
	var lines []string
	for i := range 40000 {
		lines = append(lines, click(fmt.Sprintf("user-%d", i%700), int64(i)*7*sec, fmt.Sprintf("p%d", i%5)))
	}
	long := fmt.Sprintf(`{"uuid":"user-1","event_timestamp":%d,"page_name":"long","pad":"%s"}`, t0+3*sec, strings.Repeat("x", 3*chunkSize))
	lines = append(lines[:20000], append([]string{long}, lines[20000:]...)...)
	input := strings.Join(lines, "\n") + "\n"

	var results [][]Record
	for _, workers := range []int{1, 2, 5} {
		b := Batch{Rules: rulesOf(t, Clickstream, nil), Workers: workers}
		recs, stats, err := b.Run(context.Background(), strings.NewReader(input))
		if err != nil {
			t.Fatal(err)
		}
		if stats.Events != 40001 {
			t.Fatalf("workers %d: %d events, want 40001", workers, stats.Events)
		}
		results = append(results, recs)
	}
	// The reference: one key at a time through Sessionize, no chunking.
	events := decodeAll(t, rulesOf(t, Clickstream, nil), lines)
	ref, _ := Sessionize(rulesOf(t, Clickstream, nil), "", events)
	var n int64
	for _, r := range ref {
		n += r.EventCount
		// user-1's events come every 4900s; the long line (t0+3s) and the
		// first of them (t0+7s) make one session.
		if r.Key == "user-1" && contains(r.PagesVisited, "long") && (r.Start != t0+3*sec || r.EventCount != 2) {
			t.Errorf("the long line should open user-1's first session of 2 events, got %+v", r)
		}
	}
	if n != 40001 {
		t.Errorf("sessions hold %d events, want 40001", n)
	}
	for i, recs := range results {
		if fmt.Sprint(summarize(recs)) != fmt.Sprint(summarize(ref)) {
			t.Errorf("run %d differs from the unchunked reference", i)
		}
	}
}

// TestBatchInvalidLinesOutliveTheirChunk keeps the raw lines OnInvalid
// receives: they must still read as the input after the run, though the
// chunk buffers they came from were reused for later input.
func TestBatchInvalidLinesOutliveTheirChunk(t *testing.T) {
	var lines, bad []string
	for i := range 300000 { // some 20 chunks, more than are ever in flight
		if i%20000 == 1 {
			l := fmt.Sprintf("not json %d", i)
			lines, bad = append(lines, l), append(bad, l)
			continue
		}
		lines = append(lines, click(fmt.Sprintf("user-%d", i%300), int64(i)*sec, "p"))
	}
	var raws [][]byte
	b := Batch{Rules: rulesOf(t, Clickstream, nil), Workers: 2, OnInvalid: func(_ int64, raw []byte, _ error) error {
		raws = append(raws, raw)
		return nil
	}}
	if _, _, err := b.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n"))); err != nil {
		t.Fatal(err)
	}
	if len(raws) != len(bad) {
		t.Fatalf("%d invalid lines reported, want %d", len(raws), len(bad))
	}
	for i, raw := range raws {
		if string(raw) != bad[i] {
			t.Errorf("invalid line %d reads %.40q after the run, want %q", i, raw, bad[i])
		}
	}
}

// TestKeyTableHashClash gives different keys the same hash: each still gets
// its own id, and the same key always the same one.
func TestKeyTableHashClash(t *testing.T) {
	k := newKeyTable(0)
	steps := []struct {
		key  string
		hash uint64
		want int32
	}{
		{"a", 1, 0},
		{"b", 1, 1}, // clashes with a
		{"c", 1, 2}, // and again
		{"a", 1, 0},
		{"b", 1, 1},
		{"d", 2, 3},
		{"c", 1, 2},
		{"d", 2, 3},
	}
	for i, s := range steps {
		if got := k.id([]byte(s.key), s.hash); got != s.want {
			t.Errorf("step %d: id(%q) = %d, want %d", i, s.key, got, s.want)
		}
	}
	if fmt.Sprint(k.names) != "[a b c d]" {
		t.Errorf("names %v, want [a b c d]", k.names)
	}
}

// TestKeyTableGrows numbers enough keys to grow the table several times:
// short keys and keys too long for a slot, in runs that share a hash.
func TestKeyTableGrows(t *testing.T) {
	k := newKeyTable(0)
	var keys []string
	for i := range 5000 {
		key := fmt.Sprintf("user-%d", i)
		if i%2 == 1 {
			key = strings.Repeat("long-", 4) + key // longer than inlineKey
		}
		keys = append(keys, key)
	}
	hash := func(i int) uint64 { return uint64(i / 3) } // three keys a hash
	for round := range 2 {
		for i, key := range keys {
			if got := k.id([]byte(key), hash(i)); got != int32(i) {
				t.Fatalf("round %d: id(%q) = %d, want %d", round, key, got, i)
			}
		}
	}
	if !slices.Equal(k.names, keys) {
		t.Errorf("names differ from the keys in order of arrival")
	}
	if len(k.slots) < len(keys)*4/3 {
		t.Errorf("%d slots for %d keys: more than 3/4 used", len(k.slots), len(keys))
	}
}
