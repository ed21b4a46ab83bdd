package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/promtest"
	"github.com/exed-dev/exed/proxy"
)

// Tests for running exed in production (issue 10): /metrics during an
// end-to-end run, access logs without credentials, graceful shutdown on
// SIGTERM, TLS certificate reload, settings from the environment.

var adminLine = regexp.MustCompile(`admin=(\S+)`)

// adminAddr is the admin listener's address from the "exed serving" line.
func (s *server) adminAddr(t *testing.T) string {
	t.Helper()
	m := adminLine.FindStringSubmatch(s.logs())
	if m == nil {
		t.Fatalf("no admin= in the serving line:\n%s", s.logs())
	}
	return m[1]
}

// exitCode waits for the process to end and returns its exit status
// (-1 if a signal ended it).
func (s *server) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(within):
		t.Fatalf("exed serve still running after %v:\n%s", within, s.logs())
	}
	return s.cmd.ProcessState.ExitCode()
}

// waitLog polls the server's log until it contains want.
func (s *server) waitLog(t *testing.T, want string) {
	t.Helper()
	testkit.WaitWithin(t, fmt.Sprintf("%q in the log", want), 20*time.Second, func() bool {
		return strings.Contains(s.logs(), want)
	})
}

// getURL fetches url with a client that never reuses connections.
func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics reads the admin /metrics, parses it with the Prometheus
// text parser and flattens it to "name{k=v,…}" → value (histograms give
// name_count and name_sum).
func scrapeMetrics(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/metrics", nil)
	req.Header.Set("Accept", promtest.Accept)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return promtest.Series(t, resp.Body)
}

