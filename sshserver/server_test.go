package sshserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// testServer is a real SSH server on 127.0.0.1:0 over a testEnv.
type testServer struct {
	e       *testEnv
	srv     *Server
	addr    string
	hostKey gossh.PublicKey
}

func (e *testEnv) startServer(t *testing.T, edit func(*ServerConfig)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := testkit.SeededSigner(t, 250)
	c := ServerConfig{Suite: e.suite, Store: e.Store, HostKey: host, Log: e.logger(), Now: e.Now}
	if edit != nil {
		edit(&c)
	}
	srv := NewServer(c)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return &testServer{e: e, srv: srv, addr: ln.Addr().String(), hostKey: host.PublicKey()}
}

func (ts *testServer) config(auth ...gossh.AuthMethod) *gossh.ClientConfig {
	return &gossh.ClientConfig{
		User:            "whoever", // ignored by the server
		Auth:            auth,
		HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
		Timeout:         10 * time.Second,
	}
}

func (ts *testServer) dial(t testing.TB, signer gossh.Signer) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(signer)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// execSSH runs cmd in a new session of c and returns its output and exit
// status.
func execSSH(t testing.TB, c *gossh.Client, cmd, stdin string) (stdout, stderr string, code int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdin = strings.NewReader(stdin)
	sess.Stdout = &out
	sess.Stderr = &errOut
	err = sess.Run(cmd)
	var exit *gossh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitStatus()
	default:
		t.Fatalf("run %q: %v", cmd, err)
	}
	return out.String(), errOut.String(), code
}

func TestServerCommands(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)

	ok := []struct{ cmd, want string }{
		{"", "Commands:\n"}, // no command, no PTY: help
		{"help", "Commands:\n"},
		{"help ssh-key add", "Usage: ssh-key add"},
		{"ssh-key list --help", "Usage: ssh-key list"},
		{"whoami", "alice@example.com (" + alice.User.ID + ")\n"},
		{"whoami --json", `{"user_id":"` + alice.User.ID + `","email":"alice@example.com","ssh_keys":[{"name":"alice-laptop"`},
		{"ls", "web   https://web.exe.xyz  private"},
		{"ls --json", `{"vms":[{"vm_name":"web","https_url":"https://web.exe.xyz","public":false}],"shared_vms":[]}`},
		{"ssh-key list --json", `{"ssh_keys":[{"name":"alice-laptop"`},
		{"ssh-key list", "alice-laptop *"},
		{"ssh-key generate-api-key --label=ci", "\ntoken: exe1."},
		{"ssh-key rename ci deploy", "Renamed ci to deploy"},
		{"ssh-key remove deploy", "Removed key deploy"},
	}
	for _, tt := range ok {
		out, errOut, code := execSSH(t, c, tt.cmd, "")
		if code != 0 || errOut != "" || !strings.Contains(out, tt.want) {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want exit 0 and %q", tt.cmd, code, errOut, out, tt.want)
		}
	}
	// stdin for ssh-key add, with the comment as its name.
	k := testkit.SeededSigner(t, 7)
	out, errOut, code := execSSH(t, c, "ssh-key add --json", testkit.PubLine(k)+" ci@runner\n")
	if code != 0 || out != `{"name":"ci@runner","fingerprint":"`+keys.Fingerprint(k.PublicKey())+`","public_key":"`+testkit.PubLine(k)+`","status":"added"}`+"\n" {
		t.Errorf("ssh-key add from stdin: %d %q %q", code, out, errOut)
	}

	fail := []struct{ cmd, stdin, want string }{
		{"nosuch", "", `unknown command "nosuch" (run "help" for the list)`},
		{"whoami $(id)", "", "unsupported shell syntax: command substitution"},
		{"whoami 'unclosed", "", "bad command line"},
		{"ssh-key remove alice-laptop --json", "", "refusing to remove alice-laptop: it is your last login key"},
		{"ssh-key list --bogus", "", "ssh-key list: unknown flag: --bogus"},
		{"ssh-key add", strings.Repeat("x", 20<<10), "standard input is over 16 KiB"},
		{"ssh-key add", "", "no public key"},
	}
	for _, tt := range fail {
		// A key's removal test needs only one login key: remove the one
		// added from stdin first.
		if strings.HasPrefix(tt.cmd, "ssh-key remove") {
			execSSH(t, c, "ssh-key remove ci@runner", "")
		}
		out, errOut, code := execSSH(t, c, tt.cmd, tt.stdin)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1, no stdout, one line starting %q", tt.cmd, code, out, errOut, tt.want)
		}
	}
	// Subsystems (sftp) are refused.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err == nil {
		t.Error("sftp subsystem accepted")
	}
	sess.Close()
	// Port forwarding is refused.
	if _, err := c.Dial("tcp", ts.addr); err == nil {
		t.Error("direct-tcpip forwarding accepted")
	}
}

