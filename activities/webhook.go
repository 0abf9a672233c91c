package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Webhook is an HTTP endpoint that receives notifications as JSON POSTs.
// It is safe for concurrent use.
type Webhook struct {
	// URL may carry credentials (userinfo) or a token in the query; they are
	// sent but never logged or put in an error.
	URL string
	// Client defaults to one with connect, TLS and response-header timeouts
	// that does not follow redirects which would turn the POST into a GET.
	// The activity's context bounds each request in any case.
	Client *http.Client
}

// bodyPrefix is how much of a response body an error quotes: enough to show
// the receiver's reason, too little to flood the workflow history.
const bodyPrefix = 200

// defaultClient is the Webhook client when none is configured.
var defaultClient = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
	},
	// 307 and 308 keep the method and body; 301, 302 and 303 would re-send
	// the notification as a bodiless GET, so those come back as responses
	// and are rejected as a misconfigured URL.
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.Method != http.MethodPost || len(via) >= 5 {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

// post sends one notification. It never returns an error itself: what
// happened goes into the outcome, which classify judges.
func (w *Webhook) post(ctx context.Context, body []byte, idemKey string) outcome {
	o := outcome{target: "webhook", dest: redactURL(w.URL)}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		o.err = fmt.Errorf("%w: the URL must be absolute http(s)", ErrNotifyConfig)
		return o
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		// The error would quote the URL; the redacted one says enough.
		o.err = fmt.Errorf("%w: cannot build a POST to the URL", ErrNotifyConfig)
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(idempotencyHeader, idemKey)
	req.Header.Set("User-Agent", "sessionflow")

	client := w.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error repeats the URL with its query and user name: keep
		// only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		o.err = err
		return o
	}
	defer resp.Body.Close()
	o.code, o.status = resp.StatusCode, resp.Status
	o.retryAfter = resp.Header.Get("Retry-After")
	o.body, _ = io.ReadAll(io.LimitReader(resp.Body, bodyPrefix))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return o
}

// redactURL is u without userinfo, query and fragment, safe to log.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
