package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
)

// sessionsFlags are the flags every sessions subcommand has.
type sessionsFlags struct {
	pipeline string
	format   string
	timeout  time.Duration
}

func sessionsCmd() *cobra.Command {
	var sf sessionsFlags
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List and inspect the sessions of a running deployment",
		Long: `sessions reads the live sessions of a running deployment from Temporal:
'list' searches them through visibility (the typed search attributes
Pipeline, SessionKey, SessionState, ...), 'show' asks one key's session
workflow for its state, 'watch' keeps showing it.

Temporal is reached through the standard client environment:
TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default
"default"), TEMPORAL_API_KEY, TEMPORAL_TLS_*, or a profile of
TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&sf.pipeline, "pipeline", "", "pipeline name (required)")
	pf.StringVar(&sf.format, "format", "table", "output format: table or json")
	pf.DurationVar(&sf.timeout, "timeout", 10*time.Second, "time limit of each call to Temporal")
	cmd.AddCommand(sessionsListCmd(&sf), sessionsShowCmd(&sf), sessionsWatchCmd(&sf))
	return cmd
}

// check validates the shared flags before anything connects.
func (sf *sessionsFlags) check() error {
	if sf.pipeline == "" {
		return usageError{fmt.Errorf("--pipeline is required")}
	}
	if sf.format != "table" && sf.format != "json" {
		return usageError{fmt.Errorf("--format %q: want table or json", sf.format)}
	}
	if sf.timeout <= 0 {
		return usageError{fmt.Errorf("--timeout must be > 0")}
	}
	return nil
}

// sessionsClient dials Temporal from the standard TEMPORAL_* environment.
// The error of an unreachable server names the address and the variable
// that sets it.
func sessionsClient(ctx context.Context, timeout time.Duration, stderr io.Writer) (client.Client, error) {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return nil, fmt.Errorf("temporal client config (TEMPORAL_* environment): %w", err)
	}
	if opts.HostPort == "" {
		opts.HostPort = client.DefaultHostPort
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	// The SDK logs at info level by default; an operator CLI only wants to
	// hear about trouble.
	opts.Logger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.DialContext(dctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %q): %w; "+
			"set TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE) to point at the cluster", opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}
