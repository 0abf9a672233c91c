package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/temporaltest"
	"gopkg.in/yaml.v3"

	"github.com/sessionflow/sessionflow/internal/proc"
	"github.com/sessionflow/sessionflow/workflows"
)

// temporalServer is a running Temporal server with a client on a namespace
// that has the session search attributes.
type temporalServer interface {
	client() client.Client
	namespace() string
	// pid is the server's process when it runs apart from the benchmark,
	// else 0.
	pid() int
	stop()
}

func startTemporal(ctx context.Context, name, bin, dir string, dc dynamicConfig, logger *slog.Logger) (temporalServer, error) {
	sdkLogger := log.NewStructuredLogger(logger.With("component", "temporal-sdk"))
	var (
		s   temporalServer
		err error
	)
	switch name {
	case serverTemporaltest:
		s, err = startTemporaltest(dc.with(devServerConfig), sdkLogger)
	case serverDev:
		s, err = startDevServer(ctx, filepath.Join(bin, "temporal"), dir, dc, sdkLogger)
	default:
		err = fmt.Errorf("unknown server %q", name)
	}
	if err != nil {
		return nil, err
	}
	if err := workflows.RegisterSearchAttributes(ctx, s.client(), s.namespace()); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// warnOnly keeps the per-workflow and per-rebalance info logs of the SDK and
// the ingesters ("session closed", …) out of the benchmark's output.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h warnOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnOnly{h.Handler.WithAttrs(attrs)}
}

func (h warnOnly) WithGroup(name string) slog.Handler { return warnOnly{h.Handler.WithGroup(name)} }

// quiet is logger at warning level, unless the benchmark runs with -v.
func quiet(logger *slog.Logger, verbose bool) *slog.Logger {
	if verbose {
		return logger
	}
	return slog.New(warnOnly{logger.Handler()})
}

// inMemory is temporaltest's server, in this process.
type inMemory struct {
	ts *temporaltest.TestServer
	c  client.Client
}

// devServerConfig is the dynamic config `temporal server start-dev` runs
// with (temporalcli's defaultDynamicConfigValues, CLI v1.5.1). temporaltest
// turns the search-attribute cache off too but keeps the default
// persistence limits (frontend 2,000 QPS), which every SignalWithStart
// carrying search attributes then spends reads of: it answers "System
// Persistence Max QPS Reached" under load. Both servers run with this
// config so that they differ only in their storage.
var devServerConfig = dynamicconfig.StaticClient{
	dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
	dynamicconfig.FrontendPersistenceMaxQPS.Key():               10000,
	dynamicconfig.HistoryPersistenceMaxQPS.Key():                45000,
}

// startTemporaltest runs temporaltest without a testing.T: it then panics
// instead of failing a test, so the panic is turned back into an error. A
// client logger is required, or it would log through the missing T.
func startTemporaltest(cfg dynamicconfig.StaticClient, logger log.Logger) (s *inMemory, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("temporaltest: %v", r)
		}
	}()
	ts := temporaltest.NewServer(temporaltest.WithBaseClientOptions(client.Options{Logger: logger}),
		temporaltest.WithBaseServerOptions(temporal.WithDynamicConfigClient(cfg)))
	return &inMemory{ts: ts, c: ts.GetDefaultClient()}, nil
}

func (s *inMemory) client() client.Client { return s.c }
func (s *inMemory) namespace() string     { return s.ts.GetDefaultNamespace() }
func (s *inMemory) pid() int              { return 0 }

// stop shuts the server down. Without a testing.T, temporaltest reports a
// failed shutdown through a nil T, which panics; the server is gone either
// way.
func (s *inMemory) stop() {
	defer func() { _ = recover() }()
	s.ts.Stop()
}

// devServer is `temporal server start-dev` with its SQLite file, on random
// loopback ports.
type devServer struct {
	process *proc.Process
	c       client.Client
}

func startDevServer(ctx context.Context, bin, dir string, dc dynamicConfig, logger log.Logger) (*devServer, error) {
	d, err := proc.DevServer{Bin: bin, DBFile: filepath.Join(dir, "temporal.db"), DynamicConfig: dc}.WithFreePorts()
	if err != nil {
		return nil, err
	}
	// Its own process group: on Ctrl-C the child stops it in order.
	p, c, err := d.Start(ctx, proc.Spec{Name: "temporal dev server", Log: filepath.Join(dir, "temporal.log"),
		Group: true, Missing: toolsAdvice}, client.Options{Logger: logger}, nil)
	if err != nil {
		return nil, err
	}
	return &devServer{process: p, c: c}, nil
}

func (s *devServer) client() client.Client { return s.c }
func (s *devServer) namespace() string     { return "default" }
func (s *devServer) pid() int              { return s.process.Pid() }

func (s *devServer) stop() {
	s.c.Close()
	s.process.Stop(proc.Grace)
}

// dynamicConfig is --dynamic-config: Temporal dynamic-config settings by
// key, each given as key=value with a YAML value.
type dynamicConfig map[string]any

func (d *dynamicConfig) String() string { return fmt.Sprint(map[string]any(*d)) }

func (d *dynamicConfig) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	var val any
	if err := yaml.Unmarshal([]byte(v), &val); err != nil {
		return fmt.Errorf("%q: value: %w", s, err)
	}
	if *d == nil {
		*d = dynamicConfig{}
	}
	(*d)[k] = val
	return nil
}

// with is base with d on top.
func (d dynamicConfig) with(base dynamicconfig.StaticClient) dynamicconfig.StaticClient {
	out := maps.Clone(base)
	for k, v := range d {
		out[dynamicconfig.MakeKey(k)] = v
	}
	return out
}
