package workerapp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/workflows"
)

// Run completes cfg and runs the worker process until ctx ends or an
// ingester fails. Temporal is reached through the standard TEMPORAL_*
// environment (envconfig). On return the ingesters have handed their
// partitions over and the Temporal workers have finished their in-flight
// tasks.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Complete(); err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	var pipelines *config.File
	if cfg.Role != RoleProcess {
		var err error
		if pipelines, err = config.Load(cfg.Pipelines); err != nil {
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
	if cfg.RegisterSearchAttributes {
		if err := workflows.RegisterSearchAttributes(ctx, c, topts.Namespace); err != nil {
			logger.Warn("search attributes not registered; sessions will run without them", "error", err)
		}
	}
	acts, closeActs, err := newActivities(cfg, logger)
	if err != nil {
		return err
	}
	defer closeActs()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var ready atomic.Bool
	if cfg.MetricsAddr != "" {
		stopServer, err := serveMetrics(cfg.MetricsAddr, reg, &ready, logger)
		if err != nil {
			return err
		}
		defer stopServer()
	}

	if cfg.Role != RoleIngest {
		ws := workflows.NewWorkers(c, cfg.TaskQueue, worker.Options{MaxConcurrentWorkflowTaskPollers: cfg.WorkflowTaskPollers}, acts)
		logger.Info("worker starting", "task_queue", cfg.TaskQueue, "clock_task_queue", workflows.ClockTaskQueue(cfg.TaskQueue),
			"s3", cfg.S3.Endpoint, "bucket", cfg.S3.Bucket)
		if err := ws.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer func() {
			logger.Info("worker stopping: finishing in-flight tasks")
			ws.Stop()
		}()
	}
	var ingesters []*ingest.Ingester
	if cfg.Role != RoleProcess {
		if ingesters, err = newIngesters(cfg, pipelines, c, acts, ingest.NewMetrics(reg), logger); err != nil {
			return err
		}
	}
	ready.Store(true)
	err = runIngesters(ctx, ingesters)
	ready.Store(false)
	return err
}
