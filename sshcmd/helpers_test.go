package sshcmd

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/store"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// testNow is where the tests' clock starts: outputs that show times are
// compared with golden files.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testEnv is a real registry (SQLite in a temp dir), a real Verifier and a
// Suite over them, all on one clock the test sets.
type testEnv struct {
	*testreg.Registry
	t     testing.TB
	ctx   context.Context
	clock *testkit.Clock
	suite *Suite
	logs  *testkit.SyncBuffer // everything the suite logs
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	clock := testkit.NewClock(testNow)
	e := &testEnv{Registry: testreg.Open(t, clock.Now), t: t, ctx: context.Background(), clock: clock, logs: &testkit.SyncBuffer{}}
	e.suite = New(Env{
		Store:    e.Store,
		Verifier: e.Verifier,
		Domain:   "exe.dev",
		VMDomain: "exe.xyz",
		Now:      clock.Now,
		Log:      testkit.Logger(e.logs),
	})
	return e
}

// callerOf is a as the SSH server would present it to the Suite.
func callerOf(a testreg.Account) Caller {
	return Caller{User: a.User, Key: a.Key, RemoteAddr: "192.0.2.1:5555", Via: store.ViaSSH}
}

// run runs one command line through the Suite, as the SSH server would.
func (e *testEnv) run(c Caller, line, stdin string) (string, error) {
	e.t.Helper()
	args, err := Split(line)
	if err != nil {
		e.t.Fatalf("Split(%q): %v", line, err)
	}
	var out, errOut bytes.Buffer
	err = e.suite.Run(e.ctx, c, args, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut}, false)
	if err != nil && out.Len() > 0 {
		e.t.Errorf("%q failed (%v) but wrote to stdout: %q", line, err, out.String())
	}
	return out.String(), err
}

// mustRun runs line and fails the test if it fails.
func (e *testEnv) mustRun(c Caller, line, stdin string) string {
	e.t.Helper()
	out, err := e.run(c, line, stdin)
	if err != nil {
		e.t.Fatalf("%q: %v", line, err)
	}
	return out
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, name, got, *update)
}

// goldenJSON compares JSON output, masked and indented, with
// testdata/golden/name, or rewrites it with -update.
func goldenJSON(t *testing.T, name, got string) {
	t.Helper()
	testkit.GoldenJSON(t, name, got, *update)
}
