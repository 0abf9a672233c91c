//go:build fault

// Package fault is Sessionflow's reliability suite (`make fault`): each test
// runs the real binaries — bin/worker, Temporal's dev server (bin/temporal)
// and MinIO (bin/minio) — as processes on free loopback ports, feeds them
// from an in-process Kafka-protocol broker (kfake), injects one kind of
// fault, and then checks the one property that matters: the sessions in
// Parquet equal the batch engine's over the on-time input, with nothing
// written twice and nothing lost. RELIABILITY.md at the repository root
// lists the cases and the last run.
//
// Each case has its own stack (broker, dev server, MinIO, workers) in a
// folder under $TMPDIR, deleted when the case passes and kept, with the
// processes' logs, when it fails.
package fault

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// Names of the pipeline every case runs.
const (
	pipelineName = "clickstream"
	topic        = "clicks"
	dlqTopic     = topic + ".dlq"
	partitions   = 4
	groupID      = "sessionflow-" + pipelineName // the ingester's default group
	bucket       = "sessionflow"
	s3User       = "sessionflow"
	s3Pass       = "sessionflow-fault-only"
	// maxMessageBytes lets the broker take the 5 MB poison value and the
	// worker's dead-letter copy of it.
	maxMessageBytes = 16 << 20
)

// pipelinesYAML is the worker's --pipelines file: the clickstream profile
// with minutes turned into seconds (as deploy/devstack/pipelines.yaml does),
// so that the generated users' bursts, seconds apart and separated by
// absences of 35 s to 4 min, make sessions that close within the run. Sinks
// flush every 2 s so that the last sessions reach Parquet quickly.
const pipelinesYAML = `pipelines:
  - name: clickstream
    profile: clickstream
    topic: clicks
    rules:
      gap: 30s
      max_duration: 2m
      lateness: 5s
      end_marker: page_name=logout
    output: {buckets: 4, flush: {max_records: 500, max_age: 2s}}
    notify: {session_closed: %t}
    max_wait: 5s
`

// stackOptions vary the stack between cases.
type stackOptions struct {
	// webhook, if set, is the worker's --webhook-url, and session_closed
	// notifications are turned on.
	webhook string
}

// stack is one case's running system.
type stack struct {
	t     *testing.T
	dir   string // state and logs
	bin   string // the repository's bin/
	start time.Time

	kafka   *kfake.Cluster
	brokers []string
	admin   sarama.ClusterAdmin
	kclient sarama.Client

	temporal     *proc.Process
	temporalAddr string
	dev          proc.DevServer // restarted on the same ports and SQLite file
	tc           client.Client

	minio    *proc.Process
	s3Addr   string
	minioCfg proc.MinIO // restarted on the same port and data folder
	s3       *minio.Client

	pipelinesFile string
	workerBin     string
	pipeline      workflows.Pipeline
	rules         session.Rules
	opts          stackOptions

	bg      sync.WaitGroup // goroutines that log: done before the cleanup
	mu      sync.Mutex
	procs   []*proc.Process // every process started, for the logs and the cleanup
	workers int             // workers started so far, to name their logs
}

// newStack starts the broker, MinIO and the dev server, and writes the
// pipelines file; workers are started by the case (startWorker).
func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, opts: opts, start: time.Now()}
	var err error
	s.dir, err = os.MkdirTemp("", "sessionflow-fault-"+t.Name()+"-")
	if err != nil {
		t.Fatalf("state folder: %v", err)
	}
	t.Cleanup(s.cleanup)
	if s.bin, err = binDir(); err != nil {
		t.Fatal(err)
	}

	s.pipelinesFile = filepath.Join(s.dir, "pipelines.yaml")
	if err := os.WriteFile(s.pipelinesFile, fmt.Appendf(nil, pipelinesYAML, opts.webhook != ""), 0o644); err != nil {
		t.Fatalf("write pipelines file: %v", err)
	}
	// The test reads the same file the worker does, so the batch engine
	// gets exactly the worker's rules.
	f, err := config.Load(s.pipelinesFile)
	if err != nil {
		t.Fatalf("pipelines file: %v", err)
	}
	if s.pipeline, err = f.Pipelines[0].Workflow(); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	s.rules = s.pipeline.Rules
	// A private copy of the worker: a `make build` elsewhere on the machine
	// must not swap the binary between a case's restarts.
	s.workerBin = filepath.Join(s.dir, "worker")
	if err := copyFile(filepath.Join(s.bin, "worker"), s.workerBin); err != nil {
		t.Fatalf("copy the worker binary: %v", err)
	}

	s.startKafka()
	s.startMinIO()
	s.startTemporal()
	s.dialTemporal()
	s.logf("stack up in %v: kafka %v, temporal %s, minio %s, state in %s",
		time.Since(s.start).Round(time.Millisecond), s.brokers, s.temporalAddr, s.s3Addr, s.dir)
	return s
}

