package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/tokens"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const (
	testDomain   = "exe.dev"
	testVMDomain = "exe.xyz"
	testSSHHost  = "ssh.exe.dev" // what the login pages tell users to ssh to
	testSSHPort  = 2222
)

// world is a real registry, Verifier, Suite and Handler with two users:
// alice owns VMs "web" (private) and "pub" (public), bob owns "bobvm". All
// VMs point at one upstream (Echo unless the test says otherwise).
type world struct {
	*testreg.Registry
	t        testing.TB
	suite    *sshcmd.Suite
	h        *Handler
	front    *httptest.Server // the Handler on loopback
	upstream *httptest.Server
	hits     atomic.Int64 // requests that reached the upstream
	logs     *testkit.SyncBuffer
	alice    testreg.Account
	bob      testreg.Account
}

type worldOption func(*Config)

func newWorld(t testing.TB, upstream http.Handler, opts ...worldOption) *world {
	t.Helper()
	// The Verifier keeps the real time: tokens carry exp and nbf as Unix
	// times. It forgets a changed key at once (testreg); the VM cache is
	// left to its TTL here (TestVMCacheTTL), and TestForgetVM wires it.
	w := &world{Registry: testreg.Open(t, nil), t: t, logs: &testkit.SyncBuffer{}}
	if upstream == nil {
		upstream = Echo()
	}
	w.upstream = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		upstream.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.upstream.Close)
	w.Upstream = w.upstream.URL

	log := testkit.Logger(w.logs)
	w.suite = sshcmd.New(sshcmd.Env{Store: w.Store, Verifier: w.Verifier, Domain: testDomain, VMDomain: testVMDomain, Log: log})
	w.alice = w.AddUser("alice@example.com", 1)
	w.bob = w.AddUser("bob@example.com", 2)
	w.AddVM("web", w.alice, false)
	w.AddVM("pub", w.alice, true)
	w.AddVM("bobvm", w.bob, false)

	c := Config{
		Store:    w.Store,
		Verifier: w.Verifier,
		Suite:    w.suite,
		Domain:   testDomain,
		VMDomain: testVMDomain,
		Log:      log,
		// As exed serve wires it: access lines straight to the log's writer.
		AccessLog: w.logs,
		Sessions:  w.Store,
		SSHHost:   testSSHHost,
		SSHPort:   testSSHPort,
	}
	for _, o := range opts {
		o(&c)
	}
	w.h = New(c)
	// As exed serve wires it: an ended session leaves the cache at once.
	t.Cleanup(w.Store.Subscribe(w.h.ForgetSessions))
	w.front = httptest.NewServer(w.h)
	t.Cleanup(w.front.Close)
	// Redirects are what the login tests look at: never followed.
	w.front.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return w
}

// addKey registers a fresh key named name on a's account and returns it.
func (w *world) addKey(a testreg.Account, name string) ssh.Signer {
	w.t.Helper()
	signer := testkit.NewSigner(w.t)
	w.AddPublicKey(a, name, signer.PublicKey(), nil)
	return signer
}

