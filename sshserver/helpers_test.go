package sshserver

// Test helpers. Until they move to internal/testkit, testEnv, syncBuffer,
// seededSigner, pubLine, account, addUser, addKey, addVM, waitFor and
// jsonKeys are copies of sshcmd's (sshcmd/helpers_test.go, suite_test.go).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// testNow is where the tests' clock starts.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testEnv is a real registry (SQLite in a temp dir), a real Verifier and a
// Suite over them, all on one adjustable clock.
type testEnv struct {
	t        testing.TB
	ctx      context.Context
	store    store.Store
	verifier *tokens.Verifier
	suite    *sshcmd.Suite
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
	e.suite = sshcmd.New(sshcmd.Env{
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

// seededSigner returns the same ed25519 key for the same seed byte.
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

// jsonKeys decodes one JSON object and returns its field names, sorted.
func jsonKeys(t *testing.T, out string) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %q: %v", out, err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value: %q", out)
	}
	return m, slices.Sorted(maps.Keys(m))
}
