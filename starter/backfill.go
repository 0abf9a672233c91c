package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"

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
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", env.Or("S3_ENDPOINT", "127.0.0.1:9000"), "S3-compatible endpoint host:port (env S3_ENDPOINT)")
	fs.StringVar(&f.s3Bucket, "s3-bucket", env.Or("S3_BUCKET", "sessionflow"), "bucket of the default --out (env S3_BUCKET)")
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

// run connects, checks S3, starts or attaches to the backfill, and reports.
func (f *backfillFlags) run(ctx context.Context, stdout, stderr io.Writer, in workflows.BackfillInput) error {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return fmt.Errorf("temporal client config: %w", err)
	}
	opts.Logger = silentLogger{}
	c, err := client.Dial(opts)
	if err != nil {
		return fmt.Errorf("connect to temporal at %s: %w", opts.HostPort, err)
	}
	defer c.Close()
	ns := opts.Namespace
	if ns == "" {
		ns = client.DefaultNamespace
	}
	if err := f.checkS3(ctx, stderr, in); err != nil {
		return err
	}

	wid := workflows.BackfillWorkflowID(in.Pipeline, in.ID)
	state := "started"
	if d, err := c.DescribeWorkflowExecution(ctx, wid, ""); err == nil {
		switch st := d.GetWorkflowExecutionInfo().GetStatus(); st {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			state = "already running: attached"
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			state = "already done: not run again"
		default:
			state = "started again (the previous run " + strings.ToLower(strings.TrimPrefix(st.String(), "WORKFLOW_EXECUTION_STATUS_")) + ")"
		}
	} else if _, notFound := errors.AsType[*serviceerror.NotFound](err); !notFound {
		return fmt.Errorf("look up %s: %w", wid, err)
	}
	run, err := c.ExecuteWorkflow(ctx, workflows.BackfillStartOptions(in, f.taskQueue), workflows.BackfillWorkflow, in)
	if err != nil {
		return fmt.Errorf("start backfill: %w", err)
	}
	fmt.Fprintf(stdout, "backfill %s: %s\n", wid, state)
	fmt.Fprintf(stdout, "  ui:     %s/namespaces/%s/workflows/%s\n", strings.TrimRight(f.ui, "/"), url.PathEscape(ns), url.PathEscape(wid))
	fmt.Fprintf(stdout, "  output: %s/sessions/\n", strings.TrimRight(in.Out, "/"))
	if !f.wait && !strings.HasPrefix(state, "already done") {
		return nil
	}
	return f.await(ctx, c, run, stdout, stderr)
}

// await shows the progress until the backfill ends, then its summary.
func (f *backfillFlags) await(ctx context.Context, c client.Client, run client.WorkflowRun, stdout, stderr io.Writer) error {
	type outcome struct {
		res workflows.BackfillProgress
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		o.err = run.Get(ctx, &o.res)
		done <- o
	}()
	bar := newProgressBar(stderr)
	tick := time.NewTicker(f.refresh)
	defer tick.Stop()
	for {
		select {
		case o := <-done:
			if ctx.Err() != nil {
				bar.end()
				return fmt.Errorf("interrupted: the backfill goes on as workflow %s", run.GetID())
			}
			if o.err != nil {
				bar.end()
				return fmt.Errorf("backfill %s failed: %w", run.GetID(), o.err)
			}
			bar.show(o.res, time.Now(), true)
			bar.end()
			fmt.Fprintln(stdout, backfillSummary(o.res))
			return nil
		case <-tick.C:
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.QueryWorkflow(qctx, run.GetID(), "", workflows.QueryProgress)
			cancel()
			var p workflows.BackfillProgress
			if err == nil && v.Get(&p) == nil { // a failed query just keeps the last line
				bar.show(p, time.Now(), false)
			}
		}
	}
}

