package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"

	"github.com/sessionflow/sessionflow/internal/env"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// run connects, checks S3, starts or attaches to the backfill, and reports.
func (f *backfillFlags) run(ctx context.Context, stdout, stderr io.Writer, in workflows.BackfillInput) error {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return fmt.Errorf("temporal client config: %w", err)
	}
	// The Temporal client's own logs would tear the progress line; errors
	// reach the user as this command's errors.
	opts.Logger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))
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
