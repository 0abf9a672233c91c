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

// decoded is what a chunk's decoding reports in input order; its events
// went to the worker's store.
type decoded struct {
	index   int
	events  int64
	invalid []invalidLine
	lines   int64
	maxTime int64
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
	dec   *Decoder
	store *eventStore
}

func (cd *chunkDecoder) decode(c chunk) decoded {
	res := decoded{index: c.index, maxTime: NoWatermark}
	before := cd.store.count
	data := c.data
	for ln := c.firstLine; len(data) > 0; ln++ {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = bytes.TrimRight(line, "\r")
		}
		// A line that starts an object is not blank: only others need the
		// look for white space (Unicode's, as bytes.TrimSpace has it).
		if len(line) == 0 || line[0] != '{' && len(bytes.TrimSpace(line)) == 0 {
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
		// The key may point into the decoder's memory, valid until the next
		// line: the store copies it.
		cd.store.add(key, xxhash.Sum64(key), storedEvent{time: e.Time, seq: ln, id: e.ID, page: page, flags: e.Flags}, e.SoC)
	}
	res.events = cd.store.count - before
	return res
}