// checkS3 fails fast on S3 inputs with no objects and a missing output
// bucket, when S3 credentials are at hand; the workers check again.
func (f *backfillFlags) checkS3(ctx context.Context, stderr io.Writer, in workflows.BackfillInput) error {
	access, secret := env.S3Credentials()
	if access == "" || secret == "" {
		fmt.Fprintln(stderr, "note: no S3 credentials (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY): the workers check the inputs")
		return nil
	}
	s3, err := minio.New(f.s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Secure: f.s3TLS})
	if err != nil {
		return fmt.Errorf("s3 client for %s: %w", f.s3Endpoint, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, input := range in.Inputs {
		bucket, prefix, ok := store.ParseS3URL(input)
		if !ok {
			continue
		}
		found := false
		for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: 1}) {
			if obj.Err != nil {
				return fmt.Errorf("check --from %s: %w", input, obj.Err)
			}
			found = true
			break
		}
		if !found {
			return fmt.Errorf("--from %s: no objects there", input)
		}
	}
	bucket, _, _ := store.ParseS3URL(in.Out)
	ok, err := s3.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("check output bucket %s at %s: %w", bucket, f.s3Endpoint, err)
	}
	if !ok {
		return fmt.Errorf("output bucket %s does not exist at %s", bucket, f.s3Endpoint)
	}
	return nil
}

// progressBar draws the progress as one refreshing line on a terminal, and
// as a line every 10 seconds (and on phase changes) elsewhere, such as in a
// CI log.
type progressBar struct {
	w     io.Writer
	tty   bool
	last  time.Time
	phase string
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			tty = fi.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progressBar{w: w, tty: tty}
}

func (b *progressBar) show(p workflows.BackfillProgress, now time.Time, final bool) {
	line := progressLine(p, now)
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\x1b[K", line)
		b.drawn = true
		return
	}
	if final || p.Phase != b.phase || now.Sub(b.last) >= 10*time.Second {
		fmt.Fprintln(b.w, line)
		b.last, b.phase = now, p.Phase
	}
}

// end leaves the refreshing line in place and moves below it.
func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

// progressLine renders the progress: a bar, the phase, objects read,
// events, sessions written and the estimated time left.
func progressLine(p workflows.BackfillProgress, now time.Time) string {
	const width = 20
	frac := p.Fraction()
	filled := int(frac * width)
	eta := "--"
	elapsed := now.Sub(p.StartedAt)
	switch {
	case p.Phase == workflows.PhaseDone:
		eta = "done in " + elapsed.Round(time.Second).String()
	case frac >= 0.02 && !p.StartedAt.IsZero():
		eta = (time.Duration(float64(elapsed) * (1 - frac) / frac)).Round(time.Second).String()
	}
	phase := p.Phase
	if phase == "" {
		phase = workflows.PhaseListing
	}
	line := fmt.Sprintf("[%s%s] %3.0f%% %-12s objects %d/%d · %s events · %s invalid · shards %d/%d · %s sessions written · ETA %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*frac, phase,
		p.Routed, p.Objects, thousands(p.Events), thousands(p.Invalid), p.Sessionized, p.Shards, thousands(p.Sessions), eta)
	if p.Phase == workflows.PhaseDone {
		line = strings.Replace(line, "ETA ", "", 1)
	}
	return line
}

// backfillSummary is the last line of a finished backfill.
func backfillSummary(p workflows.BackfillProgress) string {
	s := fmt.Sprintf("done: %d objects, %s lines, %s events", p.Objects, thousands(p.Lines), thousands(p.Events))
	var notes []string
	if p.Invalid > 0 {
		notes = append(notes, fmt.Sprintf("%s invalid in %s/rejects/", thousands(p.Invalid), strings.TrimRight(p.Out, "/")))
	}
	if p.Filtered > 0 {
		notes = append(notes, thousands(p.Filtered)+" outside the time range")
	}
	if p.Duplicates > 0 {
		notes = append(notes, thousands(p.Duplicates)+" duplicates")
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s + fmt.Sprintf(" -> %s sessions in %d Parquet objects under %s/sessions/",
		thousands(p.Sessions), p.Files, strings.TrimRight(p.Out, "/"))
}

// thousands writes n with thousands separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// silentLogger drops the Temporal client's own logs, which would tear the
// progress line; errors reach the user as this command's errors.
type silentLogger struct{}

func (silentLogger) Debug(string, ...any) {}
func (silentLogger) Info(string, ...any)  {}
func (silentLogger) Warn(string, ...any)  {}
func (silentLogger) Error(string, ...any) {}
