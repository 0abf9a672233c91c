package session

import (
	"strings"
	"testing"
)

// TestScanShape decodes runs of lines through one decoder, each run a
// different sequence of shapes, and holds every line to the full parse: the
// shape learned from the lines before must never change how a line reads.
func TestScanShape(t *testing.T) {
	base := `{"uuid":"u1","event_timestamp":"1704069389900","page_name":"home","event_id":"e-1"}`
	runs := []struct {
		name  string
		lines []string
	}{
		{"same shape", []string{base, base, base}},
		{"reordered", []string{base,
			`{"event_timestamp":"1704069389901","uuid":"u2","event_id":"e-2","page_name":"cart"}`, base}},
		{"a name that extends the predicted one", []string{base,
			`{"uuidx":"no","uuid":"u3","event_timestamp":1704069389902}`,
			`{"uuid":"u4","event_timestamp":"1704069389903","page_name_2":"x","page_name":"y"}`}},
		{"white space around names", []string{base,
			`{ "uuid" : "u5", "event_timestamp" :"1704069389904"}`,
			`{"uuid" :"u6","event_timestamp":"1704069389905"}`, base}},
		{"repeated names: the first counts", []string{base,
			`{"uuid":"u7","uuid":"u8","event_timestamp":"1704069389906","event_timestamp":"9"}`,
			`{"uuid":"u9","event_timestamp":"1704069389907","uuid":"u10"}`, base}},
		{"fewer and more members", []string{base, `{"uuid":"u11","event_timestamp":1}`,
			`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"uuid":"u12","event_timestamp":"1704069389908"}`,
			base, `{}`, base}},
		{"names that are values elsewhere", []string{base,
			`{"x":"\"uuid\":","uuid":"u13","event_timestamp":"1704069389909"}`,
			`{"page_name":{"uuid":"in"},"uuid":"u14","event_timestamp":"1704069389910"}`, base}},
		{"broken lines", []string{base, `{"uuid":"u15","event_timestamp":`, `{"uuid":`, `{"uuid"`, `{"uu`, base,
			`{"uuid":"u16","event_timestamp":"1704069389911",}`, base}},
		{"escaped names", []string{base, `{"u\u0075id":"u17","event_timestamp":"1704069389912"}`, base}},
	}
	r := rulesOf(t, Clickstream, nil)
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			fast, ref := NewDecoder(r), NewDecoder(r)
			for _, line := range run.lines {
				for _, l := range []string{line, strings.ReplaceAll(line, `"uuid"`, `"uuid" `)} {
					k1, e1, _, err1 := fast.decode([]byte(l))
					k2, e2, _, err2 := ref.decodeReference([]byte(l))
					if diff := diffDecode(k1, e1, err1, k2, e2, err2); diff != "" {
						t.Errorf("line %s: %s", l, diff)
					}
				}
			}
		})
	}
}
