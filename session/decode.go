package session

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"
)

// Decoding errors. Every error Decode returns wraps exactly one of them, so
// that dead-letter outputs can group by cause.
var (
	ErrNotJSON    = errors.New("not a JSON object")
	ErrMissingKey = errors.New("missing or empty key")
	ErrBadTime    = errors.New("missing or unparseable event time")
	ErrTimeRange  = errors.New("event time out of range")
	ErrBadField   = errors.New("bad field value")
)

// Event times must fall in [1970-01-01, 2100-01-01): one event stamped in the
// year 9999 would otherwise drag the watermark past every real event.
const (
	minTime int64 = 0
	maxTime int64 = 4102444800000
)

// Decoder maps JSON events onto Events with a pipeline's field paths. It
// keeps one parser and an intern table, so decoding allocates nothing per
// field once the pages and keys have been seen.
//
// A Decoder is not safe for concurrent use; give each goroutine its own.
type Decoder struct {
	rules                            *Rules
	p                                fastjson.Parser
	key, time, id, page, status, soc []string
	start, end                       []string
	pages                            map[string]string
}

// NewDecoder returns a decoder for the rules' fields.
func NewDecoder(r *Rules) *Decoder {
	path := func(p string) []string {
		if p == "" {
			return nil
		}
		return strings.Split(p, ".")
	}
	return &Decoder{
		rules: r,
		key:   path(r.KeyField), time: path(r.TimeField), id: path(r.IDField),
		page: path(r.PageField), status: path(r.StatusField), soc: path(r.SoCField),
		start: path(r.StartMarker.Field), end: path(r.EndMarker.Field),
		pages: make(map[string]string),
	}
}

// Decode decodes one JSON event. The key it returns points into the
// decoder's memory and is valid until the next call. The event's ID is the
// hash of its id field, or 0 when it has none (the caller may then set a
// positional identity with PositionID).
func (d *Decoder) Decode(line []byte) (key []byte, e Event, err error) {
	v, perr := d.p.ParseBytes(line)
	if perr != nil {
		return nil, e, fmt.Errorf("%w: %v", ErrNotJSON, perr)
	}
	// The parser keeps an unknown escape such as \q as text; RFC 8259 does
	// not, and such a line must be rejected, not half-read. Only lines with a
	// backslash pay for the check.
	if bytes.IndexByte(line, '\\') >= 0 {
		if verr := fastjson.ValidateBytes(line); verr != nil {
			return nil, e, fmt.Errorf("%w: %v", ErrNotJSON, verr)
		}
	}
	if v.Type() != fastjson.TypeObject {
		return nil, e, fmt.Errorf("%w: got %s", ErrNotJSON, v.Type())
	}
	kv := v.Get(d.key...)
	if kv == nil || kv.Type() != fastjson.TypeString {
		return nil, e, fmt.Errorf("%w: field %q must be a non-empty string", ErrMissingKey, d.rules.KeyField)
	}
	key, _ = kv.StringBytes()
	if len(key) == 0 {
		return nil, e, fmt.Errorf("%w: field %q is empty", ErrMissingKey, d.rules.KeyField)
	}
	if !utf8.Valid(key) {
		return nil, e, fmt.Errorf("%w: field %q is not valid UTF-8", ErrMissingKey, d.rules.KeyField)
	}
	if e.Time, err = d.eventTime(v.Get(d.time...)); err != nil {
		return nil, e, err
	}
	if d.id != nil {
		if iv := v.Get(d.id...); iv != nil {
			e.ID = identity(iv)
		}
	}
	if d.page != nil {
		if pv := v.Get(d.page...); pv != nil && pv.Type() == fastjson.TypeString {
			b, _ := pv.StringBytes()
			if !utf8.Valid(b) {
				return nil, e, fmt.Errorf("%w: field %q is not valid UTF-8", ErrBadField, d.rules.PageField)
			}
			e.Page = d.intern(b)
		}
	}
	if d.status != nil {
		active, err := status(v.Get(d.status...))
		if err != nil {
			return nil, e, fmt.Errorf("%w: field %q: %v", ErrBadField, d.rules.StatusField, err)
		}
		if active {
			e.Flags |= FlagActive
		}
	}
	if d.soc != nil {
		if sv := v.Get(d.soc...); sv != nil && sv.Type() != fastjson.TypeNull {
			f, ok := number(sv)
			if !ok {
				return nil, e, fmt.Errorf("%w: field %q must be a number", ErrBadField, d.rules.SoCField)
			}
			e.SoC = f
			e.Flags |= FlagSoC
		}
	}
	if d.start != nil && matches(v.Get(d.start...), d.rules.StartMarker.Value) {
		e.Flags |= FlagStart
	}
	if d.end != nil && matches(v.Get(d.end...), d.rules.EndMarker.Value) {
		e.Flags |= FlagEnd
	}
	return key, e, nil
}

// PositionID is the identity of an event without an id field: its source
// position, such as "topic/partition/offset" or "file:line".
func PositionID(position string) uint64 { return nonZero(xxhash.Sum64String(position)) }

