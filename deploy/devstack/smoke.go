package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// smokeCheck waits for closed sessions of both pipelines in Parquet, the
// Temporal UI's answer and `starter sessions list`; with --kcat it also
// produces one session with kcat and waits for it in Parquet, and with
// --duckdb-check it runs the README's DuckDB query over a copy of the
// Parquet written. It says what it saw.
func (s *stack) smokeCheck(ctx context.Context) error {
	var probe *kcatProbe
	if s.o.kcat != "" {
		// Produce first: the session closes while the other checks run.
		p, err := s.produceWithKcat(ctx)
		if err != nil {
			return fmt.Errorf("smoke: %w", err)
		}
		probe = p
	}
	fmt.Println("smoke: waiting for closed sessions of both pipelines in Parquet…")
	for _, p := range pipelineNames {
		prefix := p + "/sessions/"
		err := s.poll("Parquet under "+prefix).Until(ctx, func() error {
			for obj := range s.s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
				if obj.Err == nil && strings.HasSuffix(obj.Key, ".parquet") {
					fmt.Printf("smoke: %s wrote %s\n", p, obj.Key)
					return nil
				}
			}
			return fmt.Errorf("no object yet (%s)", s.status(ctx))
		})
		if err != nil {
			return fmt.Errorf("smoke: %w", err)
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + uiPort + "/")
	if s.o.temporal == "" {
		if err != nil {
			return fmt.Errorf("smoke: Temporal UI: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("smoke: Temporal UI answered %s", resp.Status)
		}
		fmt.Println("smoke: Temporal UI answers 200 OK")
	}
	out, err := exec.CommandContext(ctx, filepath.Join(s.o.bin, "starter"), "sessions", "list",
		"--pipeline", "clickstream", "--state", "closed", "--limit", "5").CombinedOutput()
	if err != nil {
		return fmt.Errorf("smoke: starter sessions list: %v\n%s", err, out)
	}
	fmt.Printf("smoke: starter sessions list --pipeline clickstream --state closed:\n%s", out)
	if probe != nil {
		if err := s.waitForProbe(ctx, probe); err != nil {
			return fmt.Errorf("smoke: %w", err)
		}
	}
	if s.o.duckdbCheck != "" {
		key := ""
		if probe != nil {
			key = probe.key
		}
		if err := s.duckdbCheck(ctx, key); err != nil {
			return fmt.Errorf("smoke: %w", err)
		}
	}
	fmt.Printf("smoke: ok (%s)\n", s.status(ctx))
	return nil
}

// kcatProbe is a session the smoke produced with kcat: a key the generator
// never uses (its keys are user-N and DRNN), so its Parquet row is ours.
type kcatProbe struct {
	pipeline, prefix, key string
	pages                 []string
	sent                  time.Time
}

// produceWithKcat sends three clicks of a fresh key to the clickstream
// pipeline's topic with `kcat -P -K:` (each line is key:value), the way
// the README tells a user to, with the README example's fields. The topic and field names come from the
// embedded pipelines file.
func (s *stack) produceWithKcat(ctx context.Context) (*kcatProbe, error) {
	kcat, err := exec.LookPath(s.o.kcat)
	if err != nil {
		return nil, fmt.Errorf("kcat: %w (install the Debian package kcat, or pass --kcat '' to skip this check)", err)
	}
	f, err := config.Parse(pipelinesYAML)
	if err != nil {
		return nil, err
	}
	p, err := f.Find("clickstream")
	if err != nil {
		return nil, err
	}
	r, err := p.SessionRules()
	if err != nil {
		return nil, err
	}
	probe := &kcatProbe{pipeline: p.Name, prefix: p.Output.Prefix, pages: []string{"home", "search", "cart"},
		key: "kcat-smoke-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if probe.prefix == "" {
		probe.prefix = p.Name
	}
	// Event times a second apart, ending now: on time for the watermark
	// the generator drives.
	t0 := time.Now().Add(-time.Duration(len(probe.pages)-1) * time.Second).UnixMilli()
	var in bytes.Buffer
	for i, page := range probe.pages {
		event, err := json.Marshal(map[string]any{r.KeyField: probe.key, r.TimeField: t0 + int64(i)*1000, r.PageField: page})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&in, "%s:%s\n", probe.key, event)
	}
	args := []string{"-P", "-b", s.brokers, "-t", p.Topic, "-K:"}
	fmt.Printf("smoke: producing %d clicks of key %s with: kcat %s\n%s", len(probe.pages), probe.key, strings.Join(args, " "), in.String())
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(kctx, kcat, args...)
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kcat -P to %s at %s: %v\n%s", p.Topic, s.brokers, err, out)
	}
	probe.sent = time.Now()
	return probe, nil
}

