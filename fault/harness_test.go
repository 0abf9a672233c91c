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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/internal/devserver"
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

	temporal     *proc
	temporalAddr string
	temporalArgs []string
	tc           client.Client

	minio  *proc
	s3Addr string
	s3     *minio.Client

	pipelinesFile string
	workerBin     string
	pipeline      workflows.Pipeline
	rules         session.Rules
	opts          stackOptions

	bg      sync.WaitGroup // goroutines that log: done before the cleanup
	mu      sync.Mutex
	procs   []*proc // every process started, for the logs and the cleanup
	workers int     // workers started so far, to name their logs
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
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			bin := filepath.Join(dir, "bin")
			for _, name := range []string{"worker", "temporal", "minio"} {
				if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
					return "", fmt.Errorf("%s missing: run `make build tools` (make fault does): %w", name, err)
				}
			}
			return bin, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// --- Kafka ------------------------------------------------------------------

func (s *stack) startKafka() {
	c, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topic), kfake.SeedTopics(1, dlqTopic),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(maxMessageBytes)}))
	if err != nil {
		s.t.Fatalf("kfake: %v", err)
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
	s.s3Addr = freeAddr(s.t)
	var err error
	if s.s3, err = minio.New(s.s3Addr, &minio.Options{Creds: credentials.NewStaticV4(s3User, s3Pass, "")}); err != nil {
		s.t.Fatalf("s3 client: %v", err)
	}
	if err := s.runMinIO(); err != nil {
		s.t.Fatal(err)
	}
}

// runMinIO starts (or restarts, on the same port and data folder) MinIO and
// waits until the bucket exists.
func (s *stack) runMinIO() error {
	env := []string{"MINIO_ROOT_USER=" + s3User, "MINIO_ROOT_PASSWORD=" + s3Pass, "MINIO_UPDATE=off"}
	p, err := s.spawn("minio", env, filepath.Join(s.bin, "minio"), "server", filepath.Join(s.dir, "minio"),
		"--address", s.s3Addr, "--console-address", freeAddr(s.t), "--quiet")
	if err != nil {
		return err
	}
	s.minio = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return retry(ctx, p, "MinIO at "+s.s3Addr, func() error {
		resp, err := http.Get("http://" + s.s3Addr + "/minio/health/live")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		err = s.s3.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
		if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou || code == "BucketAlreadyExists" {
			return nil
		}
		return err
	})
}

// --- Temporal ---------------------------------------------------------------

func (s *stack) startTemporal() {
	s.temporalAddr = freeAddr(s.t)
	_, port, _ := net.SplitHostPort(s.temporalAddr)
	httpPort, metricsPort := freePort(s.t), freePort(s.t)
	args := append([]string{"server", "start-dev", "--ip", "127.0.0.1", "--port", port, "--headless",
		"--http-port", httpPort, "--metrics-port", metricsPort, "--log-level", "warn"},
		devserver.StorageArgs(filepath.Join(s.dir, "temporal.db"))...)
	s.temporalArgs = args
	if err := s.runTemporal(); err != nil {
		s.t.Fatal(err)
	}
}

// runTemporal starts (or restarts, on the same ports and SQLite file) the
// dev server and waits until it answers.
func (s *stack) runTemporal() error {
	p, err := s.spawn("temporal", nil, filepath.Join(s.bin, "temporal"), s.temporalArgs...)
	if err != nil {
		return err
	}
	s.temporal = p
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return retry(ctx, p, "Temporal at "+s.temporalAddr, func() error {
		c, err := client.DialContext(ctx, client.Options{HostPort: s.temporalAddr, Namespace: "default", Logger: quietLogger()})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
}

// dialTemporal connects the test's client and registers the session search
// attributes, as the dev stack does, before any worker starts.
func (s *stack) dialTemporal() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := retry(ctx, s.temporal, "search attributes", func() error {
		c, err := client.DialContext(ctx, client.Options{HostPort: s.temporalAddr, Namespace: "default", Logger: quietLogger()})
		if err != nil {
			return err
		}
		if err := workflows.RegisterSearchAttributes(ctx, c, "default"); err != nil {
			c.Close()
			return err
		}
		s.tc = c
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// --- workers ----------------------------------------------------------------

// startWorker starts one more bin/worker process (role all: Temporal worker
// and ingester) and waits until it reports ready on /readyz.
func (s *stack) startWorker() *proc {
	s.t.Helper()
	metrics := freeAddr(s.t)
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
	p, err := s.spawn(name, env, s.workerBin, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = retry(ctx, p, name+" ready", func() error {
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
	s.logf("%s ready (pid %d)", name, p.pid())
	return p
}

// --- processes --------------------------------------------------------------

// proc is a child process with its output in <dir>/<name>.log.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error       // Wait's result, once done is closed
	stopped atomic.Bool // we stopped it: its exit is expected
}

// spawn starts bin with args; env is added to this process's environment
// minus the variables that would point the child at other services.
func (s *stack) spawn(name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.dir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(os.Environ()), env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: a test binary killed by -timeout must not leave servers
	// running on the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// cleanEnv drops the variables of the developer's shell that would send a
// child to other services or change its settings.
func cleanEnv(env []string) []string {
	var kept []string
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "TEMPORAL_"), strings.HasPrefix(kv, "KAFKA_"), strings.HasPrefix(kv, "S3_"),
			strings.HasPrefix(kv, "AWS_"), strings.HasPrefix(kv, "MINIO_"), strings.HasPrefix(kv, "SESSIONFLOW_"):
		default:
			kept = append(kept, kv)
		}
	}
	return kept
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL: no clean shutdown, no hand-over.
func (p *proc) kill() {
	p.stopped.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to end with SIGTERM and kills it after grace. It
// reports whether the kill was needed.
func (p *proc) stop(grace time.Duration) (killed bool) {
	p.stopped.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return true
	}
}

// rss is the process's resident set size in bytes (VmRSS).
func (p *proc) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
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
	return 0, fmt.Errorf("no VmRSS for pid %d", p.pid())
}

// unexpectedExit is a process that ended without being stopped, if any.
func (s *stack) unexpectedExit() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.exited() && !p.stopped.Load() {
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
		if p.exited() && !p.stopped.Load() {
			s.t.Errorf("%s exited on its own (%v); its log is %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 30))
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
		if !procs[i].exited() {
			procs[i].stop(15 * time.Second)
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
			if !shown[p.logPath] {
				shown[p.logPath] = true
				s.t.Logf("--- last lines of %s ---\n%s", p.logPath, tail(p.logPath, 25))
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

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// --- small helpers ------------------------------------------------------------

// retry calls f every 250ms until it succeeds, ctx ends or p exits.
func retry(ctx context.Context, p *proc, what string, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last error: %v)", what, ctx.Err(), err)
		case <-p.done:
			return fmt.Errorf("%s: %s exited (%v) before it was ready:\n%s", what, p.name, p.err, tail(p.logPath, 20))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitFor polls cond every 250ms until it holds; it fails the test after
// timeout.
func (s *stack) waitFor(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p := s.unexpectedExit(); p != nil {
			s.t.Fatalf("waiting for %s: %s exited on its own (%v); its log %s ends:\n%s", what, p.name, p.err, p.logPath, tail(p.logPath, 30))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// freeAddr is a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freePort(t testing.TB) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return port
}
