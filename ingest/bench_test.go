package ingest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/workflows"
)

// sinkTemporal accepts every batch at once and keeps only counts: the
// ingest path alone, without Temporal.
type sinkTemporal struct {
	lateness    int64
	events      atomic.Int64
	signals     atomic.Int64
	first, last atomic.Int64 // unix nanos of the first and the latest accepted batch

	mu    sync.Mutex
	clock workflows.ClockState
}

func (s *sinkTemporal) SignalEvents(_ context.Context, _ string, b workflows.EventBatch) error {
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
	s.signals.Add(1)
	s.events.Add(int64(len(b.Events)))
	return nil
}

func (s *sinkTemporal) PublishMarks(_ context.Context, u workflows.WatermarkUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	applyClock(&s.clock, u, s.lateness)
	return nil
}

func (s *sinkTemporal) ReadClock(context.Context) (workflows.ClockState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.clock
	st.Marks = slices.Clone(st.Marks)
	return st, nil
}

// BenchmarkIngest measures the ingest path alone: 200,000 clicks of 10,000
// users on 4 partitions of an in-process Kafka, read, decoded, classified,
// batched per key and handed to a signal sink that accepts at once, with
// offsets committed and the watermark published as in production (default
// limits). events/s counts from the first batch signalled to the last, so
// joining the consumer group is left out.
func BenchmarkIngest(b *testing.B) {
	brokers := cluster(b, 4)
	lines, keys := clicks(b, 10_000, 200_000, 9)
	msgs := make([]message, len(lines))
	for i := range lines {
		msgs[i] = keyed(keys[i], lines[i])
	}
	produce(b, brokers, msgs)
	rules := testRules(b)
	var total int64
	var busy time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sink := &sinkTemporal{lateness: rules.Lateness.Milliseconds()}
		_, stop := startIngester(b, Config{Pipeline: testPipeline(b), Topic: topic, Brokers: brokers,
			GroupID: fmt.Sprintf("bench-%d", i), Temporal: sink, Late: &fakeLate{}})
		waitFor(b, 2*time.Minute, "every event signalled", func() bool { return sink.events.Load() >= int64(len(lines)) })
		stop()
		total += sink.events.Load()
		busy += time.Duration(sink.last.Load() - sink.first.Load())
		b.ReportMetric(float64(sink.events.Load())/float64(sink.signals.Load()), "events/signal")
	}
	b.ReportMetric(float64(total)/busy.Seconds(), "events/s")
}
