package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/internal/rulesflag"
	"github.com/sessionflow/sessionflow/session"
)

func sessionizeCmd() *cobra.Command {
	var (
		in, out, format, pipeline string
		cpuProfile                string
		strict                    bool
		workers                   int
	)
	cmd := &cobra.Command{
		Use:   "sessionize",
		Short: "Sessionize a file of JSON lines locally, no services needed",
		Long: `sessionize reads JSON events, one per line (stdin by default; a .gz file is
decompressed), applies a profile's session rules and writes one JSON object
per session, sorted by key then session_start_time_ms.

It runs the same rules engine as the streaming workers, so for the same
events it gives the same sessions. The whole input is one batch: at its end
the watermark is the largest event time, and sessions still open then close
with close_reason end_of_input unless a deadline of theirs lies below it.

Invalid lines (not JSON, no key, unparseable time) are reported on stderr
with their line number and reason and counted in the closing summary; they
never stop the run unless --strict is given.

Durations take Go syntax: 90s, 30m, 2h, 1h30m.`,
		Example: `  starter sessionize --in clicks.jsonl
  starter sessionize --profile charging --break-tolerance 5m --min-duration 30m < drones.jsonl
  starter sessionize --gap 20m --end-marker page_name=logout --format table --in clicks.jsonl.gz`,
		Args: cobra.NoArgs,
	}
	rf := rulesflag.Add(cmd.Flags())
	cmd.Flags().StringVar(&in, "in", "-", "input file of JSON lines, - for stdin")
	cmd.Flags().StringVar(&out, "out", "-", "output file, - for stdout")
	cmd.Flags().StringVar(&format, "format", "json", "output format: json (one object per line) or table")
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "pipeline name written into the records")
	cmd.Flags().BoolVar(&strict, "strict", false, "stop with an error at the first invalid line")
	cmd.Flags().IntVar(&workers, "workers", 0, "decoding goroutines (default: one per CPU)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		rules, err := rf.Rules()
		if err != nil {
			return err
		}
		if format != "json" && format != "table" {
			return usageError{fmt.Errorf("--format %q: want json or table", format)}
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
		defer stop()
		std := stdio{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
		if cpuProfile != "" {
			stop, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stop()
		}
		return sessionize(ctx, std, rules, in, out, format, pipeline, strict, workers)
	}
	return cmd
}

// startCPUProfile profiles the process into name until the returned
// function is called.
func startCPUProfile(name string) (func(), error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// stdio are the command's standard streams, replaceable in tests.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func sessionize(ctx context.Context, std stdio, rules *session.Rules, in, out, format, pipeline string, strict bool, workers int) error {
	started := time.Now()
	// A batch run holds its whole input and lives briefly: trading memory
	// for fewer collections pays, unless the user set GOGC.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	r, closeIn, err := openInput(in, std.in)
	if err != nil {
		return err
	}
	defer closeIn()

	stderr := bufio.NewWriter(std.err)
	defer stderr.Flush()
	b := session.Batch{Rules: rules, Pipeline: pipeline, Workers: workers,
		OnInvalid: func(line int64, raw []byte, err error) error {
			if strict {
				return fmt.Errorf("%s line %d: %w", inputName(in), line, err)
			}
			fmt.Fprintf(stderr, "%s line %d: invalid: %v\n", inputName(in), line, err)
			return nil
		}}
	sorted, stats, err := b.RunSorted(ctx, r)
	if err != nil {
		return err
	}

	w, closeOut, err := openOutput(out, std.out)
	if err != nil {
		return err
	}
	if format == "table" {
		err = writeTable(w, rules.Profile, sorted.Runs())
	} else {
		err = writeJSON(w, sorted.Runs())
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	elapsed := time.Since(started)
	fmt.Fprintf(stderr, "sessionize: %d lines, %d events, %d invalid, %d duplicates, %d ignored -> %d sessions in %s (%.0f events/s)\n",
		stats.Lines, stats.Events, stats.Invalid, stats.Duplicates, stats.Ignored, stats.Sessions,
		elapsed.Round(time.Millisecond), float64(stats.Lines)/elapsed.Seconds())
	return nil
}

func inputName(in string) string {
	if in == "-" {
		return "stdin"
	}
	return in
}

// openInput opens a file or stdin and undoes gzip, recognized by its magic
// bytes rather than the file name so that piped .gz input works too.
func openInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	var f io.Reader = stdin
	closeFn := func() {}
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return nil, nil, fmt.Errorf("open input: %w", err)
		}
		f, closeFn = file, func() { file.Close() }
	}
	// A small buffer: the batch reads a megabyte at a time, which bufio then
	// reads straight from the file instead of copying it through the buffer.
	br := bufio.NewReaderSize(f, 64<<10)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			closeFn()
			return nil, nil, fmt.Errorf("open input %s: %w", name, err)
		}
		return zr, closeFn, nil
	}
	return br, closeFn, nil
}

func openOutput(name string, stdout io.Writer) (*bufio.Writer, func() error, error) {
	if name == "-" {
		w := bufio.NewWriterSize(stdout, 1<<20)
		return w, w.Flush, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, fmt.Errorf("create output: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	return w, func() error { return errors.Join(w.Flush(), f.Close()) }, nil
}

func writeTable(w io.Writer, profile session.Profile, runs iter.Seq[[]session.Record]) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "KEY\tSTART (UTC)\tEND (UTC)\tDURATION\tEVENTS\tCLOSE REASON"
	switch profile {
	case session.Clickstream:
		header += "\tPAGES"
	case session.Charging:
		header += "\tSTATUS\tSOC\tBREAKS"
	}
	fmt.Fprintln(tw, header)
	for records := range runs {
		if err := writeRows(tw, records); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func writeRows(tw io.Writer, records []session.Record) error {
	for _, r := range records {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s", r.Key, stamp(r.Start), stamp(r.End),
			time.Duration(r.DurationMs)*time.Millisecond, r.EventCount, r.CloseReason)
		switch {
		case r.ClickstreamAttrs != nil:
			fmt.Fprintf(tw, "\t%s", strings.Join(r.PagesVisited, ","))
		case r.ChargingAttrs != nil:
			fmt.Fprintf(tw, "\t%s\t%g→%g\t%d (%s)", r.Status, r.SocStart, r.SocEnd, r.BreakCount,
				time.Duration(r.BreakMs)*time.Millisecond)
		}
		if _, err := fmt.Fprintln(tw); err != nil {
			return err
		}
	}
	return nil
}

func stamp(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") }
