// Package workerapp is the worker binary's process: the Temporal worker
// (session, clock and sink workflows and their activities) and the Kafka
// ingesters of the pipelines file, split by Role, with S3, notifications and
// the metrics and probe server they share. worker/main.go turns flags and
// environment into a Config and calls Run.
package workerapp

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sessionflow/sessionflow/ingest"
)

// The roles a worker process takes (Config.Role).
const (
	RoleAll     = "all"     // both the Temporal worker and the ingesters
	RoleIngest  = "ingest"  // only the ingesters: Kafka to Temporal
	RoleProcess = "process" // only the Temporal worker
)

// Config is what a worker process runs. Complete checks it and reads the
// secrets before anything connects; Run calls it.
type Config struct {
	// Role is RoleAll, RoleIngest or RoleProcess.
	Role string
	// Pipelines is the pipelines file (YAML); the ingesting roles need it.
	Pipelines string
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables.
	MetricsAddr string
	// TaskQueue is the Temporal task queue of sessions, sinks and
	// activities; the clocks use workflows.ClockTaskQueue of it.
	TaskQueue string
	// WorkflowTaskPollers is worker.Options.MaxConcurrentWorkflowTaskPollers
	// of both workers: 0 leaves the SDK's default of 2, 1 is refused (the
	// worker binary's default is workflows.DefaultWorkflowTaskPollers).
	WorkflowTaskPollers int
	// RegisterSearchAttributes adds the session search attributes to the
	// namespace at start.
	RegisterSearchAttributes bool

	// S3 is where Parquet output and late events go.
	S3 S3Config

	// WebhookURL, if set, receives notifications by POST.
	WebhookURL string
	// NotifyBrokers (comma-separated), if set, receive notifications on
	// NotifyTopic, with the Kafka settings.
	NotifyBrokers string
	NotifyTopic   string

	// KafkaBrokers (comma-separated) are ingested from; the ingesting roles
	// need them.
	KafkaBrokers string
	// Kafka are the TLS and SASL settings of the ingesters and the
	// notifier. Complete sets Kafka.SASLPassword from SASLPasswordFile,
	// else from KAFKA_SASL_PASSWORD.
	Kafka            ingest.KafkaOptions
	SASLPasswordFile string
	// Limits bound each ingester; zero fields take ingest's defaults.
	Limits ingest.Limits
	// StartDelay is --start-delay: nil leaves each pipeline's to its
	// start_delay, else ingest.DefaultStartDelay.
	StartDelay *time.Duration

	// Logger receives the process's logs, the Temporal SDK's included;
	// nil logs JSON lines to stderr.
	Logger *slog.Logger
}

// S3Config says how to reach S3. The credentials come from the environment
// (env.S3Credentials), the secret key also from SecretKeyFile.
type S3Config struct {
	Endpoint      string // host:port
	Bucket        string
	TLS           bool
	SecretKeyFile string
}

// Complete validates the config and reads the Kafka SASL password from the
// environment or its file, before anything connects. Its errors name the
// worker's flags.
func (c *Config) Complete() error {
	switch c.Role {
	case RoleAll, RoleIngest, RoleProcess:
	default:
		return fmt.Errorf("--role %q: want all, ingest or process", c.Role)
	}
	if c.WorkflowTaskPollers < 0 || c.WorkflowTaskPollers == 1 { // 0: the SDK's default
		return fmt.Errorf("--workflow-task-pollers %d: want at least 2 (Temporal's SDK refuses fewer)", c.WorkflowTaskPollers)
	}
	if c.Role != RoleProcess {
		if c.Pipelines == "" {
			return fmt.Errorf("--role %s needs --pipelines (the pipelines file)", c.Role)
		}
		if c.KafkaBrokers == "" {
			return fmt.Errorf("--role %s needs --kafka-brokers (or KAFKA_BROKERS)", c.Role)
		}
	}
	c.Kafka.SASLPassword = os.Getenv("KAFKA_SASL_PASSWORD")
	if c.SASLPasswordFile != "" {
		b, err := os.ReadFile(c.SASLPasswordFile)
		if err != nil {
			return fmt.Errorf("read --kafka-sasl-password-file: %w", err)
		}
		c.Kafka.SASLPassword = strings.TrimSpace(string(b))
	}
	if c.KafkaBrokers != "" || c.NotifyBrokers != "" {
		if _, err := c.Kafka.Config(); err != nil {
			return err
		}
	}
	return nil
}
