package activities

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sessionflow/sessionflow/session"
)

// The notifications the tests send: one of each kind.
var (
	closedNotice = Notification{
		Kind: KindSessionClosed, Pipeline: "web", Key: "user-1", SessionID: "s-1", At: 1_700_000_600_000,
		Session: session.Record{SessionID: "s-1", Key: "user-1", Pipeline: "web", Profile: "clickstream",
			Start: 1_700_000_000_000, End: 1_700_000_600_000, DurationMs: 600_000, EventCount: 12,
			CloseReason: session.ReasonEndMarker},
	}
	expiryNotice = Notification{Kind: KindExpiryWarning, Pipeline: "bays", Key: "bay-7", SessionID: "s-2", At: 1_700_003_600_000}
	breakNotice  = Notification{
		Kind: KindBreakStarted, Pipeline: "ev", Key: "charger-3", SessionID: "s-3", At: 1_700_000_900_000,
		Session: session.Record{SessionID: "s-3", Key: "charger-3", Pipeline: "ev", Profile: "charging",
			Start: 1_700_000_000_000, ChargingAttrs: &session.ChargingAttrs{SocStart: 20, SocEnd: 45, BreakCount: 1}},
	}
)

// secret is in every webhook URL (userinfo and query): it must reach
// neither a log line nor an error.
const secret = "hunter2"

func withSecret(base string) string {
	return strings.Replace(base, "http://", "http://notify:"+secret+"@", 1) + "/hook?token=" + secret
}

// received is one request as the webhook receiver saw it.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// receiver is an httptest webhook that answers every request with status,
// extra headers and body, and records what it got.
func receiver(t *testing.T, status int, header map[string]string, body string) (*httptest.Server, func() []received) {
	t.Helper()
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Method, r.URL.Path, r.Header.Clone(), b})
		mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

// logLines captures what the activity logs, one "LEVEL msg k=v ..." each.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(level, msg string, kv []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(level, " ", msg, " ", kv))
}
func (l *logLines) Debug(msg string, kv ...any) { l.add("DEBUG", msg, kv) }
func (l *logLines) Info(msg string, kv ...any)  { l.add("INFO", msg, kv) }
func (l *logLines) Warn(msg string, kv ...any)  { l.add("WARN", msg, kv) }
func (l *logLines) Error(msg string, kv ...any) { l.add("ERROR", msg, kv) }

// has reports whether a line starts with "LEVEL msg" and holds kv, the
// key-value pairs in order.
func (l *logLines) has(levelMsg, kv string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.HasPrefix(line, levelMsg+" [") && strings.Contains(line, kv) {
			return true
		}
	}
	return false
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// attempt is what one Notify attempt did.
type attempt struct {
	err  error
	logs *logLines
	beat []string // the heartbeat details it recorded
}

// runNotify executes a.Notify as Temporal's test environment would, with
// previous heartbeat details if prior is non-nil.
func runNotify(t *testing.T, a *Activities, n Notification, prior []string) attempt {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	logs := &logLines{}
	suite.SetLogger(logs)
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	if prior != nil {
		env.SetHeartbeatDetails(prior)
	}
	var beat []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		if err := d.Get(&beat); err != nil {
			t.Errorf("heartbeat details: %v", err)
		}
	})
	_, err := env.ExecuteActivity(a.Notify, n)
	if strings.Contains(logs.String(), secret) {
		t.Errorf("log reveals the secret:\n%s", logs)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error reveals the secret: %v", err)
	}
	return attempt{err, logs, beat}
}

// retryability says how Temporal will treat err.
func retryability(err error) (retryable bool, errType string, delay time.Duration) {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		return true, "", 0
	}
	return !ae.NonRetryable(), ae.Type(), ae.NextRetryDelay()
}

