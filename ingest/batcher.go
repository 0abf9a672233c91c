package ingest

import (
	"time"

	"github.com/sessionflow/sessionflow/session"
)

// keyBuffer is one key's events waiting to be signalled, with the offsets
// they came from.
type keyBuffer struct {
	key     string
	events  []session.Event
	offsets []int64
	bytes   int
	first   int64 // earliest event time
	last    int64 // latest event time
	created time.Time
	taken   bool // handed out; a stale entry of the age queue
}

// batcher buffers a partition's events per key. A buffer is handed out for
// signalling when it reaches BatchEvents or BatchBytes, or is maxAge (the
// max hold) old. Not safe for concurrent use: its claim owns it.
type batcher struct {
	maxEvents, maxBytes int
	maxAge              time.Duration
	keys                map[string]*keyBuffer
	byAge               []*keyBuffer // in creation order
	events, bytes       int          // buffered in total
}

// newBatcher takes the hold from l.MaxHold, which the caller has resolved
// (Limits.Hold): the batcher does not know the rules.
func newBatcher(l Limits) *batcher {
	return &batcher{maxEvents: l.BatchEvents, maxBytes: l.BatchBytes, maxAge: l.MaxHold,
		keys: map[string]*keyBuffer{}}
}

// eventBytes estimates an event's size in the signal's JSON payload.
func eventBytes(e session.Event) int { return 96 + len(e.Page) }

// add buffers an event of key (whose bytes it does not keep). It returns
// the key's buffer if that is now full.
func (b *batcher) add(key []byte, e session.Event, off int64, now time.Time) *keyBuffer {
	kb := b.keys[string(key)]
	if kb == nil {
		kb = &keyBuffer{key: string(key), first: e.Time, last: e.Time, created: now}
		b.keys[kb.key] = kb
		b.byAge = append(b.byAge, kb)
	}
	size := eventBytes(e)
	kb.events = append(kb.events, e)
	kb.offsets = append(kb.offsets, off)
	kb.bytes += size
	kb.first, kb.last = min(kb.first, e.Time), max(kb.last, e.Time)
	b.events++
	b.bytes += size
	if len(kb.events) >= b.maxEvents || kb.bytes >= b.maxBytes {
		b.take(kb)
		return kb
	}
	return nil
}

func (b *batcher) take(kb *keyBuffer) {
	delete(b.keys, kb.key)
	kb.taken = true
	b.events -= len(kb.events)
	b.bytes -= kb.bytes
}

// due hands out the buffers that are maxAge old at now.
func (b *batcher) due(now time.Time) []*keyBuffer {
	var out []*keyBuffer
	i := 0
	for ; i < len(b.byAge); i++ {
		kb := b.byAge[i]
		if kb.taken {
			continue
		}
		if now.Sub(kb.created) < b.maxAge {
			break
		}
		b.take(kb)
		out = append(out, kb)
	}
	b.byAge = b.byAge[i:]
	return out
}

// all hands out every buffer, oldest first.
func (b *batcher) all() []*keyBuffer {
	var out []*keyBuffer
	for _, kb := range b.byAge {
		if !kb.taken {
			b.take(kb)
			out = append(out, kb)
		}
	}
	b.byAge = b.byAge[:0]
	return out
}
