package proc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWaitUntil(t *testing.T) {
	errNotYet := errors.New("connection refused")
	tests := []struct {
		name string
		// succeedAt is the attempt that succeeds; 0 never.
		succeedAt int
		wait      Wait
		cancel    bool // cancel the context after 100ms
		wantIs    error
		wantMsg   []string
		maxTook   time.Duration
	}{
		{name: "ready on the third attempt", succeedAt: 3, wait: Wait{What: "x", Limit: 5 * time.Second, Interval: 10 * time.Millisecond},
			maxTook: time.Second},
		{name: "times out with the last error", wait: Wait{What: "MinIO at 127.0.0.1:1", Limit: 300 * time.Millisecond, Interval: 50 * time.Millisecond},
			wantIs: errNotYet, wantMsg: []string{"MinIO at 127.0.0.1:1 not ready after 300ms", "connection refused"}, maxTook: 2 * time.Second},
		{name: "context ends first", wait: Wait{What: "Temporal", Interval: 20 * time.Millisecond}, cancel: true,
			wantIs: context.Canceled, wantMsg: []string{"Temporal not ready: context canceled", "last attempt: connection refused"}, maxTook: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			attempts := 0
			start := time.Now()
			err := tt.wait.Until(ctx, func() error {
				attempts++
				if attempts == tt.succeedAt {
					return nil
				}
				return errNotYet
			})
			took := time.Since(start)
			if took > tt.maxTook {
				t.Errorf("Until took %v; want at most %v", took, tt.maxTook)
			}
			if tt.wantIs == nil {
				if err != nil || attempts != tt.succeedAt {
					t.Fatalf("Until = %v after %d attempts; want nil after %d", err, attempts, tt.succeedAt)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Until = %v; want it to wrap %v", err, tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("Until = %q; want it to say %q", err, m)
				}
			}
		})
	}
}

func TestWaitUntilGivesUpWhenTheProcessExits(t *testing.T) {
	p := sh(t, Spec{}, `echo "bind: address already in use"; exit 3`)
	start := time.Now()
	err := Wait{What: "MinIO at 127.0.0.1:1", Limit: time.Minute, Proc: p}.Until(t.Context(), func() error {
		return errors.New("connection refused")
	})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Until took %v; want it to stop when the process exits", took)
	}
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Until = %v; want ErrExited", err)
	}
	for _, m := range []string{"MinIO at 127.0.0.1:1: sh exited before it was ready", "exit status 3",
		"connection refused", "bind: address already in use"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("Until = %q; want it to say %q", err, m)
		}
	}
}
