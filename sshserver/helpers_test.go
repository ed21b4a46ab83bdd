package sshserver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/sshcmd"
)

// testNow is where the tests' clock starts.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testEnv is a real registry (SQLite in a temp dir), a real Verifier and a
// Suite over them, all on one clock the test sets.
type testEnv struct {
	*testreg.Registry
	ctx   context.Context
	clock *testkit.Clock
	suite *sshcmd.Suite
	logs  *testkit.SyncBuffer // everything the suite and server log
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	clock := testkit.NewClock(testNow)
	e := &testEnv{Registry: testreg.Open(t, clock.Now), ctx: context.Background(), clock: clock, logs: &testkit.SyncBuffer{}}
	e.suite = sshcmd.New(sshcmd.Env{
		Store:    e.Store,
		Verifier: e.Verifier,
		Domain:   "exe.dev",
		VMDomain: "exe.xyz",
		Now:      clock.Now,
		Log:      e.logger(),
	})
	return e
}

// logger logs to e.logs.
func (e *testEnv) logger() *slog.Logger { return testkit.Logger(e.logs) }
