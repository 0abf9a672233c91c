// Command devstack is `make dev`: it runs Sessionflow and everything it needs
// on this machine — Temporal's dev server with its UI, MinIO, an in-process
// Kafka-protocol broker, the worker with two pipelines and the generator
// feeding them — prints where to look, shows live progress, and stops it
// all on Ctrl-C. State (Temporal's SQLite file, MinIO's data, logs) lives in
// one folder, so a second run resumes.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sessionflow/sessionflow/internal/env"
)

//go:embed pipelines.yaml
var pipelinesYAML []byte

// Ports of the dev stack, all on loopback. MinIO and its bucket are where
// the worker's and the starter's S3 flags point by default.
const (
	temporalAddr = "127.0.0.1:7233"
	uiPort       = "8233"
	minioAddr    = env.DefaultS3Endpoint
	minioConsole = "127.0.0.1:9001"
	kafkaAddr    = "127.0.0.1:9092"
	webhookAddr  = "127.0.0.1:8099"
	metricsAddr  = "127.0.0.1:9464"
	bucket       = env.DefaultS3Bucket
	minioUser    = "sessionflow"
	minioPass    = "sessionflow-dev-only"
)

type options struct {
	dir, bin  string
	smoke     bool
	timeout   time.Duration
	rate      float64
	users     int
	devices   int
	temporal  string // external Temporal instead of the dev server
	kafka     string // external Kafka brokers instead of the in-process one
	s3        string // external S3 endpoint instead of MinIO
	noGenerat bool
	kcat      string // with --smoke: produce a session with this kcat
	// duckdbCheck is the node script that runs the README's DuckDB query
	// over a copy of the Parquet written (with --smoke).
	duckdbCheck string
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", ".dev", "state folder (Temporal's database, MinIO's data, logs)")
	flag.StringVar(&o.bin, "bin", "bin", "folder with the temporal, minio, worker and starter binaries")
	flag.BoolVar(&o.smoke, "smoke", false, "headless check: start, wait for closed sessions of both pipelines in Parquet and the UI's answer, stop")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "with --smoke: give up after this long")
	flag.Float64Var(&o.rate, "rate", 100, "generator: events per second")
	flag.IntVar(&o.users, "users", 300, "generator: clickstream users")
	flag.IntVar(&o.devices, "devices", 60, "generator: charging drones")
	flag.StringVar(&o.temporal, "temporal", os.Getenv("TEMPORAL_ADDRESS"), "use this Temporal frontend instead of starting the dev server (env TEMPORAL_ADDRESS)")
	flag.StringVar(&o.kafka, "kafka", os.Getenv("KAFKA_BROKERS"), "use these Kafka brokers instead of the in-process broker (env KAFKA_BROKERS)")
	flag.StringVar(&o.s3, "s3", os.Getenv("S3_ENDPOINT"), "use this S3 endpoint instead of starting MinIO (env S3_ENDPOINT; credentials from S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY)")
	flag.BoolVar(&o.noGenerat, "no-generator", false, "do not start the generator (feed the topics yourself, e.g. with kcat)")
	flag.StringVar(&o.kcat, "kcat", "kcat", "with --smoke: produce a session of a new key with this kcat and wait for it in Parquet; empty to skip")
	flag.StringVar(&o.duckdbCheck, "duckdb-check", "", "with --smoke: run the README's DuckDB query over a copy of the Parquet with this node script (deploy/devstack/readme_duckdb.mjs); empty to skip")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, logger); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	var err error
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return err
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	for _, d := range []string{o.dir, filepath.Join(o.dir, "logs"), filepath.Join(o.dir, "minio")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("state folder: %w", err)
		}
	}
	pipelines := filepath.Join(o.dir, "pipelines.yaml")
	if err := os.WriteFile(pipelines, pipelinesYAML, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", pipelines, err)
	}

	s := &stack{o: o, logger: logger, pipelines: pipelines}
	defer s.stop()
	if err := s.start(ctx); err != nil {
		return err
	}
	s.banner()
	if o.smoke {
		sctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		return s.smokeCheck(sctx)
	}
	s.progress(ctx)
	if !errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	fmt.Fprintln(os.Stderr, "\nstopping…")
	return nil
}
