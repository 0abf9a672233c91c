// Package proc is the one harness for the processes and servers that the
// dev stack (deploy/devstack), the streaming benchmark (bench/stream), the
// fault suite (fault/) and the MinIO test server (internal/miniotest) run
// on this machine: a child process with its output in a log file, stopped
// with a grace period; free loopback ports; waiting until something
// answers; and MinIO, Temporal's dev server and the in-process
// Kafka-protocol broker, started the same way everywhere.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Grace is how long the callers here give a child between SIGTERM and
// SIGKILL: long enough for the worker to hand its partitions over and for
// the dev server to close its SQLite file.
const Grace = 15 * time.Second

// Spec says how to run a child process. Only Name and Path are required.
type Spec struct {
	// Name names the process in errors and logs ("minio", "worker-2").
	Name string
	// Path is the binary; Args its arguments.
	Path string
	Args []string
	// Env is added to this process's environment (a later NAME= wins).
	Env []string
	// DropEnv are prefixes ("MINIO_", "TEMPORAL_") of the variables of this
	// process's environment the child does not inherit, so that a
	// developer's shell cannot point it at other services.
	DropEnv []string
	// Log is the file the child's stdout and stderr are appended to; its
	// folder is made. Empty discards the output.
	Log string
	// Header writes "=== <time> <command>" to Log before the child starts,
	// so that the runs of a process restarted on the same log stand apart.
	Header bool
	// Group runs the child in its own process group: Stop and Kill then
	// reach whatever it forks, and a Ctrl-C in the terminal reaches only
	// this process, which stops its children in order.
	Group bool
	// DieWithParent has Linux SIGKILL the child when this process dies
	// (Pdeathsig), so that a test binary killed by -timeout leaves no
	// servers behind.
	DieWithParent bool
	// Missing, if set, is checked before the start: a missing Path fails
	// with this advice appended ("run `make tools`, which builds it").
	Missing string
}

// Process is a running child. Its methods are safe for concurrent use.
type Process struct {
	// Name and Log are the Spec's.
	Name string
	Log  string

	cmd     *exec.Cmd
	group   bool
	done    chan struct{}
	err     error // Wait's result, once done is closed
	stopped atomic.Bool
}

// Start starts the child described by s and returns once it runs; it does
// not wait for it to be ready (see Wait).
func Start(s Spec) (*Process, error) {
	if s.Missing != "" {
		if _, err := os.Stat(s.Path); err != nil {
			return nil, fmt.Errorf("%s: %w (%s)", s.Name, err, s.Missing)
		}
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(dropEnv(os.Environ(), s.DropEnv), s.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: s.Group}
	if s.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	var out *os.File
	if s.Log != "" {
		if err := os.MkdirAll(filepath.Dir(s.Log), 0o755); err != nil {
			return nil, fmt.Errorf("%s log: %w", s.Name, err)
		}
		f, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s log: %w", s.Name, err)
		}
		if s.Header {
			fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), s.Path, strings.Join(s.Args, " "))
		}
		out = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if out != nil {
			out.Close()
		}
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{Name: s.Name, Log: s.Log, cmd: cmd, group: s.Group, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if out != nil {
			out.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// dropEnv is env without the variables that start with one of prefixes.
func dropEnv(env, prefixes []string) []string {
	if len(prefixes) == 0 {
		return env
	}
	kept := env[:0:0]
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		kept = append(kept, kv)
	}
	return kept
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the child exited (exec.Cmd.Wait's error); nil until Done.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stopped reports whether Stop or Kill was called: the child's exit is then
// expected, not a crash.
func (p *Process) Stopped() bool { return p.stopped.Load() }

// Stop sends SIGTERM (to the group with Spec.Group) and SIGKILL once grace
// has passed, and returns when the child has exited. It reports whether the
// SIGKILL was needed.
func (p *Process) Stop(grace time.Duration) (killed bool) {
	p.stopped.Store(true)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
		return true
	}
}

// Kill ends the child with SIGKILL at once (no clean shutdown, no
// hand-over) and returns when it has exited.
func (p *Process) Kill() {
	p.stopped.Store(true)
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *Process) signal(sig syscall.Signal) {
	pid := p.cmd.Process.Pid
	if p.group {
		pid = -pid
	}
	_ = syscall.Kill(pid, sig)
}

// Tail is the last n lines of the child's log, each cut to 400 bytes, for
// error messages; empty without a log.
func (p *Process) Tail(n int) string {
	if p.Log == "" {
		return ""
	}
	return tail(p.Log, n)
}

// tail is the last n lines of the file at path, each cut to 400 bytes; the
// error's text if it cannot be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + "…"
		}
	}
	return strings.Join(lines, "\n")
}
