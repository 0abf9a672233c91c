package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sessionflow/sessionflow/generate"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

const topic = "clicks"

// cluster starts an in-process Kafka with the topic "clicks" (and its
// dead-letter topic) of the given partitions, accepting 8 MB messages.
func cluster(t testing.TB, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic), kfake.SeedTopics(1, topic+".dlq"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8388608"}))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// kafkaConfig is the sarama config of the tests: a fast group protocol.
func kafkaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
	c.Consumer.Group.Session.Timeout = 6 * time.Second
	c.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	c.Producer.Return.Successes = true
	c.Producer.MaxMessageBytes = 8 << 20
	return c
}

// message is one record to produce: to a partition, or by key hash when
// partition is negative.
type message struct {
	key       string
	value     []byte
	partition int32
	header    [2]string // one optional header: name, value
}

// produced is where a message landed.
type produced struct {
	partition int32
	offset    int64
}

// produce writes msgs in order and returns where each went.
func produce(t testing.TB, brokers []string, msgs []message) []produced {
	t.Helper()
	c := kafkaConfig()
	c.Producer.Partitioner = func(topic string) sarama.Partitioner {
		return &manualOrHash{hash: sarama.NewHashPartitioner(topic)}
	}
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	out := make([]produced, len(msgs))
	const chunk = 1000
	for from := 0; from < len(msgs); from += chunk {
		batch := make([]*sarama.ProducerMessage, 0, chunk)
		for _, m := range msgs[from:min(from+chunk, len(msgs))] {
			pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(m.value), Partition: m.partition}
			if m.key != "" {
				pm.Key = sarama.StringEncoder(m.key)
			}
			if m.header[0] != "" {
				pm.Headers = []sarama.RecordHeader{{Key: []byte(m.header[0]), Value: []byte(m.header[1])}}
			}
			batch = append(batch, pm)
		}
		if err := p.SendMessages(batch); err != nil {
			t.Fatalf("produce: %v", err)
		}
		for i, pm := range batch {
			out[from+i] = produced{pm.Partition, pm.Offset}
		}
	}
	return out
}

// manualOrHash partitions by the message's Partition when it is set (>= 0)
// and by key hash otherwise.
type manualOrHash struct{ hash sarama.Partitioner }

func (p *manualOrHash) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	if m.Partition >= 0 {
		return m.Partition, nil
	}
	return p.hash.Partition(m, n)
}

func (p *manualOrHash) RequiresConsistency() bool { return true }

// clicks is a generated clickstream as JSON lines, with its uuid keys.
func clicks(t testing.TB, users, events int, seed uint64) (lines [][]byte, keys []string) {
	t.Helper()
	var buf bytes.Buffer
	if err := generate.Clicks(&buf, generate.ClickOptions{Users: users, Events: events, Seed: seed, Scale: 1.0 / 60}); err != nil {
		t.Fatal(err)
	}
	d := session.NewDecoder(ptr(testRules(t)))
	for line := range bytes.Lines(buf.Bytes()) {
		line = bytes.TrimSpace(line)
		key, _, err := d.Decode(line)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		keys = append(keys, string(key))
	}
	return lines, keys
}

func ptr[T any](v T) *T { return &v }

// testRules are the clickstream rules with minutes turned into seconds, as
// the workflows' integration test uses them.
func testRules(t testing.TB) session.Rules {
	r, err := session.Defaults(session.Clickstream)
	if err != nil {
		t.Fatal(err)
	}
	r.Gap, r.MaxDuration = r.Gap/60, r.MaxDuration/60
	r.Lateness = 5 * time.Second
	return r
}

func testPipeline(t testing.TB) workflows.Pipeline {
	return workflows.Pipeline{Name: "clicks", Rules: testRules(t)}
}

// startIngester runs an ingester until the returned stop is called (or the
// test ends); stop waits for Run to return and fails the test on its error.
func startIngester(t testing.TB, cfg Config) (*Ingester, func()) {
	t.Helper()
	if cfg.Kafka == nil {
		cfg.Kafka = kafkaConfig()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	ing, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("Run did not return within 60s of its context ending")
		}
	}
	t.Cleanup(stop)
	return ing, stop
}

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// committed returns the group's committed offset of each partition (-1
// when none).
func committed(t testing.TB, brokers []string, group string, partitions int32) []int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, kafkaConfig())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	out := make([]int64, partitions)
	for i := range out {
		out[i] = -1
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return out // nothing committed yet
	}
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	for i := range out {
		if b := resp.GetBlock(topic, int32(i)); b != nil && !errors.Is(b.Err, sarama.ErrNoError) {
			t.Fatalf("offset of partition %d: %v", i, b.Err)
		} else if b != nil {
			out[i] = b.Offset
		}
	}
	return out
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// batchRecords is the batch engine's result over lines, as `starter
// sessionize` computes it.
func batchRecords(t testing.TB, rules session.Rules, pipeline string, lines [][]byte) []session.Record {
	t.Helper()
	b := session.Batch{Rules: &rules, Pipeline: pipeline}
	recs, _, err := b.Run(context.Background(), bytes.NewReader(append(bytes.Join(lines, []byte{'\n'}), '\n')))
	if err != nil {
		t.Fatal(err)
	}
	sortRecords(recs)
	return recs
}

// maxTime is the largest event time of lines: a batch run's final
// watermark.
func maxTime(t testing.TB, rules session.Rules, lines [][]byte) int64 {
	t.Helper()
	dec := session.NewDecoder(&rules)
	high := session.NoWatermark
	for _, line := range lines {
		if _, e, err := dec.Decode(line); err == nil {
			high = max(high, e.Time)
		}
	}
	return high
}
