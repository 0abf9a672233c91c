package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Sentinels behind Notify's non-retryable failures; retrying cannot help.
var (
	// ErrNotifyConfig: a target is set up wrongly (a webhook URL that is not
	// absolute http(s), Kafka without NotifyTopic, no brokers). Fix the
	// worker's configuration.
	ErrNotifyConfig = errors.New("notify: invalid configuration")
	// ErrInvalidNotification: the workflow built a Notification that
	// cannot be sent (unknown kind, no session id, NaN in the record).
	ErrInvalidNotification = errors.New("notify: invalid notification")
)

// Application error types of Notify's failures, for retry policies and
// for telling the cases apart in the Temporal UI.
const (
	// ErrTypeNotifyRejected is non-retryable: a receiver refused the notice
	// (HTTP 4xx other than 408/429, an unfollowed redirect, a Kafka error
	// such as an authorization failure or an oversized message).
	ErrTypeNotifyRejected = "NotifyRejected"
	// ErrTypeNotifyConfig is non-retryable: see ErrNotifyConfig and
	// ErrInvalidNotification.
	ErrTypeNotifyConfig = "NotifyConfig"
	// ErrTypeRetryAfter is retryable after the delay the receiver asked for.
	ErrTypeRetryAfter = "RetryAfter"
)

// maxRetryAfter caps a receiver's Retry-After so that one answer cannot
// park the activity past its schedule-to-close timeout.
const maxRetryAfter = 15 * time.Minute

// Notify sends n to every configured target: Webhook and/or Kafka on
// NotifyTopic; with neither it does nothing. Receivers deduplicate by the
// Idempotency-Key (n.IdempotencyKey()), since a retried attempt may repeat
// a delivery. A target that already succeeded in an earlier attempt is
// recorded in the heartbeat details and skipped on retry (not when run as
// a local activity, which has no heartbeats). Transient
// failures return a retryable error; see classify.
func (a *Activities) Notify(ctx context.Context, n Notification) error {
	logger := activity.GetLogger(ctx)
	if a.Webhook == nil && a.Kafka == nil {
		logger.Debug("notify: no target configured", "kind", n.Kind, "session_id", n.SessionID)
		return nil
	}
	body, err := encodeNotification(n)
	if err != nil {
		return classify(outcome{target: "notification", dest: n.IdempotencyKey(), err: err})
	}
	key := n.IdempotencyKey()

	type target struct {
		name string
		send func() outcome
	}
	var targets []target
	if a.Webhook != nil {
		targets = append(targets, target{"webhook", func() outcome { return a.Webhook.post(ctx, body, key) }})
	}
	if a.Kafka != nil {
		targets = append(targets, target{"kafka", func() outcome {
			return produce(ctx, a.Kafka, a.NotifyTopic, n.SessionID, body, key)
		}})
	}

	var delivered []string
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &delivered) // unreadable: deliver again
	}
	var failures []error
	for _, t := range targets {
		if slices.Contains(delivered, t.name) {
			logger.Info("notify: delivered in an earlier attempt", "kind", n.Kind, "session_id", n.SessionID, "target", t.name)
			continue
		}
		o := t.send()
		if err := classify(o); err != nil {
			logger.Warn("notify: delivery failed", "kind", n.Kind, "session_id", n.SessionID,
				"target", t.name, "status", o.logStatus(), "error", err)
			failures = append(failures, err)
			continue
		}
		logger.Info("notified", "kind", n.Kind, "session_id", n.SessionID, "target", t.name, "status", o.logStatus())
		delivered = append(delivered, t.name)
	}
	if len(failures) > 0 && len(delivered) > 0 {
		// The first heartbeat of an attempt is sent at once, so the next
		// attempt sees it. The happy path needs none.
		activity.RecordHeartbeat(ctx, delivered)
	}
	return combine(failures)
}

// encodeNotification checks n and renders the JSON every target receives.
func encodeNotification(n Notification) ([]byte, error) {
	switch n.Kind {
	case KindSessionClosed, KindExpiryWarning, KindBreakStarted:
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidNotification, n.Kind)
	}
	if n.SessionID == "" {
		return nil, fmt.Errorf("%w: %s without session_id (key %q)", ErrInvalidNotification, n.Kind, n.Key)
	}
	body, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("%w: encode JSON: %w", ErrInvalidNotification, err)
	}
	return body, nil
}

// outcome is what one delivery produced, before classify judges it.
type outcome struct {
	target     string // "webhook" or "kafka"
	dest       string // redacted URL or topic: safe to log
	status     string // for the log: "204 No Content", "acked partition 0 offset 7"
	code       int    // HTTP status; 0 without an HTTP response
	retryAfter string // the Retry-After header
	body       []byte // the first bodyPrefix bytes of the response
	err        error  // transport, producer or configuration error
}

