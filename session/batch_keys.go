package session

// keyTable numbers the keys of a part of a batch (sessionizeParts). It looks
// keys up by their 64-bit hash, whose top bits chose the part and whose low
// bits choose the slot. It is an open-addressing table rather than a map: with
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

// reset empties the table, keeping its slots' memory.
func (k *keyTable) reset() {
	clear(k.slots)
	k.names = k.names[:0]
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
