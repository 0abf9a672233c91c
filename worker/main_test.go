package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionflow/sessionflow/ingest"
)

func TestOptionsComplete(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "sasl")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       options
		env     map[string]string
		wantErr string
	}{
		{name: "process needs no Kafka", o: options{role: roleProcess}},
		{name: "unknown role", o: options{role: "both"}, wantErr: `--role "both"`},
		{name: "one poller", o: options{role: roleProcess, wftPollers: 1}, wantErr: "--workflow-task-pollers 1"},
		{name: "sixteen pollers", o: options{role: roleProcess, wftPollers: 16}},
		{name: "ingest needs pipelines", o: options{role: roleIngest, kafkaBrokers: "k:9092"}, wantErr: "--pipelines"},
		{name: "all needs brokers", o: options{role: roleAll, pipelines: "p.yaml"}, wantErr: "--kafka-brokers"},
		{name: "sasl without password", o: options{role: roleAll, pipelines: "p.yaml", kafkaBrokers: "k:9092",
			kafka: ingest.KafkaOptions{SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}}, wantErr: "KAFKA_SASL_PASSWORD"},
		{name: "sasl password from env", o: options{role: roleAll, pipelines: "p.yaml", kafkaBrokers: "k:9092",
			kafka: ingest.KafkaOptions{SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}}, env: map[string]string{"KAFKA_SASL_PASSWORD": "from-env"}},
		{name: "sasl password from file", o: options{role: roleAll, pipelines: "p.yaml", kafkaBrokers: "k:9092", saslPasswordFile: secret,
			kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}},
		{name: "missing password file", o: options{role: roleAll, pipelines: "p.yaml", kafkaBrokers: "k:9092", saslPasswordFile: filepath.Join(dir, "none"),
			kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}, wantErr: "--kafka-sasl-password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KAFKA_SASL_PASSWORD", tc.env["KAFKA_SASL_PASSWORD"])
			o := tc.o
			err := o.complete()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("complete: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("complete = %v, want an error mentioning %s", err, tc.wantErr)
			}
		})
	}
	o := options{role: roleAll, pipelines: "p.yaml", kafkaBrokers: "k:9092", saslPasswordFile: secret,
		kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}
	if err := o.complete(); err != nil || o.kafka.SASLPassword != "from-file" {
		t.Errorf("password = %q, %v; want it read from the file, trimmed", o.kafka.SASLPassword, err)
	}
}

// The flags take their defaults from the environment the deployment files
// set, KAFKA_SASL_USERNAME included.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "a:9092,b:9092")
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USERNAME", "ingest")
	cmd := newCommand()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	for name, want := range map[string]string{
		"kafka-brokers": "a:9092,b:9092", "kafka-tls": "true", "kafka-sasl-mechanism": "SCRAM-SHA-512",
		"kafka-sasl-user": "ingest", "role": "all", "metrics-addr": ":9090",
	} {
		if got := get(name); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
}

func TestMetricsServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	ingest.NewMetrics(reg).Messages.WithLabelValues("clicks", "0").Add(3)
	var ready atomic.Bool
	var logs bytes.Buffer
	stop, err := serveMetrics("127.0.0.1:0", reg, &ready, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	addr := between(logs.String(), `"addr":"`, `"`)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before start = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once started = %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `sessionflow_ingest_messages_total{partition="0",pipeline="clicks"} 3`) {
		t.Errorf("/metrics = %d:\n%s", code, body)
	}
}

func between(s, from, to string) string {
	_, s, _ = strings.Cut(s, from)
	s, _, _ = strings.Cut(s, to)
	return s
}
