package ingest

import "sort"

// offsetTracker follows a partition's messages from read to acknowledged.
// Messages are read in offset order and acknowledged in any order; the
// partition may be committed up to the first message not yet acknowledged,
// never past it. Not safe for concurrent use: its claim owns it.
type offsetTracker struct {
	pending []pendingOffset // read, in offset order; a prefix may be done
	head    int
}

type pendingOffset struct {
	off  int64
	done bool
}

// read registers the next message.
func (o *offsetTracker) read(off int64) {
	o.pending = append(o.pending, pendingOffset{off: off})
}

// ack marks a message acknowledged. Unknown offsets are ignored.
func (o *offsetTracker) ack(off int64) {
	live := o.pending[o.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].off >= off })
	if i < len(live) && live[i].off == off {
		live[i].done = true
	}
}

// advance drops the acknowledged prefix. It returns the offset to commit
// (the one after the last dropped message) and how many were dropped; ok is
// false when the first pending message is not acknowledged yet.
func (o *offsetTracker) advance() (next int64, n int64, ok bool) {
	for o.head < len(o.pending) && o.pending[o.head].done {
		next, ok = o.pending[o.head].off+1, true
		o.head++
		n++
	}
	if o.head == len(o.pending) {
		o.pending, o.head = o.pending[:0], 0
	} else if o.head > 1024 && o.head > len(o.pending)/2 {
		o.pending = append(o.pending[:0], o.pending[o.head:]...)
		o.head = 0
	}
	return next, n, ok
}

// outstanding is how many messages are read and not yet acknowledged or
// dropped.
func (o *offsetTracker) outstanding() int { return len(o.pending) - o.head }

// first returns the first offset not yet dropped.
func (o *offsetTracker) first() (int64, bool) {
	if o.head == len(o.pending) {
		return 0, false
	}
	return o.pending[o.head].off, true
}
