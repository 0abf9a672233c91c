package session

import (
	"context"
	"io"
	"runtime"
	"sync"
)

// Keyed is an event with its key, as the batch paths hold them.
type Keyed struct {
	Key string
	Event
}

// Batch sessionizes a finite input: every event is known up front, so the
// watermark at the end is the largest event time of the input (docs/DESIGN.md §3,
// batch end of input). It runs the same Tracker as the workflows, once per
// key, with the input position (line number) as arrival order.
type Batch struct {
	Rules    *Rules
	Pipeline string
	// Workers is the number of goroutines that decode and sessionize;
	// default GOMAXPROCS.
	Workers int
	// OnInvalid is called, in input order, for each line that is not a valid
	// event; line numbers start at 1. Returning an error stops the run with
	// that error (strict mode). Nil skips invalid lines silently.
	OnInvalid func(line int64, raw []byte, err error) error
}

// BatchStats count a batch run's input and output.
type BatchStats struct {
	Lines    int64 `json:"lines"`    // non-blank input lines
	Events   int64 `json:"events"`   // valid events
	Invalid  int64 `json:"invalid"`  // lines that failed decoding
	Sessions int64 `json:"sessions"` // records produced
	Stats          // duplicates and ignored events (never late in a batch)
	MaxTime  int64 `json:"max_time_ms"`
}

// Run reads JSON lines from r and returns the sessions sorted by key, then
// start time.
func (b *Batch) Run(ctx context.Context, r io.Reader) ([]Record, BatchStats, error) {
	sorted, stats, err := b.RunSorted(ctx, r)
	if err != nil {
		return nil, stats, err
	}
	return sorted.records(b.workers()), stats, nil
}

// RunSorted is Run that hands the sessions over where the sessionizing left
// them, in order, without copying them into one slice: for a caller that
// writes them out, as `starter sessionize` does.
func (b *Batch) RunSorted(ctx context.Context, r io.Reader) (*Sorted, BatchStats, error) {
	workers := b.workers()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	chunks := make(chan chunk, workers)
	results := make(chan decoded, workers)
	go func() {
		defer close(chunks)
		if err := readChunks(ctx, r, chunks); err != nil {
			cancel(err)
		}
	}()
	var wg sync.WaitGroup
	// Each worker's events and page numbers, read after wg.Wait.
	stores, pages := make([]*eventStore, workers), make([][]string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cd := chunkDecoder{dec: NewDecoder(b.Rules), store: &eventStore{worker: w}}
			defer func() { stores[w], pages[w] = cd.store, cd.dec.pageNames }()
			for c := range chunks {
				res := cd.decode(c)
				if c.pooled != nil {
					chunkPool.Put(c.pooled)
				}
				select {
				case results <- res:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	// Results arrive out of order; they are taken in input order so that
	// invalid lines are reported in order and strict mode stops at the first.
	var stats BatchStats
	stats.MaxTime = NoWatermark
	held := make(map[int]decoded)
	next := 0
	for res := range results {
		held[res.index] = res
		for {
			d, ok := held[next]
			if !ok {
				break
			}
			delete(held, next)
			next++
			stats.Lines += d.lines
			stats.Invalid += int64(len(d.invalid))
			stats.MaxTime = max(stats.MaxTime, d.maxTime)
			stats.Events += d.events
			if b.OnInvalid == nil || context.Cause(ctx) != nil {
				continue
			}
			for _, inv := range d.invalid {
				if err := b.OnInvalid(inv.line, inv.raw, inv.err); err != nil {
					cancel(err)
					break
				}
			}
		}
	}
	if err := context.Cause(ctx); err != nil {
		return nil, stats, err
	}
	sorted, st := sessionizeParts(b.Rules, b.Pipeline, stores, pages, stats.MaxTime, workers)
	stats.Stats = st
	stats.Sessions = int64(sorted.Len())
	return sorted, stats, nil
}

func (b *Batch) workers() int {
	if b.Workers > 0 {
		return b.Workers
	}
	return runtime.GOMAXPROCS(0)
}