func identity(v *fastjson.Value) uint64 {
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		if len(b) == 0 {
			return 0
		}
		return nonZero(xxhash.Sum64(b))
	}
	if v.Type() == fastjson.TypeNull {
		return 0
	}
	// Numbers and other literals: their JSON text is their identity.
	var buf [64]byte
	return nonZero(xxhash.Sum64(v.MarshalTo(buf[:0])))
}

// nonZero keeps 0 free to mean "no identity".
func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

func (d *Decoder) intern(b []byte) string {
	if s, ok := d.pages[string(b)]; ok {
		return s
	}
	s := string(b)
	d.pages[s] = s
	return s
}

// eventTime reads epoch numbers (in the rules' unit), numeric strings and
// RFC 3339 / ISO-8601 strings.
func (d *Decoder) eventTime(v *fastjson.Value) (int64, error) {
	if v == nil {
		return 0, fmt.Errorf("%w: field %q is missing", ErrBadTime, d.rules.TimeField)
	}
	var ms int64
	switch v.Type() {
	case fastjson.TypeNumber:
		if n, err := v.Int64(); err == nil {
			ms = d.scale(n)
		} else {
			f, _ := v.Float64()
			ms = d.scaleFloat(f)
		}
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if n, ok := parseDigits(b); ok {
			ms = d.scale(n)
		} else if t, ok := parseTimestamp(b); ok {
			ms = t
		} else if f, err := strconv.ParseFloat(string(b), 64); err == nil {
			ms = d.scaleFloat(f)
		} else {
			return 0, fmt.Errorf("%w: field %q: %q", ErrBadTime, d.rules.TimeField, b)
		}
	default:
		return 0, fmt.Errorf("%w: field %q is a %s", ErrBadTime, d.rules.TimeField, v.Type())
	}
	if ms < minTime || ms >= maxTime {
		return 0, fmt.Errorf("%w: field %q: %d ms is not between 1970 and 2100", ErrTimeRange, d.rules.TimeField, ms)
	}
	return ms, nil
}

// scaleFloat converts a fractional epoch time to milliseconds; anything
// absurd maps to MaxInt64, which the range check rejects.
func (d *Decoder) scaleFloat(f float64) int64 {
	if math.IsNaN(f) || math.Abs(f) > 1e19 {
		return math.MaxInt64
	}
	switch d.rules.TimeUnit {
	case time.Second:
		f *= 1e3
	case time.Microsecond:
		f /= 1e3
	case time.Nanosecond:
		f /= 1e6
	}
	if math.Abs(f) > 9e18 {
		return math.MaxInt64
	}
	return int64(math.Floor(f))
}

func (d *Decoder) scale(n int64) int64 {
	switch d.rules.TimeUnit {
	case time.Second:
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return math.MaxInt64
		}
		return n * 1000
	case time.Microsecond:
		return floorDiv(n, 1000)
	case time.Nanosecond:
		return floorDiv(n, 1000000)
	}
	return n
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// parseDigits parses an optionally signed decimal integer without allocating.
func parseDigits(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// timeLayouts are tried in order; fractional seconds are accepted by all.
var timeLayouts = []string{
	time.RFC3339Nano,               // 2023-07-23T00:00:00Z, …+02:00
	"2006-01-02T15:04:05Z0700",     // 2016-07-28T04:19:28.000+0000
	"2006-01-02T15:04:05",          // no zone: UTC
	"2006-01-02 15:04:05Z07:00",    // SQL-style
	"2006-01-02 15:04:05Z0700",     //
	"2006-01-02 15:04:05",          //
	"2006-01-02T15:04:05.000Z0700", // explicit millis
}

func parseTimestamp(b []byte) (int64, bool) {
	if len(b) < len("2006-01-02T15:04:05") || b[4] != '-' {
		return 0, false
	}
	s := string(b)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), true
		}
	}
	return 0, false
}

// number reads a JSON number or a numeric string.
func number(v *fastjson.Value) (float64, bool) {
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := v.Float64()
		return f, err == nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		f, err := strconv.ParseFloat(string(b), 64)
		return f, err == nil
	}
	return 0, false
}

// status reads a charge status: 1/0, true/false, or those as strings.
func status(v *fastjson.Value) (bool, error) {
	if v == nil {
		return false, errors.New("missing")
	}
	var text []byte
	switch v.Type() {
	case fastjson.TypeTrue:
		return true, nil
	case fastjson.TypeFalse:
		return false, nil
	case fastjson.TypeString:
		text, _ = v.StringBytes()
	case fastjson.TypeNumber:
		var buf [32]byte
		text = v.MarshalTo(buf[:0])
	default:
		return false, fmt.Errorf("want 0 or 1, got %s", v.Type())
	}
	switch string(text) {
	case "1", "true", "1.0":
		return true, nil
	case "0", "false", "0.0":
		return false, nil
	}
	return false, fmt.Errorf("want 0 or 1, got %q", text)
}

// matches compares a field with a marker value: strings by their text,
// other JSON values by their literal (`is_last=true`).
func matches(v *fastjson.Value, want string) bool {
	if v == nil {
		return false
	}
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		return string(b) == want
	}
	var buf [64]byte
	return bytes.Equal(v.MarshalTo(buf[:0]), []byte(want))
}
