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
// /readyz for probes.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/workflows"
)

// Roles.
const (
	roleAll     = "all"
	roleIngest  = "ingest"
	roleProcess = "process"
)

type options struct {
	role          string
	pipelines     string
	metricsAddr   string
	taskQueue     string
	s3Endpoint    string
	s3Bucket      string
	s3Secure      bool
	s3SecretFile  string
	webhookURL    string
	notifyBrokers string
	notifyTopic   string
	registerAttrs bool
	wftPollers    int

	kafkaBrokers     string
	kafka            ingest.KafkaOptions
	saslPasswordFile string
	limits           ingest.Limits
}

func main() {
	cmd := newCommand()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
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
			if err := o.complete(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", envOr("SESSIONFLOW_ROLE", roleAll), "what to run: all, ingest (Kafka to Temporal) or process (the Temporal worker) (env SESSIONFLOW_ROLE)")
	f.StringVar(&o.pipelines, "pipelines", os.Getenv("SESSIONFLOW_PIPELINES"), "the pipelines file (YAML); required to ingest (env SESSIONFLOW_PIPELINES)")
	f.StringVar(&o.metricsAddr, "metrics-addr", envOr("SESSIONFLOW_METRICS_ADDR", ":9090"), "serve /metrics, /healthz and /readyz here; empty to disable (env SESSIONFLOW_METRICS_ADDR)")
	f.StringVar(&o.taskQueue, "task-queue", workflows.TaskQueue, "Temporal task queue of sessions, sinks and activities; the pipelines' clocks use <task-queue>-clock")
	f.StringVar(&o.s3Endpoint, "s3-endpoint", envOr("S3_ENDPOINT", "127.0.0.1:9000"), "S3-compatible endpoint host:port (env S3_ENDPOINT)")
	f.StringVar(&o.s3Bucket, "s3-bucket", envOr("S3_BUCKET", "sessionflow"), "bucket for Parquet output (env S3_BUCKET)")
	f.BoolVar(&o.s3Secure, "s3-tls", os.Getenv("S3_TLS") == "true", "use TLS to reach S3 (env S3_TLS=true)")
	f.StringVar(&o.s3SecretFile, "s3-secret-key-file", "", "read the S3 secret key from this file")
	f.StringVar(&o.webhookURL, "webhook-url", os.Getenv("SESSIONFLOW_WEBHOOK_URL"), "POST notifications here (env SESSIONFLOW_WEBHOOK_URL)")
	f.StringVar(&o.notifyBrokers, "notify-kafka-brokers", os.Getenv("SESSIONFLOW_NOTIFY_BROKERS"), "comma-separated Kafka brokers for notifications (env SESSIONFLOW_NOTIFY_BROKERS)")
	f.StringVar(&o.notifyTopic, "notify-topic", "sessionflow.notifications", "Kafka topic for notifications")
	f.BoolVar(&o.registerAttrs, "register-search-attributes", true, "add the session search attributes to the namespace at start")
	f.IntVar(&o.wftPollers, "workflow-task-pollers", 16, "concurrent workflow task polls per task queue; each session signal is a workflow task, and the SDK's default of 2 caps a worker at two round trips at a time")

	f.StringVar(&o.kafkaBrokers, "kafka-brokers", os.Getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers to ingest from (env KAFKA_BROKERS)")
	f.StringVar(&o.kafka.ClientID, "kafka-client-id", envOr("KAFKA_CLIENT_ID", "sessionflow"), "Kafka client id (env KAFKA_CLIENT_ID)")
	f.BoolVar(&o.kafka.StartNewest, "kafka-start-newest", false, "a pipeline without committed offsets starts at the end of its topic, not the beginning")
	f.BoolVar(&o.kafka.TLS, "kafka-tls", os.Getenv("KAFKA_TLS") == "true", "use TLS to reach Kafka (env KAFKA_TLS=true)")
	f.StringVar(&o.kafka.CAFile, "kafka-tls-ca", os.Getenv("KAFKA_TLS_CA"), "PEM file of the CAs that sign the brokers' certificates (env KAFKA_TLS_CA)")
	f.StringVar(&o.kafka.CertFile, "kafka-tls-cert", os.Getenv("KAFKA_TLS_CERT"), "PEM client certificate for mutual TLS (env KAFKA_TLS_CERT)")
	f.StringVar(&o.kafka.KeyFile, "kafka-tls-key", os.Getenv("KAFKA_TLS_KEY"), "PEM key of the client certificate (env KAFKA_TLS_KEY)")
	f.StringVar(&o.kafka.ServerName, "kafka-tls-server-name", "", "expected name in the brokers' certificates, if not their host names")
	f.BoolVar(&o.kafka.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "do not verify the brokers' certificates (testing only)")
	f.StringVar(&o.kafka.SASLMechanism, "kafka-sasl-mechanism", os.Getenv("KAFKA_SASL_MECHANISM"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env KAFKA_SASL_MECHANISM)")
	f.StringVar(&o.kafka.SASLUser, "kafka-sasl-user", firstEnv("KAFKA_SASL_USER", "KAFKA_SASL_USERNAME"), "SASL user (env KAFKA_SASL_USER or KAFKA_SASL_USERNAME)")
	f.StringVar(&o.saslPasswordFile, "kafka-sasl-password-file", "", "read the SASL password from this file (else env KAFKA_SASL_PASSWORD)")

	f.DurationVar(&o.limits.FlushInterval, "flush-interval", time.Second, "longest an event waits in its key's batch before it is signalled")
	f.IntVar(&o.limits.MaxInFlight, "max-in-flight", 32, "concurrent SignalWithStart calls per pipeline")
	f.IntVar(&o.limits.MaxUncommitted, "max-uncommitted", 100_000, "messages read but not committed per pipeline before reading pauses")
	f.DurationVar(&o.limits.IdleAfter, "idle-after", 30*time.Second, "a partition without on-time events for this long stops holding the watermark back")
	return cmd
}

// complete validates the options and reads the secrets from the
// environment or files, before anything connects.
func (o *options) complete() error {
	switch o.role {
	case roleAll, roleIngest, roleProcess:
	default:
		return fmt.Errorf("--role %q: want all, ingest or process", o.role)
	}
	if o.wftPollers < 0 || o.wftPollers == 1 { // 0: the SDK's default
		return fmt.Errorf("--workflow-task-pollers %d: want at least 2 (Temporal's SDK refuses fewer)", o.wftPollers)
	}
	if o.role != roleProcess {
		if o.pipelines == "" {
			return fmt.Errorf("--role %s needs --pipelines (the pipelines file)", o.role)
		}
		if o.kafkaBrokers == "" {
			return fmt.Errorf("--role %s needs --kafka-brokers (or KAFKA_BROKERS)", o.role)
		}
	}
	o.kafka.SASLPassword = os.Getenv("KAFKA_SASL_PASSWORD")
	if o.saslPasswordFile != "" {
		b, err := os.ReadFile(o.saslPasswordFile)
		if err != nil {
			return fmt.Errorf("read --kafka-sasl-password-file: %w", err)
		}
		o.kafka.SASLPassword = strings.TrimSpace(string(b))
	}
	if o.kafkaBrokers != "" || o.notifyBrokers != "" {
		if _, err := o.kafka.Config(); err != nil {
			return err
		}
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func run(ctx context.Context, o options) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var pipelines *config.File
	if o.role != roleProcess {
		var err error
		if pipelines, err = config.Load(o.pipelines); err != nil {
			return err
		}
	}
	topts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return fmt.Errorf("temporal client config: %w", err)
	}
	topts.Logger = log.NewStructuredLogger(logger)
	c, err := client.DialContext(ctx, topts)
	if err != nil {
		return fmt.Errorf("connect to temporal at %s: %w", topts.HostPort, err)
	}
	defer c.Close()
	if o.registerAttrs {
		if err := workflows.RegisterSearchAttributes(ctx, c, topts.Namespace); err != nil {
			logger.Warn("search attributes not registered; sessions will run without them", "error", err)
		}
	}
	acts, closeActs, err := newActivities(o, logger)
	if err != nil {
		return err
	}
	defer closeActs()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var ready atomic.Bool
	if o.metricsAddr != "" {
		stopServer, err := serveMetrics(o.metricsAddr, reg, &ready, logger)
		if err != nil {
			return err
		}
		defer stopServer()
	}

	if o.role != roleIngest {
		ws := workflows.NewWorkers(c, o.taskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: o.wftPollers}, acts)
		logger.Info("worker starting", "task_queue", o.taskQueue, "clock_task_queue", workflows.ClockTaskQueue(o.taskQueue),
			"s3", o.s3Endpoint, "bucket", o.s3Bucket)
		if err := ws.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer func() {
			logger.Info("worker stopping: finishing in-flight tasks")
			ws.Stop()
		}()
	}
	var ingesters []*ingest.Ingester
	if o.role != roleProcess {
		if ingesters, err = newIngesters(o, pipelines, c, acts, ingest.NewMetrics(reg), logger); err != nil {
			return err
		}
	}
	ready.Store(true)
	err = runIngesters(ctx, ingesters)
	ready.Store(false)
	return err
}

// newIngesters builds one ingester per pipeline that names a topic.
func newIngesters(o options, pipelines *config.File, c client.Client, acts *activities.Activities,
	met *ingest.Metrics, logger *slog.Logger) ([]*ingest.Ingester, error) {
	kcfg, err := o.kafka.Config()
	if err != nil {
		return nil, err
	}
	brokers := strings.Split(o.kafkaBrokers, ",")
	logger.Info("kafka", "brokers", brokers, "settings", o.kafka.String())
	var out []*ingest.Ingester
	for _, p := range pipelines.Pipelines {
		if p.Topic == "" {
			logger.Info("pipeline has no topic; not ingesting it", "pipeline", p.Name)
			continue
		}
		wp, err := p.Workflow()
		if err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", p.Name, err)
		}
		ing, err := ingest.New(ingest.Config{
			Pipeline: wp, Topic: p.Topic, Brokers: brokers, Kafka: kcfg,
			Temporal: &ingest.TemporalSignaller{Client: c, Pipeline: wp, TaskQueue: o.taskQueue},
			Late:     &ingest.S3Late{S3: acts.S3, Bucket: acts.Bucket},
			Metrics:  met, Logger: logger, Limits: o.limits,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, ing)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pipeline names a topic to ingest", o.pipelines)
	}
	return out, nil
}

// runIngesters runs the ingesters until ctx ends or one of them fails;
// either way every ingester hands its partitions over before it returns.
// With none (--role process) it waits for ctx.
func runIngesters(ctx context.Context, ingesters []*ingest.Ingester) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ingesters))
	for i, ing := range ingesters {
		wg.Go(func() {
			if errs[i] = ing.Run(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	return errors.Join(errs...)
}

// serveMetrics serves Prometheus metrics and the probes: /healthz answers
// while the process runs, /readyz once the worker and ingesters started.
func serveMetrics(addr string, reg *prometheus.Registry, ready *atomic.Bool, logger *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "error", err)
		}
	}()
	logger.Info("serving metrics", "addr", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func newActivities(o options, logger *slog.Logger) (*activities.Activities, func(), error) {
	access := firstEnv("S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER")
	secret := firstEnv("S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")
	if o.s3SecretFile != "" {
		b, err := os.ReadFile(o.s3SecretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --s3-secret-key-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if access == "" || secret == "" {
		return nil, nil, errors.New("S3 credentials missing: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or --s3-secret-key-file)")
	}
	s3, err := minio.New(o.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Secure: o.s3Secure})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 client for %s: %w", o.s3Endpoint, err)
	}
	acts := &activities.Activities{S3: s3, Bucket: o.s3Bucket}
	closeFn := func() {}
	if o.webhookURL != "" {
		acts.Webhook = &activities.Webhook{URL: o.webhookURL, Client: &http.Client{Timeout: 30 * time.Second}}
	}
	if o.notifyBrokers != "" {
		kcfg, err := o.kafka.Config() // the --kafka-tls and SASL settings apply to it too
		if err != nil {
			return nil, nil, err
		}
		p, err := activities.NewKafkaNotifier(strings.Split(o.notifyBrokers, ","), kcfg)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka notifier: %w", err)
		}
		acts.Kafka, acts.NotifyTopic = p, o.notifyTopic
		closeFn = func() { p.Close() }
	}
	logger.Info("notifications", "webhook", o.webhookURL != "", "kafka", o.notifyBrokers != "")
	return acts, closeFn, nil
}
