package testkit

import (
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits: long enough for a loaded CI
// machine, so that reaching it means the condition is not coming.
const WaitTimeout = 10 * time.Second

// pollInterval is how often a condition is asked again.
const pollInterval = 5 * time.Millisecond

// WaitFor polls cond until it holds, and fails the test (naming what it
// waited for) if it does not within WaitTimeout. It is how tests wait for
// another goroutine or process: never by sleeping a guessed time.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, what, WaitTimeout, cond)
}

// WaitWithin is WaitFor with a deadline of d, for a wait whose bound is
// part of what the test checks or that is known to take long.
func WaitWithin(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}
