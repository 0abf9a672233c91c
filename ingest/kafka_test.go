package ingest

import (
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestKafkaSASL authenticates against a broker that demands SASL, with each
// mechanism the worker offers, and fails with a wrong password.
func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.EnableSASL(),
				kfake.Superuser(mech, "ingest", "s3cret=,x"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, tc := range []struct {
				password string
				ok       bool
			}{{"s3cret=,x", true}, {"wrong", false}} {
				cfg, err := KafkaOptions{SASLMechanism: strings.ToLower(mech), SASLUser: "ingest", SASLPassword: tc.password}.Config()
				if err != nil {
					t.Fatal(err)
				}
				cfg.Metadata.Retry.Max = 0
				cfg.Producer.Return.Successes = true
				p, err := sarama.NewSyncProducer(c.ListenAddrs(), cfg)
				if err == nil {
					_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "t", Value: sarama.StringEncoder("v")})
					p.Close()
				}
				if (err == nil) != tc.ok {
					t.Errorf("password %q: produce error %v; want success %v", tc.password, err, tc.ok)
				}
			}
		})
	}
}

func TestKafkaOptionsErrors(t *testing.T) {
	for _, o := range []KafkaOptions{
		{SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"},
		{SASLMechanism: "PLAIN", SASLUser: "u"},
		{SASLUser: "u", SASLPassword: "p"},
		{CAFile: "ca.pem"},
		{TLS: true, CertFile: "cert.pem"},
		{TLS: true, CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := o.Config(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if s := (KafkaOptions{SASLMechanism: "plain", SASLUser: "u", SASLPassword: "hunter2"}).String(); strings.Contains(s, "hunter2") {
		t.Errorf("String() = %q shows the password", s)
	}
}

// The ingester hands its partitions over per session: it refuses a group
// that would rebalance cooperatively.
func TestCooperativeStrategyRefused(t *testing.T) {
	cfg := kafkaConfig()
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	rules := testRules(t)
	_, err := New(Config{Pipeline: testPipeline(t), Topic: topic, Brokers: []string{"k:9092"}, Kafka: cfg,
		Temporal: newFakeTemporal(&rules, "clicks"), Late: &fakeLate{}})
	if err == nil || !strings.Contains(err.Error(), "cooperative") {
		t.Errorf("New with a cooperative strategy: %v", err)
	}
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky(), sarama.NewBalanceStrategyRange()}
	if _, err := New(Config{Pipeline: testPipeline(t), Topic: topic, Brokers: []string{"k:9092"}, Kafka: cfg,
		Temporal: newFakeTemporal(&rules, "clicks"), Late: &fakeLate{}}); err != nil {
		t.Errorf("New with an eager strategy among them: %v", err)
	}
}
