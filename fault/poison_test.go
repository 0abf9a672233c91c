//go:build fault

package fault

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/ingest"
)

// headerFaultID marks each poison message; the dead letter keeps the
// original's headers, so the test can match the two.
const headerFaultID = "fault-id"

// poison is one injected bad message and the dead letter it must become.
type poison struct {
	kind   string
	reason string // the dead letter's reason header
	index  int    // in workload.msgs
}

// poisonKinds are the bad messages mixed into the good stream, each twice.
// Those that look like events carry the key of a user active at that point
// of the stream and the stream's time there: were one accepted, that user's
// sessions would change and the comparison with the batch engine would
// fail too.
var poisonKinds = []struct {
	kind   string
	reason string
	value  func(key string, at int64) []byte
}{
	{"not JSON", ingest.ReasonNotJSON, func(string, int64) []byte { return []byte("uuid=user-1 at noon {") }},
	{"invalid UTF-8 bytes", ingest.ReasonNotJSON, func(string, int64) []byte { return []byte("\xff\xfe\xfd\x80\x00") }},
	// JSON strings allow only the escapes \" \\ \/ \b \f \n \r \t \uXXXX
	// (RFC 8259 §7): "\q" makes the line not JSON. Its own key, so that if
	// it is accepted it shows as a session of its own.
	{"invalid JSON escape", ingest.ReasonNotJSON, func(_ string, at int64) []byte {
		return fmt.Appendf(nil, `{"uuid":"escape-probe","event_timestamp":%d,"page_name":"h\qme"}`, at)
	}},
	{"100k nested arrays", ingest.ReasonNotJSON, func(string, int64) []byte { return bytes.Repeat([]byte("["), 100_000) }},
	{"100k nested objects in a field", ingest.ReasonNotJSON, func(key string, at int64) []byte {
		deep := strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000)
		return fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":"home","x":%s}`, key, at, deep)
	}},
	{"5 MB value", ingest.ReasonTooLarge, func(key string, at int64) []byte {
		return fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":"home","pad":"%s"}`, key, at, strings.Repeat("x", 5<<20))
	}},
	{"invalid UTF-8 in the key", ingest.ReasonMissingKey, func(key string, at int64) []byte {
		// An interpreted string: the byte 0xff itself, not a JSON escape.
		return fmt.Appendf(nil, "{\"uuid\":\"%s\xff\",\"event_timestamp\":%d,\"page_name\":\"home\"}", key, at)
	}},
	{"invalid UTF-8 in the page", ingest.ReasonBadField, func(key string, at int64) []byte {
		return fmt.Appendf(nil, "{\"uuid\":%q,\"event_timestamp\":%d,\"page_name\":\"h\xc3\x28me\"}", key, at)
	}},
	{"year 9999", ingest.ReasonTimeRange, func(key string, _ int64) []byte {
		return fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":%d,"page_name":"home"}`, key, int64(253402300799000))
	}},
	{"before 1970", ingest.ReasonTimeRange, func(key string, _ int64) []byte {
		return fmt.Appendf(nil, `{"uuid":%q,"event_timestamp":-86400000,"page_name":"home"}`, key)
	}},
	{"missing key", ingest.ReasonMissingKey, func(_ string, at int64) []byte {
		return fmt.Appendf(nil, `{"event_timestamp":%d,"page_name":"home"}`, at)
	}},
	{"empty key", ingest.ReasonMissingKey, func(_ string, at int64) []byte {
		return fmt.Appendf(nil, `{"uuid":"","event_timestamp":%d,"page_name":"home"}`, at)
	}},
	{"missing time", ingest.ReasonBadTime, func(key string, _ int64) []byte {
		return fmt.Appendf(nil, `{"uuid":%q,"page_name":"home"}`, key)
	}},
}

// addPoison inserts two of each poison kind at random places in the middle
// 80% of the stream.
func (w *workload) addPoison(t testing.TB, rng *rand.Rand) {
	t.Helper()
	n := 0
	for _, k := range poisonKinds {
		for range 2 {
			n++
			pos := len(w.msgs)/10 + rng.IntN(len(w.msgs)*8/10)
			var key []byte // a user of the stream just before pos
			var at int64   // the stream's time at pos
			for i := pos - 1; i >= 0; i-- {
				if key == nil && w.msgs[i].faultID == "" {
					key = w.msgs[i].key
				}
				at = max(at, w.msgs[i].time)
			}
			id := fmt.Sprintf("poison-%d", n)
			m := message{value: k.value(string(key), at), partition: int32(n % partitions), faultID: id}
			if n%2 == 0 { // half of them keyed like the user's events, half without a key
				m.key, m.partition = key, partitionOf(string(key))
			}
			w.msgs = slices.Insert(w.msgs, pos, m)
			w.poison[id] = poison{kind: k.kind, reason: k.reason}
		}
	}
	for i, m := range w.msgs {
		if m.faultID != "" {
			p := w.poison[m.faultID]
			p.index = i
			w.poison[m.faultID] = p
		}
	}
}

