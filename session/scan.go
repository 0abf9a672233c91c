package session

import (
	"encoding/binary"
	"math/bits"
	"strings"

	"github.com/valyala/fastjson"
)

// The fast path of Decode. Building fastjson's tree of every value costs
// more than all the rules together, though the rules read a handful of
// fields; scan reads a line in one pass, keeps the fields the rules name and
// only checks the syntax of the rest.
//
// It must read every line exactly as decodeReference does, so it takes only
// lines it is sure of and leaves the others, valid or not, to fastjson (a
// differential fuzz test holds the two together):
//   - any backslash: escapes, which fastjson unescapes and then validates
//     the whole line strictly;
//   - a field the rules read that is an object or an array (its identity is
//     fastjson's re-encoding of it) and an array on a field's path (a path
//     indexes arrays);
//   - nesting deeper than maxScanDepth;
//   - NaN, Inf and the like, and every syntax error, so that fastjson both
//     decides and words the rejection.
//
// Where fastjson is lenient without a backslash, scan is lenient alike:
// control characters and invalid UTF-8 in strings, and number tokens (any
// run of digits, signs, dots and exponents).

// maxScanDepth bounds the nesting scan follows; fastjson's own limit,
// fastjson.MaxDepth, is higher.
const maxScanDepth = 64

// pathNode is one name of the fields' paths, merged into a tree: the paths
// key=user.id and page=user.page make one node "user" with two children.
type pathNode struct {
	name   string
	fields uint8  // bit f: field f's path ends here
	bit    uint64 // the node's bit in scanner.seen
	kids   []pathNode
}

// newPathTree merges the paths, or returns nil when scan cannot serve them.
func newPathTree(paths [numFields][]string) []pathNode {
	if paths[fieldKey] == nil || paths[fieldTime] == nil {
		return nil // an empty path reads the whole object
	}
	var root []pathNode
	nodes := 0
	for f, path := range paths {
		level := &root
		for i, name := range path {
			if strings.ContainsRune(name, '\\') {
				return nil // fastjson unescapes the object's keys to look it up
			}
			j := 0
			for j < len(*level) && (*level)[j].name != name {
				j++
			}
			if j == len(*level) {
				if nodes == 64 {
					return nil // more than scanner.seen has bits for
				}
				*level = append(*level, pathNode{name: name, bit: 1 << nodes})
				nodes++
			}
			n := &(*level)[j]
			if i == len(path)-1 {
				n.fields |= 1 << f
			}
			level = &n.kids
		}
	}
	return root
}

// scan reads line into s.vals along tree, reporting false when it leaves the
// line to decodeReference.
func (s *scanner) scan(tree []pathNode, line []byte) bool {
	s.b = line
	s.space()
	if !s.next('{') || !s.object(tree, 1) {
		return false
	}
	s.space()
	return s.pos == len(s.b)
}

type scanner struct {
	b    []byte
	pos  int
	seen uint64 // the path nodes met: fastjson reads the first of equal keys
	// ascii says the last string str read is all ASCII.
	ascii bool
	vals  [numFields]value
	// shape, when set, is the top-level members of the lines before, as
	// the decoder keeps them (shape).
	shape *shape
}

// shape predicts a line's top-level member names from the lines before:
// lines of one source carry the same names in the same order. A member
// whose bytes start with the predicted `"name":` is that name, with no
// string to scan for it and no name to look up; any other is read in full
// and becomes the prediction.
type shape struct {
	members []member
}

// member is a top-level member name as it appears, quotes and colon
// included, and its node, nil for a name the rules do not read.
type member struct {
	token string
	node  *pathNode
}

// maxShape is the most top-level members a shape follows.
const maxShape = 16

// space skips what fastjson takes for white space.
func (s *scanner) space() {
	b, i := s.b, s.pos
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	s.pos = i
}

// str reads the rest of a string whose '"' is behind. A backslash anywhere
// outside a string is a syntax error, so a line with no backslash in its
// strings has none at all.
//
// It notes in s.ascii whether the string is all ASCII, and so valid UTF-8
// with no need to check; it may say no for an ASCII string (the word that
// holds the closing quote is looked at whole), never yes for another.
func (s *scanner) str() ([]byte, bool) {
	b, start := s.b, s.pos
	i := start
	var or uint64 // of the bytes looked at: their high bits
	// Eight bytes at a time: a byte loop costs more than the rest of scan.
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		or |= w
		if m := zeroByte(w^quotes) | zeroByte(w^backslashes); m != 0 {
			i += bits.TrailingZeros64(m) / 8
			break
		}
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			s.pos = i + 1
			s.ascii = or&(0x80*ones) == 0
			return b[start:i], true
		case '\\':
			return nil, false
		}
		or |= uint64(b[i])
	}
	return nil, false
}

const (
	ones        = 0x0101010101010101
	quotes      = '"' * ones
	backslashes = '\\' * ones
)

// zeroByte has the high bit set of the first zero byte of w, and possibly
// of later bytes, but of no byte before.
func zeroByte(w uint64) uint64 {
	return (w - ones) &^ w & (0x80 * ones)
}

