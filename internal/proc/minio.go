package proc

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// minioLimit bounds how long a MinIO may take to answer its health check
// and accept the bucket; a cold start under -race on two cores takes a few
// seconds.
const minioLimit = time.Minute

// MinIO is a MinIO server serving one data folder. The endpoint is plain
// HTTP.
type MinIO struct {
	Bin string // the minio binary
	Dir string // its data folder
	// Addr is the S3 API's host:port and Console the web console's; see
	// WithFreePorts.
	Addr, Console string
	// User and Password are the root credentials, which Client signs with.
	User, Password string
	// Bucket, if set, is made by Start before it returns.
	Bucket string
}

// WithFreePorts is m with a free loopback address for each of Addr and
// Console that is empty.
func (m MinIO) WithFreePorts() (MinIO, error) {
	err := fillFree(false, &m.Addr, &m.Console)
	return m, err
}

// Client is a client of the server at Addr with its credentials; it works
// as well for any S3 endpoint (then without starting anything).
func (m MinIO) Client() (*minio.Client, error) {
	c, err := minio.New(m.Addr, &minio.Options{Creds: credentials.NewStaticV4(m.User, m.Password, "")})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", m.Addr, err)
	}
	return c, nil
}

// Start runs the server as s describes (its Name, Log and process options;
// Path, Args and the credentials' Env are set here), waits until it answers
// its health check and, if m.Bucket is set, until the bucket exists. If it
// is not ready, it is killed and returned with the error, for its log; an
// error wrapping ErrExited means it ended on its own, for instance because
// another process took its port.
func (m MinIO) Start(ctx context.Context, s Spec) (*Process, error) {
	c, err := m.Client()
	if err != nil {
		return nil, err
	}
	s.Path = m.Bin
	s.Args = []string{"server", m.Dir, "--address", m.Addr, "--console-address", m.Console, "--quiet"}
	s.Env = append(s.Env, "MINIO_ROOT_USER="+m.User, "MINIO_ROOT_PASSWORD="+m.Password, "MINIO_UPDATE=off")
	p, err := Start(s)
	if err != nil {
		return nil, err
	}
	live := "http://" + m.Addr + "/minio/health/live"
	err = Wait{What: "MinIO at " + m.Addr, Limit: minioLimit, Interval: 50 * time.Millisecond, Proc: p}.Until(ctx, func() error {
		resp, err := http.Get(live)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", live, resp.Status)
		}
		if m.Bucket == "" {
			return nil
		}
		// MinIO answers its health check before its object layer is
		// ready, so the bucket is part of the readiness.
		return MakeBucket(ctx, c, m.Bucket)
	})
	if err != nil {
		p.Kill()
		return p, err
	}
	return p, nil
}

// MakeBucket makes the bucket unless it exists: one attempt, for a Wait to
// repeat. It asks first, so that an S3 that lets us use but not create the
// bucket is fine, and takes "already yours" as success, since an earlier
// attempt's reply may have been lost.
func MakeBucket(ctx context.Context, c *minio.Client, bucket string) error {
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil || ok {
		return err
	}
	err = c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou || code == "BucketAlreadyExists" {
		return nil
	}
	return err
}
