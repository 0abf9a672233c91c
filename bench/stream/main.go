// Command stream is Sessionflow's streaming benchmark: generator → an
// in-process Kafka-protocol broker (kfake) → the real ingesters → Temporal →
// Parquet on MinIO and webhook notifications, all in one run, once against
// Temporal's in-memory test server (temporaltest) and once against the dev
// server (`temporal server start-dev` with its SQLite file).
//
// For each server it first measures Temporal's own ceiling — SignalWithStart
// of a no-op workflow at the ingesters' concurrency — then runs the
// pipelines at a fixed offered load and reports throughput, signals, history
// events per input event, session-close latency, memory and consumer lag.
// The results go to a JSON file, plots next to it (bench/stream/plot.py) and
// a Markdown table on stdout.
//
//	go run ./bench/stream                      # both servers, ~20 minutes
//	go run ./bench/stream --servers temporaltest --duration 1m --warmup 20s
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sessionflow/sessionflow/ingest"
	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/workflows"
)

//go:embed pipelines.yaml
var pipelinesYAML []byte

// Server names accepted by --servers.
const (
	serverTemporaltest = "temporaltest"
	serverDev          = "devserver"
)

type options struct {
	servers []string
	bin     string
	out     string
	plot    bool
	verbose bool

	users        int
	clickRate    float64
	devices      int
	chargingRate float64
	seed         uint64

	duration        time.Duration
	warmup          time.Duration
	ceilingDuration time.Duration
	ceilingSignals  int

	maxInFlight int
	maxHold     time.Duration  // 0: each pipeline's own (config.Pipeline.Hold, ingest.DefaultMaxHold)
	startDelay  *time.Duration // --start-delay if given, as the worker's
	dynConfig   dynamicConfig  // on top of devServerConfig, for both servers
	wftPollers  int

	openSessions int
	pipelines    bool
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, logger); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: go run ./bench/stream [flags]

Runs the streaming benchmark against each server of --servers in turn:
Temporal's SignalWithStart ceiling with a no-op workflow, then generator ->
Kafka (kfake, 4 partitions per topic) -> ingesters -> Temporal -> Parquet on
MinIO + webhook, at a fixed offered load; then, in a process and server of
their own, --open-sessions sessions opened at once to measure the worker's
memory. Writes a JSON results file and PNG plots and prints a Markdown table.
Everything but MinIO and the dev server runs in this process. Needs
bin/minio and, for devserver, bin/temporal (make tools). The defaults take
about 20 minutes (3-9 of them the open sessions, per server) and offer about
750 events/s (2.7M events/hour): 8,000 users and 350 drones.

