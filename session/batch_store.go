package session

// partitions is the number of parts a batch's events are spread over by key
// hash as they are decoded. A part is sessionized on its own, by whichever
// goroutine is free, so both cores stay busy to the end; and a part of the
// 10M-event benchmark (some 40,000 events of 400 keys) is small enough that
// grouping its events by key stays in the processor's cache, where one table
// of all the input's keys would miss it on almost every event.
const (
	partitionBits = 8
	partitions    = 1 << partitionBits
)

// storedEvent is an Event as a batch holds it until the rules run. Its key
// is the bytes of its block's keys between the previous event's keyEnd (0
// for a block's first) and its own; its page is a number in the decoding
// worker's pages (pages[worker][page]); its SoC, when it has one (FlagSoC),
// is the next of its block's socs (hasSoC). The events are all of the input, and so
// they hold no pointer for the garbage collector to scan, and take 40 bytes
// rather than 56 and a key string.
type storedEvent struct {
	time, seq int64
	id        uint64
	page      int32
	keyEnd    uint32
	keyHash   uint32 // the low half of the key's hash, for the part's key table
	flags     Flags
	hasSoC    bool // its SoC is in socs, not 0
}

// eventBlock is a run of one part's events in arrival order, with their
// keys and SoCs. Blocks are never copied to grow: a part's events are a
// list of them.
type eventBlock struct {
	events []storedEvent
	keys   []byte
	socs   []float64
}

// Block sizes, in events: a part starts small, so that a small input does
// not cost partitions full blocks per worker, and doubles up to maxBlock.
const (
	minBlock = 16
	maxBlock = 4096
)

// eventStore holds one decoding worker's events, by part. It is not safe for
// concurrent use; each worker has its own.
type eventStore struct {
	worker int
	parts  [partitions][]eventBlock
	count  int64
}

// add appends an event of key, whose hash is h, to its part.
func (s *eventStore) add(key []byte, h uint64, e storedEvent, soc float64) {
	blocks := &s.parts[partOf(h)]
	n := len(*blocks)
	if n == 0 || len((*blocks)[n-1].events) == cap((*blocks)[n-1].events) ||
		uint64(len((*blocks)[n-1].keys))+uint64(len(key)) > maxKeyBytes {
		size := minBlock
		if n > 0 {
			size = min(2*cap((*blocks)[n-1].events), maxBlock)
		}
		*blocks = append(*blocks, eventBlock{events: make([]storedEvent, 0, size), keys: make([]byte, 0, size*12)})
		n++
	}
	b := &(*blocks)[n-1]
	b.keys = append(b.keys, key...)
	e.keyEnd, e.keyHash = uint32(len(b.keys)), uint32(h)
	if soc != 0 || e.flags&FlagSoC != 0 {
		e.hasSoC = true
		b.socs = append(b.socs, soc)
	}
	b.events = append(b.events, e)
	s.count++
}

// maxKeyBytes bounds a block's keys so that keyEnd fits its 32 bits; a key
// longer than that starts a block of its own, and a longer one cannot be on
// a line that a batch reads into memory.
const maxKeyBytes = 1<<32 - 1

// partOf is the part of a key hash: its top bits, as the key tables index
// their slots by the low ones.
func partOf(h uint64) int { return int(h >> (64 - partitionBits)) }
