package miniotest

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestStartServesTheBucket(t *testing.T) {
	srv := Start(t)
	ctx := context.Background()

	ok, err := srv.Client.BucketExists(ctx, srv.Bucket)
	if err != nil || !ok {
		t.Fatalf("BucketExists(%q) = %v, %v; want true, nil", srv.Bucket, ok, err)
	}
	want := []byte("hello")
	if _, err := srv.Client.PutObject(ctx, srv.Bucket, "a/b.txt", bytes.NewReader(want),
		int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	obj, err := srv.Client.GetObject(ctx, srv.Bucket, "a/b.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %q, %v; want %q", got, err, want)
	}
}

func TestStartTwiceGivesSeparateServers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Endpoint == b.Endpoint {
		t.Fatalf("both servers on %s", a.Endpoint)
	}
}

func TestFindBinary(t *testing.T) {
	t.Run("env names a missing file", func(t *testing.T) {
		t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "nope"))
		_, err := findBinary()
		if err == nil || !strings.Contains(err.Error(), "run `make tools`") {
			t.Fatalf("findBinary() error = %v; want the make tools hint", err)
		}
	})
	t.Run("env wins", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "minio")
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvBinary, p)
		if got, err := findBinary(); got != p || err != nil {
			t.Fatalf("findBinary() = %q, %v; want %q", got, err, p)
		}
	})
	t.Run("nothing installed", func(t *testing.T) {
		t.Setenv(EnvBinary, "")
		t.Setenv("PATH", t.TempDir())
		t.Chdir(t.TempDir()) // no go.mod above a temp dir
		_, err := findBinary()
		if err == nil || err.Error() != "minio not installed: run `make tools`" {
			t.Fatalf("findBinary() error = %v; want the make tools hint", err)
		}
	})
}
