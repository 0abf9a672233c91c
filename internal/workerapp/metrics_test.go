package workerapp

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionflow/sessionflow/ingest"
)

func TestMetricsServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	ingest.NewMetrics(reg).Messages.WithLabelValues("clicks", "0").Add(3)
	var ready atomic.Bool
	var logs bytes.Buffer
	stop, err := serveMetrics("127.0.0.1:0", reg, &ready, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	addr := between(logs.String(), `"addr":"`, `"`)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before start = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once started = %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `sessionflow_ingest_messages_total{partition="0",pipeline="clicks"} 3`) {
		t.Errorf("/metrics = %d:\n%s", code, body)
	}
}

func between(s, from, to string) string {
	_, s, _ = strings.Cut(s, from)
	s, _, _ = strings.Cut(s, to)
	return s
}