// queryOnly offers a public key but cannot sign with it: an x/crypto
// client then sends only the "would you accept this key?" query.
type queryOnly struct{ pub gossh.PublicKey }

func (q queryOnly) PublicKey() gossh.PublicKey { return q.pub }
func (q queryOnly) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return nil, errors.New("query only: no private key")
}

// offerThenAuthenticate dials with the CVE-2024-45337 sequence: query the
// attacker's own key, query the victim's key (no signature: the attacker
// does not have it), then authenticate with a signature from the
// attacker's own key — which x/crypto answers from its cache of the first
// query, without calling the server's callback again.
func offerThenAuthenticate(t *testing.T, addr string, cfg *gossh.ClientConfig, own gossh.Signer, victim gossh.PublicKey) *gossh.Client {
	t.Helper()
	steps := []gossh.AuthMethod{
		gossh.PublicKeys(queryOnly{own.PublicKey()}),
		gossh.PublicKeys(queryOnly{victim}),
		gossh.PublicKeys(own),
	}
	cfg.AuthCallback = func(*gossh.ClientAuthContext) (gossh.AuthMethod, error) {
		if len(steps) == 0 {
			return nil, nil
		}
		m := steps[0]
		steps = steps[1:]
		return m, nil
	}
	c, err := gossh.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if len(steps) != 0 {
		t.Fatalf("authenticated before the attack sequence ran (%d steps left)", len(steps))
	}
	return c
}

// TestAuthBypassOfferedKeyCVE202445337: a client that offers another
// user's public key and then authenticates with its own is its own user.
func TestAuthBypassOfferedKeyCVE202445337(t *testing.T) {
	e := newTestEnv(t)
	victim := e.AddUser("victim@example.com", 1)
	attacker := e.AddUser("attacker@example.com", 2)
	ts := e.startServer(t, nil)

	c := offerThenAuthenticate(t, ts.addr, ts.config(), attacker.Signer, victim.Signer.PublicKey())
	out, errOut, code := execSSH(t, c, "whoami --json", "")
	if code != 0 {
		t.Fatalf("whoami: %d %q", code, errOut)
	}
	m, _ := testkit.JSONObject(t, out)
	if m["email"] != "attacker@example.com" {
		t.Fatalf("CVE-2024-45337: offering the victim's key made whoami say %v", m["email"])
	}
	// The key it acts with is its own too.
	out, _, _ = execSSH(t, c, "ssh-key list --json", "")
	if strings.Contains(out, victim.Key.Fingerprint) || !strings.Contains(out, `"current":true`) {
		t.Errorf("ssh-key list shows %s", out)
	}
	// And the plain order (victim offered first, own key after) too.
	cfg := ts.config(gossh.PublicKeysCallback(func() ([]gossh.Signer, error) {
		return []gossh.Signer{queryOnly{victim.Signer.PublicKey()}, attacker.Signer}, nil
	}))
	if c, err := gossh.Dial("tcp", ts.addr, cfg); err == nil {
		// (x/crypto's client gives up on a key it cannot sign with, so
		// this usually fails to authenticate at all.) If it gets in, it
		// must not be as the victim.
		defer c.Close()
		if out, _, _ := execSSH(t, c, "whoami", ""); !strings.HasPrefix(out, "attacker@example.com") {
			t.Errorf("plain order: whoami = %q", out)
		}
	}
}