func TestNotifyWebhookDelivers(t *testing.T) {
	for _, tc := range []struct {
		n       Notification
		status  int
		wantKey string
	}{
		{closedNotice, http.StatusOK, "s-1:session_closed"},
		{expiryNotice, http.StatusCreated, "s-2:expiry_warning"},
		{breakNotice, http.StatusNoContent, "s-3:break_started:1700000900000"},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.n.Kind, tc.status), func(t *testing.T) {
			srv, got := receiver(t, tc.status, nil, "")
			res := runNotify(t, &Activities{Webhook: &Webhook{URL: withSecret(srv.URL)}}, tc.n, nil)
			err, logs := res.err, res.logs
			if err != nil {
				t.Fatalf("Notify: %v", err)
			}
			reqs := got()
			if len(reqs) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.path != "/hook" {
				t.Errorf("request = %s %s, want POST /hook", r.method, r.path)
			}
			for h, want := range map[string]string{
				"Content-Type": "application/json", "Idempotency-Key": tc.wantKey, "User-Agent": "sessionflow",
			} {
				if g := r.header.Get(h); g != want {
					t.Errorf("header %s = %q, want %q", h, g, want)
				}
			}
			wantBody, _ := json.Marshal(tc.n)
			if string(r.body) != string(wantBody) {
				t.Errorf("body = %s\nwant   %s", r.body, wantBody)
			}
			wantLog := fmt.Sprintf("kind %s session_id %s target webhook status %d",
				tc.n.Kind, tc.n.SessionID, tc.status)
			if !logs.has("INFO notified", wantLog) {
				t.Errorf("log lacks %q:\n%s", wantLog, logs)
			}
		})
	}
}

func TestNotifyWebhookFailures(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		retryable bool
		errType   string
		delay     time.Duration
	}{
		{"500", 500, nil, "boom", true, "", 0},
		{"502", 502, nil, "", true, "", 0},
		{"503 retry-after", 503, map[string]string{"Retry-After": "7"}, "", true, ErrTypeRetryAfter, 7 * time.Second},
		{"408", 408, nil, "", true, "", 0},
		{"429", 429, nil, "slow down", true, "", 0},
		{"429 retry-after", 429, map[string]string{"Retry-After": "30"}, "", true, ErrTypeRetryAfter, 30 * time.Second},
		{"429 retry-after capped", 429, map[string]string{"Retry-After": "86400"}, "", true, ErrTypeRetryAfter, maxRetryAfter},
		{"400", 400, nil, `{"error":"bad kind"}`, false, ErrTypeNotifyRejected, 0},
		{"404", 404, nil, long, false, ErrTypeNotifyRejected, 0},
		{"410", 410, nil, "", false, ErrTypeNotifyRejected, 0},
		{"302 not followed", 302, map[string]string{"Location": "/elsewhere"}, "", false, ErrTypeNotifyRejected, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := receiver(t, tc.status, tc.header, tc.body)
			res := runNotify(t, &Activities{Webhook: &Webhook{URL: withSecret(srv.URL)}}, closedNotice, nil)
			err, logs := res.err, res.logs
			if err == nil {
				t.Fatal("Notify succeeded, want an error")
			}
			retryable, errType, delay := retryability(err)
			if retryable != tc.retryable || errType != tc.errType || delay != tc.delay {
				t.Errorf("retryable, type, delay = %v, %q, %v; want %v, %q, %v (%v)",
					retryable, errType, delay, tc.retryable, tc.errType, tc.delay, err)
			}
			for _, want := range []string{srv.URL + "/hook", fmt.Sprintf("HTTP %d", tc.status), fmt.Sprintf("%q", tc.body[:min(len(tc.body), bodyPrefix)])} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), long[:bodyPrefix+1]) {
				t.Errorf("error quotes more than %d bytes of the body", bodyPrefix)
			}
			if !logs.has("WARN notify: delivery failed", fmt.Sprintf("target webhook status %d", tc.status)) {
				t.Errorf("no warning logged:\n%s", logs)
			}
		})
	}
}

func TestNotifyWebhookConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := withSecret(srv.URL)
	srv.Close()
	err := runNotify(t, &Activities{Webhook: &Webhook{URL: url}}, closedNotice, nil).err
	if retryable, _, _ := retryability(err); err == nil || !retryable {
		t.Fatalf("Notify = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q does not say the connection was refused", err)
	}
}

func TestNotifyInvalidSetupIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    *Activities
		n    Notification
	}{
		{"relative URL", &Activities{Webhook: &Webhook{URL: "/hook"}}, closedNotice},
		{"ftp URL", &Activities{Webhook: &Webhook{URL: "ftp://user:" + secret + "@host/x"}}, closedNotice},
		{"unparsable URL", &Activities{Webhook: &Webhook{URL: "http://a b:" + secret + "@host/%zz"}}, closedNotice},
		{"no topic", &Activities{Kafka: mocks.NewSyncProducer(t, nil)}, closedNotice},
		{"unknown kind", &Activities{Webhook: &Webhook{URL: "http://127.0.0.1:1/"}}, Notification{Kind: "opened", SessionID: "s"}},
		{"no session id", &Activities{Webhook: &Webhook{URL: "http://127.0.0.1:1/"}}, Notification{Kind: KindSessionClosed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runNotify(t, tc.a, tc.n, nil).err
			if retryable, errType, _ := retryability(err); err == nil || retryable || errType != ErrTypeNotifyConfig {
				t.Errorf("Notify = %v (retryable %v, type %q), want non-retryable %s", err, retryable, errType, ErrTypeNotifyConfig)
			}
		})
	}
}

func TestNotifyWithoutTargetsDoesNothing(t *testing.T) {
	if err := runNotify(t, &Activities{}, closedNotice, nil).err; err != nil {
		t.Errorf("Notify = %v, want nil", err)
	}
}

