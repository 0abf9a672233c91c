package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"go.temporal.io/sdk/client"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/ingest"
)

// newIngesters builds one ingester per pipeline that names a topic.
func newIngesters(cfg Config, pipelines *config.File, c client.Client, acts *activities.Activities,
	met *ingest.Metrics, logger *slog.Logger) ([]*ingest.Ingester, error) {
	kcfg, err := cfg.Kafka.Config()
	if err != nil {
		return nil, err
	}
	brokers := strings.Split(cfg.KafkaBrokers, ",")
	logger.Info("kafka", "brokers", brokers, "settings", cfg.Kafka.String())
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
		lim := pipelineLimits(cfg.Limits, p)
		delay := ingest.StartDelay(p.Delay(cfg.StartDelay), wp.Rules, lim.Hold(wp.Rules))
		ing, err := ingest.New(ingest.Config{
			Pipeline: wp, Topic: p.Topic, Brokers: brokers, Kafka: kcfg,
			Temporal: &ingest.TemporalSignaller{Client: c, Pipeline: wp, TaskQueue: cfg.TaskQueue, StartDelay: delay},
			Late:     &ingest.S3Late{S3: acts.S3, Bucket: acts.Bucket},
			Metrics:  met, Logger: logger, Limits: lim,
		})
		if err != nil {
			return nil, err
		}
		logger.Info("ingesting", "pipeline", p.Name, "topic", p.Topic, "max_hold", lim.Hold(wp.Rules), "start_delay", delay)
		out = append(out, ing)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pipeline names a topic to ingest", cfg.Pipelines)
	}
	return out, nil
}

// pipelineLimits are the limits of p's ingester: the worker's, with p's
// hold (config.Pipeline.Hold). A copy, so that one pipeline's hold never
// becomes the next one's; a zero hold is left to the ingester, which
// derives it from p's rules.
func pipelineLimits(worker ingest.Limits, p config.Pipeline) ingest.Limits {
	worker.MaxHold = p.Hold(worker.MaxHold)
	return worker
}

// runIngesters runs the ingesters until ctx ends or one of them fails;
// either way every ingester hands its partitions over before it returns.
// With none (RoleProcess) it waits for ctx.
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