// TestAuthBypassSequenceOffersVictimKey checks the test above does what it
// says: against a bare gliderlabs server that records what its
// PublicKeyHandler is asked, the same client gets the victim's key
// accepted as a query before it authenticates with its own. (Since
// x/crypto v0.31 the server's cache of query results holds one key, so the
// last key gliderlabs records is now the authenticated one; exed does not
// depend on that: its identity comes from VerifiedPublicKeyCallback.)
func TestAuthBypassSequenceOffersVictimKey(t *testing.T) {
	victim := testkit.SeededSigner(t, 1)
	attacker := testkit.SeededSigner(t, 2)
	known := map[string]bool{keys.Fingerprint(victim.PublicKey()): true, keys.Fingerprint(attacker.PublicKey()): true}
	var mu sync.Mutex
	var asked []string
	host := testkit.SeededSigner(t, 250)
	srv := &ssh.Server{
		HostSigners: []ssh.Signer{host},
		PublicKeyHandler: func(_ ssh.Context, key ssh.PublicKey) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, keys.Fingerprint(key))
			return known[keys.Fingerprint(key)]
		},
		Handler: func(s ssh.Session) {},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := &gossh.ClientConfig{User: "x", HostKeyCallback: gossh.FixedHostKey(host.PublicKey()), Timeout: 10 * time.Second}
	offerThenAuthenticate(t, ln.Addr().String(), cfg, attacker, victim.PublicKey())
	mu.Lock()
	defer mu.Unlock()
	a, v := keys.Fingerprint(attacker.PublicKey()), keys.Fingerprint(victim.PublicKey())
	if len(asked) < 3 || asked[0] != a || asked[1] != v || asked[len(asked)-1] != a {
		t.Fatalf("server was asked about %v; want the attacker's key, the victim's, then the attacker's", asked)
	}
}

func TestAuthRefusals(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)

	// "none": x/crypto's client tries it first; with no other method
	// left, it must fail.
	if c, err := gossh.Dial("tcp", ts.addr, ts.config()); err == nil {
		c.Close()
		t.Error(`"none" authentication accepted`)
	}
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.Password("hunter2"))); err == nil {
		c.Close()
		t.Error("password authentication accepted")
	}
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(testkit.SeededSigner(t, 99)))); err == nil {
		c.Close()
		t.Error("unknown key accepted")
	}
	// A generated (token) key cannot log in, even if its private half
	// were known.
	tokenKey := testkit.SeededSigner(t, 40)
	if err := e.Store.AddTokenKey(e.ctx, store.Key{
		UserID: alice.User.ID, Name: "tok", Fingerprint: keys.Fingerprint(tokenKey.PublicKey()),
		PublicKey: testkit.PubLine(tokenKey), AddedAt: e.Now(), Generated: true,
	}, nil, store.Event{Time: e.Now(), ActorID: alice.User.ID, Action: "token.generate"}); err != nil {
		t.Fatal(err)
	}
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(tokenKey))); err == nil {
		c.Close()
		t.Error("generated key logged in")
	}
	// An expired key cannot log in.
	old := e.AddKey(alice, "old", 41, func(k *store.Key) { k.ExpiresAt = e.Now().Add(-time.Second) })
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(old.Signer))); err == nil {
		c.Close()
		t.Error("expired key logged in")
	}
	// A removed key cannot log in again.
	gone := e.AddKey(alice, "gone", 42, nil)
	ts.dial(t, gone.Signer).Close()
	if err := e.Store.RemoveKey(e.ctx, alice.User.ID, gone.Key.Fingerprint, store.Event{Time: e.Now(), ActorID: alice.User.ID, Action: "key.remove"}); err != nil {
		t.Fatal(err)
	}
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(gone.Signer))); err == nil {
		c.Close()
		t.Error("removed key logged in")
	}
	// The registered key still works, whatever the user name.
	cfg := ts.config(gossh.PublicKeys(alice.Signer))
	cfg.User = "root"
	c, err := gossh.Dial("tcp", ts.addr, cfg)
	if err != nil {
		t.Fatalf("good key refused: %v", err)
	}
	c.Close()
}

