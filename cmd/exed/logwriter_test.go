package main

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
)

// TestLogWriter: lines are held back, then written out at the flush
// interval without any further write, and Close writes out the rest. It
// runs in a synctest bubble, where time is fake: time.Sleep moves the clock
// on at once, and synctest.Wait returns once the flusher is back waiting
// for its next tick.
func TestLogWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out testkit.SyncBuffer
		l := newLogWriter(&out)
		l.Write([]byte("first\n"))
		synctest.Wait()
		if got := out.String(); got != "" {
			t.Fatalf("written before the flush interval: %q", got)
		}
		time.Sleep(logFlushInterval)
		synctest.Wait()
		if got := out.String(); got != "first\n" {
			t.Fatalf("after one flush interval: %q, want the first line", got)
		}
		l.Write([]byte("second\n"))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != "first\nsecond\n" {
			t.Errorf("after Close: %q", got)
		}
	})
}
