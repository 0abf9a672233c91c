package main

import (
	"io"
	"runtime"
	"sync"

	"github.com/sessionflow/sessionflow/session"
)

// writeBatch is the number of records one goroutine encodes at a time.
const writeBatch = 4096

// writeJSON writes one JSON object per record and line. The records are
// encoded in batches on every core, a few batches ahead of the writer, and
// written in order: encoding a million records is a tenth of a batch run,
// too much to leave to one core while the other idles.
func writeJSON(w io.Writer, records []session.Record) error {
	n := (len(records) + writeBatch - 1) / writeBatch
	ahead := 2 * runtime.GOMAXPROCS(0)
	done := make([]chan []byte, n)
	for i := range done {
		done[i] = make(chan []byte, 1)
	}
	free := make(chan []byte, ahead)
	slots := make(chan struct{}, ahead) // batches encoded and not yet written
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				select {
				case buf = <-free:
				default:
				}
				for j := i * writeBatch; j < min(len(records), (i+1)*writeBatch); j++ {
					buf = append(records[j].AppendJSON(buf), '\n')
				}
				done[i] <- buf
			}()
		}
	}()
	for i := range n {
		buf := <-done[i]
		if _, err := w.Write(buf); err != nil {
			return err
		}
		select {
		case free <- buf[:0]:
		default:
		}
		<-slots
	}
	return nil
}
