package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

const (
	testDomain   = "exe.dev"
	testVMDomain = "exe.xyz"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// account is a test user with one login key.
type account struct {
	user   store.User
	key    store.Key
	signer ssh.Signer
}

func (a account) caller() sshcmd.Caller {
	return sshcmd.Caller{User: a.user, Key: a.key, RemoteAddr: "127.0.0.1:1"}
}

// world is a real registry, Verifier, Suite and Handler with two users:
// alice owns VMs "web" (private) and "pub" (public), bob owns "bobvm". All
// VMs point at one upstream (Echo unless the test says otherwise).
type world struct {
	t        testing.TB
	st       store.Store
	v        *tokens.Verifier
	suite    *sshcmd.Suite
	h        *Handler
	front    *httptest.Server // the Handler on loopback
	upstream *httptest.Server
	hits     atomic.Int64 // requests that reached the upstream
	logs     *syncBuffer
	alice    account
	bob      account
}

type worldOption func(*Config)

func newWorld(t testing.TB, upstream http.Handler, opts ...worldOption) *world {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &world{t: t, st: st, logs: &syncBuffer{}}
	if upstream == nil {
		upstream = Echo()
	}
	w.upstream = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		upstream.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.upstream.Close)

	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.v = tokens.NewVerifier(tokens.Config{Registry: st})
	// As exed serve wires it for keys: a key changed through this store
	// leaves the Verifier's cache before the write returns. The VM cache is
	// left to its TTL here (TestVMCacheTTL); TestForgetVM wires it.
	t.Cleanup(st.Subscribe(func(c store.Change) {
		if c.Kind == store.KeyChanged {
			w.v.Forget(c.ID)
		}
	}))
	w.suite = sshcmd.New(sshcmd.Env{Store: st, Verifier: w.v, Domain: testDomain, VMDomain: testVMDomain, Log: log})
	w.alice = w.addUser("alice@example.com")
	w.bob = w.addUser("bob@example.com")
	w.addVM("web", w.alice, false)
	w.addVM("pub", w.alice, true)
	w.addVM("bobvm", w.bob, false)

	c := Config{
		Store:    st,
		Verifier: w.v,
		Suite:    w.suite,
		Domain:   testDomain,
		VMDomain: testVMDomain,
		Log:      log,
	}
	for _, o := range opts {
		o(&c)
	}
	w.h = New(c)
	w.front = httptest.NewServer(w.h)
	t.Cleanup(w.front.Close)
	return w
}

func (w *world) addUser(email string) account {
	w.t.Helper()
	signer, _, err := keys.GenerateEd25519()
	if err != nil {
		w.t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	u := store.User{ID: store.NewUserID(), Email: email, CreatedAt: now}
	k := store.Key{
		UserID:      u.ID,
		Name:        "laptop",
		Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey:   keys.MarshalAuthorized(signer.PublicKey()),
		AddedAt:     now,
	}
	ev := store.Event{Time: now, ActorID: "admin", Action: "user.add", Subject: email}
	if err := w.st.AddUser(context.Background(), u, k, ev); err != nil {
		w.t.Fatal(err)
	}
	return account{user: u, key: k, signer: signer}
}

// addKey registers another login key named name on a's account.
func (w *world) addKey(a account, name string) ssh.Signer {
	w.t.Helper()
	signer, _, err := keys.GenerateEd25519()
	if err != nil {
		w.t.Fatal(err)
	}
	w.addPublicKey(a, name, signer.PublicKey())
	return signer
}

func (w *world) addPublicKey(a account, name string, pub ssh.PublicKey) {
	w.t.Helper()
	now := time.Now().UTC()
	k := store.Key{
		UserID:      a.user.ID,
		Name:        name,
		Fingerprint: keys.Fingerprint(pub),
		PublicKey:   keys.MarshalAuthorized(pub),
		AddedAt:     now,
	}
	ev := store.Event{Time: now, ActorID: a.user.ID, Action: "key.add", Subject: k.Fingerprint}
	if err := w.st.AddKey(context.Background(), k, ev); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) addVM(name string, owner account, public bool) {
	w.t.Helper()
	now := time.Now().UTC()
	vm := store.VM{Name: name, OwnerID: owner.user.ID, Upstream: w.upstream.URL, Public: public, CreatedAt: now}
	ev := store.Event{Time: now, ActorID: "admin", Action: "vm.add", Subject: name}
	if err := w.st.AddVM(context.Background(), vm, ev); err != nil {
		w.t.Fatal(err)
	}
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
	return w.mint(w.alice.signer, vmNamespace(name), payload)
}

func vmNamespace(name string) string { return "v0@" + name + "." + testVMDomain }

const apiNamespace = "v0@" + testDomain

// run runs a command line through the Suite as a and returns its stdout.
func (w *world) run(a account, line string) (string, error) {
	w.t.Helper()
	args, err := sshcmd.Split(line)
	if err != nil {
		w.t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err = w.suite.Run(context.Background(), a.caller(), args, sshcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, true)
	return out.String(), err
}

// exe1 converts an exe0 of a's into an exe1 handle through the Suite.
func (w *world) exe1(a account, vm, exe0 string) string {
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
func wantIdentity(t *testing.T, e echoReply, a account, ctx string) {
	t.Helper()
	want := map[string][]string{
		"X-Exedev-Userid": {a.user.ID},
		"X-Exedev-Email":  {a.user.Email},
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

// sshKeygen generates a key of type typ (with -b bits when bits != "")
// with stock ssh-keygen and returns its private key path and public key.
func sshKeygen(t *testing.T, typ, bits string) (string, ssh.PublicKey) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id_"+typ+bits)
	args := []string{"-q", "-t", typ, "-N", "", "-C", "test", "-f", path}
	if bits != "" {
		args = append(args, "-b", bits)
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubLine, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := keys.ParsePublicKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// recipeToken mints a token with SPEC §2's shell recipe, verbatim.
func recipeToken(t *testing.T, keyPath, namespace, payload string) string {
	t.Helper()
	script := `set -e
b64url() { tr -d '\n=' | tr '+/' '-_'; }
SIG=$(printf '%s' "$P" | ssh-keygen -Y sign -f "$KEY" -n "$NS")
TOKEN="exe0.$(printf '%s' "$P" | base64 | b64url).$(echo "$SIG" | sed '1d;$d' | b64url)"
printf '%s' "$TOKEN"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "P="+payload, "KEY="+keyPath, "NS="+namespace)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recipe: %v: %s", err, stderr.String())
	}
	return string(out)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

// future and past are exp/nbf values an hour away.
func future() int64 { return time.Now().Add(time.Hour).Unix() }
func past() int64   { return time.Now().Add(-time.Hour).Unix() }

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustGenerate(t testing.TB) ssh.Signer {
	t.Helper()
	s, _, err := keys.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
