package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sessionflow/sessionflow/internal/proc"
)

// Each server runs in a child process of the benchmark (this binary again),
// so that one server's run cannot leave memory, goroutines or a warm cache
// behind for the next, and the RSS measured is that of one run's worker
// process. The parent runs MinIO and collects the children's results; these
// environment variables tell a child what to do, so that --help stays about
// the benchmark.
const (
	envChildServer = "SESSIONFLOW_BENCH_SERVER" // the server to run
	envChildS3     = "SESSIONFLOW_BENCH_S3"     // MinIO's host:port
	envChildResult = "SESSIONFLOW_BENCH_RESULT" // where to write its ServerResult
	envChildDir    = "SESSIONFLOW_BENCH_DIR"    // its scratch folder
	envChildPhase  = "SESSIONFLOW_BENCH_PHASE"  // phasePipelines or phaseOpen
)

// What a server child runs.
const (
	phasePipelines = "pipelines" // the ceiling, then the pipelines
	phaseOpen      = "open"      // --open-sessions sessions opened at once
)

// runServerProcess runs one phase against one server in a child process and
// reads its result. Each child has a server of its own.
func runServerProcess(ctx context.Context, name, phase, s3, dir string, logger *slog.Logger) ServerResult {
	exe, err := os.Executable()
	if err != nil {
		return ServerResult{Server: name, Error: fmt.Sprintf("find the benchmark binary: %v", err)}
	}
	result := filepath.Join(dir, name+"-"+phase+"-result.json")
	cmd := exec.CommandContext(ctx, exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envChildServer+"="+name, envChildS3+"="+s3, envChildPhase+"="+phase,
		envChildResult+"="+result, envChildDir+"="+filepath.Join(dir, name+"-"+phase))
	// The child's logs go where ours do; stdout is kept for the table.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// On Ctrl-C the child stops its own servers; killing it would orphan
	// the dev server.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	runErr := cmd.Run()
	var sr ServerResult
	b, err := os.ReadFile(result)
	if err == nil {
		err = json.Unmarshal(b, &sr)
	}
	switch {
	case err != nil && runErr != nil:
		return ServerResult{Server: name, Error: fmt.Sprintf("server process: %v", runErr)}
	case err != nil:
		return ServerResult{Server: name, Error: fmt.Sprintf("read the server's result: %v", err)}
	}
	if runErr != nil && sr.Error == "" {
		sr.Error = fmt.Sprintf("server process: %v", runErr)
	}
	if sr.Error != "" {
		logger.Error("server run failed", "server", name, "phase", phase, "error", sr.Error)
	}
	return sr
}

// isChild reports whether this process is a server child.
func isChild() bool { return os.Getenv(envChildServer) != "" }

// runChild is a server child's whole life: run the server against the
// parent's MinIO and write the result, failed or not.
func runChild(ctx context.Context, o options, logger *slog.Logger) error {
	name, result := os.Getenv(envChildServer), os.Getenv(envChildResult)
	if result == "" || os.Getenv(envChildS3) == "" || os.Getenv(envChildDir) == "" {
		return errors.New("server child started without its environment")
	}
	pipelines, err := loadPipelines()
	if err != nil {
		return err
	}
	s3, err := dialMinio(os.Getenv(envChildS3))
	if err != nil {
		return err
	}
	b := &bench{o: o, name: name, dir: os.Getenv(envChildDir), pipelines: pipelines, s3: s3,
		logger: logger.With("server", name)}
	run := b.run
	if os.Getenv(envChildPhase) == phaseOpen {
		run = b.runOpen
	}
	sr, runErr := run(ctx)
	if runErr != nil {
		sr.Error = runErr.Error()
	}
	data, err := json.Marshal(sr)
	if err != nil {
		return fmt.Errorf("encode the result of %s: %w", name, err)
	}
	if err := os.WriteFile(result, data, 0o644); err != nil {
		return fmt.Errorf("write the result of %s: %w", name, err)
	}
	return runErr
}

// dialMinio is a client of the parent's MinIO.
func dialMinio(endpoint string) (*minioServer, error) {
	c, err := proc.MinIO{Addr: endpoint, User: minioUser, Password: minioPass}.Client()
	if err != nil {
		return nil, err
	}
	return &minioServer{endpoint: endpoint, client: c}, nil
}
