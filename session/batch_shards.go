package session

import (
	"cmp"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Sessionize runs the rules over events already decoded, as a batch whose
// end-of-input watermark is the largest event time. Events of a key are taken
// in time order, ties in Seq order. The result is sorted by key, then start.
func Sessionize(r *Rules, pipeline string, events []Keyed) ([]Record, Stats) {
	maxTime := NoWatermark
	s := &eventStore{}
	pages, pageNames := map[string]int32{"": 0}, []string{""}
	for _, e := range events {
		maxTime = max(maxTime, e.Time)
		page, ok := pages[e.Page]
		if !ok {
			page = int32(len(pageNames))
			pages[e.Page] = page
			pageNames = append(pageNames, e.Page)
		}
		s.add([]byte(e.Key), xxhash.Sum64String(e.Key), storedEvent{time: e.Time, seq: e.Seq, id: e.ID, page: page, flags: e.Flags}, e.SoC)
	}
	sorted, stats := sessionizeParts(r, pipeline, []*eventStore{s}, [][]string{pageNames}, maxTime, 1)
	return sorted.records(1), stats
}

// sessionizeParts sessionizes the stores' events part by part, on up to
// workers goroutines that each take the next part not yet taken, and returns
// the records sorted by key, then start. A key's events are all in one part
// (the part of its hash), so parts are independent; every part's keys are
// sorted once, all together, at the end.
func sessionizeParts(r *Rules, pipeline string, stores []*eventStore, pages [][]string, maxTime int64, workers int) (*Sorted, Stats) {
	results := make([]partResult, partitions)
	stats := make([]Stats, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps := partSessionizer{t: NewTracker(r, pipeline, ""), keys: newKeyTable(w), maxTime: maxTime}
			for {
				p := int(next.Add(1) - 1)
				if p >= partitions {
					break
				}
				if (p == partitions/3 || p == 2*partitions/3) && len(stores) > 0 && stores[0].count > gcAfter {
					runtime.GC()
				}
				results[p] = ps.run(stores, pages, p)
			}
			stats[w] = ps.t.stats
		}()
	}
	wg.Wait()
	var total Stats
	for _, s := range stats {
		total.Duplicates += s.Duplicates
		total.Ignored += s.Ignored
	}
	sorted := &Sorted{parts: results}
	for _, p := range results {
		sorted.keys = append(sorted.keys, p.keys...)
		sorted.n += len(p.records)
	}
	slices.SortFunc(sorted.keys, func(a, b keyRecords) int { return cmp.Compare(a.key, b.key) })
	return sorted, total
}

// gcAfter is the size of input (events of the first store) from which
// sessionizeParts collects garbage a third and two thirds through the parts,
// and Sorted.records before its copy. A part's events are dead once gathered,
// and the records are made as the events die; but a batch runs with few
// collections (the starter sets GOGC to 400), so without these the records
// and the copy would take new memory beside the dead events, some 300 MB of
// the 10M events' 1.2 GB. Most of the heap is events, which hold no
// pointers, and a collection marks only the records.
const gcAfter = 1 << 20

// partResult is a part's records, key by key in sorted key order.
type partResult struct {
	records []Record
	keys    []keyRecords
}

// keyRecords are the records of a key: n of them, from records[first] on.
type keyRecords struct {
	key      string
	part     int32
	first, n int32
}

// partSessionizer is a goroutine's state, reused from part to part.
type partSessionizer struct {
	t       *Tracker
	keys    *keyTable
	maxTime int64
	flat    []storedEvent // the part's events in input order
	flatW   []int32       // the worker of each
	flatSoC []float64     // the SoC of each
	ids     []int32       // the key of each, in keys
	counts  []int32       // events per key
	order   []int32       // key ids, sorted by key
	next    []int32       // counting sort: where a key's next event goes
	buf     []Event       // the part's events, key by key
	recs    []Record      // the part's records, key by key
}

// run sessionizes part p of the stores.
func (ps *partSessionizer) run(stores []*eventStore, pages [][]string, p int) partResult {
	ps.keys.reset()
	ps.gather(stores, p)
	// The part's blocks are copied out: let the garbage collector have
	// them for the records.
	for _, s := range stores {
		s.parts[p] = nil
	}
	n := len(ps.flat)
	if n == 0 {
		return partResult{}
	}
	names := ps.keys.names
	nk := len(names)
	ps.counts = slices.Grow(ps.counts[:0], nk)[:nk]
	clear(ps.counts)
	for _, k := range ps.ids {
		ps.counts[k]++
	}
	ps.order = slices.Grow(ps.order[:0], nk)[:nk]
	for i := range ps.order {
		ps.order[i] = int32(i)
	}
	slices.SortFunc(ps.order, func(a, b int32) int { return cmp.Compare(names[a], names[b]) })
	// A counting sort by key, in sorted key order: each key's events are
	// then a run of buf in input order, as the tracker takes them.
	ps.next = slices.Grow(ps.next[:0], nk)[:nk]
	off := int32(0)
	for _, k := range ps.order {
		ps.next[k] = off
		off += ps.counts[k]
	}
	ps.buf = slices.Grow(ps.buf[:0], n)[:n]
	for i := range ps.flat {
		k := ps.ids[i]
		e := &ps.flat[i]
		ps.buf[ps.next[k]] = Event{Time: e.time, Seq: e.seq, ID: e.id, Flags: e.flags, Page: pages[ps.flatW[i]][e.page], SoC: ps.flatSoC[i]}
		ps.next[k]++
	}

	res := partResult{keys: make([]keyRecords, 0, nk)}
	recs := ps.recs[:0]
	off = 0
	for _, k := range ps.order {
		first := len(recs)
		recs = ps.t.run(recs, names[k], ps.buf[off:off+ps.counts[k]], ps.maxTime)
		res.keys = append(res.keys, keyRecords{key: names[k], part: int32(p), first: int32(first), n: int32(len(recs) - first)})
		off += ps.counts[k]
	}
	// The records are kept at their size: a part's share of a grown slice
	// would be up to twice that, and records are a quarter of the memory.
	res.records = slices.Clone(recs)
	clear(recs) // drop their strings
	ps.recs = recs[:0]
	clear(ps.buf) // drop the page strings
	return res
}

