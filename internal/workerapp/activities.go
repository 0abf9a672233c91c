package workerapp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sessionflow/sessionflow/activities"
	"github.com/sessionflow/sessionflow/internal/env"
)

// newActivities builds the activities' clients: S3, and the webhook and
// Kafka notifiers if configured. The func returned releases the Kafka
// producer.
func newActivities(cfg Config, logger *slog.Logger) (*activities.Activities, func(), error) {
	s3, err := newS3(cfg.S3)
	if err != nil {
		return nil, nil, err
	}
	acts := &activities.Activities{S3: s3, Bucket: cfg.S3.Bucket}
	closeFn := func() {}
	if cfg.WebhookURL != "" {
		acts.Webhook = &activities.Webhook{URL: cfg.WebhookURL, Client: &http.Client{Timeout: 30 * time.Second}}
	}
	if cfg.NotifyBrokers != "" {
		kcfg, err := cfg.Kafka.Config() // the --kafka-tls and SASL settings apply to it too
		if err != nil {
			return nil, nil, err
		}
		p, err := activities.NewKafkaNotifier(strings.Split(cfg.NotifyBrokers, ","), kcfg)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka notifier: %w", err)
		}
		acts.Kafka, acts.NotifyTopic = p, cfg.NotifyTopic
		closeFn = func() { p.Close() }
	}
	logger.Info("notifications", "webhook", cfg.WebhookURL != "", "kafka", cfg.NotifyBrokers != "")
	return acts, closeFn, nil
}

// newS3 returns the S3 client, with the credentials of s3Credentials.
func newS3(c S3Config) (*minio.Client, error) {
	access, secret, err := s3Credentials(c.SecretKeyFile)
	if err != nil {
		return nil, err
	}
	s3, err := minio.New(c.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Secure: c.TLS})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", c.Endpoint, err)
	}
	return s3, nil
}

// s3Credentials returns the S3 keys from the environment
// (env.S3Credentials), the secret from secretFile if set. Both are required.
func s3Credentials(secretFile string) (access, secret string, err error) {
	access, secret = env.S3Credentials()
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return "", "", fmt.Errorf("read --s3-secret-key-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if access == "" || secret == "" {
		return "", "", errors.New("S3 credentials missing: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or --s3-secret-key-file)")
	}
	return access, secret, nil
}
