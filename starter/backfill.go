package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sessionflow/sessionflow/backfill"
	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/internal/env"
	"github.com/sessionflow/sessionflow/internal/rulesflag"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// backfillFlags are the flags of `starter backfill`.
type backfillFlags struct {
	pipelines, pipeline string
	from                []string
	since, until        string
	shards, parallel    int
	out                 string
	wait                bool
	refresh             time.Duration
	taskQueue, ui       string
	s3Endpoint          string
	s3Bucket            string
	s3TLS               bool
	rules               *rulesflag.Flags
	ruleFlags           *pflag.FlagSet
}

func backfillCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Sessionize history from S3 or local files on the Temporal workers",
		Long: `backfill starts a BackfillWorkflow that sessionizes past events with the same
rules engine as the streaming workers and writes Parquet in the streaming
layout (<out>/sessions/session_date=…/bucket=NN/…) under the backfill's own
prefix. For the same events its sessions are those of 'starter sessionize'
over the inputs concatenated in order.

Inputs (--from, repeatable, taken in the order given) are JSON lines, plain
or gzip, and Parquet files (columns become fields); a directory or an S3
prefix is listed recursively in lexical order, skipping names that start
with "." or "_". Local paths are read by the workers, not by this command:
use them when the workers run on this machine or share its file system, and
upload the files to S3 otherwise. Invalid lines go to <out>/rejects/ as JSON
lines with their source, line number and reason.

The rules come from the pipelines file (--pipelines with --pipeline), or,
without one, from --profile and the rule flags.

The workflow id is derived from the request (pipeline, rules, inputs, time
range, shards, output), so running the same command again attaches to the
running backfill, or reports the finished one without redoing it. --wait
shows its progress on stderr until it is done; without it the command
prints the workflow id and its Temporal UI link and returns.

Temporal: the standard TEMPORAL_* environment (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*). S3: --s3-endpoint,
credentials from S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY; with them the
S3 inputs and the output bucket are checked before the backfill starts.

Exit status: 0 done (or started, without --wait), 1 failed, 2 bad usage.`,
		Example: `  starter backfill --pipelines pipelines.yaml --pipeline clicks --from s3://raw/clicks/2024/ --wait
  starter backfill --pipeline clicks --profile clickstream --from ./history --from extra.jsonl.gz \
      --since 2024-01-01 --until 2024-02-01 --shards 32 --out s3://sessionflow/backfills/jan`,
		Args: cobra.NoArgs,
	}
	f := bindBackfillFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		in, err := f.input()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
		defer stop()
		return f.run(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), in)
	}
	return cmd
}

// bindBackfillFlags defines the command's flags on fs.
func bindBackfillFlags(fs *pflag.FlagSet) *backfillFlags {
	f := &backfillFlags{}
	fs.StringVar(&f.pipelines, "pipelines", "", "pipelines file (YAML) that declares --pipeline and its rules")
	fs.StringVar(&f.pipeline, "pipeline", "", "pipeline name: its rules, and the name in the records (required)")
	fs.StringArrayVar(&f.from, "from", nil, "input: s3://bucket/prefix, a directory or a file (repeatable; required)")
	fs.StringVar(&f.since, "since", "", "take events at or after this time (RFC 3339 or YYYY-MM-DD, UTC)")
	fs.StringVar(&f.until, "until", "", "take events before this time (RFC 3339 or YYYY-MM-DD, UTC)")
	fs.IntVar(&f.shards, "shards", 16, "key-hash shards: a sessionizing activity holds about 1/shards of the events in memory")
	fs.IntVar(&f.parallel, "parallel", 4, "activities run at once")
	fs.StringVar(&f.out, "out", "", "output s3://bucket/prefix (default s3://<s3-bucket>/<pipeline prefix>/backfills/<id>)")
	fs.BoolVar(&f.wait, "wait", false, "show progress and wait until the backfill is done")
	fs.DurationVar(&f.refresh, "refresh", time.Second, "progress refresh interval with --wait")
	fs.StringVar(&f.taskQueue, "task-queue", workflows.TaskQueue, "Temporal task queue of the workers")
	fs.StringVar(&f.ui, "ui", env.Or("TEMPORAL_UI", "http://localhost:8233"), "Temporal UI base URL for the link (env TEMPORAL_UI)")
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", env.Or("S3_ENDPOINT", env.DefaultS3Endpoint), "S3-compatible endpoint host:port (env S3_ENDPOINT)")
	fs.StringVar(&f.s3Bucket, "s3-bucket", env.Or("S3_BUCKET", env.DefaultS3Bucket), "bucket of the default --out (env S3_BUCKET)")
	fs.BoolVar(&f.s3TLS, "s3-tls", env.True("S3_TLS"), "use TLS to reach S3 (env S3_TLS=true)")
	// The rule flags live in a set of their own so that we can tell
	// whether any was given next to --pipelines.
	f.ruleFlags = pflag.NewFlagSet("rules", pflag.ContinueOnError)
	f.rules = rulesflag.Add(f.ruleFlags)
	fs.AddFlagSet(f.ruleFlags)
	return f
}

