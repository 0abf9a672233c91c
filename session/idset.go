package session

// idSet is the set of event identities applied to a tracker's open session.
// A session holds a handful of them, which a slice finds faster than a map
// can hash one; past smallIDs it moves them into a map, for the long
// sessions of telemetry. Its zero value is an empty set.
type idSet struct {
	small []uint64
	big   map[uint64]struct{} // all of them, once there are more than smallIDs
}

// smallIDs is the most identities an idSet keeps in its slice.
const smallIDs = 32

func (s *idSet) has(id uint64) bool {
	if s.big != nil {
		_, ok := s.big[id]
		return ok
	}
	for _, x := range s.small {
		if x == id {
			return true
		}
	}
	return false
}

// add puts id in the set; it must not be there yet.
func (s *idSet) add(id uint64) {
	if s.big != nil {
		s.big[id] = struct{}{}
		return
	}
	if len(s.small) < smallIDs {
		s.small = append(s.small, id)
		return
	}
	s.big = make(map[uint64]struct{}, 2*smallIDs)
	for _, x := range s.small {
		s.big[x] = struct{}{}
	}
	s.big[id] = struct{}{}
	s.small = s.small[:0]
}

func (s *idSet) len() int {
	if s.big != nil {
		return len(s.big)
	}
	return len(s.small)
}

// clear empties the set, keeping the slice's memory for the next session.
func (s *idSet) clear() {
	s.small, s.big = s.small[:0], nil
}

// appendTo appends the identities to dst, in no particular order.
func (s *idSet) appendTo(dst []uint64) []uint64 {
	if s.big == nil {
		return append(dst, s.small...)
	}
	//workflowcheck:ignore map order does not matter: callers sort the identities
	for id := range s.big {
		dst = append(dst, id)
	}
	return dst
}
