package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/workflows"
)

// partitions is the partition count of every input topic, as in the dev
// stack.
const partitions = 4

// pipeline is one benchmark pipeline: as the pipelines file declares it and
// as its workflows carry it.
type pipeline struct {
	cfg config.Pipeline
	wf  workflows.Pipeline
}

func loadPipelines() ([]pipeline, error) {
	f, err := config.Parse(pipelinesYAML)
	if err != nil {
		return nil, fmt.Errorf("bench pipelines: %w", err)
	}
	var out []pipeline
	for _, p := range f.Pipelines {
		wp, err := p.Workflow()
		if err != nil {
			return nil, fmt.Errorf("bench pipeline %s: %w", p.Name, err)
		}
		out = append(out, pipeline{cfg: p, wf: wp})
	}
	return out, nil
}

// minioServer is a MinIO process serving one data folder on a random port,
// or, in a server child, a client of the parent's.
type minioServer struct {
	process  *proc.Process // nil in a child
	endpoint string
	client   *minio.Client
}

const (
	minioUser = "sessionflow"
	minioPass = "sessionflow-bench-only"
)

// toolsAdvice is what to do when a binary is missing.
const toolsAdvice = "run `make tools`, which builds it"

func startMinio(ctx context.Context, bin, dir string, logger *slog.Logger) (*minioServer, error) {
	m, err := proc.MinIO{Bin: bin, Dir: dir, User: minioUser, Password: minioPass}.WithFreePorts()
	if err != nil {
		return nil, err
	}
	c, err := m.Client()
	if err != nil {
		return nil, err
	}
	// Its own process group, so that a Ctrl-C of the benchmark does not
	// kill it before we stop it in order.
	p, err := m.Start(ctx, proc.Spec{Name: "minio", Log: filepath.Join(filepath.Dir(dir), "minio.log"),
		Group: true, Missing: toolsAdvice})
	if err != nil {
		return nil, err
	}
	logger.Info("minio started", "endpoint", m.Addr, "pid", p.Pid())
	return &minioServer{process: p, endpoint: m.Addr, client: c}, nil
}

// makeBucket creates a bucket; MinIO answers its health check before its
// object layer is ready, so it retries.
func (m *minioServer) makeBucket(ctx context.Context, name string) error {
	return proc.Wait{What: "bucket " + name, Limit: time.Minute, Proc: m.process}.Until(ctx, func() error {
		return proc.MakeBucket(ctx, m.client, name)
	})
}

func (m *minioServer) stop() {
	if m.process != nil {
		m.process.Stop(proc.Grace)
	}
}

// startKafka runs an in-process Kafka-protocol broker with each pipeline's
// topic (4 partitions) and dead-letter topic.
func startKafka(pipelines []pipeline) (*kfake.Cluster, []string, error) {
	k := proc.Kafka{Partitions: partitions, MaxMessageBytes: 8 << 20}
	for _, p := range pipelines {
		k.Topics = append(k.Topics, p.cfg.Topic)
		k.DLQs = append(k.DLQs, p.cfg.Topic+".dlq")
	}
	c, err := k.Start()
	if err != nil {
		return nil, nil, err
	}
	return c, c.ListenAddrs(), nil
}
