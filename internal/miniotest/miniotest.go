// Package miniotest runs a real MinIO server for integration tests.
//
// A fake S3 would agree with whatever our code assumes; the real server
// checks the request signing, the listing semantics and the overwrite
// behaviour the Parquet sink relies on. The binary comes from `make tools`.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/internal/proc"
)

// EnvBinary names the environment variable that overrides where the MinIO
// binary is; by default it is <repo root>/bin/minio, then minio on PATH.
const EnvBinary = "SESSIONFLOW_MINIO"

// Test credentials and bucket of every server Start runs.
const (
	AccessKey = "sessionflow"
	SecretKey = "sessionflow-secret"
	Bucket    = "sessionflow-test"
)

// Server is a running MinIO with one empty bucket. Endpoint is host:port,
// the form minio.New takes; the server speaks plain HTTP.
type Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Bucket    string
	Client    *minio.Client
}

// Start runs a MinIO server on free 127.0.0.1 ports with its data in
// t.TempDir(), waits until it serves, creates Bucket, and stops the server
// when the test ends. The server's output goes to the test log only if the
// test fails. A missing binary fails the test rather than skipping it: a
// skipped integration test is a test nobody runs.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("%v", err)
	}
	// A free port can be taken between our probe and MinIO's bind; try again
	// with new ports when that happens.
	var lastErr error
	for range 3 {
		srv, err := start(t, bin)
		if err == nil {
			return srv
		}
		lastErr = err
		if !errors.Is(err, proc.ErrExited) {
			break
		}
	}
	t.Fatalf("start minio %s: %v", bin, lastErr)
	return nil
}

// start runs one server attempt. On error the process is already gone and
// its output is in the error.
func start(t testing.TB, bin string) (*Server, error) {
	m, err := proc.MinIO{Bin: bin, Dir: filepath.Join(t.TempDir(), "data"),
		User: AccessKey, Password: SecretKey, Bucket: Bucket}.WithFreePorts()
	if err != nil {
		return nil, err
	}
	client, err := m.Client()
	if err != nil {
		return nil, err
	}
	log := filepath.Join(filepath.Dir(m.Dir), "minio.log")
	// The developer's MINIO_* variables (volumes, credentials, KMS
	// settings) would change the test server.
	p, err := m.Start(context.Background(), proc.Spec{Name: "minio", Log: log, DropEnv: []string{"MINIO_"}})
	if err != nil {
		if !errors.Is(err, proc.ErrExited) { // that error ends with the log's end
			b, _ := os.ReadFile(log)
			err = fmt.Errorf("%w\n--- minio output ---\n%s", err, b)
		}
		return nil, err
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("minio %s output:\n%s", m.Addr, b)
		}
	})
	return &Server{Endpoint: m.Addr, AccessKey: AccessKey, SecretKey: SecretKey, Bucket: Bucket, Client: client}, nil
}

// findBinary returns $SESSIONFLOW_MINIO, else <repo root>/bin/minio, else
// minio from PATH.
func findBinary() (string, error) {
	const hint = "minio not installed: run `make tools`"
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s (%s=%s: %v)", hint, EnvBinary, p, err)
		}
		return p, nil
	}
	if root, err := proc.RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New(hint)
}
