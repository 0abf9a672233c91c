package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/sessionflow/sessionflow/internal/env"
	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/workflows"
)

// pollEvery is how often the stack asks whether a server is ready.
const pollEvery = 500 * time.Millisecond

// stack is the running dev stack: child processes, the in-process broker
// and webhook receiver, and clients to watch them with.
type stack struct {
	o         options
	logger    *slog.Logger
	pipelines string

	procs    []*proc.Process
	stopping atomic.Bool // children exiting now is expected
	kafka    *kfake.Cluster
	brokers  string
	hooks    *http.Server
	temporal client.Client
	s3       *minio.Client
	s3Addr   string
	s3User   string
	s3Pass   string
}

func (s *stack) start(ctx context.Context) error {
	temporalAddr := s.o.temporal
	var temporal *proc.Process
	if temporalAddr == "" {
		// Started first, it migrates its database while the rest starts;
		// dialTemporal waits for it.
		temporalAddr = "127.0.0.1:7233"
		d := proc.DevServer{DBFile: filepath.Join(s.o.dir, "temporal.db"), Addr: temporalAddr, UIPort: uiPort}
		spec := s.spec("temporal")
		spec.Path, spec.Args = filepath.Join(s.o.bin, "temporal"), d.Args()
		p, err := proc.Start(spec)
		if err != nil {
			return err
		}
		temporal = s.track(p)
	}
	if err := s.startS3(ctx); err != nil {
		return err
	}
	if err := s.startKafka(); err != nil {
		return err
	}
	s.startWebhook()
	if err := s.dialTemporal(ctx, temporalAddr, temporal); err != nil {
		return err
	}
	env := []string{
		"TEMPORAL_ADDRESS=" + temporalAddr, "TEMPORAL_NAMESPACE=default",
		"S3_ACCESS_KEY_ID=" + s.s3User, "S3_SECRET_ACCESS_KEY=" + s.s3Pass,
	}
	if err := s.spawn("worker", env, filepath.Join(s.o.bin, "worker"),
		"--pipelines", s.pipelines, "--kafka-brokers", s.brokers, "--role", "all",
		"--s3-endpoint", s.s3Addr, "--s3-bucket", bucket,
		"--webhook-url", "http://"+webhookAddr+"/hook", "--metrics-addr", metricsAddr); err != nil {
		return err
	}
	if !s.o.noGenerat {
		if err := s.spawn("generator", nil, filepath.Join(s.o.bin, "starter"), "generate",
			"--brokers", s.brokers, "--num-users", fmt.Sprint(s.o.users), "--num-devices", fmt.Sprint(s.o.devices),
			"--rate", fmt.Sprint(s.o.rate), "--gap", "15s", "--lateness", "5s"); err != nil {
			return err
		}
	}
	return nil
}

// spec is how the stack runs a child: in its own process group (a Ctrl-C
// reaches only devstack, which stops the children in order), its output in
// logs/.
func (s *stack) spec(name string) proc.Spec {
	return proc.Spec{Name: name, Log: filepath.Join(s.o.dir, "logs", name+".log"), Group: true,
		Missing: "run `make dev`, which builds it"}
}

// spawn starts a child as spec says.
func (s *stack) spawn(name string, env []string, bin string, args ...string) error {
	spec := s.spec(name)
	spec.Path, spec.Args, spec.Env = bin, args, env
	p, err := proc.Start(spec)
	if err != nil {
		return err
	}
	s.track(p)
	return nil
}

// track has stop end p and logs its exit if the stack is not stopping.
func (s *stack) track(p *proc.Process) *proc.Process {
	go func() {
		<-p.Done()
		if !s.stopping.Load() {
			s.logger.Error("process exited unexpectedly", "name", p.Name, "error", p.Err(), "log", p.Log)
		}
	}()
	s.procs = append(s.procs, p)
	s.logger.Info("started", "name", p.Name, "pid", p.Pid(), "log", p.Log)
	return p
}

func (s *stack) startS3(ctx context.Context) error {
	s.s3Addr = s.o.s3
	s.s3User, s.s3Pass = env.S3Credentials()
	if s.s3Addr == "" {
		s.s3Addr, s.s3User, s.s3Pass = minioAddr, minioUser, minioPass
	}
	m := proc.MinIO{Bin: filepath.Join(s.o.bin, "minio"), Dir: filepath.Join(s.o.dir, "minio"),
		Addr: s.s3Addr, Console: minioConsole, User: s.s3User, Password: s.s3Pass, Bucket: bucket}
	c, err := m.Client()
	if err != nil {
		return err
	}
	s.s3 = c
	if s.o.s3 != "" {
		return proc.Wait{What: "S3 at " + s.s3Addr, Limit: 60 * time.Second, Interval: pollEvery}.Until(ctx, func() error {
			return proc.MakeBucket(ctx, c, bucket)
		})
	}
	p, err := m.Start(ctx, s.spec("minio"))
	if err != nil {
		return err
	}
	s.track(p)
	return nil
}

func (s *stack) startKafka() error {
	if s.o.kafka != "" {
		s.brokers = s.o.kafka
		return nil
	}
	c, err := proc.Kafka{Port: 9092, Partitions: 4, Topics: []string{"clicks", "telemetry", "clicks.dlq", "telemetry.dlq"},
		MaxMessageBytes: 8 << 20}.Start()
	if err != nil {
		return fmt.Errorf("kafka-protocol broker on %s: %w", kafkaAddr, err)
	}
	s.kafka, s.brokers = c, strings.Join(c.ListenAddrs(), ",")
	s.logger.Info("started", "name", "kafka (in-process)", "brokers", s.brokers)
	return nil
}

// startWebhook receives the notifications and appends them to a log file.
func (s *stack) startWebhook() {
	path := filepath.Join(s.o.dir, "logs", "webhook.log")
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "%s %s\n", r.Header.Get("Idempotency-Key"), body)
		w.WriteHeader(http.StatusNoContent)
	})
	s.hooks = &http.Server{Addr: webhookAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.hooks.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			s.logger.Error("webhook receiver", "error", err)
		}
	}()
}

// dialTemporal waits until Temporal at addr answers (giving up early if
// p, the dev server when the stack runs it, exits) and registers the
// session search attributes.
func (s *stack) dialTemporal(ctx context.Context, addr string, p *proc.Process) error {
	wait := proc.Wait{What: "Temporal at " + addr, Limit: 90 * time.Second, Interval: pollEvery, Proc: p}
	opts := client.Options{HostPort: addr, Namespace: "default",
		Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))}
	register := func(ctx context.Context, c client.Client) error {
		return workflows.RegisterSearchAttributes(ctx, c, "default")
	}
	c, err := proc.DialTemporal(ctx, wait, opts, register)
	s.temporal = c
	return err
}

// stop ends the children newest first (the generator before the worker
// before the servers), each with SIGTERM and a grace period.
func (s *stack) stop() {
	s.stopping.Store(true)
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(proc.Grace)
		s.logger.Info("stopped", "name", s.procs[i].Name)
	}
	if s.hooks != nil {
		s.hooks.Close()
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.temporal != nil {
		s.temporal.Close()
	}
}
