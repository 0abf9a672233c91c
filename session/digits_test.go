package session

import (
	"strconv"
	"testing"
)

// TestParseDigits holds the eight-at-a-time parse to strconv on integers of
// every length it takes, signs, and a bad byte at every place.
func TestParseDigits(t *testing.T) {
	cases := []string{"", "-", "0", "7", "-7", "12345678", "-12345678", "123456789", "1704069389900",
		"000000000000000001", "999999999999999999", "-999999999999999999", "1234567890123456789",
		"17040693899O0", "1704069389:00", "1704/69389900", "12345678 ", " 12345678", "+12345678", "1e3"}
	for n := 1; n <= 18; n++ {
		digits := "987654321098765432"[:n]
		cases = append(cases, digits)
		for at := range n {
			for _, bad := range []byte{'/', ':', 'a', ' ', 0x80, 0xff, '0' - 0x30, '9' + 0x47} {
				b := []byte(digits)
				b[at] = bad
				cases = append(cases, string(b))
			}
		}
	}
	for _, c := range cases {
		got, ok := parseDigits([]byte(c))
		want, err := strconv.ParseInt(c, 10, 64)
		// strconv takes a '+' and 19 digits; parseDigits neither.
		wantOK := err == nil && c[0] != '+' && len(trimSign(c)) <= 18
		if ok != wantOK || (ok && got != want) {
			t.Errorf("parseDigits(%q) = %d, %v; want %d, %v", c, got, ok, want, wantOK)
		}
	}
}

func trimSign(s string) string {
	if len(s) > 0 && s[0] == '-' {
		return s[1:]
	}
	return s
}
