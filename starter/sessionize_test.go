package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seed004 is the clickstream scenario of seed 004 with one broken line:
// user-001 pauses 35 minutes, user-002 is active every 30 minutes for 3 hours.
const seed004 = `{"uuid":"user-001","event_timestamp":"1704082500000","page_name":"home","event_id":"a1"}
{"uuid":"user-002","event_timestamp":"1704082500000","page_name":"home","event_id":"b1"}
{"uuid":"user-001","event_timestamp":"1704082800000","page_name":"search","event_id":"a2"}
{"uuid":"user-001","event_timestamp":"1704083100000","page_name":"cart","event_id":"a3"}
{"uuid":"user-002","event_timestamp":"1704084300000","page_name":"search","event_id":"b2"}
{"uuid":"user-001","event_timestamp":"1704085200000","page_name":"home","event_id":"a4"}
{"uuid":"user-001","event_timestamp":"1704085500000","page_name":"home","event_id":"a5"}
{"uuid":"user-001","event_timestamp":"1704085800000","page_name":"logout","event_id":"a6"}
{"uuid":"user-002","event_timestamp":"1704086100000","page_name":"cart","event_id":"b3"}
{"uuid":"user-002","event_timestamp":"1704087900000","page_name":"cart","event_id":"b4"}
{"uuid":"user-002","event_timestamp":"1704089700000","page_name":"home","event_id":"b5"}
this line is broken
{"uuid":"user-002","event_timestamp":"1704091500000","page_name":"home","event_id":"b6"}
{"uuid":"user-002","event_timestamp":"1704093300000","page_name":"pay","event_id":"b7"}
`

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestSessionizeFile(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "clicks.jsonl")
	if err := os.WriteFile(plain, []byte(seed004), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(seed004))
	zw.Close()
	zipped := filepath.Join(dir, "clicks.jsonl.gz")
	if err := os.WriteFile(zipped, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{plain, zipped} {
		out := filepath.Join(dir, "sessions.jsonl")
		code, stdout, stderr := runCLI(t, "", "sessionize", "--in", in, "--out", out, "--end-marker", "page_name=logout")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if stdout != "" {
			t.Errorf("with --out, stdout should be empty, got %q", stdout)
		}
		if !strings.Contains(stderr, "line 12: invalid: not a JSON object") {
			t.Errorf("stderr does not report line 12: %s", stderr)
		}
		if !strings.Contains(stderr, "14 lines, 13 events, 1 invalid") || !strings.Contains(stderr, "-> 4 sessions") {
			t.Errorf("summary missing or wrong: %s", stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		want := []struct {
			id, reason string
			start, end int64
			count      float64
			pages      []string
		}{
			{"user-001/1704082500000", "inactivity", 1704082500000, 1704083100000, 3, []string{"home", "search", "cart"}},
			{"user-001/1704085200000", "end_marker", 1704085200000, 1704085800000, 3, []string{"home", "logout"}},
			{"user-002/1704082500000", "max_duration", 1704082500000, 1704087900000, 4, []string{"home", "search", "cart"}},
			{"user-002/1704089700000", "end_of_input", 1704089700000, 1704093300000, 3, []string{"home", "pay"}},
		}
		if len(lines) != len(want) {
			t.Fatalf("%d sessions, want %d:\n%s", len(lines), len(want), data)
		}
		fields := []string{"session_id", "key", "pipeline", "profile", "session_start_time_ms", "session_end_time_ms",
			"duration_ms", "event_count", "close_reason", "pages_visited"}
		for i, line := range lines {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range rec {
				keys = append(keys, k)
			}
			if slices.Sort(keys); !slices.Equal(keys, sortedCopy(fields)) {
				t.Errorf("record fields %v, want %v", keys, fields)
			}
			w := want[i]
			if rec["session_id"] != w.id || rec["close_reason"] != w.reason || rec["event_count"] != w.count ||
				rec["session_start_time_ms"] != float64(w.start) || rec["session_end_time_ms"] != float64(w.end) ||
				rec["duration_ms"] != float64(w.end-w.start) || rec["profile"] != "clickstream" {
				t.Errorf("session %d: %s\nwant %+v", i, line, w)
			}
			var pages []string
			for _, p := range rec["pages_visited"].([]any) {
				pages = append(pages, p.(string))
			}
			if !slices.Equal(pages, w.pages) {
				t.Errorf("session %d pages %v, want %v", i, pages, w.pages)
			}
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestSessionizeStdinTableAndCharging(t *testing.T) {
	drones := `{"UIN":"52GD2997","Soc_percentage":82,"Charge_status":0,"time":1715227208337}
{"UIN":"52GD2997","Soc_percentage":82,"Charge_status":1,"time":1715227508337}
{"UIN":"52GD2997","Soc_percentage":83,"Charge_status":1,"time":1715227808337}
{"UIN":"52GD2997","Soc_percentage":84,"Charge_status":1,"time":1715228108337}
`
	code, stdout, stderr := runCLI(t, drones, "sessionize", "--profile", "charging")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if rec["status"] != "invalid" || rec["soc_start"] != 82.0 || rec["soc_end"] != 84.0 || rec["break_count"] != 0.0 ||
		rec["event_count"] != 3.0 || rec["key"] != "52GD2997" {
		t.Errorf("charging record %v", rec)
	}
	if _, ok := rec["pages_visited"]; ok {
		t.Error("a charging record has no pages_visited")
	}

	code, stdout, _ = runCLI(t, drones, "sessionize", "--profile", "charging", "--min-duration", "10m", "--format", "table")
	if code != 0 || !strings.Contains(stdout, "KEY") || !strings.Contains(stdout, "52GD2997") || !strings.Contains(stdout, "valid") ||
		strings.Contains(stdout, "invalid") {
		t.Errorf("table (exit %d):\n%s", code, stdout)
	}
}

func TestSessionizeStrict(t *testing.T) {
	code, stdout, stderr := runCLI(t, seed004, "sessionize", "--strict")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "stdin line 12") {
		t.Errorf("--strict: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestSessionizeBadUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sessionize", "--profile", "web"}, `unknown profile "web"`},
		{[]string{"sessionize", "--gap", "0s"}, "--gap must be at least 1ms"},
		{[]string{"sessionize", "--gap", "ten"}, `invalid argument "ten" for "--gap"`},
		{[]string{"sessionize", "--end-marker", "logout"}, "want field=value"},
		{[]string{"sessionize", "--format", "xml"}, `--format "xml"`},
		{[]string{"sessionize", "--time-unit", "h"}, `--time-unit "h"`},
		{[]string{"sessionize", "extra"}, "unknown command"},
		{[]string{"sessionise"}, "unknown command"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, "", c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, stderr, c.want)
		}
	}
	code, _, stderr := runCLI(t, "", "sessionize", "--in", filepath.Join(t.TempDir(), "missing.jsonl"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing input: exit %d, %q", code, stderr)
	}
}

func TestSessionizeHelp(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "sessionize", "--help")
	for _, want := range []string{"--gap", "--max-duration", "--break-tolerance", "--min-duration", "--end-marker",
		"--key-field", "--time-field", "--strict", "--format", "end_of_input", "1h30m"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("help exit %d", code)
	}
}

// TestGenerateRoundTrip: a generated clickstream sessionizes without invalid
// lines, and every event lands in exactly one session.
func TestGenerateRoundTrip(t *testing.T) {
	code, clicks, stderr := runCLI(t, "", "generate", "--num-users", "50", "--events", "2000", "--seed", "7")
	if code != 0 {
		t.Fatalf("generate: exit %d %s", code, stderr)
	}
	if n := strings.Count(clicks, "\n"); n != 2000 {
		t.Fatalf("generated %d lines, want 2000", n)
	}
	code, out, stderr := runCLI(t, clicks, "sessionize")
	if code != 0 || !strings.Contains(stderr, "2000 events, 0 invalid") {
		t.Fatalf("sessionize: exit %d %s", code, stderr)
	}
	var total float64
	users := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		total += rec["event_count"].(float64)
		users[rec["key"].(string)] = true
		if rec["duration_ms"].(float64) >= 2*3600*1000 {
			t.Errorf("session longer than the 2h maximum: %s", line)
		}
	}
	if total != 2000 || len(users) != 50 {
		t.Errorf("sessions hold %v events of %d users, want 2000 of 50", total, len(users))
	}
}