// mint signs payload in namespace with signer.
func (w *world) mint(signer ssh.Signer, namespace, payload string) string {
	w.t.Helper()
	tok, err := tokens.MintExe0(signer, namespace, []byte(payload))
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// vmToken is a token of alice's login key for VM name.
func (w *world) vmToken(name, payload string) string {
	return w.mint(w.alice.Signer, vmNamespace(name), payload)
}

func vmNamespace(name string) string { return "v0@" + name + "." + testVMDomain }

const apiNamespace = "v0@" + testDomain

// run runs a command line through the Suite as a and returns its stdout.
func (w *world) run(a testreg.Account, line string) (string, error) {
	w.t.Helper()
	args, err := sshcmd.Split(line)
	if err != nil {
		w.t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	c := sshcmd.Caller{User: a.User, Key: a.Key, RemoteAddr: "127.0.0.1:1"}
	err = w.suite.Run(context.Background(), c, args, sshcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, true)
	return out.String(), err
}

// exe1 converts an exe0 of a's into an exe1 handle through the Suite.
func (w *world) exe1(a testreg.Account, vm, exe0 string) string {
	w.t.Helper()
	line := "exe0-to-exe1 " + exe0
	if vm != "" {
		line = "exe0-to-exe1 --vm " + vm + " " + exe0
	}
	out, err := w.run(a, line)
	if err != nil {
		w.t.Fatalf("exe0-to-exe1: %v", err)
	}
	var r struct{ Token string }
	if err := json.Unmarshal([]byte(out), &r); err != nil || !strings.HasPrefix(r.Token, "exe1.") {
		w.t.Fatalf("exe0-to-exe1 output %q: %v", out, err)
	}
	return r.Token
}

// request builds a request to host (routed by the Host header) on the
// front server.
func (w *world) request(method, host, path string, body io.Reader, hdr map[string]string) *http.Request {
	w.t.Helper()
	req, err := http.NewRequest(method, w.front.URL+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = append(req.Header[k], v) // as spelled, not canonicalised
	}
	return req
}

// do sends req and returns the response with its body read.
func (w *world) do(req *http.Request) (*http.Response, []byte) {
	w.t.Helper()
	resp, err := w.front.Client().Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp, body
}

// get sends GET path to host with the headers given.
func (w *world) get(host, path string, hdr map[string]string) (*http.Response, []byte) {
	w.t.Helper()
	return w.do(w.request(http.MethodGet, host, path, nil, hdr))
}

// echoReply is what Echo answers.
type echoReply struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

// header returns every value the upstream received under a name equal
// to name case-insensitively.
func (e echoReply) header(name string) []string {
	var vals []string
	for k, v := range e.Headers {
		if strings.EqualFold(k, name) {
			vals = append(vals, v...)
		}
	}
	return vals
}

// exedevHeaders returns the X-ExeDev-ish headers the upstream received,
// by the proxy's normalisation.
func (e echoReply) exedevHeaders() map[string][]string {
	m := map[string][]string{}
	for k, v := range e.Headers {
		if isExedevHeader(k) {
			m[k] = v
		}
	}
	return m
}

// echo sends GET / to host and decodes the upstream's echo; it fails the
// test unless the status is 200.
func (w *world) echo(host string, hdr map[string]string) echoReply {
	w.t.Helper()
	resp, body := w.get(host, "/", hdr)
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("GET %s: status %d, body %q", host, resp.StatusCode, body)
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		w.t.Fatalf("decode echo %q: %v", body, err)
	}
	return e
}

// wantIdentity asserts that the upstream saw exactly a's identity (and
// ctx, when not empty) and no other X-ExeDev header.
func wantIdentity(t *testing.T, e echoReply, a testreg.Account, ctx string) {
	t.Helper()
	want := map[string][]string{
		"X-Exedev-Userid": {a.User.ID},
		"X-Exedev-Email":  {a.User.Email},
	}
	if ctx != "" {
		want["X-Exedev-Token-Ctx"] = []string{ctx}
	}
	got := e.exedevHeaders()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("upstream X-ExeDev headers = %v, want %v", got, want)
	}
	if v := e.header("Authorization"); len(v) != 0 {
		t.Errorf("upstream received Authorization %q", v)
	}
}

// wantAnonymous asserts the upstream saw no identity and no exe credential.
func wantAnonymous(t *testing.T, e echoReply) {
	t.Helper()
	if got := e.exedevHeaders(); len(got) != 0 {
		t.Errorf("upstream X-ExeDev headers = %v, want none", got)
	}
	for _, v := range e.header("Authorization") {
		if holdsToken(v) {
			t.Errorf("upstream received an exe token in Authorization")
		}
	}
}

func bearerHdr(tok string) string { return "Bearer " + tok }

func basicHdr(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// future and past are exp/nbf values an hour away.
func future() int64 { return time.Now().Add(time.Hour).Unix() }
func past() int64   { return time.Now().Add(-time.Hour).Unix() }
