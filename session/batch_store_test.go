package session

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// referenceSessionize is Sessionize without parts, stores or tables: one
// tracker per key, fed the key's events in input order, keys in sorted order.
func referenceSessionize(r *Rules, events []Keyed) []Record {
	maxTime := NoWatermark
	byKey := map[string][]Event{}
	for _, e := range events {
		maxTime = max(maxTime, e.Time)
		byKey[e.Key] = append(byKey[e.Key], e.Event)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Record
	for _, k := range keys {
		t := NewTracker(r, "p", k)
		t.Add(byKey[k]...)
		out = append(out, t.Finish(maxTime)...)
	}
	return out
}

// TestSessionizeParts holds the part engine to the one-tracker-per-key
// reference on inputs that stress its storage: more keys than parts, keys
// longer than a block's key space, blocks that fill and double, SoC readings
// on some events only, ties of time and Seq whose input order decides pages
// and duplicates, and the empty key.
func TestSessionizeParts(t *testing.T) {
	long := strings.Repeat("k", 5000)
	cases := []struct {
		name    string
		profile Profile
		events  func() []Keyed
	}{
		{"none", Clickstream, func() []Keyed { return nil }},
		{"one key", Clickstream, func() []Keyed {
			return []Keyed{{Key: "u", Event: Event{Time: t0, Seq: 1, Page: "a"}}, {Key: "u", Event: Event{Time: t0 + sec, Seq: 2, Page: "b"}}}
		}},
		{"many keys, many blocks", Clickstream, func() []Keyed {
			var es []Keyed
			for i := range 30000 {
				es = append(es, Keyed{Key: fmt.Sprintf("user-%d", i%2000), Event: Event{Time: t0 + int64(i)*7*sec, Seq: int64(i), ID: uint64(i%977 + 1), Page: fmt.Sprintf("p%d", i%7)}})
			}
			return es
		}},
		{"long keys", Clickstream, func() []Keyed {
			var es []Keyed
			for i := range 3000 {
				es = append(es, Keyed{Key: fmt.Sprintf("%s-%d", long, i%3), Event: Event{Time: t0 + int64(i)*sec, Seq: int64(i), Page: "x"}})
			}
			return es
		}},
		{"ties in input order", Clickstream, func() []Keyed {
			var es []Keyed
			for i := range 200 {
				// Equal Time and Seq: the order of the input decides which
				// page comes first and which repeat is the duplicate.
				es = append(es, Keyed{Key: fmt.Sprintf("u%d", i%5), Event: Event{Time: t0 + int64(i/50)*mnt, ID: uint64(i % 3), Page: fmt.Sprintf("p%d", (i*7)%11)}})
			}
			return es
		}},
		{"SoC on some events", Charging, func() []Keyed {
			var es []Keyed
			for i := range 5000 {
				e := Event{Time: t0 + int64(i)*10*sec, Seq: int64(i), Flags: FlagActive}
				switch i % 3 {
				case 0:
					e.SoC, e.Flags = float64(i%100)/3, e.Flags|FlagSoC
				case 1:
					e.SoC = 42 // no FlagSoC: never read, but carried
				}
				es = append(es, Keyed{Key: fmt.Sprintf("drone-%d", i%40), Event: e})
			}
			return es
		}},
		{"empty key", Clickstream, func() []Keyed {
			return []Keyed{{Key: "", Event: Event{Time: t0}}, {Key: "a", Event: Event{Time: t0 + 1}}, {Key: "", Event: Event{Time: t0 + 2}}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rulesOf(t, c.profile, nil)
			events := c.events()
			got, _ := Sessionize(r, "p", events)
			want := referenceSessionize(r, events)
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for i := range got {
				if g, w := string(got[i].AppendJSON(nil)), string(want[i].AppendJSON(nil)); g != w {
					t.Fatalf("record %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

// TestGatherMergesStores gives a part's events to several stores, as the
// decoding workers do, and expects them back in Seq order with their own
// keys, pages and SoCs.
func TestGatherMergesStores(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			stores := make([]*eventStore, workers)
			pages := make([][]string, workers)
			for w := range stores {
				stores[w] = &eventStore{worker: w}
				pages[w] = []string{"", fmt.Sprintf("page-of-%d", w)}
			}
			// One key per part, so every event lands in part 0's hash range.
			var keys []string
			for i := 0; len(keys) < 5; i++ {
				if k := fmt.Sprintf("k%d", i); partOf(xxhash.Sum64String(k)) == 0 {
					keys = append(keys, k)
				}
			}
			const n = 3 * maxBlock
			for seq := range int64(n) {
				w := int(seq*seq) % workers // uneven runs per store
				k := keys[seq%int64(len(keys))]
				flags, soc := Flags(0), 0.0
				if seq%4 == 0 {
					flags, soc = FlagSoC, float64(seq)
				}
				stores[w].add([]byte(k), xxhash.Sum64String(k), storedEvent{time: seq, seq: seq, page: 1, flags: flags}, soc)
			}
			ps := partSessionizer{keys: newKeyTable(0)}
			ps.gather(stores, 0)
			if len(ps.flat) != n {
				t.Fatalf("%d events gathered, want %d", len(ps.flat), n)
			}
			for i, e := range ps.flat {
				w := int(int64(i)*int64(i)) % workers
				wantSoC := 0.0
				if i%4 == 0 {
					wantSoC = float64(i)
				}
				if e.seq != int64(i) || int(ps.flatW[i]) != w || ps.flatSoC[i] != wantSoC ||
					ps.keys.names[ps.ids[i]] != keys[i%len(keys)] || pages[ps.flatW[i]][e.page] != fmt.Sprintf("page-of-%d", w) {
					t.Fatalf("event %d: seq %d worker %d soc %v key %q", i, e.seq, ps.flatW[i], ps.flatSoC[i], ps.keys.names[ps.ids[i]])
				}
			}
		})
	}
}

// TestStoredEventSize keeps a stored event at 40 bytes: there are as many of
// them as input lines, and a field more is 10% more of a batch's memory.
func TestStoredEventSize(t *testing.T) {
	if n := unsafe.Sizeof(storedEvent{}); n != 40 {
		t.Errorf("storedEvent takes %d bytes, want 40", n)
	}
}
