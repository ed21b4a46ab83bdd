// Package testkit holds the helpers exed's tests share, each written once:
// a log sink safe for concurrent writers, polling with a deadline, a clock
// set by hand, ed25519 signers (seeded, so that fingerprints in golden
// files stay put, or fresh), the stock OpenSSH side of the interop tests
// (ssh-keygen keys, the shell recipe that mints an exe0 token, ssh-keygen
// -Y verify), golden files with secrets masked, and fresh PostgreSQL
// databases.
//
// It is for *_test.go files only: nothing else may import it (the
// import-graph test in cmd/exed checks that). It imports no package of this
// module, so that the internal tests of every package — keys, tokens, store,
// store/sqlstore included — can use it without an import cycle. Beside it:
// testkit/testreg, a real registry and Verifier (it imports the module),
// and testkit/promtest, /metrics parsed (it links Prometheus, which the
// pure packages' tests need not).
//
// A tool or service a test needs and cannot find skips the test on a
// developer's machine and fails it under CI=true, which must provide
// everything (see Unavailable).
package testkit