// TestGeneratedTokenVerifies: a token made over SSH verifies in the
// Verifier, and with stock ssh-keygen against the public key that
// ssh-key list --json shows.
func TestGeneratedTokenVerifies(t *testing.T) {
	testkit.RequireTools(t, "ssh-keygen")
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	vm := e.AddVM("web", alice, false)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)

	out, errOut, code := execSSH(t, c, `ssh-key generate-api-key --json --exe0 --vm=web --label=deploy --ctx='{"role":"deploy"}'`, "")
	if code != 0 {
		t.Fatalf("generate: %q", errOut)
	}
	m, _ := testkit.JSONObject(t, out)
	token := m["token"].(string)
	if _, err := e.Verifier.Verify(e.ctx, token, tokens.Target{Namespace: "v0@web.exe.xyz", VM: &vm}); err != nil {
		t.Fatalf("Verifier: %v", err)
	}

	out, _, _ = execSSH(t, c, "ssh-key list --json", "")
	var pub string
	l, _ := testkit.JSONObject(t, out)
	for _, k := range l["ssh_keys"].([]any) {
		if k := k.(map[string]any); k["name"] == "deploy" {
			pub = k["public_key"].(string)
			if k["generated"] != true || k["vm"] != "web" {
				t.Errorf("deploy key = %v", k)
			}
		}
	}
	parts := strings.Split(token, ".")
	if pub == "" || len(parts) != 3 {
		t.Fatalf("token %q / key %q", token, pub)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token %q: %v", token, err)
	}
	if string(payload) != `{"ctx":{"role":"deploy"}}` {
		t.Errorf("payload = %s", payload)
	}
	if err := testkit.SSHKeygenVerify(t, pub, token, "v0@web.exe.xyz", payload); err != nil {
		t.Error(err)
	}
	if err := testkit.SSHKeygenVerify(t, pub, token, "v0@exe.dev", payload); err == nil {
		t.Error("ssh-keygen verified the token in the wrong namespace")
	}
	if err := testkit.SSHKeygenVerify(t, pub, token, "v0@web.exe.xyz", append(payload, ' ')); err == nil {
		t.Error("ssh-keygen verified a changed payload")
	}
}

// TestRemoveRevokesOverSSH: the moment ssh-key remove exits, the token it
// signed is refused, though the Verifier had it cached.
func TestRemoveRevokesOverSSH(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)
	out, _, _ := execSSH(t, c, "ssh-key generate-api-key --json --label=ci", "")
	m, _ := testkit.JSONObject(t, out)
	token := m["token"].(string)
	api := tokens.Target{Namespace: "v0@exe.dev", Command: "whoami"}
	for range 2 {
		if _, err := e.Verifier.Verify(e.ctx, token, api); err != nil {
			t.Fatal(err)
		}
	}
	if _, errOut, code := execSSH(t, c, "ssh-key remove ci", ""); code != 0 {
		t.Fatalf("remove: %q", errOut)
	}
	if _, err := e.Verifier.Verify(e.ctx, token, api); err == nil {
		t.Fatal("token verifies after ssh-key remove returned")
	}
}

// TestRestrictedKeyOverSSH: a restricted login key runs only its cmds, and
// its refusals name the restriction and store nothing.
func TestRestrictedKeyOverSSH(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	e.AddVM("db", alice, false)
	ci := e.AddKey(alice, "ci", 3, func(k *store.Key) {
		k.VM = "web"
		k.Cmds = []string{"ssh-key generate-api-key"}
	})
	ts := e.startServer(t, nil)
	c := ts.dial(t, ci.Signer)
	before, _ := e.Store.Keys(e.ctx, alice.User.ID)
	for _, tt := range []struct{ cmd, want string }{
		{"whoami", `key "ci" may only run ssh-key generate-api-key: "whoami" is not among them`},
		{"ssh-key add " + testkit.PubLine(testkit.SeededSigner(t, 8)), `"ssh-key add" is not among them`},
		{"ssh-key generate-api-key --vm db", `key "ci" is restricted to VM web: --vm db is outside it`},
		{"ssh-key generate-api-key --cmds whoami", `key "ci" is restricted to cmds ssh-key generate-api-key: "whoami" is outside them`},
	} {
		out, errOut, code := execSSH(t, c, tt.cmd, "")
		if code != 1 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: %d %q %q; want %q", tt.cmd, code, out, errOut, tt.want)
		}
	}
	if after, _ := e.Store.Keys(e.ctx, alice.User.ID); len(after) != len(before) {
		t.Errorf("refusals stored keys: %d → %d", len(before), len(after))
	}
	if _, errOut, code := execSSH(t, c, "whoami --help", ""); code != 0 {
		t.Errorf("--help refused to a restricted key: %q", errOut)
	}
	out, errOut, code := execSSH(t, c, "ssh-key generate-api-key --json", "")
	if code != 0 {
		t.Fatalf("mint within limits: %q", errOut)
	}
	if m, _ := testkit.JSONObject(t, out); m["vm"] != "web" || m["namespace"] != "v0@web.exe.xyz" {
		t.Errorf("restricted mint = %v", m)
	}
}

