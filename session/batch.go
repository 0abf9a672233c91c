package session

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Keyed is an event with its key, as the batch paths hold them.
type Keyed struct {
	Key string
	Event
}

// Batch sessionizes a finite input: every event is known up front, so the
// watermark at the end is the largest event time of the input (DESIGN.md §3,
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

// chunkSize is the unit of parallel decoding: big enough to amortize the
// hand-off, small enough to keep both cores busy on modest inputs.
const chunkSize = 1 << 20

type chunk struct {
	index     int
	data      []byte
	firstLine int64   // line number of the chunk's first line
	pooled    *[]byte // data's buffer, for chunkPool once decoded
}

type decoded struct {
	index   int
	shards  []part // by key hash
	invalid []invalidLine
	lines   int64
	maxTime int64
}

// part is a run of decoded events of one shard. Keys travel as ids local to
// the decoding worker (names[worker][id]), so that no later stage hashes a
// key string again.
type part struct {
	worker int
	ids    []int32
	events []Event
}

type invalidLine struct {
	line int64
	raw  []byte
	err  error
}

// Run reads JSON lines from r and returns the sessions sorted by key, then
// start time.
func (b *Batch) Run(ctx context.Context, r io.Reader) ([]Record, BatchStats, error) {
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
	names := make([][]string, workers) // each worker's key ids, read after wg.Wait
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := newKeyTable(w)
			defer func() { names[w] = k.names }()
			d := NewDecoder(b.Rules)
			for c := range chunks {
				res := decodeChunk(d, k, c, workers)
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
	shards := make([][]part, workers)
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
			for i, p := range d.shards {
				stats.Events += int64(len(p.events))
				shards[i] = append(shards[i], p)
			}
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
	records, st := sessionizeShards(b.Rules, b.Pipeline, shards, names, stats.MaxTime)
	stats.Stats = st
	stats.Sessions = int64(len(records))
	return records, stats, nil
}

func (b *Batch) workers() int {
	if b.Workers > 0 {
		return b.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// chunkPool recycles chunk buffers: a fresh megabyte per chunk costs its
// zeroing, a tenth of a batch run's time.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// readChunks cuts the input at line ends into chunks of about chunkSize.
// A chunk's buffer is the decoder's once sent (it returns it to chunkPool),
// so the partial line at its end is copied out first.
func readChunks(ctx context.Context, r io.Reader, out chan<- chunk) error {
	var carry []byte
	line := int64(1)
	for index := 0; ; index++ {
		var buf []byte
		var pooled *[]byte
		if len(carry) <= chunkSize/2 {
			pooled = chunkPool.Get().(*[]byte)
			buf = (*pooled)[:len(carry)]
		} else { // a line longer than half a chunk: room for it and as much again
			buf = make([]byte, len(carry), 2*len(carry))
		}
		copy(buf, carry)
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return fmt.Errorf("read input: %w", err)
		}
		cut := len(buf)
		if !eof {
			cut = bytes.LastIndexByte(buf, '\n') + 1
		}
		carry = append(carry[:0], buf[cut:]...)
		if cut == 0 { // no line end yet: read on with a bigger buffer
			index--
			if pooled != nil {
				chunkPool.Put(pooled)
			}
			if eof {
				return nil
			}
			continue
		}
		select {
		case out <- chunk{index: index, data: buf[:cut], firstLine: line, pooled: pooled}:
		case <-ctx.Done():
			return nil
		}
		line += int64(bytes.Count(buf[:cut], []byte{'\n'}))
		if eof {
			return nil
		}
	}
}

// keyTable numbers the keys one decoding worker has seen. It looks keys up
// by the 64-bit hash the shard is chosen by, so a key is hashed once per
// event, not twice; the rare key whose hash another key already holds goes
// to the string map.
type keyTable struct {
	worker int
	byHash map[uint64]int32
	clash  map[string]int32
	names  []string
}

func newKeyTable(worker int) *keyTable {
	return &keyTable{worker: worker, byHash: make(map[uint64]int32), clash: make(map[string]int32)}
}

func (k *keyTable) id(key []byte, h uint64) int32 {
	id, ok := k.byHash[h]
	if ok && k.names[id] == string(key) {
		return id
	}
	if ok {
		if id, ok := k.clash[string(key)]; ok {
			return id
		}
	}
	id = int32(len(k.names))
	name := string(key)
	k.names = append(k.names, name)
	if _, taken := k.byHash[h]; taken {
		k.clash[name] = id
	} else {
		k.byHash[h] = id
	}
	return id
}

func decodeChunk(d *Decoder, keys *keyTable, c chunk, nshards int) decoded {
	res := decoded{index: c.index, shards: make([]part, nshards), maxTime: NoWatermark}
	per := bytes.Count(c.data, []byte{'\n'})/nshards + 1
	for i := range res.shards {
		res.shards[i] = part{worker: keys.worker, ids: make([]int32, 0, per+per/4), events: make([]Event, 0, per+per/4)}
	}
	data := c.data
	for ln := c.firstLine; len(data) > 0; ln++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		res.lines++
		key, e, err := d.Decode(line)
		if err != nil {
			// The chunk's buffer is reused once decoded.
			res.invalid = append(res.invalid, invalidLine{line: ln, raw: bytes.Clone(line), err: err})
			continue
		}
		e.Seq = ln
		res.maxTime = max(res.maxTime, e.Time)
		h := xxhash.Sum64(key)
		p := &res.shards[h%uint64(nshards)]
		p.ids = append(p.ids, keys.id(key, h))
		p.events = append(p.events, e)
	}
	return res
}

// Sessionize runs the rules over events already decoded, as a batch whose
// end-of-input watermark is the largest event time. Events of a key are taken
// in time order, ties in Seq order. The result is sorted by key, then start.
func Sessionize(r *Rules, pipeline string, events []Keyed) ([]Record, Stats) {
	maxTime := NoWatermark
	k := newKeyTable(0)
	p := part{ids: make([]int32, len(events)), events: make([]Event, len(events))}
	for i, e := range events {
		maxTime = max(maxTime, e.Time)
		p.ids[i] = k.id([]byte(e.Key), xxhash.Sum64String(e.Key))
		p.events[i] = e.Event
	}
	return sessionizeShards(r, pipeline, [][]part{{p}}, [][]string{k.names}, maxTime)
}

// sessionizeShards sessionizes each shard (disjoint keys), in parallel.
func sessionizeShards(r *Rules, pipeline string, shards [][]part, names [][]string, maxTime int64) ([]Record, Stats) {
	out := make([][]Record, len(shards))
	stats := make([]Stats, len(shards))
	var wg sync.WaitGroup
	for i, parts := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], stats[i] = sessionizeShard(r, pipeline, parts, names, maxTime)
		}()
	}
	wg.Wait()
	var total Stats
	for _, s := range stats {
		total.Duplicates += s.Duplicates
		total.Ignored += s.Ignored
	}
	return mergeSorted(out), total
}

