package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cespare/xxhash/v2"
)

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
