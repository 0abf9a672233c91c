package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/sessionflow/sessionflow/session"
)

// TestWriteJSONInOrder holds the parallel writer to one record a line, in
// the records' order, whatever the count's relation to the batch size.
func TestWriteJSONInOrder(t *testing.T) {
	for _, n := range []int{0, 1, writeBatch - 1, writeBatch, writeBatch + 1, 5*writeBatch + 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			records := make([]session.Record, n)
			var want []byte
			for i := range records {
				records[i] = session.Record{SessionID: fmt.Sprintf("k%d/%d", i, i), Key: fmt.Sprintf("k%d", i), Start: int64(i),
					ClickstreamAttrs: &session.ClickstreamAttrs{PagesVisited: []string{"p"}}}
				want = append(records[i].AppendJSON(want), '\n')
			}
			var got bytes.Buffer
			if err := writeJSON(&got, records); err != nil {
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
		if err := writeJSON(&failAfter{n: after}, records); !errors.Is(err, errFull) {
			t.Errorf("failing after %d writes: err %v, want %v", after, err, errFull)
		}
	}
}
