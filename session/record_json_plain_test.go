package session

import "testing"

// TestPlainJSON puts every byte at every place of eight plain ones: the
// eight are plain exactly when that byte is ASCII, not a control character,
// a quote or a backslash.
func TestPlainJSON(t *testing.T) {
	for at := range 8 {
		for c := range 256 {
			b := []byte("abcdefgh")
			b[at] = byte(c)
			want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
			if got := plainJSON(string(b)); got != want {
				t.Errorf("plainJSON(%q) = %v, want %v", b, got, want)
			}
		}
	}
}
