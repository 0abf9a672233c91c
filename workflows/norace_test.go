//go:build !race

package workflows_test

// raceEnabled: see race_test.go.
const raceEnabled = false