func (o outcome) logStatus() string {
	switch {
	case o.status != "":
		return o.status
	case o.code != 0:
		return strconv.Itoa(o.code) + " " + http.StatusText(o.code)
	default:
		return "no response"
	}
}

// classify is where retryability is decided. Retryable, as a plain error
// so the activity's retry policy applies: network errors and timeouts,
// HTTP 5xx, 408 and 429, and Kafka errors not listed below (sarama has
// already retried those itself). A 429 or 503 with Retry-After retries
// after that delay instead (ErrTypeRetryAfter). Everything else a receiver
// answers — other 4xx, a redirect the client did not follow, a Kafka
// authorization or size error — is ErrTypeNotifyRejected, and configuration
// or input errors are ErrTypeNotifyConfig; both are non-retryable.
func classify(o outcome) error {
	if o.err != nil {
		msg := fmt.Sprintf("%s %s: %v", o.target, o.dest, o.err)
		var kerr sarama.KError
		var cerr sarama.ConfigurationError
		switch {
		case errors.Is(o.err, ErrNotifyConfig), errors.Is(o.err, ErrInvalidNotification):
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotifyConfig, nil)
		case errors.As(o.err, &cerr):
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotifyRejected, nil)
		case errors.As(o.err, &kerr) && slices.Contains(permanentKafkaErrors, kerr):
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotifyRejected, nil)
		}
		return fmt.Errorf("%s %s: %w", o.target, o.dest, o.err)
	}
	if o.code == 0 || o.code/100 == 2 {
		return nil
	}
	msg := fmt.Sprintf("%s %s: HTTP %d, body %q", o.target, o.dest, o.code, o.body)
	switch {
	case o.code >= 500, o.code == http.StatusRequestTimeout, o.code == http.StatusTooManyRequests:
		if o.code == http.StatusTooManyRequests || o.code == http.StatusServiceUnavailable {
			if d := parseRetryAfter(o.retryAfter, time.Now()); d > 0 {
				return temporal.NewApplicationErrorWithOptions(msg, ErrTypeRetryAfter,
					temporal.ApplicationErrorOptions{NextRetryDelay: d})
			}
		}
		return errors.New(msg)
	default:
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotifyRejected, nil)
	}
}

// permanentKafkaErrors are broker answers that the same message will get
// again however often it is sent.
var permanentKafkaErrors = []sarama.KError{
	sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge, sarama.ErrInvalidRecord,
	sarama.ErrInvalidTopic, sarama.ErrTopicAuthorizationFailed, sarama.ErrClusterAuthorizationFailed,
	sarama.ErrInvalidRequiredAcks, sarama.ErrUnsupportedForMessageFormat, sarama.ErrPolicyViolation,
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at
// maxRetryAfter; 0 means absent, unreadable or already past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	var d time.Duration
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// combine merges one attempt's failures. The result is retryable if any
// failure is, so a target that is merely down gets its retries even when
// another refused the notice for good; once only the refusing target is
// left (the others are skipped as delivered), the activity fails
// non-retryably. It carries the longest Retry-After any receiver asked for.
func combine(failures []error) error {
	switch len(failures) {
	case 0:
		return nil
	case 1:
		// As is: Temporal recognises an *ApplicationError only unwrapped.
		return failures[0]
	}
	permanent, delay := true, time.Duration(0)
	msgs := make([]string, len(failures))
	for i, err := range failures {
		msgs[i] = err.Error()
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || !ae.NonRetryable() {
			permanent = false
		}
		if ae != nil {
			delay = max(delay, ae.NextRetryDelay())
		}
	}
	msg := strings.Join(msgs, "; ")
	switch {
	case permanent:
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotifyRejected, nil)
	case delay > 0:
		return temporal.NewApplicationErrorWithOptions(msg, ErrTypeRetryAfter, temporal.ApplicationErrorOptions{NextRetryDelay: delay})
	default:
		return errors.Join(failures...)
	}
}

// NotifyResult is how one notice of NotifyAll went.
type NotifyResult struct {
	Error string `json:"error,omitempty"`
	// Final: a receiver refused it, or it cannot be sent; retrying cannot help.
	Final bool `json:"final,omitempty"`
}

// NotifyAll sends notices, one Notify each, in order, and reports each
// one's outcome rather than failing: a shard sends a task's notices in one
// local activity, and retrying the lot for one receiver's hiccup would
// resend every notice before it. The caller retries the failed ones.
func (a *Activities) NotifyAll(ctx context.Context, ns []Notification) ([]NotifyResult, error) {
	out := make([]NotifyResult, len(ns))
	for i, n := range ns {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := a.Notify(ctx, n)
		if err == nil {
			continue
		}
		var ae *temporal.ApplicationError
		out[i] = NotifyResult{Error: err.Error(), Final: errors.As(err, &ae) && ae.NonRetryable()}
	}
	return out, nil
}
