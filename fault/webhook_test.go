//go:build fault

package fault

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/activities"
)

// failFor is how long the webhook answers 500 after its first request:
// long enough for Notify's back-off to reach its 32 s step.
const failFor = 45 * time.Second

// hookReceiver is the webhook: 500 for failFor after the first request,
// then 204; it counts every attempt and every accepted delivery by
// Idempotency-Key.
type hookReceiver struct {
	mu        sync.Mutex
	first     time.Time
	failed    int            // attempts answered 500
	delivered map[string]int // accepted deliveries by Idempotency-Key
	bad       []string       // requests that broke the contract
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.first.IsZero() {
		h.first = time.Now()
	}
	key := r.Header.Get("Idempotency-Key")
	var n activities.Notification
	switch err := json.Unmarshal(body, &n); {
	case r.Method != http.MethodPost || err != nil:
		h.bad = append(h.bad, r.Method+" "+key+": "+string(body[:min(len(body), 200)]))
	case key != n.IdempotencyKey():
		h.bad = append(h.bad, "Idempotency-Key "+key+" for a body whose key is "+n.IdempotencyKey())
	}
	if time.Since(h.first) < failFor {
		h.failed++
		http.Error(w, "receiver down (fault injected)", http.StatusInternalServerError)
		return
	}
	h.delivered[key]++
	w.WriteHeader(http.StatusNoContent)
}

// TestWebhook500 points the worker's webhook at a receiver that answers
// 500 for 45 seconds, then 204. Every closed session's session_closed
// notification must eventually arrive (duplicates are allowed — receivers
// deduplicate by Idempotency-Key — and counted; a missing one is not), no
// notification may name a session that does not exist, and Parquet must
// still equal the batch result.
func TestWebhook500(t *testing.T) {
	seed := caseSeed(t)
	hook := &hookReceiver{delivered: map[string]int{}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	s := newStack(t, stackOptions{webhook: srv.URL + "/hook"})
	w := newWorkload(t, s.rules, workloadOptions{users: users, events: events, seed: seed})
	s.logf("%d messages (%d late); %d sessions expected", len(w.msgs), len(w.late), len(w.want))
	s.startWorker()
	pr := s.produce(w, steady(normalRate))
	s.finish(w, pr)

	// Parquet is complete; the last notifications may still be in their
	// back-off. Notify retries for up to 10 minutes, at most a minute apart.
	want := map[string]bool{}
	for _, r := range w.want {
		want[r.SessionID+":"+activities.KindSessionClosed] = true
	}
	missing := func() int {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		n, _ := missingLocked(hook, want)
		return n
	}
	deadline := time.Now().Add(3 * time.Minute)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
	}

	hook.mu.Lock()
	defer hook.mu.Unlock()
	if n, example := missingLocked(hook, want); n > 0 {
		t.Errorf("%d of %d session_closed notifications never arrived, e.g. %s", n, len(want), example)
	}
	if hook.failed == 0 {
		t.Errorf("no request was answered 500: the fault was not injected")
	}
	dups, extra := 0, []string{}
	for k, n := range hook.delivered {
		dups += n - 1
		if !want[k] {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		t.Errorf("%d notifications for sessions the batch engine does not find, e.g. %v", len(extra), extra[:min(5, len(extra))])
	}
	for _, b := range hook.bad {
		t.Errorf("bad webhook request: %s", b)
	}
	s.logf("webhook: %d attempts answered 500, %d notifications delivered, %d of them more than once (%d extra deliveries)",
		hook.failed, len(hook.delivered), countOver1(hook.delivered), dups)
}

func missingLocked(h *hookReceiver, want map[string]bool) (n int, example string) {
	for k := range want {
		if h.delivered[k] == 0 {
			n++
			if example == "" || strings.Compare(k, example) < 0 {
				example = k
			}
		}
	}
	return n, example
}

func countOver1(m map[string]int) int {
	n := 0
	for _, v := range m {
		if v > 1 {
			n++
		}
	}
	return n
}
