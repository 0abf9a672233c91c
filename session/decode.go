package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fastjson"
	"github.com/valyala/fastjson/fastfloat"
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
// reads most lines in one pass over their fields (scan.go), and the others
// with a parser it keeps; with an intern table for the pages, decoding
// allocates nothing per field once the pages and keys have been seen.
//
// A Decoder is not safe for concurrent use; give each goroutine its own.
type Decoder struct {
	rules *Rules
	p     fastjson.Parser
	paths [numFields][]string
	// The pages seen, numbered from 1 in pageNames; 0 is no page. recent
	// holds numbers of pages seen lately, by pageSlot.
	pages     map[string]int32
	pageNames []string
	recent    [recentPages]int32

	// tree is paths merged for scan, nil when scan cannot serve these paths.
	tree  []pathNode
	shape shape             // the top-level members scan expects
	bufs  [numFields][]byte // decodeReference's copies of the non-string values
}

// The fields the rules read, in the order Decode checks them.
const (
	fieldKey = iota
	fieldTime
	fieldID
	fieldPage
	fieldStatus
	fieldSoC
	fieldStart
	fieldEnd
	numFields
)

// value is a field as the rules read it: a string's content, unescaped, or
// any other value's JSON text.
type value struct {
	t    fastjson.Type
	text []byte
	ok   bool // the field is present
	// ascii says a string's text is all ASCII, so valid UTF-8 (scan only:
	// false where not known).
	ascii bool
}

// NewDecoder returns a decoder for the rules' fields.
func NewDecoder(r *Rules) *Decoder {
	path := func(p string) []string {
		if p == "" {
			return nil
		}
		return strings.Split(p, ".")
	}
	d := &Decoder{rules: r, pages: make(map[string]int32), pageNames: []string{""}}
	d.paths = [numFields][]string{
		fieldKey: path(r.KeyField), fieldTime: path(r.TimeField), fieldID: path(r.IDField),
		fieldPage: path(r.PageField), fieldStatus: path(r.StatusField), fieldSoC: path(r.SoCField),
		fieldStart: path(r.StartMarker.Field), fieldEnd: path(r.EndMarker.Field),
	}
	d.tree = newPathTree(d.paths)
	return d
}

// Decode decodes one JSON event. The key it returns points into line or the
// decoder's memory and is valid until the next call, as long as line is not
// changed. The event's ID is the hash of its id field, or 0 when it has none
// (the caller may then set a positional identity with PositionID).
func (d *Decoder) Decode(line []byte) (key []byte, e Event, err error) {
	key, e, _, err = d.decode(line)
	return key, e, err
}

// decode is Decode that also returns the number of the event's page in
// d.pageNames.
func (d *Decoder) decode(line []byte) (key []byte, e Event, page int32, err error) {
	s := scanner{shape: &d.shape}
	if d.tree != nil && s.scan(d.tree, line) {
		return d.event(&s.vals)
	}
	return d.decodeReference(line)
}

// decodeReference decodes with fastjson's full parse. It is the fallback of
// scan, and the reference scan is tested against.
func (d *Decoder) decodeReference(line []byte) (key []byte, e Event, page int32, err error) {
	v, perr := d.p.ParseBytes(line)
	if perr != nil {
		return nil, e, 0, fmt.Errorf("%w: %v", ErrNotJSON, perr)
	}
	// The parser keeps an unknown escape such as \q as text; RFC 8259 does
	// not, and such a line must be rejected, not half-read. Only lines with a
	// backslash pay for the check.
	if bytes.IndexByte(line, '\\') >= 0 {
		if verr := fastjson.ValidateBytes(line); verr != nil {
			return nil, e, 0, fmt.Errorf("%w: %v", ErrNotJSON, verr)
		}
	}
	if v.Type() != fastjson.TypeObject {
		return nil, e, 0, fmt.Errorf("%w: got %s", ErrNotJSON, v.Type())
	}
	// Reading a value can change how fastjson re-encodes the objects around
	// it (it unescapes strings in place), so the fields are read one by one
	// in Decode's order, each copied as it is read.
	var vals [numFields]value
	for f, path := range d.paths {
		if path == nil && f != fieldKey && f != fieldTime {
			continue // not configured: never read
		}
		vals[f] = d.valueOf(f, v.Get(path...))
	}
	return d.event(&vals)
}

