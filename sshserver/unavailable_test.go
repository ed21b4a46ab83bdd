package sshserver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
)

// failingRegistry is the real registry until down is set; then every
// lookup fails as a registry that cannot be reached does.
type failingRegistry struct {
	Registry
	down atomic.Bool
}

var errRegistryDown = errors.New("dial tcp 10.0.0.1:5432: connect: connection refused")

func (f *failingRegistry) Key(ctx context.Context, fp string) (store.Key, error) {
	if f.down.Load() {
		return store.Key{}, errRegistryDown
	}
	return f.Registry.Key(ctx, fp)
}

func (f *failingRegistry) KeyAndUser(ctx context.Context, fp string) (store.Key, store.User, error) {
	if f.down.Load() {
		return store.Key{}, store.User{}, errRegistryDown
	}
	return f.Registry.KeyAndUser(ctx, fp)
}

// stockClient is a key made by ssh-keygen, registered for alice, and a
// known_hosts file pinning ts's host key: what the stock ssh client needs.
func stockClient(t *testing.T, e *testEnv, ts *testServer) (keyFile, knownHosts string) {
	t.Helper()
	testkit.RequireTools(t, "ssh", "ssh-keygen")
	dir := t.TempDir()
	keyFile = testkit.SSHKeygen(t, dir, "ed25519", 0)
	pubLine, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := keys.ParsePublicKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	alice := e.AddUser("alice@example.com", 1)
	e.AddPublicKey(alice, "stock", pub, nil)
	knownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, ts.hostKey) + "\n"
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, knownHosts
}

// TestRegistryOutageSaysUnavailable: when the registry cannot be reached
// at login, stock ssh prints that the service is unavailable and exits
// 255, instead of "Permission denied (publickey)", which would send the
// user to check a key that is fine. The error's own text (which may name
// hosts) stays in the server log.
func TestRegistryOutageSaysUnavailable(t *testing.T) {
	e := newTestEnv(t)
	reg := &failingRegistry{Registry: e.Store}
	ts := e.startServer(t, func(c *ServerConfig) { c.Store = reg })
	keyFile, knownHosts := stockClient(t, e, ts)
	run := func() (string, int) {
		t.Helper()
		cmd := testkit.SSHCommand(keyFile, knownHosts, ts.addr, []string{"-T"}, "whoami")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return stderr.String(), code
	}
	if out, code := run(); code != 0 {
		t.Fatalf("with the registry up: exit %d: %s", code, out)
	}

	reg.down.Store(true)
	out, code := run()
	if code != 255 || !strings.Contains(out, "exed: service unavailable: the registry cannot be reached; try again later") {
		t.Errorf("registry down: exit %d, stderr %q; want 255 and the service-unavailable banner", code, out)
	}
	t.Logf("ssh, registry down: %q", out)
	if strings.Contains(out, "Permission denied") || strings.Contains(out, "10.0.0.1") {
		t.Errorf("registry down: the client was told %q", out)
	}
	if !strings.Contains(e.logs.String(), "connection refused") {
		t.Errorf("the cause is not in the server log:\n%s", e.logs.String())
	}

	// Back up: the same client logs in again.
	reg.down.Store(false)
	if out, code := run(); code != 0 {
		t.Fatalf("with the registry back: exit %d: %s", code, out)
	}
}

// TestRegistryOutageAfterLogin: the registry failing between login and
// the session's own lookup is reported the same way, in one line.
func TestRegistryOutageAfterLogin(t *testing.T) {
	e := newTestEnv(t)
	reg := &failingRegistry{Registry: e.Store}
	ts := e.startServer(t, func(c *ServerConfig) { c.Store = reg })
	alice := e.AddUser("alice@example.com", 1)
	c := ts.dial(t, alice.Signer)
	reg.down.Store(true)
	_, stderr, code := execSSH(t, c, "whoami", "")
	if code != 1 || stderr != "service unavailable: the registry cannot be reached; try again later\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
