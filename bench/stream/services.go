package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sessionflow/sessionflow/config"
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

// process is a child process in its own process group with its output in a
// log file.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func spawn(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make tools`, which builds it)", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group, so that a stop reaches anything it forks and a Ctrl-C
	// of the benchmark does not kill it before we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the process group and SIGKILL after a grace period.
func (p *process) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log, for error messages.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// retry calls f every 250ms until it succeeds, the process dies or limit
// passes.
func retry(ctx context.Context, limit time.Duration, what string, p *process, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		switch {
		case p != nil && p.exited():
			return fmt.Errorf("%s exited before it was ready: %w\n%s", p.name, err, p.tail())
		case time.Now().After(deadline):
			return fmt.Errorf("%s not ready after %v: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// minioServer is a MinIO process serving one data folder on a random port,
// or, in a server child, a client of the parent's.
type minioServer struct {
	proc     *process // nil in a child
	endpoint string
	client   *minio.Client
}

const (
	minioUser = "sessionflow"
	minioPass = "sessionflow-bench-only"
)

func startMinio(ctx context.Context, bin, dir string, logger *slog.Logger) (*minioServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := []string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPass, "MINIO_UPDATE=off"}
	p, err := spawn("minio", filepath.Join(filepath.Dir(dir), "minio.log"), env, bin,
		"server", "--address", addr, "--console-address", console, "--quiet", dir)
	if err != nil {
		return nil, err
	}
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(minioUser, minioPass, "")})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	err = retry(ctx, time.Minute, "minio at "+addr, p, func() error {
		resp, err := http.Get("http://" + addr + "/minio/health/live")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	logger.Info("minio started", "endpoint", addr, "pid", p.cmd.Process.Pid)
	return &minioServer{proc: p, endpoint: addr, client: c}, nil
}

// makeBucket creates a bucket; MinIO answers its health check before its
// object layer is ready, so it retries.
func (m *minioServer) makeBucket(ctx context.Context, name string) error {
	return retry(ctx, time.Minute, "bucket "+name, m.proc, func() error {
		err := m.client.MakeBucket(ctx, name, minio.MakeBucketOptions{})
		if minio.ToErrorResponse(err).Code == minio.BucketAlreadyOwnedByYou {
			return nil
		}
		return err
	})
}

func (m *minioServer) stop() {
	if m.proc != nil {
		m.proc.stop()
	}
}

// startKafka runs an in-process Kafka-protocol broker with each pipeline's
// topic (4 partitions) and dead-letter topic.
func startKafka(pipelines []pipeline) (*kfake.Cluster, []string, error) {
	var topics, dlqs []string
	for _, p := range pipelines {
		topics = append(topics, p.cfg.Topic)
		dlqs = append(dlqs, p.cfg.Topic+".dlq")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...), kfake.SeedTopics(1, dlqs...),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8388608"}))
	if err != nil {
		return nil, nil, fmt.Errorf("kfake: %w", err)
	}
	return c, c.ListenAddrs(), nil
}
