package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/workflows"
)

// The flags take their defaults from the environment the deployment files
// set, KAFKA_SASL_USERNAME included.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "a:9092,b:9092")
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USERNAME", "ingest")
	cmd := newCommand()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	for name, want := range map[string]string{
		"kafka-brokers": "a:9092,b:9092", "kafka-tls": "true", "kafka-sasl-mechanism": "SCRAM-SHA-512",
		"kafka-sasl-user": "ingest", "role": "all", "metrics-addr": ":9090",
	} {
		if got := get(name); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
}

// The ingest limits' flags leave their defaults to the ingest package and
// show them in their help, as pflag shows a non-zero default.
func TestFlagDefaultsFromThePackages(t *testing.T) {
	t.Setenv("KAFKA_CLIENT_ID", "")
	cmd := newCommand()
	for name, def := range map[string]any{
		"max-hold":      "a quarter of the pipeline's gap, within 1s..1m",
		"max-in-flight": ingest.DefaultMaxInFlight, "max-uncommitted": ingest.DefaultMaxUncommitted, "idle-after": ingest.DefaultIdleAfter,
	} {
		f := cmd.Flags().Lookup(name)
		if f.DefValue != "0" && f.DefValue != time.Duration(0).String() {
			t.Errorf("--%s defaults to %s, want zero (the package's default)", name, f.DefValue)
		}
		if want := fmt.Sprintf("(default %v)", def); !strings.HasSuffix(f.Usage, want) {
			t.Errorf("--%s help %q does not end in %q", name, f.Usage, want)
		}
	}
	if ingest.MinDefaultMaxHold != time.Second || ingest.MaxDefaultMaxHold != time.Minute {
		t.Errorf("--max-hold's help says its default lies within 1s..1m; ingest's bounds are %v..%v",
			ingest.MinDefaultMaxHold, ingest.MaxDefaultMaxHold)
	}
	if f := cmd.Flags().Lookup("workflow-task-pollers"); f.DefValue != fmt.Sprint(workflows.DefaultWorkflowTaskPollers) {
		t.Errorf("--workflow-task-pollers defaults to %s, want workflows.DefaultWorkflowTaskPollers", f.DefValue)
	}
	if f := cmd.Flags().Lookup("kafka-client-id"); f.DefValue != ingest.DefaultClientID {
		t.Errorf("--kafka-client-id defaults to %s, want ingest.DefaultClientID", f.DefValue)
	}
}

// --max-hold sets the hold; --flush-interval, its old name, still does, so
// that deploy scripts written for it keep working.
func TestMaxHoldFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 0}, // the ingester derives it from each pipeline's rules
		{[]string{"--max-hold", "7s"}, 7 * time.Second},
		{[]string{"--flush-interval", "5s"}, 5 * time.Second},
		{[]string{"--flush-interval=2s"}, 2 * time.Second},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := newCommand()
			cmd.SetErr(io.Discard) // the deprecation notice
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if got := cmd.Flags().Lookup("max-hold").Value.String(); got != tc.want.String() {
				t.Errorf("hold = %s, want %v", got, tc.want)
			}
		})
	}
	if f := newCommand().Flags().Lookup("flush-interval"); f.Deprecated == "" || !f.Hidden {
		t.Errorf("--flush-interval: deprecated %q, hidden %v; want a deprecated, hidden alias", f.Deprecated, f.Hidden)
	}
}
