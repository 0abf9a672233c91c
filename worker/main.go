// Command worker runs Sessionflow's Temporal worker: the session, clock and
// sink workflows and their activities (Parquet to S3, notifications).
//
// Temporal is reached through the standard TEMPORAL_* environment
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*),
// S3 and notifications through flags or their environment variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/workflows"
)

type config struct {
	taskQueue     string
	s3Endpoint    string
	s3Bucket      string
	s3Secure      bool
	s3AccessKey   string
	s3SecretKey   string
	s3SecretFile  string
	webhookURL    string
	kafkaBrokers  string
	notifyTopic   string
	registerAttrs bool
}

func main() {
	var cfg config
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run Sessionflow's Temporal worker",
		Long: `worker runs the session, clock and sink workflows and their activities.

Temporal: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE
(default "default"), TEMPORAL_API_KEY, TEMPORAL_TLS_* — the standard
Temporal client environment.
S3: --s3-endpoint and --s3-bucket; credentials from S3_ACCESS_KEY_ID and
S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or the
secret from --s3-secret-key-file. Secrets are never logged.`,
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.taskQueue, "task-queue", workflows.TaskQueue, "Temporal task queue")
	f.StringVar(&cfg.s3Endpoint, "s3-endpoint", envOr("S3_ENDPOINT", "127.0.0.1:9000"), "S3-compatible endpoint host:port (env S3_ENDPOINT)")
	f.StringVar(&cfg.s3Bucket, "s3-bucket", envOr("S3_BUCKET", "sessionflow"), "bucket for Parquet output (env S3_BUCKET)")
	f.BoolVar(&cfg.s3Secure, "s3-tls", os.Getenv("S3_TLS") == "true", "use TLS to reach S3 (env S3_TLS=true)")
	f.StringVar(&cfg.s3SecretFile, "s3-secret-key-file", "", "read the S3 secret key from this file")
	f.StringVar(&cfg.webhookURL, "webhook-url", os.Getenv("SESSIONFLOW_WEBHOOK_URL"), "POST notifications here (env SESSIONFLOW_WEBHOOK_URL)")
	f.StringVar(&cfg.kafkaBrokers, "notify-kafka-brokers", os.Getenv("SESSIONFLOW_NOTIFY_BROKERS"), "comma-separated Kafka brokers for notifications")
	f.StringVar(&cfg.notifyTopic, "notify-topic", "sessionflow.notifications", "Kafka topic for notifications")
	f.BoolVar(&cfg.registerAttrs, "register-search-attributes", true, "add the session search attributes to the namespace at start")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, cfg config) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return fmt.Errorf("temporal client config: %w", err)
	}
	opts.Logger = log.NewStructuredLogger(logger)
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("connect to temporal at %s: %w", opts.HostPort, err)
	}
	defer c.Close()
	if cfg.registerAttrs {
		if err := workflows.RegisterSearchAttributes(ctx, c, opts.Namespace); err != nil {
			logger.Warn("search attributes not registered; sessions will run without them", "error", err)
		}
	}
	acts, closeActs, err := newActivities(cfg, logger)
	if err != nil {
		return err
	}
	defer closeActs()

	w := worker.New(c, cfg.taskQueue, worker.Options{})
	workflows.Register(w, acts, c)
	logger.Info("worker starting", "task_queue", cfg.taskQueue, "s3", cfg.s3Endpoint, "bucket", cfg.s3Bucket)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	<-ctx.Done()
	logger.Info("worker stopping: finishing in-flight tasks")
	w.Stop()
	return nil
}

func newActivities(cfg config, logger *slog.Logger) (*activities.Activities, func(), error) {
	access := firstEnv("S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER")
	secret := firstEnv("S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")
	if cfg.s3SecretFile != "" {
		b, err := os.ReadFile(cfg.s3SecretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --s3-secret-key-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if access == "" || secret == "" {
		return nil, nil, errors.New("S3 credentials missing: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or --s3-secret-key-file)")
	}
	s3, err := minio.New(cfg.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Secure: cfg.s3Secure})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 client for %s: %w", cfg.s3Endpoint, err)
	}
	acts := &activities.Activities{S3: s3, Bucket: cfg.s3Bucket}
	closeFn := func() {}
	if cfg.webhookURL != "" {
		acts.Webhook = &activities.Webhook{URL: cfg.webhookURL, Client: &http.Client{Timeout: 30 * time.Second}}
	}
	if cfg.kafkaBrokers != "" {
		p, err := activities.NewKafkaNotifier(strings.Split(cfg.kafkaBrokers, ","), sarama.NewConfig())
		if err != nil {
			return nil, nil, fmt.Errorf("kafka notifier: %w", err)
		}
		acts.Kafka, acts.NotifyTopic = p, cfg.notifyTopic
		closeFn = func() { p.Close() }
	}
	logger.Info("notifications", "webhook", cfg.webhookURL != "", "kafka", cfg.kafkaBrokers != "")
	return acts, closeFn, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