func (d *Decoder) valueOf(f int, v *fastjson.Value) value {
	if v == nil {
		return value{}
	}
	t := v.Type()
	if t == fastjson.TypeString {
		b, _ := v.StringBytes()
		return value{t: t, text: b, ok: true}
	}
	d.bufs[f] = v.MarshalTo(d.bufs[f][:0])
	return value{t: t, text: d.bufs[f], ok: true}
}

// event applies the rules to the fields, whichever path read them.
func (d *Decoder) event(vals *[numFields]value) (key []byte, e Event, page int32, err error) {
	kv := vals[fieldKey]
	if !kv.ok || kv.t != fastjson.TypeString {
		return nil, e, 0, fmt.Errorf("%w: field %q must be a non-empty string", ErrMissingKey, d.rules.KeyField)
	}
	key = kv.text
	if len(key) == 0 {
		return nil, e, 0, fmt.Errorf("%w: field %q is empty", ErrMissingKey, d.rules.KeyField)
	}
	if !kv.ascii && !utf8.Valid(key) {
		return nil, e, 0, fmt.Errorf("%w: field %q is not valid UTF-8", ErrMissingKey, d.rules.KeyField)
	}
	if e.Time, err = d.eventTime(vals[fieldTime]); err != nil {
		return nil, e, 0, err
	}
	// A field without a path is never read, and so never ok.
	if iv := vals[fieldID]; iv.ok {
		e.ID = identity(iv)
	}
	if pv := vals[fieldPage]; pv.ok && pv.t == fastjson.TypeString {
		if !pv.ascii && !utf8.Valid(pv.text) {
			return nil, e, 0, fmt.Errorf("%w: field %q is not valid UTF-8", ErrBadField, d.rules.PageField)
		}
		e.Page, page = d.intern(pv.text)
	}
	if d.paths[fieldStatus] != nil {
		active, err := status(vals[fieldStatus])
		if err != nil {
			return nil, e, 0, fmt.Errorf("%w: field %q: %v", ErrBadField, d.rules.StatusField, err)
		}
		if active {
			e.Flags |= FlagActive
		}
	}
	if sv := vals[fieldSoC]; sv.ok && sv.t != fastjson.TypeNull {
		f, ok := number(sv)
		if !ok {
			return nil, e, 0, fmt.Errorf("%w: field %q must be a number", ErrBadField, d.rules.SoCField)
		}
		e.SoC = f
		e.Flags |= FlagSoC
	}
	if matches(vals[fieldStart], d.rules.StartMarker.Value) {
		e.Flags |= FlagStart
	}
	if matches(vals[fieldEnd], d.rules.EndMarker.Value) {
		e.Flags |= FlagEnd
	}
	return key, e, page, nil
}

// PositionID is the identity of an event without an id field: its source
// position, such as "topic/partition/offset" or "file:line".
func PositionID(position string) uint64 { return nonZero(xxhash.Sum64String(position)) }

func identity(v value) uint64 {
	switch {
	case v.t == fastjson.TypeNull, v.t == fastjson.TypeString && len(v.text) == 0:
		return 0
	}
	// Numbers and other literals: their JSON text is their identity.
	return nonZero(xxhash.Sum64(v.text))
}