// next consumes c if it comes next.
func (s *scanner) next(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// object reads the members of an object whose '{' is behind, looking the
// names up among nodes, and its '}'.
func (s *scanner) object(nodes []pathNode, depth int) bool {
	s.space()
	if s.next('}') {
		return true
	}
	for m := 0; ; m++ {
		var n *pathNode
		var ok bool
		if sh := s.shape; depth == 1 && sh != nil && m < len(sh.members) && s.predicted(sh.members[m].token) {
			n = sh.members[m].node
		} else {
			start := s.pos
			var name []byte
			if name, ok = s.name(); !ok {
				return false
			}
			for i := range nodes {
				if nodes[i].name == string(name) {
					n = &nodes[i]
					break
				}
			}
			if depth == 1 && sh != nil && m < maxShape {
				s.learn(m, start, len(name), n)
			}
		}
		if n != nil && s.seen&n.bit == 0 {
			s.seen |= n.bit
			ok = s.wanted(n, depth)
		} else {
			ok = s.skip(depth)
		}
		if !ok {
			return false
		}
		s.space()
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// predicted consumes token, a member's `"name":`, and the white space after
// it, if the line goes on with it.
func (s *scanner) predicted(token string) bool {
	if len(s.b)-s.pos < len(token) || string(s.b[s.pos:s.pos+len(token)]) != token {
		return false
	}
	s.pos += len(token)
	s.space()
	return true
}

// learn makes the member m just read, whose name of n bytes started at
// start, the shape's m-th: when its bytes are `"name":` with nothing between,
// which is what predicted matches.
func (s *scanner) learn(m, start, n int, node *pathNode) {
	sh := s.shape
	end := start + n + 3
	if m > len(sh.members) || end > len(s.b) || s.b[start] != '"' || s.b[end-2] != '"' || s.b[end-1] != ':' {
		return
	}
	sh.members = append(sh.members[:m], member{token: string(s.b[start:end]), node: node})
}

// name reads a member's name and the ':' after it.
func (s *scanner) name() ([]byte, bool) {
	s.space()
	if !s.next('"') {
		return nil, false
	}
	name, ok := s.str()
	if !ok {
		return nil, false
	}
	s.space()
	if !s.next(':') {
		return nil, false
	}
	s.space()
	return name, true
}

// wanted reads the value of node n: the fields that end there, or the
// object the paths go on into.
func (s *scanner) wanted(n *pathNode, depth int) bool {
	if c := s.peek(); c == '{' || c == '[' {
		if c == '[' || n.fields != 0 || depth == maxScanDepth {
			return false
		}
		s.pos++
		return s.object(n.kids, depth+1)
	}
	t, text, ok := s.scalar()
	if !ok {
		return false
	}
	ascii := t == fastjson.TypeString && s.ascii
	for fs := n.fields; fs != 0; fs &= fs - 1 {
		// Field by field: a composite literal copied in costs a stalled load.
		v := &s.vals[bits.TrailingZeros8(fs)]
		v.t, v.text, v.ok, v.ascii = t, text, true, ascii
	}
	return true
}

// skip checks the syntax of a value it has no use for.
func (s *scanner) skip(depth int) bool {
	var objects uint64 // bit i: the container i levels down is an object
	open := 0
	for {
		// A value starts here.
		if c := s.peek(); c == '{' || c == '[' {
			if depth+open == maxScanDepth {
				return false
			}
			s.pos++
			s.space()
			if !s.next(c + 2) { // '}' is '{'+2, ']' is '['+2
				// Not empty: its first value starts next.
				objects &^= 1 << open
				if c == '{' {
					objects |= 1 << open
					if _, ok := s.name(); !ok {
						return false
					}
				}
				open++
				continue
			}
		} else if _, _, ok := s.scalar(); !ok {
			return false
		}
		// A value ended: close the containers that end with it.
		for {
			if open == 0 {
				return true
			}
			s.space()
			obj := objects&(1<<(open-1)) != 0
			if s.next(',') {
				if obj {
					if _, ok := s.name(); !ok {
						return false
					}
				} else {
					s.space()
				}
				break
			}
			if (obj && s.next('}')) || (!obj && s.next(']')) {
				open--
				continue
			}
			return false
		}
	}
}

// peek returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.pos < len(s.b) {
		return s.b[s.pos]
	}
	return 0
}

// scalar reads a string, number or literal.
func (s *scanner) scalar() (fastjson.Type, []byte, bool) {
	start := s.pos
	if start >= len(s.b) {
		return 0, nil, false
	}
	c := s.b[start]
	switch c {
	case '"':
		s.pos++
		text, ok := s.str()
		return fastjson.TypeString, text, ok
	case 't':
		return s.literal(fastjson.TypeTrue, "true")
	case 'f':
		return s.literal(fastjson.TypeFalse, "false")
	case 'n':
		return s.literal(fastjson.TypeNull, "null")
	}
	// fastjson takes any run of these for a number, and its text is what
	// the rules read; only a lone sign has a meaning of its own (-Inf).
	for s.pos < len(s.b) && numberByte[s.b[s.pos]] {
		s.pos++
	}
	if n := s.pos - start; n == 0 || n == 1 && (c == '-' || c == '+') {
		return 0, nil, false
	}
	return fastjson.TypeNumber, s.b[start:s.pos], true
}

func (s *scanner) literal(t fastjson.Type, lit string) (fastjson.Type, []byte, bool) {
	if len(s.b)-s.pos < len(lit) || string(s.b[s.pos:s.pos+len(lit)]) != lit {
		return 0, nil, false
	}
	text := s.b[s.pos : s.pos+len(lit)]
	s.pos += len(lit)
	return t, text, true
}

var numberByte = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'.': true, '-': true, '+': true, 'e': true, 'E': true,
}
