//go:build race

package ingest

// raceEnabled: the race detector slows Temporal's in-process server about
// eightfold, so the end-to-end test runs a smaller stream under it.
const raceEnabled = true