// front sends one request through the server's HTTP listener for host and
// returns the status and body.
func (s *server) front(t *testing.T, method, host, path, body string, hdr http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func headerOf(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// TestMetricsAndAccessLogEndToEnd runs the real binary with the admin
// listener set from the environment, makes requests of every outcome over
// HTTP, /exec and SSH, and checks that the counters scraped from /metrics
// (parsed with the Prometheus text parser) move by exactly what was done;
// then that the log has an access line for each, and no token or
// credential the run used.
func TestMetricsAndAccessLogEndToEnd(t *testing.T) {
	t.Setenv("EXED_ADMIN_ADDR", "127.0.0.1:0") // every flag has an EXED_ variable
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	env := []string{"EXED_DATA=" + data}
	aliceKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	strangerKey := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", aliceKey+".pub")
	mustRun(t, env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL)
	mustRun(t, env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)
	srv := startServer(t, data, exeDevNames...)
	admin := srv.adminAddr(t)
	alice := srv.client(t, aliceKey)
	stranger := srv.client(t, strangerKey)

	// Health and readiness, on the admin listener only.
	if code, body := getURL(t, "http://"+admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := getURL(t, "http://"+admin+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	for _, host := range []string{"exe.dev", "app.exe.xyz", srv.httpAddr} {
		if code, body := srv.front(t, "GET", host, "/metrics", "", nil); code == 200 || strings.Contains(body, "exed_") {
			t.Errorf("/metrics on the public listener (Host %s): %d", host, code)
		}
	}

	// The tokens of the run: every one of them must stay out of the log.
	gen := func(args string) string {
		t.Helper()
		return decode[generated](t, alice.ok(t, "", "ssh-key generate-api-key "+args+" --json")).Token
	}
	mint := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(mustRun(t, env, append([]string{"token", "mint", "--domain", "exe.dev", "--vm-domain", "exe.xyz"}, args...)...))
	}
	exe1 := gen("--vm=app --label=ci")
	exe0 := gen("--vm=app --label=ci0 --exe0")
	webTok := gen("--vm=web --label=webtok")
	api := gen("--label=api")
	offline := mint("--key", aliceKey, "--vm", "app")
	unknown := mint("--key", strangerKey, "--vm", "app")
	expired := mint("--key", aliceKey, "--vm", "app", "--perms", `{"exp":1000000000}`)
	early := mint("--key", aliceKey, "--vm", "app", "--perms", `{"nbf":4102444800}`)
	other := mint("--key", aliceKey, "--vm", "app", "--perms", `{"ctx":1}`)
	forged := offline[:strings.LastIndex(offline, ".")] + other[strings.LastIndex(other, "."):]
	const vmPassword = "vm-own-password-Zq8x7Kp2"
	basicTok := "Basic " + base64.StdEncoding.EncodeToString([]byte("git:"+exe0))
	basicVM := "Basic " + base64.StdEncoding.EncodeToString([]byte("deploy:"+vmPassword))
	secrets := []string{exe1, exe0, webTok, api, offline, unknown, expired, early, other, forged, basicTok, basicVM, vmPassword}

	before := scrapeMetrics(t, admin)
	verified := map[string]float64{}
	classes := map[string]float64{}
	vm := func(h http.Header, wantStatus int, result string) {
		t.Helper()
		code, body := srv.front(t, "GET", "app.exe.xyz", "/hello", "", h)
		if code != wantStatus {
			t.Fatalf("app.exe.xyz with %v: %d %s", result, code, body)
		}
		classes[fmt.Sprintf("%dxx", code/100)]++
		if result != "" {
			verified[result]++
		}
	}
	bearer := func(name, tok string) http.Header { return headerOf(name, "Bearer "+tok) }
	vm(bearer("X-Exedev-Authorization", exe1), 200, "ok")
	vm(bearer("X-Exedev-Authorization", exe1), 200, "ok") // from the cache
	vm(headerOf("Authorization", basicTok), 200, "ok")
	vm(bearer("Authorization", offline), 200, "ok")
	vm(headerOf("X-Exedev-Authorization", "Bearer "+exe1, "Authorization", basicVM), 200, "ok") // the VM's own password passes through
	vm(bearer("X-Exedev-Authorization", "exe0.garbage"), 401, "malformed")
	vm(bearer("X-Exedev-Authorization", webTok), 401, "namespace")
	vm(bearer("X-Exedev-Authorization", unknown), 401, "unknown_key")
	vm(bearer("X-Exedev-Authorization", forged), 401, "bad_signature")
	vm(bearer("X-Exedev-Authorization", expired), 401, "expired")
	vm(bearer("X-Exedev-Authorization", early), 401, "not_yet_valid")
	vm(nil, 401, "") // no token: nothing to verify
	alice.ok(t, "", "ssh-key", "remove", "ci")
	vm(bearer("X-Exedev-Authorization", exe1), 401, "unknown_key") // revoked: its key is gone

	execs := map[string]float64{}
	call := func(line string, wantStatus int, command string, results ...string) {
		t.Helper()
		code, body := srv.front(t, "POST", "exe.dev", "/exec", line, bearer("Authorization", api))
		if code != wantStatus {
			t.Fatalf("/exec %.20q: %d %s", line, code, body)
		}
		execs[fmt.Sprintf("exed_exec_requests_total{code=%d,command=%s}", code, command)]++
		for _, r := range results {
			verified[r]++
		}
	}
	call("whoami", 200, "whoami", "ok")
	call("nosuch", 404, "unknown")
	call("ssh-key generate-api-key", 403, "ssh-key generate-api-key", "not_granted")
	call("exe0-to-exe1 --vm app "+exe0, 200, "exe0-to-exe1", "ok", "ok") // the API token, then the exe0

	after := scrapeMetrics(t, admin)
	delta := func(series string) float64 { return after[series] - before[series] }
	for _, r := range []string{"ok", "malformed", "namespace", "unknown_key", "bad_signature", "expired",
		"not_yet_valid", "restricted", "vm", "not_granted", "internal"} {
		series := "exed_token_verifications_total{result=" + r + "}"
		if _, ok := after[series]; !ok {
			t.Errorf("no series %s", series)
		}
		if got := delta(series); got != verified[r] {
			t.Errorf("%s moved by %v, want %v", series, got, verified[r])
		}
	}
	for _, class := range []string{"2xx", "4xx", "5xx"} {
		if got := delta("exed_proxy_requests_total{class=" + class + "}"); got != classes[class] {
			t.Errorf("proxy %s moved by %v, want %v", class, got, classes[class])
		}
		if got := delta("exed_proxy_request_duration_seconds_count{class=" + class + "}"); got != classes[class] {
			t.Errorf("proxy latency %s count moved by %v, want %v", class, got, classes[class])
		}
	}
	for series, n := range execs {
		if got := delta(series); got != n {
			t.Errorf("%s moved by %v, want %v", series, got, n)
		}
	}
	if delta("exed_token_cache_hits_total{}") < 1 || delta("exed_token_cache_misses_total{}") < 1 {
		t.Errorf("cache hits +%v, misses +%v", delta("exed_token_cache_hits_total{}"), delta("exed_token_cache_misses_total{}"))
	}
	if delta("exed_store_query_duration_seconds_count{method=key,result=ok}") < 1 ||
		delta("exed_store_query_duration_seconds_count{method=exe1,result=ok}") < 1 {
		t.Error("store query latency did not move")
	}
	if _, ok := after["exed_last_used_backlog{}"]; !ok {
		t.Error("no exed_last_used_backlog")
	}

	// SSH: an unknown key is refused; alice's sessions and commands count;
	// check-api-key explains a token without counting a verification.
	before = after
	if r := stranger.ssh(t, "", "whoami"); r.code == 0 {
		t.Fatal("a stranger's key logged in")
	}
	alice.ok(t, "", "whoami")
	alice.fails(t, "unknown command", "nosuch")
	alice.ok(t, "", "ssh-key", "check-api-key", "--vm", "app", exe0)
	testkit.WaitWithin(t, "SSH connections to close", 10*time.Second, func() bool {
		return scrapeMetrics(t, admin)["exed_ssh_connections_open{}"] == 0
	})
	after = scrapeMetrics(t, admin)
	if got := delta("exed_ssh_sessions_total{}"); got != 3 {
		t.Errorf("ssh sessions moved by %v, want 3", got)
	}
	if got := delta("exed_ssh_connections_total{}"); got < 4 {
		t.Errorf("ssh connections moved by %v, want 4", got)
	}
	if got := delta("exed_ssh_auth_failures_total{}"); got < 1 {
		t.Errorf("ssh auth failures moved by %v", got)
	}
	for series, n := range map[string]float64{
		"exed_ssh_commands_total{command=whoami,exit=0}":                1,
		"exed_ssh_commands_total{command=unknown,exit=1}":               1,
		"exed_ssh_commands_total{command=ssh-key check-api-key,exit=0}": 1,
		"exed_token_verifications_total{result=ok}":                     0,
	} {
		if got := delta(series); got != n {
			t.Errorf("%s moved by %v, want %v", series, got, n)
		}
	}

	// A clean stop, then the log: access lines with what an operator
	// needs, and no credential anywhere.
	srv.stop()
	if code := srv.exitCode(t, time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	logs := srv.logs()
	accessLine := func(prefix string, fields ...string) {
		t.Helper()
		for _, line := range strings.Split(logs, "\n") {
			if !strings.Contains(line, prefix) {
				continue
			}
			ok := true
			for _, f := range fields {
				ok = ok && strings.Contains(line, f)
			}
			if ok {
				return
			}
		}
		t.Errorf("no log line with %q and %q", prefix, fields)
	}
	accessLine("msg=proxy route=vm vm=app", "status=200", "duration=", "bytes=", "remote_addr=127.0.0.1:",
		"carrier=authorization-basic", "user_id=usr", "fingerprint=SHA256:")
	accessLine("msg=proxy route=vm vm=app", "status=401", "reason=bad_signature", "carrier=x-exedev-authorization")
	accessLine("msg=exec route=exec status=200", "bytes=", "command=whoami", "carrier=authorization-bearer", "user_id=usr", "fingerprint=SHA256:")
	accessLine(`msg="ssh command" route=ssh`, "command=whoami", "exit=0", "duration=", "bytes=", "user=usr", "fingerprint=SHA256:", "remote=127.0.0.1:")
	for _, s := range secrets {
		for _, frag := range testkit.SecretFragments(s) {
			if strings.Contains(logs, frag) {
				t.Errorf("the log holds a credential fragment %.12q…", frag)
			}
		}
	}
}

// TestJSONAccessLogs runs serve in-process with --log-format json: every
// line is one JSON object, and the access lines of a proxied request and
// an SSH command carry their fields under stable names.
func TestJSONAccessLogs(t *testing.T) {
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	env := []string{"EXED_DATA=" + data}
	aliceKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", aliceKey+".pub")
	mustRun(t, env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL)

	var logs testkit.SyncBuffer
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &logs, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- a.run(ctx, append([]string{"serve", "--data", data, "--log-format", "json",
			"--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, exeDevNames...), func() {})
	}()
	var serving struct{ SSH, HTTP string }
	testkit.WaitWithin(t, "the serving line", 30*time.Second, func() bool {
		for _, line := range logs.Lines() {
			if strings.Contains(line, `"exed serving"`) {
				json.Unmarshal([]byte(line), &serving)
				return true
			}
		}
		return false
	})
	srv := &server{t: t, data: data, env: env, sshAddr: serving.SSH, httpAddr: serving.HTTP}
	alice := srv.client(t, aliceKey)
	tok := decode[generated](t, alice.ok(t, "", "ssh-key generate-api-key --vm=app --json")).Token
	if c, body := srv.front(t, "GET", "app.exe.xyz", "/", "", headerOf("Authorization", "Bearer "+tok)); c != 200 {
		t.Fatalf("proxy: %d %s", c, body)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("serve returned %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}

	found := map[string]map[string]any{}
	for _, line := range logs.Lines() {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if msg, _ := rec["msg"].(string); msg == "proxy" || msg == "ssh command" {
			found[msg] = rec
		}
	}
	for msg, fields := range map[string][]string{
		"proxy":       {"time", "route", "vm", "status", "duration", "bytes", "user_id", "fingerprint", "carrier", "remote_addr"},
		"ssh command": {"time", "route", "command", "exit", "duration", "bytes", "user", "fingerprint", "remote"},
	} {
		rec := found[msg]
		if rec == nil {
			t.Errorf("no %q line in:\n%s", msg, logs.String())
			continue
		}
		for _, f := range fields {
			if _, ok := rec[f]; !ok {
				t.Errorf("%q line lacks %q: %v", msg, f, rec)
			}
		}
	}
	if b, _ := found["proxy"]["bytes"].(float64); b <= 0 {
		t.Errorf("proxy line bytes = %v", found["proxy"]["bytes"])
	}
	for _, frag := range testkit.SecretFragments(tok) {
		if strings.Contains(logs.String(), frag) {
			t.Error("the token is in the log")
		}
	}
}

// slowUpstream is a VM whose every request waits for release, then
// answers with size bytes.
type slowUpstream struct {
	*httptest.Server
	started chan struct{} // closed when the first request arrives
	release chan struct{}
	once    sync.Once
}

func newSlowUpstream(t *testing.T, size int) *slowUpstream {
	u := &slowUpstream{started: make(chan struct{}), release: make(chan struct{})}
	body := bytes.Repeat([]byte("x"), size)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.once.Do(func() { close(u.started) })
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(u.Server.Close)
	return u
}

// opsFixture is a data dir with alice, a VM app on upstream, a running
// server with the given flags and an API token for app.
type opsFixture struct {
	srv   *server
	env   []string
	key   string
	alice *sshClient
	token string
}

func newOpsFixture(t *testing.T, upstream string, args ...string) *opsFixture {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	f := &opsFixture{env: []string{"EXED_DATA=" + data}, key: testkit.SSHKeygen(t, dir, "ed25519", 0)}
	mustRun(t, f.env, "user", "add", "--email", "alice@example.com", "--key-file", f.key+".pub")
	mustRun(t, f.env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream)
	f.srv = startServer(t, data, append(slices.Clone(exeDevNames), args...)...)
	f.alice = f.srv.client(t, f.key)
	f.token = decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=app --label=ci --json")).Token
	return f
}

// slowGet starts a GET through the proxy to app and returns its outcome
// when it is over.
func (f *opsFixture) slowGet() <-chan getResult {
	out := make(chan getResult, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+f.srv.httpAddr+"/slow", nil)
		req.Host = "app.exe.xyz"
		req.Header.Set("X-Exedev-Authorization", "Bearer "+f.token)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			out <- getResult{err: err}
			return
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		out <- getResult{status: resp.StatusCode, n: n, err: err}
	}()
	return out
}

type getResult struct {
	status int
	n      int64
	err    error
}

// sshStdin starts an SSH command whose stdin stays open until the returned
// writer is closed.
func (c *sshClient) sshStdin(t *testing.T, command ...string) (io.WriteCloser, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	host, port := splitHostPort(t, c.s.sshAddr)
	cmd := exec.Command("ssh", append([]string{"-F", "/dev/null", "-T",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + c.knownHosts,
		"-i", c.key, "-p", port, "user@" + host}, command...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return stdin, cmd, &out
}

// refused reports whether nothing listens at addr any more.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// TestGracefulShutdown: SIGTERM while a slow upstream request and an SSH
// session are in flight. The listeners close and /readyz turns 503 at once;
// the request gets its full response and the session completes; the
// process exits 0 within the timeout, with what the session wrote stored.
func TestGracefulShutdown(t *testing.T) {
	const size = 1 << 20
	up := newSlowUpstream(t, size)
	f := newOpsFixture(t, up.URL, "--shutdown-timeout", "20s", "--admin-addr", "127.0.0.1:0")
	admin := f.srv.adminAddr(t)
	newKey := testkit.SSHKeygen(t, t.TempDir(), "ecdsa", 256)
	newPub, err := os.ReadFile(newKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	// In flight: a proxied request held by the upstream, and an SSH
	// session reading its stdin.
	res := f.slowGet()
	<-up.started
	before := scrapeMetrics(t, admin)["exed_ssh_sessions_total{}"]
	stdin, ssh, sshOut := f.alice.sshStdin(t, "ssh-key", "add", "--name", "late")
	testkit.WaitWithin(t, "the SSH session to start", 20*time.Second, func() bool {
		return scrapeMetrics(t, admin)["exed_ssh_sessions_total{}"] > before
	})

	f.srv.cmd.Process.Signal(syscall.SIGTERM)
	f.srv.waitLog(t, "shutting down")
	testkit.WaitWithin(t, "the listeners to close", 10*time.Second, func() bool {
		return refused(f.srv.httpAddr) && refused(f.srv.sshAddr)
	})
	if code, body := getURL(t, "http://"+admin+"/readyz"); code != 503 {
		t.Errorf("/readyz while draining = %d %q", code, body)
	}
	select {
	case r := <-res:
		t.Fatalf("the request ended before its upstream answered: %+v", r)
	default:
	}

	close(up.release)
	stdin.Write(newPub)
	stdin.Close()
	r := <-res
	if r.err != nil || r.status != 200 || r.n != size {
		t.Errorf("in-flight request: status %d, %d of %d bytes, err %v", r.status, r.n, size, r.err)
	}
	if err := ssh.Wait(); err != nil || !strings.Contains(sshOut.String(), "late") {
		t.Errorf("in-flight SSH session: %v: %s", err, sshOut)
	}
	if code := f.srv.exitCode(t, 20*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, f.srv.logs())
	}
	logs := f.srv.logs()
	if !strings.Contains(logs, "msg=stopped") || strings.Contains(logs, "shutdown timeout passed") {
		t.Errorf("not a clean drain:\n%s", logs)
	}
	// The session's write is in the registry: alice's login key, the
	// token's key and "late".
	users := decode[struct {
		Users []struct {
			Keys int `json:"ssh_keys"`
		} `json:"users"`
	}](t, mustRun(t, f.env, "user", "list", "--json"))
	if len(users.Users) != 1 || users.Users[0].Keys != 3 {
		t.Errorf("after shutdown: %+v", users)
	}
}

// TestSecondSignalExitsAtOnce: while a drain waits on a request that will
// not finish, a second SIGTERM ends the process at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	up := newSlowUpstream(t, 10)
	defer close(up.release)
	f := newOpsFixture(t, up.URL, "--shutdown-timeout", "5m")
	res := f.slowGet()
	<-up.started
	f.srv.cmd.Process.Signal(syscall.SIGTERM)
	f.srv.waitLog(t, "shutting down")
	f.srv.cmd.Process.Signal(syscall.SIGTERM)
	f.srv.exitCode(t, 10*time.Second)
	ws, _ := f.srv.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("process ended with %v, want killed by the second SIGTERM", f.srv.cmd.ProcessState)
	}
	if r := <-res; r.err == nil && r.status == 200 {
		t.Errorf("the request finished although the process was killed: %+v", r)
	}
}

// TestTLSCertificateReload: the certificate files are swapped under a
// running server. On SIGHUP (and, without one, once their mtime changes)
// new connections get the new certificate while a keep-alive connection
// made before goes on working.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := selfSigned(t, dir, "exe.dev")
	pemA, _ := os.ReadFile(certA)
	pemAKey, _ := os.ReadFile(keyA)
	certB, keyB := selfSigned(t, t.TempDir(), "new.exe.dev")
	pemB, _ := os.ReadFile(certB)
	pemBKey, _ := os.ReadFile(keyB)
	data := filepath.Join(dir, "data")
	k := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, []string{"EXED_DATA=" + data}, "user", "add", "--email", "alice@example.com", "--key-file", k+".pub")
	srv := startServer(t, data, append([]string{"--tls-cert", certA, "--tls-key", keyA}, exeDevNames...)...)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemA)
	roots.AppendCertsFromPEM(pemB)
	newClient := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots}, // both certificates name 127.0.0.1
		}}
	}
	// served returns the certificate's CN the connection was made with,
	// and whether the connection was an old one reused.
	served := func(c *http.Client) (cn string, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+srv.httpAddr+"/exec", nil)
		req.Host = "exe.dev"
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("https: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET /exec: %s", resp.Status)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName, reused
	}
	old := newClient()
	if cn, _ := served(old); cn != "exe.dev" {
		t.Fatalf("first certificate: %q", cn)
	}

	// Swap in B and signal: new connections get B at once.
	writeFile := func(path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// No handshake happens until the reload is logged, so only the
	// signal can have made it.
	loads := strings.Count(srv.logs(), "tls certificate loaded")
	writeFile(certA, pemB)
	writeFile(keyA, pemBKey)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	testkit.WaitWithin(t, "the reload on SIGHUP", 10*time.Second, func() bool {
		return strings.Count(srv.logs(), "tls certificate loaded") > loads
	})
	if cn, _ := served(newClient()); cn != "new.exe.dev" {
		t.Fatalf("after SIGHUP, a new connection got %q", cn)
	}
	// The keep-alive connection made before the swap still works.
	if cn, reused := served(old); !reused || cn != "exe.dev" {
		t.Errorf("old connection: reused %v, certificate %q", reused, cn)
	}

	// Swap back without a signal: picked up from the files' change.
	writeFile(certA, pemA)
	writeFile(keyA, pemAKey)
	testkit.WaitWithin(t, "the certificate change to be noticed", 15*time.Second, func() bool {
		cn, _ := served(newClient())
		return cn == "exe.dev"
	})
	if !strings.Contains(srv.logs(), "tls certificate loaded") {
		t.Error("no log of the reload")
	}
	// A broken pair (new certificate, old key) is refused and the
	// server keeps serving the last good one.
	refusals := strings.Count(srv.logs(), "keeping the previous one")
	writeFile(certA, pemB)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	testkit.WaitWithin(t, "the broken pair to be refused", 10*time.Second, func() bool {
		return strings.Count(srv.logs(), "keeping the previous one") > refusals
	})
	if cn, _ := served(newClient()); cn != "exe.dev" {
		t.Errorf("after a broken pair: %q", cn)
	}
}

// TestServeHelpMentionsEnvironment: `exed serve --help` says every flag
// has an environment variable, and lists the operational flags.
func TestServeHelpMentionsEnvironment(t *testing.T) {
	out := mustRun(t, nil, "serve", "--help")
	for _, want := range []string{"EXED_", "environment", "--admin-addr", "--shutdown-timeout", "--log-format", "SIGHUP"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	if strings.Count(out, "Usage:") != 1 {
		t.Errorf("usage printed %d times", strings.Count(out, "Usage:"))
	}
}
