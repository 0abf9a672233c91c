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
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
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
// watermark lag of each pipeline, and the worker's task backlog.
func (s *stack) status(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	parts := []string{fmt.Sprintf("events in %d", s.eventsIn())}
	for _, p := range pipelineNames {
		open := s.count(ctx, fmt.Sprintf("WorkflowType='SessionWorkflow' AND Pipeline='%s' AND ExecutionStatus='Running'", p))
		closed := s.count(ctx, fmt.Sprintf("WorkflowType='SessionWorkflow' AND Pipeline='%s' AND SessionState='closed'", p))
		parts = append(parts, fmt.Sprintf("%s: %d open, %d closed, lag %s", p, open, closed, s.lag(ctx, p)))
	}
	parts = append(parts, "tasks waiting "+s.backlog(ctx))
	return strings.Join(parts, " | ")
}

// backlog is how many workflow and activity tasks wait for the worker: a
// number that keeps growing means Temporal or the worker cannot keep up
// with the generator, and sessions reach Parquet ever later.
func (s *stack) backlog(ctx context.Context) string {
	var parts []string
	for _, t := range []struct {
		name string
		typ  enumspb.TaskQueueType
	}{{"workflow", enumspb.TASK_QUEUE_TYPE_WORKFLOW}, {"activity", enumspb.TASK_QUEUE_TYPE_ACTIVITY}} {
		resp, err := s.temporal.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: workflows.TaskQueue}, TaskQueueType: t.typ, ReportStats: true,
		})
		n := "-"
		if err == nil {
			n = fmt.Sprint(resp.GetStats().GetApproximateBacklogCount())
		}
		parts = append(parts, t.name+" "+n)
	}
	return strings.Join(parts, ", ")
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
