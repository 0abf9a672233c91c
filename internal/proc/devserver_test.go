package proc

import (
	"slices"
	"strings"
	"testing"
)

func TestDevServerArgs(t *testing.T) {
	storage := " --db-filename /s/temporal.db --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal"
	tests := []struct {
		name string
		d    DevServer
		want string
	}{
		{"the dev stack's: fixed ports and the UI",
			DevServer{DBFile: "/s/temporal.db", Addr: "127.0.0.1:7233", UIPort: "8233"},
			"server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 --log-level warn" + storage},
		{"headless on chosen ports",
			DevServer{DBFile: "/s/temporal.db", Addr: "127.0.0.1:40001", HTTPPort: "40002", MetricsPort: "40003"},
			"server start-dev --ip 127.0.0.1 --port 40001 --headless --http-port 40002 --metrics-port 40003 --log-level warn" + storage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.d.Args(), " "); got != tt.want {
				t.Errorf("Args() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestDevServerWithFreePortsKeepsWhatIsSet(t *testing.T) {
	d, err := DevServer{Addr: "127.0.0.1:7233"}.WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != "127.0.0.1:7233" {
		t.Errorf("Addr = %s; want the one set", d.Addr)
	}
	if d.HTTPPort == "" || d.MetricsPort == "" || d.HTTPPort == d.MetricsPort || slices.Contains([]string{d.HTTPPort, d.MetricsPort}, "7233") {
		t.Errorf("HTTPPort, MetricsPort = %q, %q; want two different free ports", d.HTTPPort, d.MetricsPort)
	}
}
