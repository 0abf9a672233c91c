package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sessionflow/sessionflow/workflows"
)

// numbers formats the counts of the progress and the summary with
// thousands separators: 1,234,567.
var numbers = message.NewPrinter(language.English)

// progressSteps is the bar's resolution: the backfill's fraction done in
// thousandths.
const progressSteps = 1000

// progressBar draws the progress as one refreshing line on a terminal, and
// as a line every 10 seconds (and on phase changes) elsewhere, such as in a
// CI log, where a refreshing line would write a carriage return a second.
type progressBar struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	tty   bool
	last  time.Time
	phase string
}

func newProgressBar(w io.Writer) *progressBar {
	tty := isTerminal(w)
	out := io.Discard // elsewhere show writes the bar's rendered line itself
	if tty {
		out = w
	}
	bar := progressbar.NewOptions64(progressSteps,
		progressbar.OptionSetWriter(out),
		progressbar.OptionUseANSICodes(tty),
		progressbar.OptionSetWidth(20),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "#", SaucerPadding: ".", BarStart: "[", BarEnd: "]"}),
		// The ETA comes from the workflow's start, not the bar's, so that
		// it holds when this command attaches to a running backfill.
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionShowDescriptionAtLineEnd())
	return &progressBar{w: w, bar: bar, tty: tty}
}

func (b *progressBar) show(p workflows.BackfillProgress, now time.Time, final bool) {
	n := int64(p.Fraction() * progressSteps)
	switch {
	case final:
		n = progressSteps
	case n >= progressSteps:
		n = progressSteps - 1 // the bar finishes when the backfill does
	}
	b.bar.Describe(progressStats(p, now)) // before Set64: a finished bar keeps its text
	_ = b.bar.Set64(n)                    // only errors writing to the terminal
	if b.tty {
		return
	}
	if final || p.Phase != b.phase || now.Sub(b.last) >= 10*time.Second {
		fmt.Fprintln(b.w, strings.TrimSpace(b.bar.String()))
		b.last, b.phase = now, p.Phase
	}
}

// end leaves the refreshing line in place and moves below it.
func (b *progressBar) end() {
	if b.tty && b.bar.IsStarted() {
		fmt.Fprintln(b.w)
	}
	_ = b.bar.Exit()
}

// progressStats renders what follows the bar: the phase, objects read,
// events, sessions written and the estimated time left.
func progressStats(p workflows.BackfillProgress, now time.Time) string {
	frac := p.Fraction()
	eta := "ETA --"
	elapsed := now.Sub(p.StartedAt)
	switch {
	case p.Phase == workflows.PhaseDone:
		eta = "done in " + elapsed.Round(time.Second).String()
	case frac >= 0.02 && !p.StartedAt.IsZero():
		eta = "ETA " + (time.Duration(float64(elapsed) * (1 - frac) / frac)).Round(time.Second).String()
	}
	phase := p.Phase
	if phase == "" {
		phase = workflows.PhaseListing
	}
	return numbers.Sprintf("%-12s objects %d/%d · %d events · %d invalid · shards %d/%d · %d sessions written · %s",
		phase, p.Routed, p.Objects, p.Events, p.Invalid, p.Sessionized, p.Shards, p.Sessions, eta)
}

// backfillSummary is the last line of a finished backfill.
func backfillSummary(p workflows.BackfillProgress) string {
	s := numbers.Sprintf("done: %d objects, %d lines, %d events", p.Objects, p.Lines, p.Events)
	var notes []string
	if p.Invalid > 0 {
		notes = append(notes, numbers.Sprintf("%d invalid in %s/rejects/", p.Invalid, strings.TrimRight(p.Out, "/")))
	}
	if p.Filtered > 0 {
		notes = append(notes, numbers.Sprintf("%d outside the time range", p.Filtered))
	}
	if p.Duplicates > 0 {
		notes = append(notes, numbers.Sprintf("%d duplicates", p.Duplicates))
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s + numbers.Sprintf(" -> %d sessions in %d Parquet objects under %s/sessions/",
		p.Sessions, p.Files, strings.TrimRight(p.Out, "/"))
}
