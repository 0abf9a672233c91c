package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
)

// devServerLimit bounds how long the dev server may take to answer; it
// migrates its SQLite file first.
const devServerLimit = 90 * time.Second

// DevServer is `temporal server start-dev` with its state in a SQLite file,
// on 127.0.0.1: the dev stack, the fault suite and the streaming benchmark
// all run it this way.
type DevServer struct {
	Bin    string // the temporal CLI
	DBFile string // its SQLite file; a second run resumes from it
	// Addr is the frontend's host:port on 127.0.0.1; see WithFreePorts.
	Addr string
	// UIPort is the web UI's port; empty runs the server headless.
	UIPort string
	// HTTPPort and MetricsPort are the HTTP API's and /metrics' ports;
	// empty leaves them to the CLI's defaults.
	HTTPPort, MetricsPort string
	// DynamicConfig is set on top of the CLI's own dynamic config, a
	// --dynamic-config-value each (values as JSON).
	DynamicConfig map[string]any
}

// WithFreePorts is d with a free loopback port for each of Addr, HTTPPort
// and MetricsPort that is empty.
func (d DevServer) WithFreePorts() (DevServer, error) {
	if err := fillFree(false, &d.Addr); err != nil {
		return d, err
	}
	err := fillFree(true, &d.HTTPPort, &d.MetricsPort)
	return d, err
}

// Args are the CLI's arguments for d, logging warnings only.
func (d DevServer) Args() []string {
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", Port(d.Addr)}
	if d.UIPort != "" {
		args = append(args, "--ui-port", d.UIPort)
	} else {
		args = append(args, "--headless")
	}
	if d.HTTPPort != "" {
		args = append(args, "--http-port", d.HTTPPort)
	}
	if d.MetricsPort != "" {
		args = append(args, "--metrics-port", d.MetricsPort)
	}
	for _, k := range slices.Sorted(maps.Keys(d.DynamicConfig)) {
		v, err := json.Marshal(d.DynamicConfig[k])
		if err != nil {
			v = fmt.Appendf(nil, "%q", fmt.Sprint(d.DynamicConfig[k]))
		}
		args = append(args, "--dynamic-config-value", k+"="+string(v))
	}
	args = append(args, "--log-level", "warn")
	return append(args, StorageArgs(d.DBFile)...)
}

// StorageArgs are the start-dev flags that keep its state in dbFile.
//
// SQLite's default rollback journal syncs the disk on every transaction, and
// the dev server writes one per task: on a 2-core machine it then dispatches
// about 6 activity and 6 workflow tasks a second, fewer than `make dev`'s
// generator creates, so its backlogs grow until sessions wait minutes for
// their Parquet. With the write-ahead log and synchronous=normal a commit is
// an append, and the backlogs stay empty at the same load. A process that is
// killed loses nothing this way (the log is in the file system); only a
// power cut can drop the last commits, which a dev server may afford.
func StorageArgs(dbFile string) []string {
	return []string{
		"--db-filename", dbFile,
		"--sqlite-pragma", "journal_mode=wal",
		"--sqlite-pragma", "synchronous=normal",
	}
}

// Start runs the dev server as s describes (its Name, Log and process
// options; Path and Args are set here) and waits, as DialTemporal does,
// until it answers on the "default" namespace and then (if set) succeeds.
// It returns the client of that last attempt. If the server is not ready,
// it is stopped and returned with the error, for its log.
func (d DevServer) Start(ctx context.Context, s Spec, opts client.Options,
	then func(context.Context, client.Client) error) (*Process, client.Client, error) {
	s.Path = d.Bin
	s.Args = d.Args()
	p, err := Start(s)
	if err != nil {
		return nil, nil, err
	}
	opts.HostPort, opts.Namespace = d.Addr, "default"
	c, err := DialTemporal(ctx, Wait{What: "Temporal at " + d.Addr, Limit: devServerLimit, Proc: p}, opts, then)
	if err != nil {
		p.Stop(Grace)
		return p, nil, err
	}
	return p, c, nil
}

// DialTemporal connects to the Temporal frontend opts names, retrying as w
// says until its health check passes and then (if set) succeeds on the
// client; it returns that client. Each dial and health check gets 5 s, so
// that a server which accepts but does not answer costs one attempt, not
// the whole wait.
func DialTemporal(ctx context.Context, w Wait, opts client.Options,
	then func(context.Context, client.Client) error) (client.Client, error) {
	var c client.Client
	err := w.Until(ctx, func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cl, err := client.DialContext(actx, opts)
		if err != nil {
			return err
		}
		if _, err := cl.CheckHealth(actx, &client.CheckHealthRequest{}); err != nil {
			cl.Close()
			return err
		}
		if then != nil {
			if err := then(ctx, cl); err != nil {
				cl.Close()
				return err
			}
		}
		c = cl
		return nil
	})
	return c, err
}
