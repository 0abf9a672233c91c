package session

import (
	"cmp"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

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
