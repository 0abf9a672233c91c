package proc

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot walks up from the working directory (a package's folder under go
// test) to the folder with go.mod, whose bin/ holds the binaries `make
// build tools` puts there.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}
