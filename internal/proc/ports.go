package proc

import (
	"fmt"
	"net"
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
// Another process may take it before the child binds it; a caller that
// cares starts again on a new one (see ErrExited).
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// fillFree sets each empty one of addrs to a free loopback address, or with
// portOnly to its port.
func fillFree(portOnly bool, addrs ...*string) error {
	for _, a := range addrs {
		if *a != "" {
			continue
		}
		free, err := FreeAddr()
		if err != nil {
			return err
		}
		if portOnly {
			free = Port(free)
		}
		*a = free
	}
	return nil
}

// Port is the port of a host:port address, as the flags that take a port
// alone want it; addr itself if it has none.
func Port(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return port
}