// input validates the flags and builds the workflow input. Its errors are
// usage errors, except for a missing local input or an unreadable
// pipelines file.
func (f *backfillFlags) input() (workflows.BackfillInput, error) {
	var in workflows.BackfillInput
	if f.pipeline == "" {
		return in, usageError{errors.New("--pipeline is required")}
	}
	if len(f.from) == 0 {
		return in, usageError{errors.New("--from is required: s3://bucket/prefix, a directory or a file")}
	}
	rules, prefix, err := f.sessionRules()
	if err != nil {
		return in, err
	}
	if rules.TimeUnit == time.Millisecond {
		rules.TimeUnit = 0 // the default, however it was given: one request, one id
	}
	req := workflows.BackfillRequest{Pipeline: f.pipeline, Rules: rules, Shards: f.shards, Out: f.out}
	if f.shards < 1 || f.shards > backfill.MaxShards {
		return in, usageError{fmt.Errorf("--shards %d: want 1 to %d", f.shards, backfill.MaxShards)}
	}
	if f.parallel < 1 {
		return in, usageError{fmt.Errorf("--parallel %d: want at least 1", f.parallel)}
	}
	if f.refresh <= 0 {
		return in, usageError{fmt.Errorf("--refresh %v: want a positive duration", f.refresh)}
	}
	for name, dst := range map[string]*int64{"since": &req.Since, "until": &req.Until} {
		v := map[string]string{"since": f.since, "until": f.until}[name]
		if v == "" {
			continue
		}
		t, err := parseBackfillTime(v)
		if err != nil {
			return in, usageError{fmt.Errorf("--%s: %w", name, err)}
		}
		*dst = t.UnixMilli()
	}
	if req.Until != 0 && req.Until <= req.Since {
		return in, usageError{fmt.Errorf("--until %s is not after --since %s", f.until, f.since)}
	}
	if f.out != "" {
		if _, _, ok := store.ParseS3URL(f.out); !ok {
			return in, usageError{fmt.Errorf("--out %q: want s3://bucket/prefix", f.out)}
		}
	}
	for _, from := range f.from {
		src, err := backfillLocation(from)
		if err != nil {
			return in, err
		}
		req.Inputs = append(req.Inputs, src)
	}
	id := req.ID()
	if req.Out == "" {
		req.Out = fmt.Sprintf("s3://%s/%s/backfills/%s", f.s3Bucket, prefix, id)
	}
	if err := req.Validate(); err != nil {
		return in, usageError{err}
	}
	return workflows.BackfillInput{ID: id, BackfillRequest: req, Parallelism: f.parallel}, nil
}

// sessionRules returns the pipeline's rules and output prefix, from the
// pipelines file or from the rule flags.
func (f *backfillFlags) sessionRules() (session.Rules, string, error) {
	if f.pipelines == "" {
		r, err := f.rules.Rules()
		if err != nil {
			return session.Rules{}, "", err
		}
		return *r, f.pipeline, nil
	}
	var given []string
	f.ruleFlags.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed {
			given = append(given, "--"+fl.Name)
		}
	})
	if len(given) > 0 {
		return session.Rules{}, "", usageError{fmt.Errorf("%s with --pipelines: the rules come from the pipelines file; edit it instead",
			strings.Join(given, ", "))}
	}
	file, err := config.Load(f.pipelines)
	if err != nil {
		return session.Rules{}, "", err
	}
	p, err := file.Find(f.pipeline)
	if err != nil {
		return session.Rules{}, "", usageError{fmt.Errorf("--pipeline: %w", err)}
	}
	r, err := p.SessionRules()
	if err != nil {
		return session.Rules{}, "", err
	}
	prefix := p.Output.Prefix
	if prefix == "" {
		prefix = p.Name
	}
	return r, strings.Trim(prefix, "/"), nil
}

// backfillLocation checks one --from: an s3:// URL, or a local path made
// absolute (the workers resolve it, not this command's directory).
func backfillLocation(from string) (string, error) {
	if strings.HasPrefix(from, "s3://") {
		if _, _, ok := store.ParseS3URL(from); !ok {
			return "", usageError{fmt.Errorf("--from %q: want s3://bucket/prefix", from)}
		}
		return from, nil
	}
	if strings.Contains(from, "://") {
		return "", usageError{fmt.Errorf("--from %q: want s3://bucket/prefix or a local path", from)}
	}
	abs, err := filepath.Abs(from)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("--from %s: %w", from, err)
	}
	return abs, nil
}

// parseBackfillTime reads RFC 3339, or a date or a date and time without zone as UTC.
func parseBackfillTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2024-01-02T15:04:05Z) or a date (2024-01-02)", s)
}