func TestNotifyKafkaErrors(t *testing.T) {
	for _, tc := range []struct {
		err       error
		retryable bool
	}{
		{sarama.ErrNotEnoughReplicas, true},
		{sarama.ErrOutOfBrokers, true},
		{sarama.ErrTopicAuthorizationFailed, false},
		{sarama.ErrMessageSizeTooLarge, false},
		{sarama.ConfigurationError("Attempt to produce message larger than configured Producer.MaxMessageBytes"), false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			p := mocks.NewSyncProducer(t, nil)
			p.ExpectSendMessageAndFail(tc.err)
			err := runNotify(t, &Activities{Kafka: p, NotifyTopic: "notify"}, closedNotice, nil).err
			retryable, _, _ := retryability(err)
			if err == nil || retryable != tc.retryable || !strings.Contains(err.Error(), "topic notify") {
				t.Errorf("Notify = %v (retryable %v), want an error naming the topic, retryable %v", err, retryable, tc.retryable)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{" 12 ", 12 * time.Second},
		{"999999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// kafkaCluster starts an in-process Kafka with the topic "notify".
func kafkaCluster(t *testing.T) []string {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "notify"))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs()
}

// notifier is NewKafkaNotifier's producer for the test cluster.
func notifier(t *testing.T, brokers []string) sarama.SyncProducer {
	t.Helper()
	p, err := NewKafkaNotifier(brokers, nil)
	if err != nil {
		t.Fatalf("NewKafkaNotifier: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// consume reads the topic "notify" from the start until it has n messages.
func consume(t *testing.T, brokers []string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	c, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition("notify", 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume partition: %v", err)
	}
	defer pc.Close()
	var msgs []*sarama.ConsumerMessage
	for len(msgs) < n {
		select {
		case m := <-pc.Messages():
			msgs = append(msgs, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d messages, want %d", len(msgs), n)
		}
	}
	return msgs
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestNotifyKafka(t *testing.T) {
	brokers := kafkaCluster(t)
	a := &Activities{Kafka: notifier(t, brokers), NotifyTopic: "notify"}
	notices := []Notification{closedNotice, expiryNotice, breakNotice}
	for _, n := range notices {
		res := runNotify(t, a, n, nil)
		err, logs := res.err, res.logs
		if err != nil {
			t.Fatalf("Notify(%s): %v", n.Kind, err)
		}
		if want := "kind " + n.Kind + " session_id " + n.SessionID + " target kafka status acked"; !logs.has("INFO notified", want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for i, m := range consume(t, brokers, len(notices)) {
		n := notices[i]
		wantValue, _ := json.Marshal(n)
		if string(m.Key) != n.SessionID || string(m.Value) != string(wantValue) || header(m, "Idempotency-Key") != n.IdempotencyKey() {
			t.Errorf("message %d = key %q, value %s, Idempotency-Key %q; want %q, %s, %q",
				i, m.Key, m.Value, header(m, "Idempotency-Key"), n.SessionID, wantValue, n.IdempotencyKey())
		}
	}
}

func TestNotifyBothTargets(t *testing.T) {
	brokers := kafkaCluster(t)
	srv, got := receiver(t, http.StatusNoContent, nil, "")
	a := &Activities{Webhook: &Webhook{URL: withSecret(srv.URL)}, Kafka: notifier(t, brokers), NotifyTopic: "notify"}
	if err := runNotify(t, a, breakNotice, nil).err; err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if reqs := got(); len(reqs) != 1 || reqs[0].header.Get("Idempotency-Key") != breakNotice.IdempotencyKey() {
		t.Errorf("webhook got %d requests, want 1 with the Idempotency-Key", len(reqs))
	}
	if m := consume(t, brokers, 1)[0]; header(m, "Idempotency-Key") != breakNotice.IdempotencyKey() {
		t.Errorf("Kafka message Idempotency-Key = %q, want %q", header(m, "Idempotency-Key"), breakNotice.IdempotencyKey())
	}
}

// A retry delivers only to the targets that failed before: the first
// attempt heartbeats what it delivered, the next one skips it.
func TestNotifyRetrySkipsDeliveredTargets(t *testing.T) {
	failing, _ := receiver(t, http.StatusBadGateway, nil, "")
	p := mocks.NewSyncProducer(t, nil)
	p.ExpectSendMessageAndSucceed() // once: the retry must not send again
	first := runNotify(t, &Activities{Webhook: &Webhook{URL: failing.URL}, Kafka: p, NotifyTopic: "notify"}, closedNotice, nil)
	err, beat := first.err, first.beat
	if retryable, _, _ := retryability(err); err == nil || !retryable {
		t.Fatalf("first attempt = %v, want a retryable error", err)
	}
	if len(beat) != 1 || beat[0] != "kafka" {
		t.Fatalf("first attempt heartbeated %q, want [kafka]", beat)
	}

	healthy, got := receiver(t, http.StatusOK, nil, "")
	res := runNotify(t, &Activities{Webhook: &Webhook{URL: healthy.URL}, Kafka: p, NotifyTopic: "notify"}, closedNotice, beat)
	err, logs := res.err, res.logs
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if len(got()) != 1 || !logs.has("INFO notify: delivered in an earlier attempt", "kind session_closed session_id s-1 target kafka") {
		t.Errorf("retry: webhook got %d requests, want 1; log:\n%s", len(got()), logs)
	}
}

// When one target refuses for good and another is only down, the attempt
// stays retryable so the second one gets its retries.
func TestNotifyMixedFailuresStayRetryable(t *testing.T) {
	refusing, _ := receiver(t, http.StatusBadRequest, nil, "")
	p := mocks.NewSyncProducer(t, nil)
	p.ExpectSendMessageAndFail(sarama.ErrNotEnoughReplicas)
	err := runNotify(t, &Activities{Webhook: &Webhook{URL: refusing.URL}, Kafka: p, NotifyTopic: "notify"}, closedNotice, nil).err
	if retryable, _, _ := retryability(err); err == nil || !retryable {
		t.Errorf("Notify = %v, want a retryable error", err)
	}
	for _, want := range []string{"HTTP 400", "topic notify"} {
		if err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
