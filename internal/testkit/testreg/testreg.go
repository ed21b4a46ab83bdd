// Package testreg gives a test a real registry, wired as exed serve wires
// it: a SQLite store (store/sqlstore) in a temporary directory and a
// tokens.Verifier over it that drops a key from its cache the moment the
// store announces the key changed; and helpers that add users, keys and
// VMs to it.
//
// It is apart from testkit because it imports the module's packages: the
// internal tests of tokens, store and store/sqlstore cannot import it (an
// import cycle), while every package's tests can import testkit. Like
// testkit, it is for *_test.go files only.
package testreg

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// DefaultUpstream is where AddVM points VMs unless Registry.Upstream says
// otherwise: a loopback port nothing listens on.
const DefaultUpstream = "http://127.0.0.1:1"

// Registry is a real registry for one test.
type Registry struct {
	Store    *sqlstore.Store
	Verifier *tokens.Verifier
	// Upstream is the upstream URL AddVM gives VMs ("" is
	// DefaultUpstream).
	Upstream string

	t    testing.TB
	now  func() time.Time
	path string // the SQLite file
}

// Open opens an empty registry in t.TempDir(), closed when t ends. now is
// the time the Verifier and the Add helpers use (nil is time.Now).
func Open(t testing.TB, now func() time.Time) *Registry {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	path := filepath.Join(t.TempDir(), "exed.db")
	st, err := sqlstore.Open(context.Background(), "sqlite:"+path, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &Registry{Store: st, t: t, now: now, path: path}
	r.Verifier = tokens.NewVerifier(tokens.Config{Registry: st, Now: now})
	// As exed serve wires it: a key changed through this store leaves the
	// Verifier's cache before the write returns.
	t.Cleanup(st.Subscribe(func(c store.Change) {
		if c.Kind == store.KeyChanged {
			r.Verifier.Forget(c.ID)
		}
	}))
	return r
}

// Now is the registry's time.
func (r *Registry) Now() time.Time { return r.now() }

// Account is a user with one key whose private half the test holds.
type Account struct {
	User   store.User
	Key    store.Key // as the store returns it
	Signer ssh.Signer
}

// AddUser registers a user whose first login key is
// testkit.SeededSigner(seed), named after the email's local part
// ("alice-laptop"). The user id is made from the local part too
// ("usralice00000000000"), so that it stays the same from run to run.
func (r *Registry) AddUser(email string, seed byte) Account {
	r.t.Helper()
	name, _, _ := strings.Cut(email, "@")
	u := store.User{ID: "usr" + (name + "0000000000000000")[:16], Email: email, CreatedAt: r.now()}
	signer := testkit.SeededSigner(r.t, seed)
	k := store.Key{
		UserID:      u.ID,
		Name:        name + "-laptop",
		Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey:   keys.MarshalAuthorized(signer.PublicKey()),
		AddedAt:     r.now(),
	}
	ev := store.Event{Time: r.now(), ActorID: "admin", Via: store.ViaAdmin, Action: "user.add", Subject: email}
	if err := r.Store.AddUser(context.Background(), u, k, ev); err != nil {
		r.t.Fatal(err)
	}
	return Account{User: u, Key: r.key(k.Fingerprint), Signer: signer}
}

// AddKey registers testkit.SeededSigner(seed) as another login key of
// owner's, named name, after edit (when not nil) has changed it, and
// returns owner with that key.
func (r *Registry) AddKey(owner Account, name string, seed byte, edit func(*store.Key)) Account {
	r.t.Helper()
	signer := testkit.SeededSigner(r.t, seed)
	return Account{User: owner.User, Key: r.AddPublicKey(owner, name, signer.PublicKey(), edit), Signer: signer}
}

// AddPublicKey registers pub as a login key of owner's, named name, after
// edit (when not nil), and returns it as stored.
func (r *Registry) AddPublicKey(owner Account, name string, pub ssh.PublicKey, edit func(*store.Key)) store.Key {
	r.t.Helper()
	k := store.Key{
		UserID:      owner.User.ID,
		Name:        name,
		Fingerprint: keys.Fingerprint(pub),
		PublicKey:   keys.MarshalAuthorized(pub),
		AddedAt:     r.now(),
	}
	if edit != nil {
		edit(&k)
	}
	ev := store.Event{Time: r.now(), ActorID: owner.User.ID, Action: "key.add", Subject: k.Fingerprint}
	if err := r.Store.AddKey(context.Background(), k, ev); err != nil {
		r.t.Fatal(err)
	}
	return r.key(k.Fingerprint)
}

// AddVM registers a VM named name, owned by owner, pointing at r.Upstream.
func (r *Registry) AddVM(name string, owner Account, public bool) store.VM {
	r.t.Helper()
	upstream := r.Upstream
	if upstream == "" {
		upstream = DefaultUpstream
	}
	vm := store.VM{Name: name, OwnerID: owner.User.ID, Upstream: upstream, Public: public, CreatedAt: r.now()}
	ev := store.Event{Time: r.now(), ActorID: "admin", Via: store.ViaAdmin, Action: "vm.add", Subject: name}
	if err := r.Store.AddVM(context.Background(), vm, ev); err != nil {
		r.t.Fatal(err)
	}
	return vm
}

func (r *Registry) key(fp string) store.Key {
	r.t.Helper()
	k, err := r.Store.Key(context.Background(), fp)
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

// Share shares vm with email, as its owner would.
func (r *Registry) Share(vm string, owner Account, email string) store.Share {
	r.t.Helper()
	ev := store.Event{Time: r.now(), ActorID: owner.User.ID, Action: "share.add", Subject: vm + " " + email}
	sh, err := r.Store.AddShare(context.Background(), vm, email, r.now(), ev)
	if err != nil {
		r.t.Fatal(err)
	}
	return sh
}

// Dump is everything the registry's database holds, one sorted line per
// row (testkit.DumpText): compare two to show that a refused command
// stored nothing.
func (r *Registry) Dump() string {
	r.t.Helper()
	db, err := sql.Open("sqlite", r.path) // the driver sqlstore registers
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	return testkit.DumpText(testkit.DumpDB(r.t, db, true))
}