func sessionizeShard(r *Rules, pipeline string, parts []part, names [][]string, maxTime int64) ([]Record, Stats) {
	// A counting sort by key, of references rather than events: every key's
	// events are then gathered into one small reused buffer, keys in sorted
	// order, instead of being copied into a second array the size of the
	// input. A key's sessions close in (start, end) order, so the records
	// come out sorted with no sort of their own.
	total := 0
	for _, p := range parts {
		total += len(p.events)
	}
	local := make([][]int32, len(names)) // worker's key id -> shard key index + 1
	for w := range names {
		local[w] = make([]int32, len(names[w]))
	}
	var keys []string
	var counts []int
	index := make(map[string]int32) // consulted once per worker and key
	for _, p := range parts {
		tr, nm := local[p.worker], names[p.worker]
		for j, id := range p.ids {
			k := tr[id] - 1
			if k < 0 {
				var ok bool
				if k, ok = index[nm[id]]; !ok {
					k = int32(len(keys))
					index[nm[id]] = k
					keys = append(keys, nm[id])
					counts = append(counts, 0)
				}
				tr[id] = k + 1
			}
			p.ids[j] = k // from here on, the shard's key index
			counts[k]++
		}
	}
	order := make([]int32, len(keys))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(keys[a], keys[b]) })
	next := make([]int, len(keys)) // where a key's next reference goes
	off, longest := 0, 0
	for _, k := range order {
		next[k] = off
		off += counts[k]
		longest = max(longest, counts[k])
	}
	refs := make([]eventRef, total)
	for pi, p := range parts {
		for i, k := range p.ids {
			refs[next[k]] = eventRef{part: int32(pi), i: int32(i)}
			next[k]++
		}
	}

	records := make([]Record, 0, len(keys))
	t := NewTracker(r, pipeline, "")
	buf := make([]Event, 0, longest)
	off = 0
	for _, k := range order {
		buf = buf[:0]
		for _, ref := range refs[off : off+counts[k]] {
			buf = append(buf, parts[ref.part].events[ref.i])
		}
		records = t.run(records, keys[k], buf, maxTime)
		off += counts[k]
	}
	return records, t.stats
}

// eventRef locates an event among a shard's parts. A part holds one chunk's
// events (a megabyte of input), or all of Sessionize's, which fit in memory
// and so number far fewer than 2^31: int32 indexes suffice.
type eventRef struct{ part, i int32 }

// run resets the tracker to a new key, sessionizes that key's events as a
// complete input and appends the records to dst. It reorders events and
// keeps no reference to them, so the caller may reuse the slice.
func (t *Tracker) run(dst []Record, key string, events []Event, maxTime int64) []Record {
	t.key, t.pending, t.w, t.open = key, events, NoWatermark, false
	clear(t.seen)
	t.seenAt = 0
	t.sorted = slices.IsSortedFunc(events, compareEvents)
	t.closed = dst // Finish closes onto it and hands it back
	recs := t.Finish(maxTime)
	t.pending = nil
	if recs == nil { // nothing closed: dst, with its capacity
		return dst
	}
	return recs
}

// compareRecords orders by key, then start. Two sessions of a key can start
// in the same millisecond only when an end marker closed the first at that
// instant; the end time orders those, and a stable sort keeps close order
// for the rest.
func compareRecords(a, b Record) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
}

// mergeSorted merges lists sorted by compareRecords.
func mergeSorted(lists [][]Record) []Record {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	out := make([]Record, 0, n)
	for {
		best := -1
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || compareRecords(l[0], lists[best][0]) < 0) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, lists[best][0])
		lists[best] = lists[best][1:]
	}
}
