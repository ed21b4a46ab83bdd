package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the harness's child processes
// (upstream, bare proxy, bare SSH server), as the real binary does.
func TestMain(m *testing.M) {
	if runChild() {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every scenario at tiny sizes, so the harness cannot rot:
// it must build and start exed and its baselines, get right answers from
// all of them (a wrong status fails the run), and print every row. Its
// figures are not checked, except revocation, which is correctness: no
// request sent after the removal returned may be accepted.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs exed")
	}
	// Built first, outside the run's time budget: a cold build cache
	// (a fresh CI machine) can take longer than the whole smoke run.
	o := smokeOptions()
	bin, err := buildExed(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.exedBin = bin
	// PostgreSQL rows (scenario 4's cross-instance one, scenario 6's).
	o.pgURL = os.Getenv("EXED_TEST_POSTGRES_URL")
	if o.pgURL == "" && os.Getenv("CI") == "true" {
		t.Error("EXED_TEST_POSTGRES_URL unset: CI must provide PostgreSQL for the cross-instance rows")
	}
	var out, log bytes.Buffer
	rows, err := run(context.Background(), o, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, log.String())
	}
	want := []string{
		"1 verify|ed25519: full Verify",
		"1 verify|ecdsa-p256: full Verify",
		"1 verify|rsa-3072: full Verify",
		"2 proxy, 1 conn|exed, cached token",
		"2 proxy, 32 conns|bare ReverseProxy (exed's transport)",
		"2 proxy, 32 conns|exed, cached token, assertions on",
		"2 proxy, 32 conns|exed, cached token, assertions off",
		"2 proxy, 32 conns|exed, a new valid token every request",
		"2 proxy, 32 conns|exed, 50% junk",
		"2 proxy, 32 conns|exed, 50% malformed tokens",
		"2 proxy, 32 conns|exed, 50% tokens of an unregistered key",
		"2 proxy, 32 conns|exed, 50% forged signatures",
		"2 proxy, 1 conn|exed, valid browser session cookie",
		"2 proxy, 32 conns|exed, 50% junk session cookies",
		"3 issuance|generate-api-key",
		"4 revocation|requests accepted",
		"4 revocation, cross-instance|",
		"5 memory|exed peak RSS",
		"6 registry|SQLite: Store.Key",
		"7 streaming, download 4 MiB|exed, cached token",
		"7 streaming, upload 4 MiB|exed, cached token",
		"7 streaming, upload 4 MiB|bare ReverseProxy",
		"8 websocket, 1 conn|exed, cached token",
		"8 websocket, 32 conns|exed, cached token",
		"8 websocket, 32 conns|bare ReverseProxy",
	}
	if _, err := exec.LookPath("ssh"); err == nil {
		want = append(want, "3 cold ssh|exed whoami vs bare gliderlabs whoami")
	}
	switch {
	case findNginx() != "":
		for _, c := range []string{"1 conn", "32 conns"} {
			want = append(want, "2 proxy, "+c+"|nginx, plain proxy_pass",
				"2 proxy, "+c+"|nginx + auth_request → exed forward auth, cached token",
				"2 proxy, "+c+"|nginx + auth_request → exed forward auth, a new valid token every request",
				"2 proxy, "+c+"|nginx + auth_request → exed forward auth, auth cache 5 s")
		}
	case os.Getenv("CI") == "true":
		t.Error("nginx not installed (Debian: nginx-light): CI must provide it for the nginx rows")
	}
	for _, w := range want {
		scen, what, _ := strings.Cut(w, "|")
		found := false
		for _, r := range rows {
			if r.scenario == scen && strings.HasPrefix(r.what, what) && r.result != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q", w)
		}
		if !strings.Contains(out.String(), "| "+scen+" | "+what) {
			t.Errorf("table lacks %q", w)
		}
	}
	for _, r := range rows {
		if r.scenario == "4 revocation" && (r.result != "0" || r.met != "yes") {
			t.Errorf("revocation: %s accepted after the removal (%s)", r.result, r.what)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s\nprogress:\n%s", out.String(), log.String())
	}
}

// TestSoakSmoke runs the soak mode for a few seconds, sampling every
// second: every answer must be right. Growth over seconds means nothing
// (a fresh process's heap is still filling), so errGrowth is only logged.
func TestSoakSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs exed")
	}
	o := smokeOptions()
	bin, err := buildExed(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.exedBin, o.soak, o.soakSample = bin, 3*time.Second, time.Second
	var out, log bytes.Buffer
	err = runSoak(context.Background(), o, &out, &log)
	switch {
	case errors.Is(err, errGrowth):
		t.Logf("%v (not a failure in seconds)", err)
	case err != nil:
		t.Fatalf("soak: %v\noutput:\n%s\nprogress:\n%s", err, out.String(), log.String())
	}
	if n := strings.Count(out.String(), "goroutines "); n < 3 {
		t.Errorf("%d samples, want at least 3:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "every answer right") {
		t.Errorf("no verdict:\n%s", out.String())
	}
}
