package sshcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// testNow is where the tests' clock starts: outputs that show times are
// compared with golden files.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testEnv is a real registry (SQLite in a temp dir), a real Verifier and a
// Suite over them, all on one adjustable clock.
type testEnv struct {
	t        testing.TB
	ctx      context.Context
	store    store.Store
	verifier *tokens.Verifier
	suite    *Suite
	clock    atomic.Pointer[time.Time]
	logs     *syncBuffer // everything the suite and server log
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &testEnv{t: t, ctx: ctx, store: st, logs: &syncBuffer{}}
	e.setNow(testNow)
	e.verifier = tokens.NewVerifier(tokens.Config{Registry: st, Now: e.now})
	// As exed serve wires it: a key changed through this store leaves the
	// Verifier's cache before the write returns.
	t.Cleanup(st.Subscribe(func(c store.Change) {
		if c.Kind == store.KeyChanged {
			e.verifier.Forget(c.ID)
		}
	}))
	e.suite = New(Env{
		Store:    st,
		Verifier: e.verifier,
		Domain:   "exe.dev",
		VMDomain: "exe.xyz",
		Now:      e.now,
		Log:      e.logger(),
	})
	return e
}

func (e *testEnv) now() time.Time     { return *e.clock.Load() }
func (e *testEnv) setNow(t time.Time) { e.clock.Store(&t) }

func (e *testEnv) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// seededSigner returns the same ed25519 key for the same seed byte, so
// that fingerprints in golden files are stable.
func seededSigner(t testing.TB, seed byte) gossh.Signer {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pubLine(s gossh.Signer) string { return keys.MarshalAuthorized(s.PublicKey()) }

// account is a user with one login key whose private half the test holds.
type account struct {
	user   store.User
	key    store.Key
	signer gossh.Signer
}

func (a account) caller() Caller {
	return Caller{User: a.user, Key: a.key, RemoteAddr: "192.0.2.1:5555"}
}

// addUser registers a user whose first key is seededSigner(seed).
func (e *testEnv) addUser(email string, seed byte) account {
	e.t.Helper()
	name, _, _ := strings.Cut(email, "@")
	u := store.User{ID: "usr" + (name + "0000000000000000")[:16], Email: email, CreatedAt: e.now()}
	signer := seededSigner(e.t, seed)
	k := store.Key{
		UserID:      u.ID,
		Name:        name + "-laptop",
		Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey:   pubLine(signer),
		AddedAt:     e.now(),
	}
	if err := e.store.AddUser(e.ctx, u, k, store.Event{Time: e.now(), ActorID: "admin", Action: "user.add", Subject: email}); err != nil {
		e.t.Fatal(err)
	}
	k, err := e.store.Key(e.ctx, k.Fingerprint)
	if err != nil {
		e.t.Fatal(err)
	}
	return account{user: u, key: k, signer: signer}
}

// addKey registers another login key on a's account, changed by edit.
func (e *testEnv) addKey(a account, name string, seed byte, edit func(*store.Key)) account {
	e.t.Helper()
	signer := seededSigner(e.t, seed)
	k := store.Key{
		UserID:      a.user.ID,
		Name:        name,
		Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey:   pubLine(signer),
		AddedAt:     e.now(),
	}
	if edit != nil {
		edit(&k)
	}
	if err := e.store.AddKey(e.ctx, k, store.Event{Time: e.now(), ActorID: a.user.ID, Action: "key.add", Subject: k.Fingerprint}); err != nil {
		e.t.Fatal(err)
	}
	k, err := e.store.Key(e.ctx, k.Fingerprint)
	if err != nil {
		e.t.Fatal(err)
	}
	return account{user: a.user, key: k, signer: signer}
}

func (e *testEnv) addVM(name string, owner account, public bool) store.VM {
	e.t.Helper()
	vm := store.VM{Name: name, OwnerID: owner.user.ID, Upstream: "http://127.0.0.1:1", Public: public, CreatedAt: e.now()}
	if err := e.store.AddVM(e.ctx, vm, store.Event{Time: e.now(), ActorID: "admin", Action: "vm.add", Subject: name}); err != nil {
		e.t.Fatal(err)
	}
	return vm
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
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
