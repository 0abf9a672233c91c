package main

import (
	"io"
	"iter"
	"runtime"
	"sync"

	"github.com/sessionflow/sessionflow/session"
)

// writeBatch is about the number of records one goroutine encodes at a
// time: runs are taken whole until a batch holds at least this many.
const writeBatch = 4096

// writeJSON writes one JSON object per record and line, in the order of the
// runs. The records are encoded in batches on every core, a few batches
// ahead of the writer, and written in order: encoding a million records is
// a tenth of a batch run, too much to leave to one core while the other
// idles.
func writeJSON(w io.Writer, runs iter.Seq[[]session.Record]) error {
	ahead := 2 * runtime.GOMAXPROCS(0)
	// Batches go to the writer in order, each with the channel its encoder
	// hands the bytes over on; at most ahead of them are in flight.
	pending := make(chan chan []byte, ahead)
	free := make(chan []byte, ahead)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()

	encode := func(batch [][]session.Record) chan []byte {
		done := make(chan []byte, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			for _, run := range batch {
				for i := range run {
					buf = append(run[i].AppendJSON(buf), '\n')
				}
			}
			done <- buf
		}()
		return done
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pending)
		var batch [][]session.Record
		n := 0
		send := func() bool {
			select {
			case pending <- encode(batch):
				batch, n = nil, 0
				return true
			case <-stop:
				return false
			}
		}
		for run := range runs {
			batch, n = append(batch, run), n+len(run)
			if n >= writeBatch && !send() {
				return
			}
		}
		if n > 0 {
			send()
		}
	}()
	for done := range pending {
		buf := <-done
		if _, err := w.Write(buf); err != nil {
			return err
		}
		select {
		case free <- buf[:0]:
		default:
		}
	}
	return nil
}
