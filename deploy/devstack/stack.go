package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/sessionflow/sessionflow/internal/devserver"
	"github.com/sessionflow/sessionflow/workflows"
)

// stack is the running dev stack: child processes, the in-process broker
// and webhook receiver, and clients to watch them with.
type stack struct {
	o         options
	logger    *slog.Logger
	pipelines string

	procs    []*proc
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

// proc is a supervised child process with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *stack) start(ctx context.Context) error {
	temporalAddr := s.o.temporal
	if temporalAddr == "" {
		temporalAddr = "127.0.0.1:7233"
		args := append([]string{"server", "start-dev",
			"--ip", "127.0.0.1", "--port", "7233", "--ui-port", uiPort, "--log-level", "warn"},
			devserver.StorageArgs(filepath.Join(s.o.dir, "temporal.db"))...)
		if err := s.spawn(ctx, "temporal", nil, filepath.Join(s.o.bin, "temporal"), args...); err != nil {
			return err
		}
	}
	if err := s.startS3(ctx); err != nil {
		return err
	}
	if err := s.startKafka(); err != nil {
		return err
	}
	s.startWebhook()
	if err := s.dialTemporal(ctx, temporalAddr); err != nil {
		return err
	}
	env := []string{
		"TEMPORAL_ADDRESS=" + temporalAddr, "TEMPORAL_NAMESPACE=default",
		"S3_ACCESS_KEY_ID=" + s.s3User, "S3_SECRET_ACCESS_KEY=" + s.s3Pass,
	}
	if err := s.spawn(ctx, "worker", env, filepath.Join(s.o.bin, "worker"),
		"--pipelines", s.pipelines, "--kafka-brokers", s.brokers, "--role", "all",
		"--s3-endpoint", s.s3Addr, "--s3-bucket", bucket,
		"--webhook-url", "http://"+webhookAddr+"/hook", "--metrics-addr", metricsAddr); err != nil {
		return err
	}
	if !s.o.noGenerat {
		if err := s.spawn(ctx, "generator", nil, filepath.Join(s.o.bin, "starter"), "generate",
			"--brokers", s.brokers, "--num-users", fmt.Sprint(s.o.users), "--num-devices", fmt.Sprint(s.o.devices),
			"--rate", fmt.Sprint(s.o.rate), "--gap", "15s", "--lateness", "5s"); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts a child in its own process group, its output in logs/.
func (s *stack) spawn(ctx context.Context, name string, env []string, bin string, args ...string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run `make dev`, which builds it)", name, err)
	}
	logPath := filepath.Join(s.o.dir, "logs", name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		out.Close()
		close(p.done)
		if !s.stopping.Load() {
			s.logger.Error("process exited unexpectedly", "name", name, "error", err, "log", logPath)
		}
	}()
	s.procs = append(s.procs, p)
	s.logger.Info("started", "name", name, "pid", cmd.Process.Pid, "log", logPath)
	return nil
}

func (s *stack) startS3(ctx context.Context) error {
	s.s3Addr, s.s3User, s.s3Pass = s.o.s3, os.Getenv("S3_ACCESS_KEY_ID"), os.Getenv("S3_SECRET_ACCESS_KEY")
	if s.s3Addr == "" {
		s.s3Addr, s.s3User, s.s3Pass = minioAddr, minioUser, minioPass
		env := []string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPass}
		if err := s.spawn(ctx, "minio", env, filepath.Join(s.o.bin, "minio"), "server", filepath.Join(s.o.dir, "minio"),
			"--address", minioAddr, "--console-address", minioConsole, "--quiet"); err != nil {
			return err
		}
	}
	c, err := minio.New(s.s3Addr, &minio.Options{Creds: credentials.NewStaticV4(s.s3User, s.s3Pass, "")})
	if err != nil {
		return fmt.Errorf("s3 client: %w", err)
	}
	s.s3 = c
	return retry(ctx, 60*time.Second, "S3 at "+s.s3Addr, func() error {
		ok, err := c.BucketExists(ctx, bucket)
		if err != nil || ok {
			return err
		}
		return c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	})
}

func (s *stack) startKafka() error {
	if s.o.kafka != "" {
		s.brokers = s.o.kafka
		return nil
	}
	c, err := kfake.NewCluster(kfake.Ports(9092), kfake.SeedTopics(4, "clicks", "telemetry", "clicks.dlq", "telemetry.dlq"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8388608"}))
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

func (s *stack) dialTemporal(ctx context.Context, addr string) error {
	return retry(ctx, 90*time.Second, "Temporal at "+addr, func() error {
		c, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: "default",
			Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
		if err != nil {
			return err
		}
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			c.Close()
			return err
		}
		if err := workflows.RegisterSearchAttributes(ctx, c, "default"); err != nil {
			c.Close()
			return err
		}
		s.temporal = c
		return nil
	})
}

// stop ends the children newest first (the generator before the worker
// before the servers), each with SIGTERM and a grace period.
func (s *stack) stop() {
	s.stopping.Store(true)
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		s.logger.Info("stopped", "name", p.name)
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

// retry calls f until it succeeds or the time is up.
func retry(ctx context.Context, limit time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			// The last error says what was missing; ctx.Err() alone would not.
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