func TestMaxSessions(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, func(c *ServerConfig) { c.MaxSessions = 2 })
	c := ts.dial(t, alice.Signer)

	// Two sessions held open by commands waiting for stdin.
	var held []*gossh.Session
	var stdins []io.WriteCloser
	for range 2 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		w, _ := s.StdinPipe()
		if err := s.Start("ssh-key add --json"); err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
		stdins = append(stdins, w)
	}
	if s, err := c.NewSession(); err == nil {
		s.Close()
		t.Fatal("third session accepted with MaxSessions 2")
	} else if !strings.Contains(err.Error(), "too many sessions") {
		t.Errorf("third session: %v", err)
	}
	fmt.Fprintln(stdins[0], testkit.PubLine(testkit.SeededSigner(t, 5)))
	stdins[0].Close()
	if err := held[0].Wait(); err != nil {
		t.Fatalf("held session: %v", err)
	}
	held[0].Close()
	// The slot is free by the time the client has seen the session end.
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("session after one ended: %v", err)
	}
	s.Close()
	stdins[1].Close()
	held[1].Wait()
}

// TestMaxSessionsBackToBack: clients that keep the bound's worth of
// sessions busy, each opening its next as soon as its last has ended, are
// never refused: the server frees a slot before the client can see its
// session end, not when it later reads the client's close.
func TestMaxSessionsBackToBack(t *testing.T) {
	const (
		maxSessions = 3
		rounds      = 40 // per worker; the race showed within a few
	)
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, func(c *ServerConfig) { c.MaxSessions = maxSessions })
	c := ts.dial(t, alice.Signer)
	var wg sync.WaitGroup
	for range maxSessions {
		wg.Go(func() {
			for i := range rounds {
				s, err := c.NewSession()
				if err != nil {
					t.Errorf("session %d: %v", i, err)
					return
				}
				out, err := s.Output("whoami")
				s.Close()
				if err != nil || !strings.Contains(string(out), "alice@example.com") {
					t.Errorf("session %d: whoami = %q, %v", i, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestSessionAfterKeyRemoved: a connection whose key is removed (from
// another connection) runs no further sessions.
func TestSessionAfterKeyRemoved(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	second := e.AddKey(alice, "second", 3, nil)
	ts := e.startServer(t, nil)
	c := ts.dial(t, second.Signer)
	if out, errOut, code := execSSH(t, c, "whoami", ""); code != 0 || !strings.Contains(out, "alice@example.com") {
		t.Fatalf("whoami before removal: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := execSSH(t, ts.dial(t, alice.Signer), "ssh-key remove second", ""); code != 0 {
		t.Fatalf("remove: %q", errOut)
	}
	out, errOut, code := execSSH(t, c, "whoami", "")
	if code != 1 || out != "" || !strings.Contains(errOut, "your key is no longer registered") {
		t.Errorf("whoami after removal: %d %q %q", code, out, errOut)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	const timeout = time.Second
	ts := e.startServer(t, func(c *ServerConfig) { c.HandshakeTimeout = timeout })
	start := time.Now()
	c := ts.dial(t, alice.Signer)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Say nothing: the server must hang up by itself.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("server did not close the silent connection: %v", err)
	}
	// The authenticated connection outlives the handshake timeout.
	if time.Since(start) < timeout {
		t.Fatalf("silent connection closed after %v, before the timeout", time.Since(start))
	}
	if _, errOut, code := execSSH(t, c, "whoami", ""); code != 0 {
		t.Fatalf("authenticated connection after the handshake timeout: %q", errOut)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, func(c *ServerConfig) { c.IdleTimeout = 500 * time.Millisecond })
	c := ts.dial(t, alice.Signer)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.StdinPipe() // never written: the command waits, the connection idles
	if err := s.Start("ssh-key add"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection not closed")
	}
}

// TestShutdown: Shutdown lets a running command finish, refuses new
// connections, and closes idle ones.
func TestShutdown(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	// The handler tells LastUsed of its key once it has joined the
	// sessions Shutdown waits for: the command has then started.
	started := make(chan struct{}, 1)
	ts := e.startServer(t, func(c *ServerConfig) {
		c.LastUsed = touchFunc(func(string) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
	})
	busy := ts.dial(t, alice.Signer)
	idle := ts.dial(t, alice.Signer)

	s, err := busy.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Start("ssh-key add --json"); err != nil {
		t.Fatal(err)
	}
	// Wait until the command is running (it then waits for stdin).
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not start")
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.srv.Shutdown(ctx)
	}()
	idleDone := make(chan error, 1)
	go func() { idleDone <- idle.Wait() }()
	select {
	case <-idleDone:
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection not closed by Shutdown")
	}
	testkit.WaitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a command runs", err)
	default:
	}
	fmt.Fprintln(stdin, testkit.PubLine(testkit.SeededSigner(t, 6)))
	stdin.Close()
	if err := s.Wait(); err != nil {
		t.Fatalf("running command: %v", err)
	}
	if !strings.Contains(out.String(), `"status":"added"`) {
		t.Errorf("running command printed %q", out.String())
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestREPL(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 40, 120, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	var out testkit.SyncBuffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	has := func(want string, n int) func() bool {
		return func() bool { return strings.Count(out.String(), want) >= n }
	}
	testkit.WaitFor(t, "the greeting", has("signed in as alice@example.com", 1))
	fmt.Fprint(stdin, "whoami --json\r")
	testkit.WaitFor(t, "whoami's output", has(`"email":"alice@example.com"`, 1))
	fmt.Fprint(stdin, "\x1b[A\r") // up arrow: the session's history
	testkit.WaitFor(t, "whoami again, from history", has(`"email":"alice@example.com"`, 2))
	fmt.Fprint(stdin, "nosuch\r")
	testkit.WaitFor(t, "an error", has(`unknown command "nosuch"`, 1))
	fmt.Fprint(stdin, "echo $HOME\r")
	testkit.WaitFor(t, "a refusal", has("unsupported shell syntax: $ expansion", 1))
	fmt.Fprint(stdin, "exit\r")
	if err := s.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}

	// Ctrl-D leaves too.
	s2, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.RequestPty("xterm", 40, 120, gossh.TerminalModes{})
	stdin2, _ := s2.StdinPipe()
	var out2 testkit.SyncBuffer
	s2.Stdout = &out2
	if err := s2.Shell(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the prompt", func() bool { return strings.Contains(out2.String(), "exed> ") })
	stdin2.Write([]byte{4})
	if err := s2.Wait(); err != nil {
		t.Errorf("Ctrl-D: %v", err)
	}
}

// TestLogsHoldNoTokens: after minting, checking and converting tokens over
// SSH, the log names commands but holds no token or part of one.
func TestLogsHoldNoTokens(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)
	var secrets []string
	out, _, _ := execSSH(t, c, "ssh-key generate-api-key --json --exe0 --label a", "")
	m, _ := testkit.JSONObject(t, out)
	exe0 := m["token"].(string)
	secrets = append(secrets, exe0, strings.Split(exe0, ".")[2][:40])
	out, _, _ = execSSH(t, c, "exe0-to-exe1 --json "+exe0, "")
	m, _ = testkit.JSONObject(t, out)
	secrets = append(secrets, m["token"].(string), strings.TrimPrefix(m["token"].(string), "exe1."))
	out, _, _ = execSSH(t, c, "ssh-key generate-api-key --json --label b", "")
	m, _ = testkit.JSONObject(t, out)
	secrets = append(secrets, m["token"].(string), strings.TrimPrefix(m["token"].(string), "exe1."))
	execSSH(t, c, "ssh-key check-api-key "+exe0, "")
	execSSH(t, c, "exe0-to-exe1 "+exe0+"x", "")
	execSSH(t, c, exe0, "") // a token sent as the command itself

	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("log holds a token (or part): %.20s…", s)
		}
	}
	for _, want := range []string{`command="ssh-key generate-api-key"`, `command=exe0-to-exe1`, `command="ssh-key check-api-key"`, "user=" + alice.User.ID, "fingerprint=" + alice.Key.Fingerprint} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestLastUsedTouched(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	var touched []string
	var mu sync.Mutex
	ts := e.startServer(t, func(c *ServerConfig) {
		c.LastUsed = touchFunc(func(fp string) { mu.Lock(); touched = append(touched, fp); mu.Unlock() })
	})
	execSSH(t, ts.dial(t, alice.Signer), "whoami", "")
	mu.Lock()
	defer mu.Unlock()
	if len(touched) != 1 || touched[0] != alice.Key.Fingerprint {
		t.Errorf("touched %v", touched)
	}
}

type touchFunc func(string)

func (f touchFunc) Touch(fp string) { f(fp) }

// BenchmarkGenerateAPIKeySSH mints tokens over one SSH connection, one
// session each, as a script would.
func BenchmarkGenerateAPIKeySSH(b *testing.B) {
	e := newTestEnv(b)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServerB(b)
	c := ts.dial(b, alice.Signer)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		_, errOut, code := execSSH(b, c, fmt.Sprintf("ssh-key generate-api-key --json --label t%d", i), "")
		if code != 0 {
			b.Fatal(errOut)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
}

// BenchmarkGenerateAPIKeySSHMux: generate-api-key with DefaultMaxSessions
// sessions at a time on one connection (exed-bench's scenario 3), each
// worker opening its next session as soon as its last has ended. refused/op
// counts opens refused as over the bound (and retried).
func BenchmarkGenerateAPIKeySSHMux(b *testing.B) {
	e := newTestEnv(b)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServerB(b)
	c := ts.dial(b, alice.Signer)
	var next, refused atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range DefaultMaxSessions {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); {
				s, err := c.NewSession()
				var oce *gossh.OpenChannelError
				if errors.As(err, &oce) && oce.Reason == gossh.ResourceShortage {
					refused.Add(1)
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				out, err := s.Output(fmt.Sprintf("ssh-key generate-api-key --json --label m%d", i))
				s.Close()
				if err != nil || !bytes.Contains(out, []byte(`"token"`)) {
					b.Errorf("generate-api-key: %q, %v", out, err)
					return
				}
				i = next.Add(1)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
	b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
}

func (e *testEnv) startServerB(b *testing.B) *testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	host := testkit.SeededSigner(b, 250)
	srv := NewServer(ServerConfig{Suite: e.suite, Store: e.Store, HostKey: host, Now: e.Now})
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &testServer{e: e, srv: srv, addr: ln.Addr().String(), hostKey: host.PublicKey()}
}

// TestREPLKeyRemoved: a REPL whose key is removed (here by itself) stops
// at the next command.
func TestREPLKeyRemoved(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	second := e.AddKey(alice, "second", 3, nil)
	ts := e.startServer(t, nil)
	s, err := ts.dial(t, second.Signer).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.RequestPty("xterm", 40, 120, gossh.TerminalModes{})
	stdin, _ := s.StdinPipe()
	var out testkit.SyncBuffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(stdin, "ssh-key remove second\r")
	testkit.WaitFor(t, "the removal", func() bool { return strings.Contains(out.String(), "Removed key second") })
	fmt.Fprint(stdin, "whoami\r")
	var exit *gossh.ExitError
	if err := s.Wait(); !errors.As(err, &exit) || exit.ExitStatus() != 1 {
		t.Fatalf("REPL after its key went: %v", err)
	}
	if !strings.Contains(out.String(), "your key is no longer registered") {
		t.Errorf("output: %q", out.String())
	}
}

// TestLoginExpiryBoundary: a login key whose --exp is exactly now cannot
// log in (expired from ExpiresAt on, as the Verifier and the command gate
// have it); a second before, it can.
func TestLoginExpiryBoundary(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	exp := e.Now().Add(time.Hour).Truncate(time.Second)
	ci := e.AddKey(alice, "ci", 41, func(k *store.Key) { k.ExpiresAt = exp })
	e.clock.Set(exp.Add(-time.Second))
	ts.dial(t, ci.Signer).Close()
	e.clock.Set(exp)
	if c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(ci.Signer))); err == nil {
		c.Close()
		t.Error("a key logged in at the instant it expires")
	}
}

// TestWindowChangeLeaksSessionGoroutine: a window-change on a command
// session with a pty blocked gliderlabs' request loop for good (a channel
// of one slot that only the REPL reads), so every such session left its
// goroutines behind after the client had gone. After many such sessions
// the goroutine count comes back to where it was.
func TestWindowChangeLeaksSessionGoroutine(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	// Warm up: the server's and the client library's own goroutines.
	warm := ts.dial(t, alice.Signer)
	execSSH(t, warm, "whoami", "")
	warm.Close()
	testkit.WaitFor(t, "the warm-up connection to go", func() bool { return ts.srv.openConns() == 0 })
	base := runtime.NumGoroutine()

	const sessions = 60
	for i := range sessions {
		c, err := gossh.Dial("tcp", ts.addr, ts.config(gossh.PublicKeys(alice.Signer)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RequestPty("xterm", 40, 120, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		s.Stdout = &out
		if err := s.Start("whoami"); err != nil {
			t.Fatal(err)
		}
		for w := range 3 {
			s.WindowChange(50+w, 100)
		}
		if err := s.Wait(); err != nil || !strings.Contains(out.String(), "alice@example.com") {
			t.Fatalf("session %d: %q, %v", i, out.String(), err)
		}
		c.Close()
	}
	testkit.WaitFor(t, fmt.Sprintf("the goroutines of %d pty sessions with window changes to end (%d before)", sessions, base), func() bool {
		return runtime.NumGoroutine() <= base+5
	})
}

// TestUnsupportedSessionRequestsRefused: env requests accumulated without
// bound, and agent forwarding (and X11) were answered "success"; each is
// now refused, and the session still runs its command.
func TestUnsupportedSessionRequestsRefused(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	c := ts.dial(t, alice.Signer)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 100 {
		if err := s.Setenv(fmt.Sprintf("V%d", i), strings.Repeat("x", 1000)); err == nil {
			t.Fatalf("env request %d accepted", i)
		}
	}
	if err := agent.RequestAgentForwarding(s); err == nil {
		t.Error("agent forwarding accepted")
	}
	if ok, err := s.SendRequest("x11-req", true, gossh.Marshal(struct {
		Single        bool
		Proto, Cookie string
		Screen        uint32
	}{false, "MIT-MAGIC-COOKIE-1", "00", 0})); ok || err != nil {
		t.Errorf("x11-req: %v, %v; want refused", ok, err)
	}
	out, err := s.Output("whoami")
	if err != nil || !strings.Contains(string(out), "alice@example.com") {
		t.Errorf("whoami after refused requests: %q, %v", out, err)
	}
	// Port forwarding: refused too (no handler for it).
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote port forwarding accepted")
	}
	if _, err := c.Dial("tcp", ts.addr); err == nil {
		t.Error("local port forwarding accepted")
	}
}

// TestHandshakeTimeoutTrickledVersion: a client that keeps sending, a byte
// at a time, and never finishes its version line (a pre-KEX stall that
// resets every read deadline) is still cut at the handshake timeout.
func TestHandshakeTimeoutTrickledVersion(t *testing.T) {
	e := newTestEnv(t)
	const timeout = time.Second
	ts := e.startServer(t, func(c *ServerConfig) { c.HandshakeTimeout = timeout; c.IdleTimeout = time.Hour })
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(closed)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			if d := time.Since(start); d < timeout || d > 10*timeout {
				t.Errorf("closed after %v, want about %v", d, timeout)
			}
			return
		case <-tick.C:
			conn.Write([]byte{"SSH-2.0-"[i%8]})
		case <-time.After(10 * time.Second):
			t.Fatal("a trickling client outlived the handshake timeout")
		}
	}
}

// TestEventsSayVia: a change made over SSH is audited as coming in over
// ssh, from the client's address, with the key that completed
// authentication.
func TestEventsSayVia(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	other := e.AddKey(alice, "other", 2, nil)
	e.AddVM("web", alice, false)
	ts := e.startServer(t, nil)
	c := ts.dial(t, other.Signer)
	if _, errOut, code := execSSH(t, c, "share add web bob@example.com", ""); code != 0 {
		t.Fatalf("share add: %d %s", code, errOut)
	}
	evs, err := e.Store.QueryEvents(context.Background(), store.EventQuery{ActorID: alice.User.ID, NewestFirst: true, Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events: %v, %v", evs, err)
	}
	ev := evs[0]
	if ev.Action != "share.add" || ev.Via != store.ViaSSH || ev.Credential != other.Key.Fingerprint ||
		ev.RemoteAddr != c.LocalAddr().String() {
		t.Errorf("event = %+v; want share.add via ssh with key %s from %s", ev, other.Key.Fingerprint, c.LocalAddr())
	}
}
