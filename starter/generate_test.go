package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGenerateSampleAndLive(t *testing.T) {
	code, out, stderr := runCLI(t, "", "generate", "--sample", "--num-users", "2", "--num-devices", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var clicks, drones int
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("sample line %q: %v", l, err)
		}
		if _, ok := m["uuid"]; ok {
			clicks++
		}
		if _, ok := m["UIN"]; ok {
			drones++
		}
	}
	if clicks != 3 || drones != 3 {
		t.Errorf("sample has %d clicks and %d drone readings, want 3 and 3:\n%s", clicks, drones, out)
	}
	code, out, stderr = runCLI(t, "", "generate", "--live", "--num-users", "50", "--rate", "500", "--gap", "1s", "--duration", "1s", "--malformed", "0")
	if code != 0 || strings.Count(out, "\n") < 20 || !strings.Contains(stderr, "messages in") {
		t.Errorf("live: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), stderr)
	}
}

func TestGenerateBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"generate", "--rate", "0"},
		{"generate", "--duplicates", "2"},
		{"generate", "--profile", "web"},
		{"generate", "--events", "-1"},
		{"generate", "--start", "yesterday"},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}
