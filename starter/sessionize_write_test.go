package main

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/sessionflow/sessionflow/session"
)

// runsOf cuts records into runs of up to size records, as keys' runs.
func runsOf(records []session.Record, size int) iter.Seq[[]session.Record] {
	return func(yield func([]session.Record) bool) {
		for i := 0; i < len(records); i += size {
			if !yield(records[i:min(len(records), i+size)]) {
				return
			}
		}
	}
}

// TestWriteJSONInOrder holds the parallel writer to one record a line, in
// the records' order, whatever the count's relation to the batch size and
// the runs' sizes.
func TestWriteJSONInOrder(t *testing.T) {
	for _, c := range []struct{ n, run int }{
		{0, 1}, {1, 1}, {writeBatch - 1, 1}, {writeBatch, 3}, {writeBatch + 1, 1}, {5*writeBatch + 17, 7},
		{3 * writeBatch, 2 * writeBatch}, // runs bigger than a batch
	} {
		n := c.n
		t.Run(fmt.Sprint(n, "/", c.run), func(t *testing.T) {
			records := make([]session.Record, n)
			var want []byte
			for i := range records {
				records[i] = session.Record{SessionID: fmt.Sprintf("k%d/%d", i, i), Key: fmt.Sprintf("k%d", i), Start: int64(i),
					ClickstreamAttrs: &session.ClickstreamAttrs{PagesVisited: []string{"p"}}}
				want = append(records[i].AppendJSON(want), '\n')
			}
			var got bytes.Buffer
			if err := writeJSON(&got, runsOf(records, c.run)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%d records: output differs from AppendJSON in order (%d bytes, want %d)", n, got.Len(), len(want))
			}
		})
	}
}

// failAfter is a writer that fails from its n-th write on.
type failAfter struct{ n int }

var errFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errFull
	}
	f.n--
	return len(p), nil
}

// TestWriteJSONStopsAtWriteError returns the writer's error, and returns
// at all: the encoders ahead of the failed write must not be left blocked.
func TestWriteJSONStopsAtWriteError(t *testing.T) {
	records := make([]session.Record, 20*writeBatch)
	for _, after := range []int{0, 1, 7} {
		if err := writeJSON(&failAfter{n: after}, runsOf(records, 3)); !errors.Is(err, errFull) {
			t.Errorf("failing after %d writes: err %v, want %v", after, err, errFull)
		}
	}
}
