package session

import (
	"bytes"
	"context"
	"testing"

	"github.com/sessionflow/sessionflow/generate"
)

// benchClicks is the benchmark workload: 1,000,000 events of 100,000 users.
func benchClicks(b *testing.B) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := generate.Clicks(&buf, generate.ClickOptions{Users: 100_000, Events: 1_000_000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkBatch measures decode + sessionize of JSON lines, as
// `starter sessionize` runs them (all cores).
func BenchmarkBatch(b *testing.B) {
	data := benchClicks(b)
	r, _ := Defaults(Clickstream)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var events int64
	for b.Loop() {
		batch := Batch{Rules: &r}
		_, stats, err := batch.Run(context.Background(), bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		events += stats.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSessionize measures the rules alone over decoded events, on one
// goroutine, so its rate is per core.
func BenchmarkSessionize(b *testing.B) {
	data := benchClicks(b)
	r, _ := Defaults(Clickstream)
	d := NewDecoder(&r)
	var events []Keyed
	keys := map[string]string{}
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		key, e, err := d.Decode(line)
		if err != nil {
			b.Fatal(err)
		}
		k, ok := keys[string(key)]
		if !ok {
			k = string(key)
			keys[k] = k
		}
		e.Seq = int64(i + 1)
		events = append(events, Keyed{Key: k, Event: e})
	}
	b.ResetTimer()
	var n int64
	for b.Loop() {
		recs, _ := Sessionize(&r, "", events)
		if len(recs) == 0 {
			b.Fatal("no sessions")
		}
		n += int64(len(events))
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode measures decoding alone, one goroutine.
func BenchmarkDecode(b *testing.B) {
	data := benchClicks(b)
	lines := bytes.Split(bytes.TrimSpace(data), []byte{'\n'})[:100_000]
	r, _ := Defaults(Clickstream)
	d := NewDecoder(&r)
	b.ReportAllocs()
	b.ResetTimer()
	var n int64
	for b.Loop() {
		for _, l := range lines {
			if _, _, err := d.Decode(l); err != nil {
				b.Fatal(err)
			}
		}
		n += int64(len(lines))
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