// logf logs with the time since the case started, so that the faults and
// the progress read as one timeline.
func (s *stack) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("[%6.1fs] %s", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// binDir is <repository root>/bin, where `make build tools` puts the
// binaries.
func binDir() (string, error) {
	root, err := proc.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	for _, name := range []string{"worker", "temporal", "minio"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return "", fmt.Errorf("%s missing: run `make build tools` (make fault does): %w", name, err)
		}
	}
	return bin, nil
}

// --- Kafka ------------------------------------------------------------------

func (s *stack) startKafka() {
	c, err := proc.Kafka{Topics: []string{topic}, Partitions: partitions, DLQs: []string{dlqTopic},
		MaxMessageBytes: maxMessageBytes}.Start()
	if err != nil {
		s.t.Fatal(err)
	}
	s.kafka, s.brokers = c, c.ListenAddrs()
	if s.kclient, err = sarama.NewClient(s.brokers, kafkaConfig()); err != nil {
		s.t.Fatalf("kafka client: %v", err)
	}
	if s.admin, err = sarama.NewClusterAdminFromClient(s.kclient); err != nil {
		s.t.Fatalf("kafka admin: %v", err)
	}
}

// kafkaConfig is the test's own producer and admin config.
func kafkaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.ClientID = "fault-test"
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.MaxMessageBytes = maxMessageBytes
	c.Producer.Partitioner = func(string) sarama.Partitioner { return manualPartitioner{} }
	return c
}

// manualPartitioner sends each message to the partition the workload chose
// (a key hash for events, anything for keyless poison).
type manualPartitioner struct{}

func (manualPartitioner) Partition(m *sarama.ProducerMessage, _ int32) (int32, error) {
	return m.Partition, nil
}
func (manualPartitioner) RequiresConsistency() bool { return true }

// committed is the consumer group's committed offset of each partition (0
// when none).
func (s *stack) committed() ([]int64, error) {
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	out := make([]int64, partitions)
	resp, err := s.admin.ListConsumerGroupOffsets(groupID, map[string][]int32{topic: ps})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", groupID, err)
	}
	for i := range out {
		if b := resp.GetBlock(topic, int32(i)); b != nil {
			if !errors.Is(b.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("committed offset of %s/%d: %w", topic, i, b.Err)
			}
			out[i] = max(b.Offset, 0)
		}
	}
	return out, nil
}

// lag is how many produced messages the group has not committed yet.
func (s *stack) lag() (int64, error) {
	done, err := s.committed()
	if err != nil {
		return 0, err
	}
	var n int64
	for p := range int32(partitions) {
		end, err := s.kclient.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, fmt.Errorf("end offset of %s/%d: %w", topic, p, err)
		}
		n += max(end-done[p], 0)
	}
	return n, nil
}

// endOffsets is the end offset of each partition of the topic.
func (s *stack) endOffsets() []int64 {
	s.t.Helper()
	out := make([]int64, partitions)
	for p := range out {
		var err error
		if out[p], err = s.kclient.GetOffset(topic, int32(p), sarama.OffsetNewest); err != nil {
			s.t.Fatalf("end offset of %s/%d: %v", topic, p, err)
		}
	}
	return out
}

// committedTotal is the number of messages committed over all partitions.
func (s *stack) committedTotal() int64 {
	offs, err := s.committed()
	if err != nil {
		s.logf("progress unknown: %v", err)
		return 0
	}
	var n int64
	for _, o := range offs {
		n += o
	}
	return n
}

// --- MinIO ------------------------------------------------------------------

