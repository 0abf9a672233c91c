package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts `sh -c script` with its output in a log under t.TempDir() and
// stops it when the test ends.
func sh(t *testing.T, spec Spec, script string) *Process {
	t.Helper()
	spec.Name, spec.Path, spec.Args = "sh", "/bin/sh", []string{"-c", script}
	if spec.Log == "" {
		spec.Log = filepath.Join(t.TempDir(), "logs", "sh.log")
	}
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// logSays waits until the process's log contains want.
func logSays(t *testing.T, p *Process, want string) {
	t.Helper()
	err := Wait{What: fmt.Sprintf("%q in %s", want, p.Log), Limit: 10 * time.Second, Interval: 10 * time.Millisecond, Proc: p}.
		Until(t.Context(), func() error {
			if b, _ := os.ReadFile(p.Log); !strings.Contains(string(b), want) {
				return errors.New("not yet")
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command's closing parenthesis.
	s := string(b)
	state := strings.Fields(s[strings.LastIndex(s, ")")+1:])[0]
	return state != "Z" && state != "X"
}

func TestStopGivesGraceThenKills(t *testing.T) {
	const grace = 500 * time.Millisecond
	tests := []struct {
		name       string
		group      bool
		script     string
		wantKilled bool
		// wantChildGone: the background sleep the script forks is gone
		// after Stop too.
		wantChildGone bool
	}{
		{name: "ends on SIGTERM", script: `echo ready; exec sleep 30`},
		{name: "ignores SIGTERM", script: `trap '' TERM; echo ready; while :; do sleep 0.05; done`, wantKilled: true},
		{name: "group: its children get the SIGKILL too", group: true,
			script:     `trap '' TERM; (trap '' TERM; exec sleep 30) & echo "child $!"; echo ready; while :; do sleep 0.05; done`,
			wantKilled: true, wantChildGone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := sh(t, Spec{Group: tt.group}, tt.script)
			logSays(t, p, "ready")
			child := 0
			if tt.wantChildGone {
				b, _ := os.ReadFile(p.Log)
				_, after, _ := strings.Cut(string(b), "child ")
				child, _ = strconv.Atoi(strings.Fields(after)[0])
			}
			start := time.Now()
			killed := p.Stop(grace)
			took := time.Since(start)
			if killed != tt.wantKilled {
				t.Errorf("Stop killed = %v; want %v", killed, tt.wantKilled)
			}
			if tt.wantKilled && took < grace {
				t.Errorf("Stop took %v; want the grace of %v first", took, grace)
			}
			if !tt.wantKilled && took >= grace {
				t.Errorf("Stop took %v; want less than the grace of %v", took, grace)
			}
			if !p.Exited() || !p.Stopped() {
				t.Errorf("after Stop: Exited() = %v, Stopped() = %v; want both true", p.Exited(), p.Stopped())
			}
			var ws syscall.WaitStatus
			var ee interface{ Sys() any }
			if errors.As(p.Err(), &ee) {
				ws, _ = ee.Sys().(syscall.WaitStatus)
			}
			if wantSig := map[bool]syscall.Signal{false: syscall.SIGTERM, true: syscall.SIGKILL}[tt.wantKilled]; ws.Signal() != wantSig {
				t.Errorf("Err() = %v; want death by %v", p.Err(), wantSig)
			}
			if tt.wantChildGone {
				deadline := time.Now().Add(5 * time.Second)
				for alive(child) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if alive(child) {
					t.Errorf("the child's child %d still runs after Stop", child)
				}
			}
		})
	}
}

func TestKillDoesNotWait(t *testing.T) {
	p := sh(t, Spec{}, `trap '' TERM; echo ready; while :; do sleep 0.05; done`)
	logSays(t, p, "ready")
	start := time.Now()
	p.Kill()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Kill took %v", took)
	}
	if !p.Stopped() || !p.Exited() {
		t.Errorf("after Kill: Stopped() = %v, Exited() = %v; want both true", p.Stopped(), p.Exited())
	}
}

func TestStartEnvironmentAndLog(t *testing.T) {
	t.Setenv("PROCTEST_DROPPED", "x")
	t.Setenv("PROCTEST_KEPT", "y")
	log := filepath.Join(t.TempDir(), "new", "folder", "env.log")
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte("earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := sh(t, Spec{Log: log, Header: true, DropEnv: []string{"PROCTEST_DROP"}, Env: []string{"PROCTEST_ADDED=z"}},
		`env | grep '^PROCTEST_' | sort; echo done`)
	logSays(t, p, "done")
	<-p.Done()
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 || lines[0] != "earlier run" || !strings.HasPrefix(lines[1], "=== ") ||
		!strings.HasSuffix(lines[1], "/bin/sh -c "+`env | grep '^PROCTEST_' | sort; echo done`) {
		t.Fatalf("log:\n%s\nwant the earlier run, a header line, the two variables and done", b)
	}
	if got, want := lines[2:4], []string{"PROCTEST_ADDED=z", "PROCTEST_KEPT=y"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("child's PROCTEST_ variables = %q; want %q", got, want)
	}
	if p.Err() != nil {
		t.Errorf("Err() = %v; want nil", p.Err())
	}
}

func TestStartMissingBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name, advice, want string
	}{
		{"with advice", "run `make tools`, which builds it", "run `make tools`, which builds it"},
		{"without advice", "", "start nope: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(Spec{Name: "nope", Path: missing, Missing: tt.advice})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Start error = %v; want one saying %q that is os.ErrNotExist", err, tt.want)
			}
		})
	}
}
