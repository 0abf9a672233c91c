package ingest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestDeadLetters sends each malformed message to clicks.dlq with its
// original bytes and headers, its reason and its source, and keeps
// consuming.
func TestDeadLetters(t *testing.T) {
	brokers := cluster(t, 1)
	huge := append([]byte(`{"uuid":"u","event_timestamp":1704067200000,"pad":"`), bytes.Repeat([]byte("x"), 5<<20)...)
	huge = append(huge, `"}`...)
	bad := []struct {
		value  []byte
		reason string
	}{
		{[]byte(`not json at all`), ReasonNotJSON},
		{[]byte(`{"event_timestamp":1704067200000}`), ReasonMissingKey},
		{[]byte(`{"uuid":"u","event_timestamp":"yesterday"}`), ReasonBadTime},
		{[]byte(`{"uuid":"u","event_timestamp":99999999999999}`), ReasonTimeRange},
		{huge, ReasonTooLarge},
	}
	// Valid events around each bad one: good, bad, good, bad, …, good.
	good := func(i int) message {
		return message{key: "u", value: fmt.Appendf(nil, `{"uuid":"u","event_timestamp":%d,"page_name":"home"}`, 1704067200000+int64(i)*1000)}
	}
	var msgs []message
	for i, b := range bad {
		msgs = append(msgs, good(i), message{key: "k", value: b.value, header: [2]string{"producer", "app-7"}})
	}
	msgs = append(msgs, good(len(bad)))
	where := produce(t, brokers, msgs)

	rules := testRules(t)
	fake := newFakeTemporal(&rules, "clicks")
	_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "dlq",
		Temporal: fake, Late: &fakeLate{}, Limits: fastLimits()})
	waitFor(t, 30*time.Second, "all offsets committed", func() bool {
		return committed(t, brokers, "dlq", 1)[0] == where[len(where)-1].offset+1
	})
	stop()

	dead := consumeAll(t, brokers, topic+".dlq", len(bad))
	for i, b := range bad {
		m := dead[i]
		src := where[2*i+1]
		if !bytes.Equal(m.Value, b.value) || string(m.Key) != "k" {
			t.Errorf("dead letter %d: value of %d bytes, key %q; want the original %d bytes, key k", i, len(m.Value), m.Key, len(b.value))
		}
		for h, want := range map[string]string{
			"producer":   "app-7", // the message's own header, kept
			HeaderReason: b.reason, HeaderSourceTopic: topic, HeaderSourcePartition: "0",
			HeaderSourceOffset: fmt.Sprint(src.offset), HeaderPipeline: "clicks",
		} {
			if got := header(m, h); got != want {
				t.Errorf("dead letter %d: header %s = %q, want %q", i, h, got, want)
			}
		}
		if header(m, HeaderError) == "" {
			t.Errorf("dead letter %d has no %s header", i, HeaderError)
		}
	}
	if fake.events != len(bad)+1 {
		t.Errorf("%d valid events signalled, want %d", fake.events, len(bad)+1)
	}
}

// consumeAll reads n messages of a topic's partition 0 from the start.
func consumeAll(t *testing.T, brokers []string, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, kafkaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: got %d messages, want %d", topic, len(out), n)
		}
	}
	return out
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestDeadLetterTooLargeForTheDLQ: when the dead-letter topic refuses a
// message for its size, the dead letter keeps the value's first bytes and
// says so, rather than stopping the partition.
func TestDeadLetterTooLargeForTheDLQ(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8388608"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	admin, err := sarama.NewClusterAdmin(brokers, kafkaConfig())
	if err != nil {
		t.Fatal(err)
	}
	limit := "1048576"
	if err := admin.CreateTopic(topic+".dlq", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	huge := bytes.Repeat([]byte("x"), 2<<20)
	where := produce(t, brokers, []message{{key: "k", value: huge}})

	rules := testRules(t)
	_, stop := startIngester(t, Config{Pipeline: testPipeline(t), Topic: topic, Brokers: brokers, GroupID: "dlq-small",
		Temporal: newFakeTemporal(&rules, "clicks"), Late: &fakeLate{}, Limits: fastLimits()})
	waitFor(t, 30*time.Second, "the offset committed", func() bool {
		return committed(t, brokers, "dlq-small", 1)[0] == where[0].offset+1
	})
	stop()
	m := consumeAll(t, brokers, topic+".dlq", 1)[0]
	if len(m.Value) != truncatedBytes || header(m, HeaderTruncated) != fmt.Sprint(len(huge)) || header(m, HeaderReason) != ReasonTooLarge {
		t.Errorf("dead letter: %d bytes, truncated=%q, reason=%q; want %d bytes, truncated=%d, reason %s",
			len(m.Value), header(m, HeaderTruncated), header(m, HeaderReason), truncatedBytes, len(huge), ReasonTooLarge)
	}
}
