// Command worker runs Sessionflow: the Temporal worker (session, clock and
// sink workflows and their activities: Parquet to S3, notifications) and
// the Kafka ingesters that feed the workflows, one per pipeline of the
// pipelines file. --role splits them: "process" runs only the Temporal
// worker, "ingest" only the ingesters, "all" (the default) both.
//
// Temporal is reached through the standard TEMPORAL_* environment
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*),
// Kafka and S3 through flags or their environment variables. Prometheus
// metrics are served on --metrics-addr at /metrics, with /healthz and
// /readyz for probes. The process itself is internal/workerapp.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/internal/env"
	"github.com/sessionflow/sessionflow/internal/workerapp"
	"github.com/sessionflow/sessionflow/workflows"
)

func main() {
	cmd := newCommand()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var cfg workerapp.Config
	var startDelay time.Duration // --start-delay, if given
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run Sessionflow's Temporal worker and Kafka ingesters",
		Long: `worker runs the session, clock and sink workflows and their activities
(--role process), the Kafka ingesters of the pipelines file (--role ingest),
or both (--role all).

Temporal: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE
(default "default"), TEMPORAL_API_KEY, TEMPORAL_TLS_* — the standard
Temporal client environment.
Kafka: --kafka-brokers (KAFKA_BROKERS); TLS with --kafka-tls (KAFKA_TLS=true);
SASL with --kafka-sasl-mechanism (KAFKA_SASL_MECHANISM), the user from
KAFKA_SASL_USER (or KAFKA_SASL_USERNAME) and the password from
KAFKA_SASL_PASSWORD or --kafka-sasl-password-file.
S3: --s3-endpoint and --s3-bucket; credentials from S3_ACCESS_KEY_ID and
S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or the
secret from --s3-secret-key-file. Secrets are never logged.`,
		SilenceUsage:  true,
		SilenceErrors: true, // main prints them once
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("start-delay") {
				if startDelay < 0 {
					return fmt.Errorf("--start-delay %v: want a positive duration, or 0 to start sessions at once", startDelay)
				}
				cfg.StartDelay = &startDelay
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return workerapp.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Role, "role", env.Or("SESSIONFLOW_ROLE", workerapp.RoleAll), "what to run: all, ingest (Kafka to Temporal) or process (the Temporal worker) (env SESSIONFLOW_ROLE)")
	f.StringVar(&cfg.Pipelines, "pipelines", os.Getenv("SESSIONFLOW_PIPELINES"), "the pipelines file (YAML); required to ingest (env SESSIONFLOW_PIPELINES)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", env.Or("SESSIONFLOW_METRICS_ADDR", ":9090"), "serve /metrics, /healthz and /readyz here; empty to disable (env SESSIONFLOW_METRICS_ADDR)")
	f.StringVar(&cfg.TaskQueue, "task-queue", workflows.TaskQueue, "Temporal task queue of sessions, sinks and activities; the pipelines' clocks use <task-queue>-clock")
	f.StringVar(&cfg.S3.Endpoint, "s3-endpoint", env.Or("S3_ENDPOINT", env.DefaultS3Endpoint), "S3-compatible endpoint host:port (env S3_ENDPOINT)")
	f.StringVar(&cfg.S3.Bucket, "s3-bucket", env.Or("S3_BUCKET", env.DefaultS3Bucket), "bucket for Parquet output (env S3_BUCKET)")
	f.BoolVar(&cfg.S3.TLS, "s3-tls", env.True("S3_TLS"), "use TLS to reach S3 (env S3_TLS=true)")
	f.StringVar(&cfg.S3.SecretKeyFile, "s3-secret-key-file", "", "read the S3 secret key from this file")
	f.StringVar(&cfg.WebhookURL, "webhook-url", os.Getenv("SESSIONFLOW_WEBHOOK_URL"), "POST notifications here (env SESSIONFLOW_WEBHOOK_URL)")
	f.StringVar(&cfg.NotifyBrokers, "notify-kafka-brokers", os.Getenv("SESSIONFLOW_NOTIFY_BROKERS"), "comma-separated Kafka brokers for notifications (env SESSIONFLOW_NOTIFY_BROKERS)")
	f.StringVar(&cfg.NotifyTopic, "notify-topic", "sessionflow.notifications", "Kafka topic for notifications")
	f.BoolVar(&cfg.RegisterSearchAttributes, "register-search-attributes", true, "add the session search attributes to the namespace at start")
	// Not zero for the default: 0 is the SDK's default of 2.
	f.IntVar(&cfg.WorkflowTaskPollers, "workflow-task-pollers", workflows.DefaultWorkflowTaskPollers, "concurrent workflow task polls per task queue; each session signal is a workflow task, and the SDK's default of 2 caps a worker at two round trips at a time")

	f.StringVar(&cfg.KafkaBrokers, "kafka-brokers", os.Getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers to ingest from (env KAFKA_BROKERS)")
	f.StringVar(&cfg.Kafka.ClientID, "kafka-client-id", env.Or("KAFKA_CLIENT_ID", ingest.DefaultClientID), "Kafka client id (env KAFKA_CLIENT_ID)")
	f.BoolVar(&cfg.Kafka.StartNewest, "kafka-start-newest", false, "a pipeline without committed offsets starts at the end of its topic, not the beginning")
	f.BoolVar(&cfg.Kafka.TLS, "kafka-tls", env.True("KAFKA_TLS"), "use TLS to reach Kafka (env KAFKA_TLS=true)")
	f.StringVar(&cfg.Kafka.CAFile, "kafka-tls-ca", os.Getenv("KAFKA_TLS_CA"), "PEM file of the CAs that sign the brokers' certificates (env KAFKA_TLS_CA)")
	f.StringVar(&cfg.Kafka.CertFile, "kafka-tls-cert", os.Getenv("KAFKA_TLS_CERT"), "PEM client certificate for mutual TLS (env KAFKA_TLS_CERT)")
	f.StringVar(&cfg.Kafka.KeyFile, "kafka-tls-key", os.Getenv("KAFKA_TLS_KEY"), "PEM key of the client certificate (env KAFKA_TLS_KEY)")
	f.StringVar(&cfg.Kafka.ServerName, "kafka-tls-server-name", "", "expected name in the brokers' certificates, if not their host names")
	f.BoolVar(&cfg.Kafka.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "do not verify the brokers' certificates (testing only)")
	f.StringVar(&cfg.Kafka.SASLMechanism, "kafka-sasl-mechanism", os.Getenv("KAFKA_SASL_MECHANISM"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env KAFKA_SASL_MECHANISM)")
	f.StringVar(&cfg.Kafka.SASLUser, "kafka-sasl-user", env.First("KAFKA_SASL_USER", "KAFKA_SASL_USERNAME"), "SASL user (env KAFKA_SASL_USER or KAFKA_SASL_USERNAME)")
	f.StringVar(&cfg.SASLPasswordFile, "kafka-sasl-password-file", "", "read the SASL password from this file (else env KAFKA_SASL_PASSWORD)")

	// Zero takes ingest's default, which the help shows.
	// ingest.DefaultMaxHold is the default; main_test holds this text to its bounds.
	f.DurationVar(&cfg.Limits.MaxHold, "max-hold", 0, "longest an event waits in its key's batch before it is signalled; a pipeline's max_hold wins over it "+
		"(default a quarter of the pipeline's gap, within 1s..1m)")
	// The flag's old name, which deploy scripts may still pass.
	f.DurationVar(&cfg.Limits.MaxHold, "flush-interval", 0, "the old name of --max-hold")
	if err := f.MarkDeprecated("flush-interval", "use --max-hold"); err != nil {
		panic(err) // the flag was defined just above
	}
	f.DurationVar(&startDelay, "start-delay", 0, "how long a new session waits for its first workflow task, so that its first batches arrive in one; "+
		"0 starts sessions at once; a pipeline's start_delay wins over it (default twice the hold, within half the time to a session's first deadline)")
	f.IntVar(&cfg.Limits.MaxInFlight, "max-in-flight", 0, withDefault("concurrent SignalWithStart calls per pipeline", ingest.DefaultMaxInFlight))
	f.IntVar(&cfg.Limits.MaxUncommitted, "max-uncommitted", 0, withDefault("messages read but not committed per pipeline before reading pauses", ingest.DefaultMaxUncommitted))
	f.DurationVar(&cfg.Limits.IdleAfter, "idle-after", 0, withDefault("a partition without on-time events for this long stops holding the watermark back", ingest.DefaultIdleAfter))
	return cmd
}

// withDefault appends a flag's default, as pflag shows non-zero ones, for a
// flag whose zero value leaves the default to the package.
func withDefault(usage string, def any) string {
	return fmt.Sprintf("%s (default %v)", usage, def)
}
