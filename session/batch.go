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
	events []storedEvent
}

// storedEvent is an Event as a batch holds it until the rules run, with its
// page as a number in the decoding worker's pages (pages[worker][page]): the
// events are all of the input, and so they hold no pointer for the garbage
// collector to scan, and take 40 bytes rather than 56.
type storedEvent struct {
	time, seq int64
	id        uint64
	soc       float64
	page      int32
	flags     Flags
}

func (s *storedEvent) event(pages []string) Event {
	return Event{Time: s.time, Seq: s.seq, ID: s.id, Flags: s.flags, Page: pages[s.page], SoC: s.soc}
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
	// Each worker's key and page numbers, read after wg.Wait.
	names, pages := make([][]string, workers), make([][]string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cd := chunkDecoder{dec: NewDecoder(b.Rules), keys: newKeyTable(w)}
			defer func() { names[w], pages[w] = cd.keys.names, cd.dec.pageNames }()
			for c := range chunks {
				res := cd.decode(c, workers)
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
	records, st := sessionizeShards(b.Rules, b.Pipeline, shards, names, pages, stats.MaxTime)
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
// event, not twice. It is an open-addressing table rather than a map: with
// the hash and a short key in the slot itself, a lookup costs one cache miss,
// where a map costs one for its slot and two more to compare the key, in the
// names array and in the string's own memory.
type keyTable struct {
	worker int
	slots  []keySlot // a power of two of them, at most 3/4 used
	names  []string
}

// inlineKey is the longest key a slot holds itself; longer ones are compared
// with names.
const inlineKey = 19

type keySlot struct {
	hash uint64
	id   int32 // id+1; 0 is an empty slot
	n    uint8 // key length, or inlineKey+1 for a longer key
	key  [inlineKey]byte
}

func newKeyTable(worker int) *keyTable {
	return &keyTable{worker: worker, slots: make([]keySlot, 1024)}
}

func (k *keyTable) id(key []byte, h uint64) int32 {
	mask := uint64(len(k.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &k.slots[i]
		if s.id == 0 {
			return k.add(s, key, h)
		}
		if s.hash != h {
			continue
		}
		if s.n <= inlineKey {
			if string(s.key[:s.n]) == string(key) {
				return s.id - 1
			}
		} else if k.names[s.id-1] == string(key) {
			return s.id - 1
		}
	}
}

// add gives key the next id and puts it in the empty slot s.
func (k *keyTable) add(s *keySlot, key []byte, h uint64) int32 {
	id := int32(len(k.names))
	k.names = append(k.names, string(key))
	s.hash, s.id, s.n = h, id+1, inlineKey+1
	if len(key) <= inlineKey {
		s.n = uint8(copy(s.key[:], key))
	}
	if len(k.names) > len(k.slots)/4*3 {
		k.grow()
	}
	return id
}

func (k *keyTable) grow() {
	old := k.slots
	k.slots = make([]keySlot, 2*len(old))
	mask := uint64(len(k.slots) - 1)
	for _, s := range old {
		if s.id == 0 {
			continue
		}
		i := s.hash & mask
		for k.slots[i].id != 0 {
			i = (i + 1) & mask
		}
		k.slots[i] = s
	}
}

// chunkDecoder is a decoding worker's state, kept from chunk to chunk.
type chunkDecoder struct {
	dec  *Decoder
	keys *keyTable
	// The keys of the chunk's events, numbered once the chunk is decoded:
	// a lookup in a key table of many keys is a cache miss, and a run of
	// lookups lets the processor wait for several misses at once, where a
	// lookup after each line stalls on every one.
	keyBytes []byte
	pending  []pendingKey
}

type pendingKey struct {
	end  int // of the key in keyBytes
	hash uint64
}

func (cd *chunkDecoder) decode(c chunk, nshards int) decoded {
	res := decoded{index: c.index, shards: make([]part, nshards), maxTime: NoWatermark}
	per := bytes.Count(c.data, []byte{'\n'})/nshards + 1
	for i := range res.shards {
		res.shards[i] = part{worker: cd.keys.worker, ids: make([]int32, 0, per+per/4), events: make([]storedEvent, 0, per+per/4)}
	}
	cd.keyBytes, cd.pending = cd.keyBytes[:0], cd.pending[:0]
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
		key, e, page, err := cd.dec.decode(line)
		if err != nil {
			// The chunk's buffer is reused once decoded.
			res.invalid = append(res.invalid, invalidLine{line: ln, raw: bytes.Clone(line), err: err})
			continue
		}
		res.maxTime = max(res.maxTime, e.Time)
		h := xxhash.Sum64(key)
		p := &res.shards[h%uint64(nshards)]
		p.events = append(p.events, storedEvent{time: e.Time, seq: ln, id: e.ID, soc: e.SoC, page: page, flags: e.Flags})
		// The key may point into the decoder's memory, valid until the next
		// line: it is copied.
		cd.keyBytes = append(cd.keyBytes, key...)
		cd.pending = append(cd.pending, pendingKey{end: len(cd.keyBytes), hash: h})
	}
	start := 0
	for _, k := range cd.pending {
		p := &res.shards[k.hash%uint64(nshards)]
		p.ids = append(p.ids, cd.keys.id(cd.keyBytes[start:k.end], k.hash))
		start = k.end
	}
	return res
}

// Sessionize runs the rules over events already decoded, as a batch whose
// end-of-input watermark is the largest event time. Events of a key are taken
// in time order, ties in Seq order. The result is sorted by key, then start.
func Sessionize(r *Rules, pipeline string, events []Keyed) ([]Record, Stats) {
	maxTime := NoWatermark
	k := newKeyTable(0)
	pages, pageNames := map[string]int32{"": 0}, []string{""}
	p := part{ids: make([]int32, len(events)), events: make([]storedEvent, len(events))}
	for i, e := range events {
		maxTime = max(maxTime, e.Time)
		p.ids[i] = k.id([]byte(e.Key), xxhash.Sum64String(e.Key))
		page, ok := pages[e.Page]
		if !ok {
			page = int32(len(pageNames))
			pages[e.Page] = page
			pageNames = append(pageNames, e.Page)
		}
		p.events[i] = storedEvent{time: e.Time, seq: e.Seq, id: e.ID, soc: e.SoC, page: page, flags: e.Flags}
	}
	return sessionizeShards(r, pipeline, [][]part{{p}}, [][]string{k.names}, [][]string{pageNames}, maxTime)
}

// sessionizeShards sessionizes each shard (disjoint keys), in parallel.
func sessionizeShards(r *Rules, pipeline string, shards [][]part, names, pages [][]string, maxTime int64) ([]Record, Stats) {
	out := make([][][]Record, len(shards))
	stats := make([]Stats, len(shards))
	var wg sync.WaitGroup
	for i, parts := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], stats[i] = sessionizeShard(r, pipeline, parts, names, pages, maxTime)
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

// sessionizeShard returns the shard's records, sorted, in blocks.
func sessionizeShard(r *Rules, pipeline string, parts []part, names, pages [][]string, maxTime int64) ([][]Record, Stats) {
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

	// The records go into blocks, which are never copied to grow: one slice
	// of them all would be, over and over, a quarter larger each time.
	var blocks [][]Record
	records := make([]Record, 0, recordBlock)
	t := NewTracker(r, pipeline, "")
	buf := make([]Event, 0, longest)
	off = 0
	for _, k := range order {
		buf = buf[:0]
		for _, ref := range refs[off : off+counts[k]] {
			p := &parts[ref.part]
			buf = append(buf, p.events[ref.i].event(pages[p.worker]))
		}
		// A key closes at most a session per event; the rare key that may
		// close more than a block holds grows its block.
		if cap(records)-len(records) < min(counts[k], recordBlock) {
			blocks = append(blocks, records)
			records = make([]Record, 0, recordBlock)
		}
		records = t.run(records, keys[k], buf, maxTime)
		off += counts[k]
	}
	return append(blocks, records), t.stats
}

// recordBlock is the number of records in a block of sessionizeShard's.
const recordBlock = 4096

// eventRef locates an event among a shard's parts. A part holds one chunk's
// events (a megabyte of input), or all of Sessionize's, which fit in memory
// and so number far fewer than 2^31: int32 indexes suffice.
type eventRef struct{ part, i int32 }

// run resets the tracker to a new key, sessionizes that key's events as a
// complete input and appends the records to dst. It reorders events and
// keeps no reference to them, so the caller may reuse the slice.
func (t *Tracker) run(dst []Record, key string, events []Event, maxTime int64) []Record {
	t.key, t.pending, t.w, t.open = key, events, NoWatermark, false
	t.last = SessionStart{Start: NoWatermark}
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
func compareRecords(a, b *Record) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
}

// mergeSorted merges lists sorted by compareRecords, each in blocks.
func mergeSorted(lists [][][]Record) []Record {
	n := 0
	for _, blocks := range lists {
		for _, b := range blocks {
			n += len(b)
		}
	}
	out := make([]Record, 0, n)
	for {
		best := -1
		for i, blocks := range lists {
			for len(blocks) > 0 && len(blocks[0]) == 0 {
				blocks = blocks[1:]
			}
			lists[i] = blocks
			if len(blocks) > 0 && (best < 0 || compareRecords(&blocks[0][0], &lists[best][0][0]) < 0) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		head := lists[best]
		out = append(out, head[0][0])
		head[0] = head[0][1:]
	}
}
