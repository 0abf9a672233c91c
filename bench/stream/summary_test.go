package main

import (
	"os"
	"testing"
	"time"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"none", nil, 50, 0},
		{"one value", []float64{3}, 99, 3},
		{"median of four is the second", []float64{1, 2, 3, 4}, 50, 2},
		{"p99 of a hundred is the 99th", seq(100), 99, 99},
		{"p99 of ten is the largest", seq(10), 99, 10},
		{"p100 is the largest", seq(10), 100, 10},
		{"p0 is the smallest", seq(10), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

// seq is 1, 2, …, n.
func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

func TestDeadline(t *testing.T) {
	rules := session.Rules{Gap: 30 * time.Second, MaxDuration: 2 * time.Minute, BreakTolerance: 5 * time.Second}
	breaks := func(key string, after int64) (int64, bool) {
		if key == "DRN1" {
			return after + 2000, true // the first status-0 reading after the session's end
		}
		return 0, false
	}
	tests := []struct {
		name   string
		rec    session.Record
		want   int64
		wantOK bool
	}{
		{"inactivity: last event + gap", session.Record{CloseReason: session.ReasonInactivity, Start: 1000, End: 5000}, 35_000, true},
		{"max duration: start + max − 1 ms", session.Record{CloseReason: session.ReasonMaxDuration, Start: 1000, End: 100_000}, 120_999, true},
		{"end marker: its own time", session.Record{CloseReason: session.ReasonEndMarker, Start: 1000, End: 7000}, 7000, true},
		{"break: its start + tolerance", session.Record{Key: "DRN1", CloseReason: session.ReasonBreak, End: 10_000}, 17_000, true},
		{"break never seen", session.Record{Key: "DRN2", CloseReason: session.ReasonBreak, End: 10_000}, 0, false},
		{"end of input has no deadline", session.Record{CloseReason: session.ReasonEndOfInput, End: 10_000}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := deadline(tt.rec, rules, breaks)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("deadline = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFirstAbove(t *testing.T) {
	readings := []workflows.Reading{{AtMs: 100, Watermark: 10}, {AtMs: 200, Watermark: 20}, {AtMs: 300, Watermark: 30}}
	tests := []struct {
		name   string
		d      int64
		want   int64
		wantOK bool
	}{
		{"below every reading", 5, 100, true},
		{"equal is not above", 20, 300, true},
		{"between readings", 25, 300, true},
		{"never passed", 30, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := firstAbove(readings, tt.d)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("firstAbove(%d) = %d, %v; want %d, %v", tt.d, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	samples := []Sample{{T: 1}, {T: 2}, {T: 3}, {T: 4}}
	tests := []struct {
		name             string
		from, to         float64
		wantFrom, wantTo float64
		wantOK           bool
	}{
		{"inside", 1.5, 3.5, 2, 3, true},
		{"whole", 0, 10, 1, 4, true},
		{"one sample is no window", 3.5, 4.5, 0, 0, false},
		{"after the end", 5, 6, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to, ok := window(samples, tt.from, tt.to)
			if ok != tt.wantOK || from.T != tt.wantFrom || to.T != tt.wantTo {
				t.Errorf("window(%v, %v) = %v, %v, %v; want %v, %v, %v", tt.from, tt.to, from.T, to.T, ok, tt.wantFrom, tt.wantTo, tt.wantOK)
			}
		})
	}
}

func TestJudgeOpenSessions(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name   string
		server string
		open   OpenResult
		want   string
	}{
		{"10k open under 1 GiB", serverDev, OpenResult{Sessions: 10_000, TakenIn: 10_000, MaxRSS: gib / 2}, "met"},
		{"10k open over 1 GiB", serverDev, OpenResult{Sessions: 10_000, TakenIn: 10_000, MaxRSS: gib + 1}, "not met"},
		{"fewer taken in than the target", serverTemporaltest, OpenResult{Sessions: 10_000, TakenIn: 9_999, MaxRSS: gib / 2}, "not reached"},
		{"phase failed", serverDev, OpenResult{Sessions: 10_000, Error: "no session opened"}, "not tested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			targets := judge(ServerResult{Server: tt.server, Open: &tt.open})
			if len(targets) != 1 || targets[0].Target != targetRSSName {
				t.Fatalf("judge = %+v, want the one memory target", targets)
			}
			if got := targets[0].Verdict; got != tt.want {
				t.Errorf("verdict %q (%s), want %q", got, targets[0].Value, tt.want)
			}
		})
	}
}

func TestCPUSeconds(t *testing.T) {
	if got := cpuSeconds(0); got != 0 {
		t.Errorf("cpuSeconds(0) = %v, want 0 (no process)", got)
	}
	before := cpuSeconds(os.Getpid())
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for cpuSeconds(os.Getpid()) <= before && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if after := cpuSeconds(os.Getpid()); after <= before {
		t.Errorf("cpuSeconds stayed at %v after busy work (%d)", after, x)
	}
}

// TestCloseLogSharedIDs: a retried flush repeats a record and is not a
// collision; another session under the same id is.
func TestCloseLogSharedIDs(t *testing.T) {
	a := session.Record{SessionID: "u/1", Key: "u", Pipeline: "p", Start: 1, End: 1, EventCount: 1, CloseReason: session.ReasonEndMarker}
	b := a
	b.EventCount, b.End, b.CloseReason = 3, 5, session.ReasonInactivity // the tie's successor under the plain id
	tests := []struct {
		name    string
		flushes [][]session.Record
		want    int
	}{
		{"one flush", [][]session.Record{{a}}, 0},
		{"a retried flush", [][]session.Record{{a}, {a}}, 0},
		{"two sessions, one id", [][]session.Record{{a}, {b}}, 1},
		{"in one flush", [][]session.Record{{a, b}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newCloseLog()
			for _, f := range tt.flushes {
				l.wrote(f, time.Now())
			}
			if got := l.sharedIDs(); got != tt.want {
				t.Errorf("shared ids %d, want %d", got, tt.want)
			}
		})
	}
}