Flags:
`)
		fs.PrintDefaults()
	}
	servers := fs.String("servers", serverTemporaltest+","+serverDev, "Temporal servers to run against, in order: temporaltest (in memory, in process), devserver (bin/temporal start-dev, SQLite file)")
	fs.StringVar(&o.bin, "bin", "", "folder with the minio and temporal binaries (default <repo>/bin)")
	fs.StringVar(&o.out, "out", "", "results file (default <repo>/bench/results/stream-<date>.json); plots go next to it")
	fs.BoolVar(&o.plot, "plot", true, "draw the plots with /usr/bin/python3 bench/stream/plot.py")
	fs.BoolVar(&o.verbose, "v", false, "debug logs")
	fs.IntVar(&o.users, "users", 8000, "clickstream users")
	fs.Float64Var(&o.clickRate, "click-rate", 600, "clickstream pacing target of generate.Live (events/s); it offers about 9% more")
	fs.IntVar(&o.devices, "devices", 350, "charging drones")
	fs.Float64Var(&o.chargingRate, "charging-rate", 44, "charging pacing target of generate.Live (events/s); its drone model offers about 2.3x this with 350 drones")
	fs.Uint64Var(&o.seed, "seed", 1, "generator seed")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long the generator runs against each server")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "the first part of --duration left out of rates and latencies (open sessions build up)")
	fs.DurationVar(&o.ceilingDuration, "ceiling-duration", 30*time.Second, "how long the no-op SignalWithStart ceiling runs against each server (0 skips it)")
	fs.IntVar(&o.ceilingSignals, "ceiling-signals", 5, "signals each no-op workflow run receives before it completes")
	fs.IntVar(&o.maxInFlight, "max-in-flight", ingest.DefaultMaxInFlight, "ingest.Limits.MaxInFlight per pipeline (the ceiling runs at this times the 2 pipelines)")
	fs.DurationVar(&o.maxHold, "max-hold", 0, "ingest.Limits.MaxHold: the longest an event waits in its key's batch (0: each pipeline's max_hold, else a quarter of its gap within 1s..1m, as the worker does)")
	fs.DurationVar(&o.maxHold, "flush-interval", 0, "the old name of --max-hold")
	fs.Var(&o.dynConfig, "dynamic-config", "a Temporal dynamic-config setting key=value (value in YAML: true, 4096) for both servers, on top of the benchmark's own; repeat for more")
	startDelay := fs.Duration("start-delay", 0, "how long a new session waits for its first workflow task, gathering its first batches; 0 starts sessions at once (default: each pipeline's start_delay, else twice its hold within half the time to a session's first deadline, as the worker does)")
	fs.IntVar(&o.wftPollers, "wft-pollers", workflows.DefaultWorkflowTaskPollers, "worker.Options.MaxConcurrentWorkflowTaskPollers of the in-process workers: the worker binary's --workflow-task-pollers default (0: the SDK's default of 2)")
	fs.IntVar(&o.openSessions, "open-sessions", 10_000, "sessions opened at once, one event each, before the pipelines run (in a process of their own), to measure the worker's memory with that many open; 0 skips")
	fs.BoolVar(&o.pipelines, "pipelines", true, "run the ceiling and the pipelines; false with --open-sessions measures only the open sessions")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "start-delay" {
			o.startDelay = startDelay
		}
	})
	for _, s := range strings.Split(*servers, ",") {
		switch s = strings.TrimSpace(s); s {
		case serverTemporaltest, serverDev:
			o.servers = append(o.servers, s)
		case "":
		default:
			return o, fmt.Errorf("--servers: unknown server %q (want %s or %s)", s, serverTemporaltest, serverDev)
		}
	}
	return o, o.validate()
}

func (o options) validate() error {
	switch {
	case len(o.servers) == 0:
		return errors.New("--servers: name at least one server")
	case o.users < 0 || o.devices < 0 || o.users+o.devices == 0:
		return errors.New("--users and --devices: want at least one actor and no negative count")
	case (o.users > 0 && o.clickRate <= 0) || (o.devices > 0 && o.chargingRate <= 0):
		return errors.New("--click-rate and --charging-rate must be positive for a stream with actors")
	case o.duration <= 0 || o.warmup < 0 || o.warmup >= o.duration:
		return fmt.Errorf("--warmup %v must be shorter than --duration %v", o.warmup, o.duration)
	case o.ceilingDuration < 0 || o.ceilingSignals <= 0:
		return errors.New("--ceiling-duration must not be negative and --ceiling-signals must be positive")
	case o.maxInFlight <= 0:
		return errors.New("--max-in-flight must be positive")
	case o.maxHold < 0:
		return errors.New("--max-hold must not be negative (0: each pipeline's default)")
	case o.startDelay != nil && *o.startDelay < 0:
		return errors.New("--start-delay must not be negative (0: none)")
	case o.wftPollers < 0 || o.wftPollers == 1:
		return errors.New("--wft-pollers: want 0 (the SDK default) or at least 2 (the SDK refuses 1)")
	case o.openSessions < 0:
		return errors.New("--open-sessions must not be negative")
	case !o.pipelines && o.openSessions == 0:
		return errors.New("--pipelines=false needs --open-sessions: there would be nothing to run")
	}
	return nil
}

// run sets up what the servers share (MinIO, a scratch folder), runs each
// server in a child process, and reports.
func run(ctx context.Context, o options, logger *slog.Logger) error {
	root, err := proc.RepoRoot()
	if err != nil {
		return err
	}
	if o.bin == "" {
		o.bin = filepath.Join(root, "bin")
	}
	if isChild() {
		return runChild(ctx, o, logger)
	}
	started := time.Now()
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results", "stream-"+started.Format("2006-01-02")+".json")
	}
	pipelines, err := loadPipelines()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sessionflow-bench-stream-")
	if err != nil {
		return fmt.Errorf("scratch folder: %w", err)
	}
	defer os.RemoveAll(dir)

	s3, err := startMinio(ctx, filepath.Join(o.bin, "minio"), filepath.Join(dir, "minio"), logger)
	if err != nil {
		return err
	}
	defer s3.stop()

	res := newResults(o, started, pipelines)
	for _, name := range o.servers {
		sr := ServerResult{Server: name}
		if o.pipelines {
			sr = runServerProcess(ctx, name, phasePipelines, s3.endpoint, dir, logger)
		}
		if o.openSessions > 0 && ctx.Err() == nil {
			open := runServerProcess(ctx, name, phaseOpen, s3.endpoint, dir, logger)
			sr.Open = open.Open
			if sr.Open == nil {
				sr.Open = &OpenResult{Sessions: o.openSessions}
			}
			if open.Error != "" {
				sr.Open.Error = open.Error
			}
		}
		res.Servers = append(res.Servers, sr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	res.finish(time.Now())
	if err := res.write(o.out); err != nil {
		return err
	}
	logger.Info("results written", "file", o.out, "took", time.Since(started).Round(time.Second))
	if o.plot {
		plot(ctx, root, o.out, logger)
	}
	fmt.Print(res.markdown())
	return nil
}
