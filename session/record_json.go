package session

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the record as encoding/json would marshal it with HTML
// escaping off (the test holds it to that byte for byte), several times
// faster: batch outputs write hundreds of thousands of records.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"session_id":`...)
	b = AppendJSONString(b, r.SessionID)
	b = append(b, `,"key":`...)
	b = AppendJSONString(b, r.Key)
	b = append(b, `,"pipeline":`...)
	b = AppendJSONString(b, r.Pipeline)
	b = append(b, `,"profile":`...)
	b = AppendJSONString(b, r.Profile)
	b = append(b, `,"session_start_time_ms":`...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, `,"session_end_time_ms":`...)
	b = strconv.AppendInt(b, r.End, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMs, 10)
	b = append(b, `,"event_count":`...)
	b = strconv.AppendInt(b, r.EventCount, 10)
	b = append(b, `,"close_reason":`...)
	b = AppendJSONString(b, string(r.CloseReason))
	if a := r.ClickstreamAttrs; a != nil {
		b = append(b, `,"pages_visited":`...)
		if a.PagesVisited == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, p := range a.PagesVisited {
				if i > 0 {
					b = append(b, ',')
				}
				b = AppendJSONString(b, p)
			}
			b = append(b, ']')
		}
	}
	if a := r.ChargingAttrs; a != nil {
		b = append(b, `,"soc_start":`...)
		b = appendFloat(b, a.SocStart)
		b = append(b, `,"soc_end":`...)
		b = appendFloat(b, a.SocEnd)
		b = append(b, `,"break_count":`...)
		b = strconv.AppendInt(b, a.BreakCount, 10)
		b = append(b, `,"break_ms":`...)
		b = strconv.AppendInt(b, a.BreakMs, 10)
		b = append(b, `,"status":`...)
		b = AppendJSONString(b, a.Status)
	}
	if r.ClosedAtMs != 0 {
		b = append(b, `,"closed_at_ms":`...)
		b = strconv.AppendInt(b, r.ClosedAtMs, 10)
	}
	return append(b, '}')
}

const hex = "0123456789abcdef"

// AppendJSONString quotes s the way encoding/json does without HTML
// escaping: control characters as \uXXXX (with the short forms for \b \f
// \n \r \t), invalid UTF-8 as U+FFFD, and U+2028/U+2029 escaped. Every
// hand-written JSON encoder of the project uses it.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none of them needs a look: most
		// strings (ids, keys, pages) need none at all.
		for i+8 <= len(s) && plainJSON(s[i:i+8]) {
			i += 8
		}
		if i == len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainJSON reports whether the eight bytes of s are ASCII that a JSON
// string holds as is: no control character, quote or backslash. It may say
// no for such bytes, never yes for others.
func plainJSON(s string) bool {
	w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	const ones, high = 0x0101010101010101, 0x8080808080808080
	control := (w - 0x20*ones) &^ w // high bit of the first byte below 0x20
	quote := (w ^ '"'*ones - ones) &^ (w ^ '"'*ones)
	backslash := (w ^ '\\'*ones - ones) &^ (w ^ '\\'*ones)
	return (w|control|quote|backslash)&high == 0
}

// appendFloat formats like encoding/json: shortest representation, with
// exponent notation only for very small or large magnitudes. NaN and
// infinities, which JSON cannot hold, become null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
