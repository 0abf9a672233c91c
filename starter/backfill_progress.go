package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sessionflow/sessionflow/workflows"
)

// progressBar draws the progress as one refreshing line on a terminal, and
// as a line every 10 seconds (and on phase changes) elsewhere, such as in a
// CI log.
type progressBar struct {
	w     io.Writer
	tty   bool
	last  time.Time
	phase string
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			tty = fi.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progressBar{w: w, tty: tty}
}

func (b *progressBar) show(p workflows.BackfillProgress, now time.Time, final bool) {
	line := progressLine(p, now)
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\x1b[K", line)
		b.drawn = true
		return
	}
	if final || p.Phase != b.phase || now.Sub(b.last) >= 10*time.Second {
		fmt.Fprintln(b.w, line)
		b.last, b.phase = now, p.Phase
	}
}

// end leaves the refreshing line in place and moves below it.
func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

// progressLine renders the progress: a bar, the phase, objects read,
// events, sessions written and the estimated time left.
func progressLine(p workflows.BackfillProgress, now time.Time) string {
	const width = 20
	frac := p.Fraction()
	filled := int(frac * width)
	eta := "--"
	elapsed := now.Sub(p.StartedAt)
	switch {
	case p.Phase == workflows.PhaseDone:
		eta = "done in " + elapsed.Round(time.Second).String()
	case frac >= 0.02 && !p.StartedAt.IsZero():
		eta = (time.Duration(float64(elapsed) * (1 - frac) / frac)).Round(time.Second).String()
	}
	phase := p.Phase
	if phase == "" {
		phase = workflows.PhaseListing
	}
	line := fmt.Sprintf("[%s%s] %3.0f%% %-12s objects %d/%d · %s events · %s invalid · shards %d/%d · %s sessions written · ETA %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*frac, phase,
		p.Routed, p.Objects, thousands(p.Events), thousands(p.Invalid), p.Sessionized, p.Shards, thousands(p.Sessions), eta)
	if p.Phase == workflows.PhaseDone {
		line = strings.Replace(line, "ETA ", "", 1)
	}
	return line
}

// backfillSummary is the last line of a finished backfill.
func backfillSummary(p workflows.BackfillProgress) string {
	s := fmt.Sprintf("done: %d objects, %s lines, %s events", p.Objects, thousands(p.Lines), thousands(p.Events))
	var notes []string
	if p.Invalid > 0 {
		notes = append(notes, fmt.Sprintf("%s invalid in %s/rejects/", thousands(p.Invalid), strings.TrimRight(p.Out, "/")))
	}
	if p.Filtered > 0 {
		notes = append(notes, thousands(p.Filtered)+" outside the time range")
	}
	if p.Duplicates > 0 {
		notes = append(notes, thousands(p.Duplicates)+" duplicates")
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s + fmt.Sprintf(" -> %s sessions in %d Parquet objects under %s/sessions/",
		thousands(p.Sessions), p.Files, strings.TrimRight(p.Out, "/"))
}

// thousands writes n with thousands separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// silentLogger drops the Temporal client's own logs, which would tear the
// progress line; errors reach the user as this command's errors.
type silentLogger struct{}

func (silentLogger) Debug(string, ...any) {}
func (silentLogger) Info(string, ...any)  {}
func (silentLogger) Warn(string, ...any)  {}
func (silentLogger) Error(string, ...any) {}