// gather copies part p's events of every store into ps.flat, in input
// order, and numbers their keys in ps.ids. A store's events are in input
// order, and the stores' are merged by Seq, which in a batch is the line
// number. (Sessionize has one store, in the caller's order, whatever its
// Seq.) The key table holds a part's few hundred keys, so a lookup hits the
// cache.
func (ps *partSessionizer) gather(stores []*eventStore, p int) {
	ps.flat, ps.flatW, ps.flatSoC, ps.ids = ps.flat[:0], ps.flatW[:0], ps.flatSoC[:0], ps.ids[:0]
	// A cursor walks a store's blocks of the part: block b, event i, and
	// soc, the next of the block's SoCs.
	type cursor struct{ b, i, soc int }
	add := func(w int, c *cursor) {
		b := &stores[w].parts[p][c.b]
		e := &b.events[c.i]
		start := uint32(0)
		if c.i > 0 {
			start = b.events[c.i-1].keyEnd
		}
		key := b.keys[start:e.keyEnd]
		soc := 0.0
		if e.hasSoC {
			soc = b.socs[c.soc]
			c.soc++
		}
		ps.flat = append(ps.flat, *e)
		ps.flatW = append(ps.flatW, int32(w))
		ps.flatSoC = append(ps.flatSoC, soc)
		// The part's keys share the hash's top bits: its low half is hash
		// enough for a table of a part's keys, and spares hashing again.
		ps.ids = append(ps.ids, ps.keys.id(key, uint64(e.keyHash)))
		if c.i++; c.i == len(b.events) {
			c.b, c.i, c.soc = c.b+1, 0, 0
		}
	}
	if len(stores) == 1 {
		var c cursor
		for c.b < len(stores[0].parts[p]) {
			add(0, &c)
		}
		return
	}
	cur := make([]cursor, len(stores))
	for {
		best := -1
		var seq int64
		for w, s := range stores {
			c := cur[w]
			if c.b >= len(s.parts[p]) {
				continue
			}
			if e := &s.parts[p][c.b].events[c.i]; best < 0 || e.seq < seq {
				best, seq = w, e.seq
			}
		}
		if best < 0 {
			return
		}
		add(best, &cur[best])
	}
}

// Sorted are a batch's records, sorted by key, then start, where the
// sessionizing left them: in runs of a key's records, in parts. Reading
// them as runs spares a large batch the copy into one slice, and its
// memory (Batch.RunSorted); Run makes that copy.
type Sorted struct {
	parts []partResult
	keys  []keyRecords // every part's, sorted by key
	n     int
}

// Len returns the number of records.
func (s *Sorted) Len() int { return s.n }

// Runs yields the records in order, a key's at a time. The slices are the
// batch's own: read them, do not keep or change them.
func (s *Sorted) Runs() iter.Seq[[]Record] {
	return func(yield func([]Record) bool) {
		for _, k := range s.keys {
			if k.n > 0 && !yield(s.parts[k.part].records[k.first:k.first+k.n]) {
				return
			}
		}
	}
}

// records copies the records into one slice, on workers goroutines.
func (s *Sorted) records(workers int) []Record {
	if s.n > gcAfter/8 {
		runtime.GC() // the copy reuses the events' memory
	}
	out := make([]Record, s.n)
	starts := make([]int, len(s.keys)+1)
	for i, k := range s.keys {
		starts[i+1] = starts[i] + int(k.n)
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := len(s.keys)*w/workers, len(s.keys)*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				k := s.keys[i]
				copy(out[starts[i]:starts[i+1]], s.parts[k.part].records[k.first:k.first+k.n])
			}
		}()
	}
	wg.Wait()
	return out
}

// run resets the tracker to a new key, sessionizes that key's events as a
// complete input and appends the records to dst. It reorders events and
// keeps no reference to them, so the caller may reuse the slice.
func (t *Tracker) run(dst []Record, key string, events []Event, maxTime int64) []Record {
	t.key, t.pending, t.w, t.open = key, events, NoWatermark, false
	t.last = SessionStart{Start: NoWatermark}
	t.seen.clear()
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