// waitForProbe waits until the kcat session is closed and in Parquet, with
// the events sent, then shows it with `starter sessions show`.
func (s *stack) waitForProbe(ctx context.Context, p *kcatProbe) error {
	fmt.Printf("smoke: waiting for the session of key %s (produced with kcat) in Parquet…\n", p.key)
	var rec session.Record
	err := s.poll("the kcat session of key "+p.key+" in Parquet").Until(ctx, func() error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		recs, err := store.ReadSessions(rctx, s.s3, bucket, p.prefix)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(recs, func(r session.Record) bool { return r.Key == p.key })
		if i < 0 {
			return fmt.Errorf("no row with key %s among %d sessions yet (%s)", p.key, len(recs), s.status(ctx))
		}
		rec = recs[i]
		return nil
	})
	if err != nil {
		// ctx may be spent by now; the diagnosis gets its own time.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(dctx, filepath.Join(s.o.bin, "starter"), "sessions", "show",
			"--pipeline", p.pipeline, "--key", p.key).CombinedOutput()
		return fmt.Errorf("%w\nstarter sessions show --pipeline %s --key %s:\n%s", err, p.pipeline, p.key, out)
	}
	var pages []string
	if rec.ClickstreamAttrs != nil {
		pages = rec.PagesVisited
	}
	if rec.EventCount != int64(len(p.pages)) || !slices.Equal(pages, p.pages) || rec.CloseReason == "" {
		return fmt.Errorf("the kcat session in Parquet is %+v with pages %v: want %d events, pages %v and a close reason",
			rec, pages, len(p.pages), p.pages)
	}
	fmt.Printf("smoke: kcat session in Parquet %.0fs after producing: %s, %d events, pages %v, closed by %s\n",
		time.Since(p.sent).Seconds(), rec.SessionID, rec.EventCount, pages, rec.CloseReason)
	out, err := exec.CommandContext(ctx, filepath.Join(s.o.bin, "starter"), "sessions", "show",
		"--pipeline", p.pipeline, "--key", p.key).CombinedOutput()
	if err != nil {
		return fmt.Errorf("starter sessions show --key %s: %v\n%s", p.key, err, out)
	}
	if !strings.Contains(string(out), "state") || !strings.Contains(string(out), "closed (") {
		return fmt.Errorf("starter sessions show --key %s does not show a closed session:\n%s", p.key, out)
	}
	fmt.Printf("smoke: starter sessions show --pipeline %s --key %s:\n%s", p.pipeline, p.key, out)
	return nil
}

// duckdbCheck copies the Parquet of both pipelines out of S3, keeping the
// object names, and runs the --duckdb-check node script on the copy: it
// runs the README's DuckDB query with s3://<bucket>/ replaced by the copy.
func (s *stack) duckdbCheck(ctx context.Context, key string) error {
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("duckdb check: %w (it needs Node.js and @duckdb/node-api in bench/batch)", err)
	}
	dir := filepath.Join(s.o.dir, "parquet-copy")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	n := 0
	for _, p := range pipelineNames {
		for obj := range s.s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: p + "/sessions/", Recursive: true}) {
			if obj.Err != nil {
				return fmt.Errorf("duckdb check: list %s: %w", p, obj.Err)
			}
			if !strings.HasSuffix(obj.Key, ".parquet") {
				continue
			}
			if err := s.s3.FGetObject(ctx, bucket, obj.Key, filepath.Join(dir, bucket, filepath.FromSlash(obj.Key)), minio.GetObjectOptions{}); err != nil {
				return fmt.Errorf("duckdb check: download %s: %w", obj.Key, err)
			}
			n++
		}
	}
	if n == 0 {
		return errors.New("duckdb check: no Parquet objects to query")
	}
	args := []string{s.o.duckdbCheck, filepath.Join(dir, bucket)}
	if key != "" {
		args = append(args, key)
	}
	fmt.Printf("smoke: copied %d Parquet objects to %s; node %s\n", n, dir, strings.Join(args, " "))
	nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(nctx, node, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("duckdb check (the README's query, node %s): %w", s.o.duckdbCheck, err)
	}
	return nil
}

// poll is how the smoke check waits for what: every half second, for
// --timeout at most.
func (s *stack) poll(what string) proc.Wait {
	return proc.Wait{What: what, Limit: s.o.timeout, Interval: pollEvery}
}
