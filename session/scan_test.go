package session

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// scanRules are the rule sets the fast path is tested with: the built-in
// profiles' fields, and dotted paths, which overlap (the SoC field
// device.soc.value inside the id field device.soc) and meet objects and
// arrays on the way.
func scanRules(tb testing.TB) []*Rules {
	tb.Helper()
	var rules []*Rules
	for _, p := range Profiles {
		r, err := Defaults(p)
		if err != nil {
			tb.Fatal(err)
		}
		if p == Clickstream {
			r.EndMarker = Marker{"page_name", "logout"}
		}
		rules = append(rules, &r)
	}
	dotted, _ := Defaults(Clickstream)
	dotted.KeyField, dotted.TimeField, dotted.IDField = "user.id", "meta.ts", "meta.id"
	dotted.PageField, dotted.TimeUnit = "event_details.event_name", time.Second
	dotted.StartMarker, dotted.EndMarker = Marker{"meta.first", "true"}, Marker{"event_details.event_name", "logout"}
	charging, _ := Defaults(Charging)
	charging.KeyField, charging.SoCField, charging.TimeUnit = "device.UIN", "device.soc.value", time.Microsecond
	charging.IDField = "device.soc"
	return append(rules, &dotted, &charging)
}

// scanSeeds are lines for the fast path and for each of its ways out.
var scanSeeds = []string{
	`{"uuid":"user-76213","event_timestamp":"1704069459818","page_name":"search","event_id":"e-0"}`,
	`{"UIN":"d","time":1715227208337,"Charge_status":1,"Soc_percentage":82.5,"event_id":17}`,
	`{"key":"k","time":1,"action":"Open"}`,
	`{"key":"k","time":2,"action":"Close","event_id":null}`,
	`{"user":{"id":"u1","n":[1,{"x":null}]},"meta":{"ts":1704082500,"first":true},"event_details":{"event_name":"logout"}}`,
	`{"device":{"UIN":"d","soc":{"value":"7"}},"time":1715227208337000,"Charge_status":"true"}`,
	// nesting, and paths through values that are not objects
	`{"uuid":"u","x":{"a":[1,{"b":[]},"c",[[]]],"d":{}},"event_timestamp":1}`,
	`{"user":[{"id":"u"}],"meta":{"ts":1}}`,
	`{"user":"u","meta":{"ts":1}}`,
	`{"user":{"id":{"v":1}},"meta":[]}`,
	`{"user":{"id":"u"},"meta":{"ts":1,"id":[1]}}`,
	`{"device":{"UIN":"d","soc":5},"time":1,"Charge_status":0}`,
	`{"uuid":"u","event_timestamp":1,"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"uuid":"u","event_timestamp":1,"deep":` + strings.Repeat("[", 301) + strings.Repeat("]", 301) + `}`,
	// duplicate names: fastjson reads the first
	`{"uuid":"a","uuid":"b","event_timestamp":1,"event_timestamp":"x"}`,
	`{"user":{"id":"u1","id":"u2"},"user":{"id":"u3"},"meta":{"ts":5,"ts":6}}`,
	`{"action":"Close","key":"k","time":1,"action":"Open"}`,
	// escapes and text
	`{"uuid":"u\u00e9\"1","event_timestamp":1}`,
	`{"uu\u0069d":"x","event_timestamp":1}`,
	`{"uuid":"a\qb","event_timestamp":1}`,
	`{"uuid":"a","event_timestamp":1,"page_name":"\ud800"}`,
	`{"uuid":"ü日本","event_timestamp":1,"page_name":"ñ"}`,
	"{\"uuid\":\"\xff\",\"event_timestamp\":1}",
	"{\"uuid\":\"u\",\"event_timestamp\":1,\"page_name\":\"\xc3\x28\"}",
	"{\"uuid\":\"a\tb\x00\",\"event_timestamp\":1}",
	// numbers
	`{"uuid":"u","event_timestamp":1e400}`,
	`{"uuid":"u","event_timestamp":-0,"event_id":-0}`,
	`{"uuid":"u","event_timestamp":01,"event_id":1.50}`,
	`{"uuid":"u","event_timestamp":1.,"event_id":.5}`,
	`{"uuid":"u","event_timestamp":1-2,"x":--1}`,
	`{"uuid":"u","event_timestamp":+1}`,
	`{"uuid":"u","event_timestamp":-}`,
	`{"uuid":"u","event_timestamp":NaN}`,
	`{"uuid":"u","event_timestamp":nan}`,
	`{"uuid":"u","event_timestamp":-inf}`,
	`{"uuid":"u","event_timestamp":Infinity}`,
	`{"uuid":"u","event_timestamp":1.5e12,"event_id":1E5}`,
	`{"uuid":"u","event_timestamp":12345678901234567890}`,
	`{"uuid":"u","event_timestamp":-123456789012345678}`,
	`{"uuid":"u","event_timestamp":9223372036854775808}`,
	`{"uuid":"u","event_timestamp":"2023-07-23T00:00:00Z"}`,
	`{"UIN":"d","time":10,"Charge_status":1.0,"Soc_percentage":-0}`,
	`{"UIN":"d","time":10,"Charge_status":"1.0","Soc_percentage":"1e2"}`,
	`{"UIN":"d","time":10,"Charge_status":null,"Soc_percentage":null}`,
	`{"UIN":"d","time":10,"Charge_status":[1],"Soc_percentage":{}}`,
	`{"UIN":"d","time":10,"Charge_status":0,"Soc_percentage":1e999}`,
	// identities and markers of every type
	`{"uuid":"u","event_timestamp":1,"event_id":{"a": 1}}`,
	`{"uuid":"u","event_timestamp":1,"event_id":[1, 2]}`,
	`{"uuid":"u","event_timestamp":1,"event_id":true,"page_name":false}`,
	`{"uuid":"u","event_timestamp":1,"event_id":""}`,
	`{"key":"k","time":1,"action":true}`,
	// white space
	"  {  \"uuid\" : \"u\" ,\t\"event_timestamp\" :\r\n1 }  ",
	"{\"uuid\":\"u\",\"event_timestamp\":1}\v",
	"{\"uuid\":\"u\",\"event_timestamp\":1}\f",
	"\x00{\"uuid\":\"u\",\"event_timestamp\":1}",
	// syntax errors
	`{"uuid":"u","event_timestamp":1}}`,
	`{"uuid":"u","event_timestamp":1},`,
	`{"uuid":"u","event_timestamp":1} {}`,
	`{"uuid":"u","event_timestamp":1,}`,
	`{"uuid":"u","event_timestamp":1,"x":[1,]}`,
	`{"uuid":"u","event_timestamp":1,"x":[1 2]}`,
	`{"uuid":"u","event_timestamp":1,"x":{"a"}}`,
	`{"uuid":"u","event_timestamp":1,"x":{1:2}}`,
	`{"uuid":"u","event_timestamp":1,"x":tru}`,
	`{"uuid":"u","event_timestamp":1,"x":nul}`,
	`{"uuid":"u","event_timestamp":1,"x":truex}`,
	`{"uuid":"u","event_timestamp":1`,
	`{"uuid":"u","event_timestamp":`,
	`{"uuid":"u`,
	`{"uuid`,
	`{"uuid":"u" "event_timestamp":1}`,
	`{"uuid"="u","event_timestamp":1}`,
	`{}`, `{ }`, `[1,2]`, `"str"`, `1`, `null`, ``, ` `, `{`, `}`, `nul`,
	`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, `"\ud800"`,
}

// FuzzDecodeFastPath checks that Decode, which takes scan's fast path where
// it can, decodes every line exactly as the fastjson reference does: the
// same key and event, or the same error.
func FuzzDecodeFastPath(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	type pair struct{ fast, ref *Decoder }
	var decoders []pair
	for _, r := range scanRules(f) {
		decoders = append(decoders, pair{NewDecoder(r), NewDecoder(r)})
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for i, d := range decoders {
			k1, e1, p1, err1 := d.fast.decode(line)
			k2, e2, p2, err2 := d.ref.decodeReference(line)
			if diff := diffDecode(k1, e1, err1, k2, e2, err2); diff != "" {
				t.Errorf("rules %d, line %q: %s", i, line, diff)
			}
			if d.fast.pageNames[p1] != e1.Page || d.ref.pageNames[p2] != e2.Page {
				t.Errorf("rules %d, line %q: page %q is number %d, reference %q is %d", i, line, e1.Page, p1, e2.Page, p2)
			}
		}
	})
}

func diffDecode(k1 []byte, e1 Event, err1 error, k2 []byte, e2 Event, err2 error) string {
	if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
		return fmt.Sprintf("error %v, reference %v", err1, err2)
	}
	for _, class := range []error{ErrNotJSON, ErrMissingKey, ErrBadTime, ErrTimeRange, ErrBadField} {
		if errors.Is(err1, class) != errors.Is(err2, class) {
			return fmt.Sprintf("error %v, reference %v", err1, err2)
		}
	}
	if !bytes.Equal(k1, k2) || e1.Time != e2.Time || e1.Seq != e2.Seq || e1.ID != e2.ID ||
		e1.Flags != e2.Flags || e1.Page != e2.Page || math.Float64bits(e1.SoC) != math.Float64bits(e2.SoC) {
		return fmt.Sprintf("key %q %+v, reference key %q %+v", k1, e1, k2, e2)
	}
	return ""
}

// TestScanTakesTheFastPath pins which lines scan reads itself: the fuzz test
// holds its results to the reference's, but would pass as well if scan left
// every line to the reference.
func TestScanTakesTheFastPath(t *testing.T) {
	click, charging, dotted := scanRules(t)[0], scanRules(t)[1], scanRules(t)[3]
	cases := []struct {
		name  string
		rules *Rules
		line  string
		fast  bool
	}{
		{"clickstream", click, `{"uuid":"user-76213","event_timestamp":"1704069459818","page_name":"search","event_id":"e-0"}`, true},
		{"charging", charging, `{"UIN":"d","time":1715227208337,"Charge_status":1,"Soc_percentage":82.5,"event_id":17}`, true},
		{"dotted paths", dotted, `{"user":{"id":"u1","n":[1,{"x":null}]},"meta":{"ts":1704082500,"first":true},"event_details":{"event_name":"logout"}}`, true},
		{"white space", click, "  {  \"uuid\" : \"u\" ,\t\"event_timestamp\" :\r\n1 }  ", true},
		{"nested values skipped", click, `{"uuid":"u","x":{"a":[1,{"b":[]},"c",[[]]],"d":{}},"event_timestamp":1}`, true},
		{"62 levels down", click, `{"uuid":"u","event_timestamp":1,"x":` + strings.Repeat("[", 62) + `{"a":1}` + strings.Repeat("]", 62) + `}`, true},
		{"duplicate names", click, `{"uuid":"a","uuid":"b","event_timestamp":1,"event_timestamp":"x"}`, true},
		{"lenient number", click, `{"uuid":"u","event_timestamp":1-2,"x":--1}`, true},
		{"control character", click, "{\"uuid\":\"a\tb\",\"event_timestamp\":1}", true},
		{"missing key", click, `{"event_timestamp":1}`, true},
		{"path through an array", dotted, `{"user":[{"id":"u"}],"meta":{"ts":1}}`, false},
		{"escape", click, `{"uuid":"u\u00e9","event_timestamp":1}`, false},
		{"object id", click, `{"uuid":"u","event_timestamp":1,"event_id":{"a": 1}}`, false},
		{"array time", click, `{"uuid":"u","event_timestamp":[1]}`, false},
		{"64 levels down", click, `{"uuid":"u","event_timestamp":1,"x":` + strings.Repeat("[", 63) + `{"a":1}` + strings.Repeat("]", 63) + `}`, false},
		{"NaN", click, `{"uuid":"u","event_timestamp":NaN}`, false},
		{"lone sign", click, `{"uuid":"u","event_timestamp":-}`, false},
		{"truncated", click, `{"uuid":"u","event_timestamp":1`, false},
		{"trailing garbage", click, `{"uuid":"u","event_timestamp":1} x`, false},
		{"trailing comma", click, `{"uuid":"u","event_timestamp":1,}`, false},
		{"array", click, `[1,2]`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := new(scanner).scan(NewDecoder(c.rules).tree, []byte(c.line)); got != c.fast {
				t.Errorf("scan = %v, want %v", got, c.fast)
			}
		})
	}
}