// nonZero keeps 0 free to mean "no identity".
func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// intern returns the one copy of a page and its number.
func (d *Decoder) intern(b []byte) (string, int32) {
	// Most events are on a few pages: a look at recent is cheaper than
	// hashing all of the page for the map.
	slot := &d.recent[pageSlot(b)]
	if n := *slot; n != 0 && d.pageNames[n] == string(b) {
		return d.pageNames[n], n
	}
	n, ok := d.pages[string(b)]
	if !ok {
		n = int32(len(d.pageNames))
		s := string(b)
		d.pages[s] = n
		d.pageNames = append(d.pageNames, s)
	}
	*slot = n
	return d.pageNames[n], n
}

const recentPages = 64 // a power of two

func pageSlot(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return (len(b) ^ int(b[0])<<1 ^ int(b[len(b)-1])<<3) & (recentPages - 1)
}

// eventTime reads epoch numbers (in the rules' unit), numeric strings and
// RFC 3339 / ISO-8601 strings.
func (d *Decoder) eventTime(v value) (int64, error) {
	if !v.ok {
		return 0, fmt.Errorf("%w: field %q is missing", ErrBadTime, d.rules.TimeField)
	}
	var ms int64
	switch v.t {
	case fastjson.TypeNumber:
		if n, err := jsonInt(v.text); err == nil {
			ms = d.scale(n)
		} else {
			f, _ := jsonFloat(v.text)
			ms = d.scaleFloat(f)
		}
	case fastjson.TypeString:
		b := v.text
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
		return 0, fmt.Errorf("%w: field %q is a %s", ErrBadTime, d.rules.TimeField, v.t)
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
	// Eight digits at a time while there are eight: epoch milliseconds have
	// thirteen, and the byte loop below is most of a line's time parse.
	for len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		if d := w - '0'*ones; (d|(w+('9'^0x7f)*ones))&(0x80*ones) != 0 {
			return 0, false // a byte below '0' or above '9'
		}
		n = n*1e8 + int64(eightDigits(w))
		b = b[8:]
	}
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

// eightDigits is the number that eight ASCII digits make, the first in the
// lowest byte of w.
func eightDigits(w uint64) uint64 {
	w -= '0' * ones
	w = w*10 + w>>8 // pairs: each even byte holds two digits' value
	w = ((w&0x000000ff000000ff)*(100+1000000<<32) + (w>>16&0x000000ff000000ff)*(1+10000<<32)) >> 32
	return w
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

// jsonInt reads a JSON number's text as fastjson's Value.Int64 does. Up to
// 18 digits, which fastfloat reads to the same value, it skips the copy to a
// string that fastfloat's signature costs.
func jsonInt(text []byte) (int64, error) {
	if n, ok := parseDigits(text); ok {
		return n, nil
	}
	return fastfloat.ParseInt64(string(text))
}

// jsonFloat reads a JSON number's text as fastjson's Value.Float64 does.
func jsonFloat(text []byte) (float64, error) {
	return fastfloat.Parse(string(text))
}

// number reads a JSON number or a numeric string.
func number(v value) (float64, bool) {
	var f float64
	var err error
	switch v.t {
	case fastjson.TypeNumber:
		f, err = jsonFloat(v.text)
	case fastjson.TypeString:
		f, err = strconv.ParseFloat(string(v.text), 64)
	default:
		return 0, false
	}
	return f, err == nil
}

// status reads a charge status: 1/0, true/false, or those as strings.
func status(v value) (bool, error) {
	if !v.ok {
		return false, errors.New("missing")
	}
	switch v.t {
	case fastjson.TypeTrue:
		return true, nil
	case fastjson.TypeFalse:
		return false, nil
	case fastjson.TypeString, fastjson.TypeNumber:
	default:
		return false, fmt.Errorf("want 0 or 1, got %s", v.t)
	}
	switch string(v.text) {
	case "1", "true", "1.0":
		return true, nil
	case "0", "false", "0.0":
		return false, nil
	}
	return false, fmt.Errorf("want 0 or 1, got %q", v.text)
}

// matches compares a field with a marker value: strings by their text,
// other JSON values by their literal (`is_last=true`).
func matches(v value, want string) bool {
	return v.ok && string(v.text) == want
}
