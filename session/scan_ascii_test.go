package session

import (
	"fmt"
	"strings"
	"testing"
)

// TestScanASCIINeverWrong puts one byte that is not ASCII at every place of
// keys and pages of many lengths, where the scan's words and its byte loop
// meet: the scan must never take such a string for ASCII, and a byte that
// is not UTF-8 must still fail the line.
func TestScanASCIINeverWrong(t *testing.T) {
	r := rulesOf(t, Clickstream, nil)
	d := NewDecoder(r)
	for n := 1; n <= 24; n++ {
		for at := range n {
			for _, c := range []struct {
				bad     string
				invalid bool
			}{{"\xff", true}, {"é", false}} {
				key := strings.Repeat("k", at) + c.bad + strings.Repeat("k", n-at-1)
				for _, field := range []string{"uuid", "page_name"} {
					other := map[string]string{"uuid": "user", "page_name": "home"}
					other[field] = key
					line := fmt.Sprintf(`{"uuid":"%s","event_timestamp":1704082500000,"page_name":"%s"}`, other["uuid"], other["page_name"])
					var s scanner
					if !s.scan(d.tree, []byte(line)) {
						t.Fatalf("%q: not scanned", line)
					}
					f := fieldKey
					if field == "page_name" {
						f = fieldPage
					}
					if s.vals[f].ascii {
						t.Errorf("%q: %s taken for ASCII", line, field)
					}
					if _, _, err := d.Decode([]byte(line)); (err != nil) != c.invalid {
						t.Errorf("%q: err %v, want invalid %v", line, err, c.invalid)
					}
				}
			}
		}
	}
}
