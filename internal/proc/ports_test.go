package proc

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestFreeAddrIsBindable(t *testing.T) {
	seen := map[string]bool{}
	for range 5 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatalf("FreeAddr: %v", err)
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr = %q; want a 127.0.0.1 host:port", addr)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on FreeAddr's %s: %v", addr, err)
		}
		l.Close()
		seen[addr] = true
	}
	if len(seen) < 2 {
		t.Errorf("five FreeAddr calls gave %v; want different ports", seen)
	}
}

func TestPort(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:7233", "7233"},
		{"[::1]:9000", "9000"},
		{"7233", "7233"},
	}
	for _, tt := range tests {
		if got := Port(tt.addr); got != tt.want {
			t.Errorf("Port(%q) = %q; want %q", tt.addr, got, tt.want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("RepoRoot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "proc", "ports.go")); err != nil {
		t.Errorf("RepoRoot = %s, which has no internal/proc/ports.go", root)
	}
	t.Chdir(t.TempDir())
	if _, err := RepoRoot(); err == nil {
		t.Errorf("RepoRoot in a temp dir: want an error")
	}
}
