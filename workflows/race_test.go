//go:build race

package workflows_test

// raceEnabled: the race detector slows the in-process Temporal server about
// eightfold, so the integration test runs a smaller stream under it; make
// test runs it again at full size without the detector.
const raceEnabled = true
