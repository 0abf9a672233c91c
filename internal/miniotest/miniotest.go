// Package miniotest runs a real MinIO server for integration tests.
//
// A fake S3 would agree with whatever our code assumes; the real server
// checks the request signing, the listing semantics and the overwrite
// behaviour the Parquet sink relies on. The binary comes from `make tools`.
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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

// startTimeout bounds how long a server may take to answer its health check
// and accept the bucket; a cold start under -race on two cores takes a few
// seconds.
const startTimeout = 60 * time.Second

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
		if !errors.Is(err, errExited) {
			break
		}
	}
	t.Fatalf("start minio %s: %v", bin, lastErr)
	return nil
}

// errExited means the server process ended before it became ready.
var errExited = errors.New("minio exited before it was ready")

// start runs one server attempt. On error the process is already gone and
// its output is in the error.
func start(t testing.TB, bin string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "server",
		"--address", addr, "--console-address", console, t.TempDir())
	cmd.Env = append(withoutMinioEnv(os.Environ()),
		"MINIO_ROOT_USER="+AccessKey,
		"MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	srv, err := ready(addr, exited)
	if err != nil {
		stop()
		return nil, fmt.Errorf("%w\n--- minio output ---\n%s", err, out.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("minio %s output:\n%s", addr, out.String())
		}
	})
	return srv, nil
}

// ready waits for the health check, then creates the bucket. MinIO answers
// /minio/health/live before its object layer is initialised, so the bucket
// creation is retried too.
func ready(addr string, exited <-chan struct{}) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client, err := minio.New(addr, &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Secure: false,
	})
	if err != nil {
		return nil, err
	}
	live := "http://" + addr + "/minio/health/live"
	step := func() error {
		resp, err := http.Get(live)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", live, resp.Status)
		}
		err = client.MakeBucket(ctx, Bucket, minio.MakeBucketOptions{})
		if minio.ToErrorResponse(err).Code == minio.BucketAlreadyOwnedByYou {
			return nil // an earlier attempt's reply was lost
		}
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := step()
		if err == nil {
			return &Server{Endpoint: addr, AccessKey: AccessKey, SecretKey: SecretKey,
				Bucket: Bucket, Client: client}, nil
		}
		select {
		case <-exited:
			return nil, errExited
		case <-ctx.Done():
			return nil, fmt.Errorf("not ready after %v: %w", startTimeout, err)
		case <-tick.C:
		}
	}
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
	if root, err := repoRoot(); err == nil {
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

// repoRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// withoutMinioEnv drops MINIO_* variables of the developer's shell (volumes,
// credentials, KMS settings) that would change the test server.
func withoutMinioEnv(env []string) []string {
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MINIO_") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// syncBuffer collects the server's output, written by exec's copying
// goroutines and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
