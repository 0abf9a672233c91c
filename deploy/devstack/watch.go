package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/sessionflow/sessionflow/workflows"
)

var pipelineNames = []string{"clickstream", "charging"}

func (s *stack) banner() {
	q := url.QueryEscape("WorkflowType='SessionWorkflow' AND ExecutionStatus='Running' AND Pipeline='clickstream'")
	ui := fmt.Sprintf("http://localhost:%s/namespaces/default/workflows?query=%s", uiPort, q)
	if s.o.temporal != "" {
		ui = "(your Temporal's UI) query: WorkflowType='SessionWorkflow' AND ExecutionStatus='Running'"
	}
	logs := filepath.Join(s.o.dir, "logs")
	fmt.Printf(`
Sessionflow dev stack is up.

  Temporal UI     %s
  MinIO console   http://%s   (user %s)
  Parquet         s3://%s/clickstream/sessions/  and  s3://%s/charging/sessions/
  Kafka           %s   topics: clicks, telemetry
                  echo 'me:{"uuid":"me","event_timestamp":'$(date +%%s000)',"page_name":"home"}' | kcat -P -b %s -t clicks -K:
  Webhook log     %s
  Sessions        bin/starter sessions list --pipeline clickstream
  Logs            %s

Ctrl-C stops everything; the state stays in %s for the next run.

`, ui, minioConsole, s.s3User, bucket, bucket, s.brokers, s.brokers, filepath.Join(logs, "webhook.log"), logs, s.o.dir)
}

// progress prints one refreshing line until ctx ends.
func (s *stack) progress(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fmt.Fprintf(os.Stderr, "\r\033[K%s", s.status(ctx))
	}
}

// status is one line: events in, open and closed sessions and the
// watermark lag of each pipeline.
func (s *stack) status(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	parts := []string{fmt.Sprintf("events in %d", s.eventsIn())}
	for _, p := range pipelineNames {
		open := s.count(ctx, fmt.Sprintf("WorkflowType='SessionWorkflow' AND Pipeline='%s' AND ExecutionStatus='Running'", p))
		closed := s.count(ctx, fmt.Sprintf("WorkflowType='SessionWorkflow' AND Pipeline='%s' AND SessionState='closed'", p))
		parts = append(parts, fmt.Sprintf("%s: %d open, %d closed, lag %s", p, open, closed, s.lag(ctx, p)))
	}
	return strings.Join(parts, " | ")
}

func (s *stack) count(ctx context.Context, query string) int64 {
	resp, err := s.temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: "default", Query: query})
	if err != nil {
		return -1
	}
	return resp.GetCount()
}

// lag is how far the pipeline's watermark trails the wall clock.
func (s *stack) lag(ctx context.Context, pipeline string) string {
	v, err := s.temporal.QueryWorkflow(ctx, workflows.ClockWorkflowID(pipeline), "", workflows.QueryClock)
	if err != nil {
		return "-"
	}
	var c workflows.ClockState
	if err := v.Get(&c); err != nil || c.WallMs == 0 {
		return "-"
	}
	return time.Since(time.UnixMilli(c.Watermark)).Round(time.Second).String()
}

// eventsIn sums the topics' high-water marks.
func (s *stack) eventsIn() int64 {
	c, err := sarama.NewClient(strings.Split(s.brokers, ","), sarama.NewConfig())
	if err != nil {
		return -1
	}
	defer c.Close()
	var n int64
	for _, topic := range []string{"clicks", "telemetry"} {
		parts, err := c.Partitions(topic)
		if err != nil {
			continue
		}
		for _, p := range parts {
			if off, err := c.GetOffset(topic, p, sarama.OffsetNewest); err == nil {
				n += off
			}
		}
	}
	return n
}
