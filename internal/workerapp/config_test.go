package workerapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionflow/sessionflow/ingest"
)

func TestConfigComplete(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "sasl")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		env     map[string]string
		wantErr string
	}{
		{name: "process needs no Kafka", cfg: Config{Role: RoleProcess}},
		{name: "unknown role", cfg: Config{Role: "both"}, wantErr: `--role "both"`},
		{name: "one poller", cfg: Config{Role: RoleProcess, WorkflowTaskPollers: 1}, wantErr: "--workflow-task-pollers 1"},
		{name: "sixteen pollers", cfg: Config{Role: RoleProcess, WorkflowTaskPollers: 16}},
		{name: "ingest needs pipelines", cfg: Config{Role: RoleIngest, KafkaBrokers: "k:9092"}, wantErr: "--pipelines"},
		{name: "all needs brokers", cfg: Config{Role: RoleAll, Pipelines: "p.yaml"}, wantErr: "--kafka-brokers"},
		{name: "sasl without password", cfg: Config{Role: RoleAll, Pipelines: "p.yaml", KafkaBrokers: "k:9092",
			Kafka: ingest.KafkaOptions{SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}}, wantErr: "KAFKA_SASL_PASSWORD"},
		{name: "sasl password from env", cfg: Config{Role: RoleAll, Pipelines: "p.yaml", KafkaBrokers: "k:9092",
			Kafka: ingest.KafkaOptions{SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}}, env: map[string]string{"KAFKA_SASL_PASSWORD": "from-env"}},
		{name: "sasl password from file", cfg: Config{Role: RoleAll, Pipelines: "p.yaml", KafkaBrokers: "k:9092", SASLPasswordFile: secret,
			Kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}},
		{name: "missing password file", cfg: Config{Role: RoleAll, Pipelines: "p.yaml", KafkaBrokers: "k:9092", SASLPasswordFile: filepath.Join(dir, "none"),
			Kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}, wantErr: "--kafka-sasl-password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KAFKA_SASL_PASSWORD", tc.env["KAFKA_SASL_PASSWORD"])
			cfg := tc.cfg
			err := cfg.Complete()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Complete = %v, want an error mentioning %s", err, tc.wantErr)
			}
		})
	}
	cfg := Config{Role: RoleAll, Pipelines: "p.yaml", KafkaBrokers: "k:9092", SASLPasswordFile: secret,
		Kafka: ingest.KafkaOptions{SASLMechanism: "PLAIN", SASLUser: "u"}}
	if err := cfg.Complete(); err != nil || cfg.Kafka.SASLPassword != "from-file" {
		t.Errorf("password = %q, %v; want it read from the file, trimmed", cfg.Kafka.SASLPassword, err)
	}
}

func TestS3Credentials(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s3")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} {
		t.Setenv(n, "")
	}
	if _, _, err := s3Credentials(""); err == nil || !strings.Contains(err.Error(), "S3_ACCESS_KEY_ID") {
		t.Errorf("no credentials: %v, want an error naming S3_ACCESS_KEY_ID", err)
	}
	t.Setenv("S3_ACCESS_KEY_ID", "id")
	t.Setenv("S3_SECRET_ACCESS_KEY", "from-env")
	if a, s, err := s3Credentials(""); a != "id" || s != "from-env" || err != nil {
		t.Errorf("from the environment: %q, %q, %v", a, s, err)
	}
	if a, s, err := s3Credentials(secret); a != "id" || s != "from-file" || err != nil {
		t.Errorf("secret from the file: %q, %q, %v; want it trimmed", a, s, err)
	}
	if _, _, err := s3Credentials(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "--s3-secret-key-file") {
		t.Errorf("missing secret file: %v", err)
	}
}