// TestPoisonMessages mixes bad messages into the good stream: not JSON
// (garbage, invalid UTF-8 bytes, an invalid escape), 100k levels of
// nesting, a 5 MB value, invalid UTF-8 in the key and the page, times in
// the year 9999 and before 1970, no key or an empty one, no time; and some
// good events produced without a Kafka key. Every bad message must land
// once in clicks.dlq with its reason and source headers and its original
// bytes, no good one may, and the good events' sessions must equal the
// batch result.
func TestPoisonMessages(t *testing.T) {
	seed := caseSeed(t)
	s := newStack(t, stackOptions{})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed, keyless: 20, poison: true})
	s.logf("%d messages: %d good, %d late, %d poison; %d sessions expected", len(w.msgs), len(w.good), len(w.late), len(w.poison), len(w.want))
	s.startWorker()
	pr := s.produce(w, steady(normalRate))
	s.finish(w, pr)
	s.checkDLQ(w, pr)
}

// checkDLQ reads the whole dead-letter topic and matches it with the
// injected poison.
func (s *stack) checkDLQ(w *workload, pr *production) {
	s.t.Helper()
	c, err := sarama.NewConsumerFromClient(s.kclient)
	if err != nil {
		s.t.Fatalf("dlq consumer: %v", err)
	}
	defer c.Close()
	end, err := s.kclient.GetOffset(dlqTopic, 0, sarama.OffsetNewest)
	if err != nil {
		s.t.Fatalf("dlq end offset: %v", err)
	}
	pc, err := c.ConsumePartition(dlqTopic, 0, sarama.OffsetOldest)
	if err != nil {
		s.t.Fatalf("consume %s: %v", dlqTopic, err)
	}
	defer pc.Close()
	seen := map[string]int{}
	for read := int64(0); read < end; read++ {
		var m *sarama.ConsumerMessage
		select {
		case m = <-pc.Messages():
		case <-time.After(30 * time.Second):
			s.t.Fatalf("%s: read %d of %d dead letters, then nothing for 30s", dlqTopic, read, end)
		}
		h := map[string]string{}
		for _, rh := range m.Headers {
			h[string(rh.Key)] = string(rh.Value)
		}
		id := h[headerFaultID]
		p, ok := w.poison[id]
		if !ok {
			s.t.Errorf("dead letter at %s/0/%d is not an injected poison (reason %q, error %q, source %s/%s/%s): %.200q",
				dlqTopic, m.Offset, h[ingest.HeaderReason], h[ingest.HeaderError],
				h[ingest.HeaderSourceTopic], h[ingest.HeaderSourcePartition], h[ingest.HeaderSourceOffset], m.Value)
			continue
		}
		seen[id]++
		orig := w.msgs[p.index]
		checks := []struct{ header, want string }{
			{ingest.HeaderReason, p.reason},
			{ingest.HeaderPipeline, pipelineName},
			{ingest.HeaderSourceTopic, topic},
			{ingest.HeaderSourcePartition, strconv.Itoa(int(orig.partition))},
			{ingest.HeaderSourceOffset, strconv.FormatInt(pr.offsets[p.index], 10)},
		}
		for _, c := range checks {
			if h[c.header] != c.want {
				s.t.Errorf("%s (%s): header %s = %q, want %q (error header: %q)", id, p.kind, c.header, h[c.header], c.want, h[ingest.HeaderError])
			}
		}
		switch {
		case bytes.Equal(m.Value, orig.value):
		case h[ingest.HeaderTruncated] == strconv.Itoa(len(orig.value)) && bytes.HasPrefix(orig.value, m.Value):
			s.logf("%s (%s): dead letter truncated to %d of %d bytes", id, p.kind, len(m.Value), len(orig.value))
		default:
			s.t.Errorf("%s (%s): dead letter value of %d bytes is not the original's %d", id, p.kind, len(m.Value), len(orig.value))
		}
	}
	for id, p := range w.poison {
		if seen[id] != 1 {
			s.t.Errorf("%s (%s, reason %s) is in %s %d times, want once", id, p.kind, p.reason, dlqTopic, seen[id])
		}
	}
	s.logf("%s: %d dead letters checked against %d injected", dlqTopic, end, len(w.poison))
}