func (s *stack) startMinIO() {
	var err error
	if s.s3Addr, err = proc.FreeAddr(); err != nil {
		s.t.Fatal(err)
	}
	s.minioCfg = proc.MinIO{Bin: filepath.Join(s.bin, "minio"), Dir: filepath.Join(s.dir, "minio"),
		Addr: s.s3Addr, User: s3User, Password: s3Pass, Bucket: bucket}
	if s.s3, err = s.minioCfg.Client(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.runMinIO(); err != nil {
		s.t.Fatal(err)
	}
}

// runMinIO starts (or restarts, on the same port and data folder) MinIO and
// waits until the bucket exists.
func (s *stack) runMinIO() error {
	m, err := s.minioCfg.WithFreePorts() // a new console port
	if err != nil {
		return err
	}
	p, err := m.Start(context.Background(), s.spec("minio"))
	s.add(p)
	s.minio = p
	return err
}

// --- Temporal ---------------------------------------------------------------

func (s *stack) startTemporal() {
	var err error
	s.dev, err = proc.DevServer{Bin: filepath.Join(s.bin, "temporal"), DBFile: filepath.Join(s.dir, "temporal.db")}.WithFreePorts()
	if err != nil {
		s.t.Fatal(err)
	}
	s.temporalAddr = s.dev.Addr
	if err := s.runTemporal(); err != nil {
		s.t.Fatal(err)
	}
}

// runTemporal starts (or restarts, on the same ports and SQLite file) the
// dev server and waits until it answers.
func (s *stack) runTemporal() error {
	p, c, err := s.dev.Start(context.Background(), s.spec("temporal"), client.Options{Logger: quietLogger()}, nil)
	s.add(p)
	s.temporal = p
	if c != nil {
		c.Close()
	}
	return err
}

// dialTemporal connects the test's client and registers the session search
// attributes, as the dev stack does, before any worker starts.
func (s *stack) dialTemporal() {
	wait := proc.Wait{What: "search attributes", Limit: 60 * time.Second, Proc: s.temporal}
	opts := client.Options{HostPort: s.temporalAddr, Namespace: "default", Logger: quietLogger()}
	register := func(ctx context.Context, c client.Client) error {
		return workflows.RegisterSearchAttributes(ctx, c, "default")
	}
	var err error
	if s.tc, err = proc.DialTemporal(context.Background(), wait, opts, register); err != nil {
		s.t.Fatal(err)
	}
}

func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

// --- workers ----------------------------------------------------------------

// startWorker starts one more bin/worker process (role all: Temporal worker
// and ingester) and waits until it reports ready on /readyz.
func (s *stack) startWorker() *proc.Process {
	s.t.Helper()
	metrics, err := proc.FreeAddr()
	if err != nil {
		s.t.Fatal(err)
	}
	args := []string{"--role", "all", "--pipelines", s.pipelinesFile, "--kafka-brokers", strings.Join(s.brokers, ","),
		"--s3-endpoint", s.s3Addr, "--s3-bucket", bucket, "--metrics-addr", metrics}
	if s.opts.webhook != "" {
		args = append(args, "--webhook-url", s.opts.webhook)
	}
	env := []string{"TEMPORAL_ADDRESS=" + s.temporalAddr, "TEMPORAL_NAMESPACE=default",
		"S3_ACCESS_KEY_ID=" + s3User, "S3_SECRET_ACCESS_KEY=" + s3Pass}
	s.mu.Lock()
	s.workers++
	name := fmt.Sprintf("worker-%d", s.workers)
	s.mu.Unlock()
	spec := s.spec(name)
	spec.Path, spec.Args, spec.Env = s.workerBin, args, env
	p, err := proc.Start(spec)
	if err != nil {
		s.t.Fatal(err)
	}
	s.add(p)
	err = proc.Wait{What: name + " ready", Limit: 60 * time.Second, Proc: p}.Until(s.t.Context(), func() error {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.logf("%s ready (pid %d)", name, p.Pid())
	return p
}

// --- processes --------------------------------------------------------------

// spec is how the suite runs a child: its output appended to
// <dir>/<name>.log after a line with the command (a restarted server
// appends to its log), killed with the test binary (one killed by -timeout
// must not leave servers running), and without the variables of the
// developer's shell that would send it to other services or change its
// settings.
func (s *stack) spec(name string) proc.Spec {
	return proc.Spec{Name: name, Log: filepath.Join(s.dir, name+".log"), Header: true, DieWithParent: true,
		DropEnv: []string{"TEMPORAL_", "KAFKA_", "S3_", "AWS_", "MINIO_", "SESSIONFLOW_"}}
}

// add has the cleanup stop p and show its log; p may be nil.
func (s *stack) add(p *proc.Process) {
	if p == nil {
		return
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

// rssOf is the process's resident set size in bytes (VmRSS).
func rssOf(p *proc.Process) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", p.Pid())
}

// unexpectedExit is a process that ended without being stopped, if any.
func (s *stack) unexpectedExit() *proc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Exited() && !p.Stopped() {
			return p
		}
	}
	return nil
}

// checkProcesses fails the test for every process that ended without
// being stopped: a crash the case did not inject is a finding.
func (s *stack) checkProcesses() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Exited() && !p.Stopped() {
			s.t.Errorf("%s exited on its own (%v); its log is %s:\n%s", p.Name, p.Err(), p.Log, p.Tail(30))
		}
	}
}

// cleanup stops everything; it keeps the state folder when the case failed
// and shows the end of every log.
func (s *stack) cleanup() {
	s.bg.Wait() // they end with s.t.Context()
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- { // workers before the servers
		if !procs[i].Exited() {
			procs[i].Stop(proc.Grace)
		}
	}
	if s.tc != nil {
		s.tc.Close()
	}
	if s.admin != nil {
		s.admin.Close() // closes kclient too
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.t.Failed() {
		shown := map[string]bool{} // a restarted server appends to its log
		for _, p := range procs {
			if !shown[p.Log] {
				shown[p.Log] = true
				s.t.Logf("--- last lines of %s ---\n%s", p.Log, p.Tail(25))
			}
		}
		s.t.Logf("state and logs kept in %s", s.dir)
		return
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Logf("remove %s: %v", s.dir, err)
	}
}

// copyFile copies an executable.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitFor polls cond every 250ms until it holds; it fails the test after
// timeout.
func (s *stack) waitFor(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p := s.unexpectedExit(); p != nil {
			s.t.Fatalf("waiting for %s: %s exited on its own (%v); its log %s ends:\n%s", what, p.Name, p.Err(), p.Log, p.Tail(30))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
