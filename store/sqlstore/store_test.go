package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// TestStore is the conformance suite: every behaviour, against every
// backend.
func TestStore(t *testing.T) {
	behaviours := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"AddUserAtomic", testAddUserAtomic},
		{"Keys", testKeys},
		{"KeyAndUser", testKeyAndUser},
		{"RemoveOnlyOwnKeys", testRemoveOnlyOwnKeys},
		{"LastLoginKey", testLastLoginKey},
		{"RemoveCascadesExe1", testRemoveCascadesExe1},
		{"RenameKey", testRenameKey},
		{"AddTokenKeyAtomic", testAddTokenKeyAtomic},
		{"Exe1", testExe1},
		{"VMs", testVMs},
		{"Shares", testShares},
		{"PendingShares", testPendingShares},
		{"SetVMPublic", testSetVMPublic},
		{"ShareLinks", testShareLinks},
		{"AssertionKeys", testAssertionKeys},
		{"Events", testEvents},
		{"TouchKeys", testTouchKeys},
		{"Restrictions", testRestrictions},
		{"TimesUTC", testTimesUTC},
		{"RemovedTokenKeyReAdded", testRemovedTokenKeyReAdded},
		{"CertBlobs", testCertBlobs},
		{"CertLocks", testCertLocks},
		{"CertLockRace", testCertLockRace},
	}
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, bh := range behaviours {
				t.Run(bh.name, func(t *testing.T) {
					t.Parallel()
					bh.test(t, openFresh(t, b))
				})
			}
		})
	}
}

// t0 is a whole second, so it survives the store's second precision.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func randomFingerprint() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(b)
}

func newKey(userID, name string) store.Key {
	return store.Key{
		UserID:      userID,
		Name:        name,
		Fingerprint: randomFingerprint(),
		PublicKey:   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name,
		AddedAt:     t0,
	}
}

func ev(actor, action, subject string) store.Event {
	return store.Event{Time: t0, ActorID: actor, Action: action, Subject: subject, RemoteAddr: "192.0.2.1:5555"}
}

// addUser creates a user with one login key and returns both.
func addUser(t *testing.T, s store.Store, email string) (store.User, store.Key) {
	t.Helper()
	u := store.User{ID: store.NewUserID(), Email: email, CreatedAt: t0}
	k := newKey(u.ID, "login")
	if err := s.AddUser(context.Background(), u, k, ev("admin", "user.add", email)); err != nil {
		t.Fatalf("AddUser(%s): %v", email, err)
	}
	return u, k
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func eventCount(t *testing.T, s store.Store) int {
	t.Helper()
	es, err := s.Events(context.Background(), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "Ada@Example.com")
	bob, bobKey := addUser(t, s, "bob@example.com")
	if err := s.AddKey(ctx, newKey(bob.ID, "laptop"), ev(bob.ID, "key.add", "x")); err != nil {
		t.Fatal(err)
	}

	got, err := s.UserByID(ctx, ada.ID)
	if err != nil || got != ada {
		t.Fatalf("UserByID = %+v, %v; want %+v", got, err, ada)
	}
	for _, email := range []string{"Ada@Example.com", "ada@example.com", "ADA@EXAMPLE.COM"} {
		got, err := s.UserByEmail(ctx, email)
		if err != nil || got != ada {
			t.Fatalf("UserByEmail(%s) = %+v, %v; want %+v", email, got, err, ada)
		}
	}
	_, err = s.UserByEmail(ctx, "carol@example.com")
	wantErr(t, "UserByEmail(unknown)", err, store.ErrNotFound)
	_, err = s.UserByID(ctx, "usrnope")
	wantErr(t, "UserByID(unknown)", err, store.ErrNotFound)

	// The same email in another case is the same email.
	dup := store.User{ID: store.NewUserID(), Email: "ada@EXAMPLE.com", CreatedAt: t0}
	err = s.AddUser(ctx, dup, newKey(dup.ID, "k"), ev("admin", "user.add", dup.Email))
	wantErr(t, "AddUser(same email, other case)", err, store.ErrExists)
	if !strings.Contains(err.Error(), "email") {
		t.Errorf("error %q does not say the email is taken", err)
	}
	// The same id is refused too, whatever the email.
	again := store.User{ID: ada.ID, Email: "other@example.com", CreatedAt: t0}
	err = s.AddUser(ctx, again, newKey(ada.ID, "k"), ev("admin", "user.add", again.Email))
	wantErr(t, "AddUser(same id)", err, store.ErrExists)
	// The first key must be the user's own login key.
	err = s.AddUser(ctx, store.User{ID: store.NewUserID(), Email: "x@example.com"}, newKey(bob.ID, "k"), store.Event{})
	if err == nil {
		t.Fatal("AddUser with another user's key: no error")
	}

	us, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UserSummary{{User: ada, Keys: 1}, {User: bob, Keys: 2}}
	if us[0].ID != ada.ID { // same created_at: order by id
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(us, want) {
		t.Fatalf("Users = %+v, want %+v", us, want)
	}
	if k, err := s.Key(ctx, bobKey.Fingerprint); err != nil || k.UserID != bob.ID || k.Generated {
		t.Fatalf("first key = %+v, %v", k, err)
	}
}

func testAddUserAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, adaKey := addUser(t, s, "ada@example.com")
	before := eventCount(t, s)

	// The first key is already Ada's: neither the user nor its event may stay.
	u := store.User{ID: store.NewUserID(), Email: "bob@example.com", CreatedAt: t0}
	k := adaKey
	k.UserID, k.Name = u.ID, "stolen"
	err := s.AddUser(ctx, u, k, ev("admin", "user.add", u.Email))
	wantErr(t, "AddUser(taken key)", err, store.ErrExists)
	_, err = s.UserByID(ctx, u.ID)
	wantErr(t, "user after failed AddUser", err, store.ErrNotFound)
	if n := eventCount(t, s); n != before {
		t.Fatalf("events after failed AddUser: %d, want %d", n, before)
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, adaLogin := addUser(t, s, "ada@example.com")
	bob, _ := addUser(t, s, "bob@example.com")

	laptop := newKey(ada.ID, "laptop")
	laptop.AddedAt = t0.Add(time.Hour)
	if err := s.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Key(ctx, laptop.Fingerprint)
	if err != nil || !reflect.DeepEqual(got, laptop) {
		t.Fatalf("Key = %+v, %v; want %+v", got, err, laptop)
	}
	_, err = s.Key(ctx, randomFingerprint())
	wantErr(t, "Key(unknown)", err, store.ErrNotFound)

	// A fingerprint belongs to one user only.
	stolen := laptop
	stolen.UserID, stolen.Name = bob.ID, "stolen"
	err = s.AddKey(ctx, stolen, ev(bob.ID, "key.add", stolen.Fingerprint))
	wantErr(t, "AddKey(fingerprint of another user)", err, store.ErrExists)
	if !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("error %q does not say the fingerprint is taken", err)
	}
	// So does the same fingerprint for the same user under another name.
	twice := laptop
	twice.Name = "laptop2"
	err = s.AddKey(ctx, twice, ev(ada.ID, "key.add", twice.Fingerprint))
	wantErr(t, "AddKey(same key twice)", err, store.ErrExists)

	// Names are unique per user...
	err = s.AddKey(ctx, newKey(ada.ID, "laptop"), ev(ada.ID, "key.add", "x"))
	wantErr(t, "AddKey(taken name)", err, store.ErrExists)
	if !strings.Contains(err.Error(), "key name") {
		t.Errorf("error %q does not say the name is taken", err)
	}
	// ...not across users.
	bobLaptop := newKey(bob.ID, "laptop")
	if err := s.AddKey(ctx, bobLaptop, ev(bob.ID, "key.add", "x")); err != nil {
		t.Fatalf("AddKey(same name, other user): %v", err)
	}

	err = s.AddKey(ctx, newKey("usrnobody", "k"), ev("usrnobody", "key.add", "x"))
	wantErr(t, "AddKey(unknown user)", err, store.ErrNotFound)

	// Oldest first.
	ks, err := s.Keys(ctx, ada.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Key{adaLogin, laptop}; !reflect.DeepEqual(ks, want) {
		t.Fatalf("Keys = %+v, want %+v", ks, want)
	}
	if ks, err := s.Keys(ctx, "usrnobody"); err != nil || len(ks) != 0 {
		t.Fatalf("Keys(unknown) = %v, %v", ks, err)
	}
}

func testKeyAndUser(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, adaLogin := addUser(t, s, "ada@example.com")
	bob, _ := addUser(t, s, "bob@example.com")
	bobKey := newKey(bob.ID, "ci")
	bobKey.Generated, bobKey.VM, bobKey.Cmds = true, "web", []string{"ls"}
	if err := s.AddKey(ctx, bobKey, ev(bob.ID, "key.add", bobKey.Fingerprint)); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		k store.Key
		u store.User
	}{{adaLogin, ada}, {bobKey, bob}} {
		k, u, err := s.KeyAndUser(ctx, c.k.Fingerprint)
		if err != nil || !reflect.DeepEqual(k, c.k) || u != c.u {
			t.Fatalf("KeyAndUser(%s) = %+v, %+v, %v; want %+v, %+v", c.k.Name, k, u, err, c.k, c.u)
		}
	}

	k, u, err := s.KeyAndUser(ctx, randomFingerprint())
	wantErr(t, "KeyAndUser(unknown)", err, store.ErrNotFound)
	if k.Fingerprint != "" || u != (store.User{}) {
		t.Fatalf("KeyAndUser(unknown) = %+v, %+v: want zero values", k, u)
	}

	// A request already canceled does not query (SQLite's point reads run
	// detached from cancellation only once started).
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = s.KeyAndUser(cctx, adaLogin.Fingerprint)
	wantErr(t, "KeyAndUser(canceled)", err, context.Canceled)

	// A removed key is gone at once: the prepared statement sees the commit.
	if err := s.RemoveKey(ctx, bob.ID, bobKey.Fingerprint, ev(bob.ID, "key.remove", bobKey.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.KeyAndUser(ctx, bobKey.Fingerprint)
	wantErr(t, "KeyAndUser(removed)", err, store.ErrNotFound)
}

// TestKeyAndUserMissingUser: a key whose user row is gone (only possible
// behind the schema's back) comes back with an error wrapping ErrNotFound
// and the key itself, which is how the Verifier tells "no such user" from
// "no such key".
func TestKeyAndUserMissingUser(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn, dir := b.fresh(t)
			s, err := Open(ctx, dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ada, k := addUser(t, s, "ada@example.com")

			db := rawDB(t, dsn, dir)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if dsn == "" {
				// SQLite checks foreign keys only when told to: rawDB does not.
				_, err = tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, ada.ID)
			} else {
				// Replica mode skips PostgreSQL's foreign-key triggers.
				if _, err = tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err == nil {
					_, err = tx.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, ada.ID)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}

			gotK, gotU, err := s.KeyAndUser(ctx, k.Fingerprint)
			wantErr(t, "KeyAndUser(key of a missing user)", err, store.ErrNotFound)
			if !reflect.DeepEqual(gotK, k) || gotU != (store.User{}) {
				t.Fatalf("KeyAndUser = %+v, %+v; want the key and a zero user", gotK, gotU)
			}
		})
	}
}

func testRemoveOnlyOwnKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	bob, _ := addUser(t, s, "bob@example.com")
	laptop := newKey(ada.ID, "laptop")
	if err := s.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	before := eventCount(t, s)

	// Bob names Ada's key: as if it did not exist, and nothing changes.
	err := s.RemoveKey(ctx, bob.ID, laptop.Fingerprint, ev(bob.ID, "key.remove", laptop.Fingerprint))
	wantErr(t, "RemoveKey(another user's key)", err, store.ErrNotFound)
	if _, err := s.Key(ctx, laptop.Fingerprint); err != nil {
		t.Fatalf("Ada's key after Bob's removal: %v", err)
	}
	err = s.RemoveKey(ctx, ada.ID, randomFingerprint(), ev(ada.ID, "key.remove", "x"))
	wantErr(t, "RemoveKey(unknown key)", err, store.ErrNotFound)
	err = s.RemoveKey(ctx, "usrnobody", laptop.Fingerprint, ev("usrnobody", "key.remove", "x"))
	wantErr(t, "RemoveKey(unknown user)", err, store.ErrNotFound)
	if n := eventCount(t, s); n != before {
		t.Fatalf("events after refused removals: %d, want %d", n, before)
	}

	if err := s.RemoveKey(ctx, ada.ID, laptop.Fingerprint, ev(ada.ID, "key.remove", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Key(ctx, laptop.Fingerprint)
	wantErr(t, "Key after removal", err, store.ErrNotFound)
	err = s.RemoveKey(ctx, ada.ID, laptop.Fingerprint, ev(ada.ID, "key.remove", laptop.Fingerprint))
	wantErr(t, "RemoveKey twice", err, store.ErrNotFound)
}

func testLastLoginKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, login := addUser(t, s, "ada@example.com")
	gen := newKey(ada.ID, "api-key")
	gen.Generated = true
	if err := s.AddTokenKey(ctx, gen, nil, ev(ada.ID, "token.generate", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}

	// A generated key does not count as a way to log in.
	err := s.RemoveKey(ctx, ada.ID, login.Fingerprint, ev(ada.ID, "key.remove", login.Fingerprint))
	wantErr(t, "RemoveKey(last login key)", err, store.ErrLastKey)
	if _, err := s.Key(ctx, login.Fingerprint); err != nil {
		t.Fatalf("login key after refused removal: %v", err)
	}

	second := newKey(ada.ID, "second")
	if err := s.AddKey(ctx, second, ev(ada.ID, "key.add", second.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKey(ctx, ada.ID, login.Fingerprint, ev(ada.ID, "key.remove", login.Fingerprint)); err != nil {
		t.Fatalf("RemoveKey(one of two login keys): %v", err)
	}
	err = s.RemoveKey(ctx, ada.ID, second.Fingerprint, ev(ada.ID, "key.remove", second.Fingerprint))
	wantErr(t, "RemoveKey(now the last login key)", err, store.ErrLastKey)
	// Generated keys can always go.
	if err := s.RemoveKey(ctx, ada.ID, gen.Fingerprint, ev(ada.ID, "key.remove", gen.Fingerprint)); err != nil {
		t.Fatalf("RemoveKey(generated): %v", err)
	}
}

func testRemoveCascadesExe1(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	gen := newKey(ada.ID, "api-key")
	gen.Generated = true
	h1 := store.Exe1{ID: []byte("id-1"), Fingerprint: gen.Fingerprint, Sealed: []byte("sealed-1"), CreatedAt: t0}
	h2 := store.Exe1{ID: []byte("id-2"), Fingerprint: gen.Fingerprint, Sealed: []byte("sealed-2"), CreatedAt: t0}
	if err := s.AddTokenKey(ctx, gen, &h1, ev(ada.ID, "token.generate", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddExe1(ctx, h2, ev(ada.ID, "exe1.create", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exe1(ctx, h2.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKey(ctx, ada.ID, gen.Fingerprint, ev(ada.ID, "key.remove", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []store.Exe1{h1, h2} {
		_, err := s.Exe1(ctx, h.ID)
		wantErr(t, "Exe1 after its key was removed", err, store.ErrNotFound)
	}
}

func testRenameKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, login := addUser(t, s, "ada@example.com")
	bob, bobLogin := addUser(t, s, "bob@example.com")
	laptop := newKey(ada.ID, "laptop")
	if err := s.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}

	if err := s.RenameKey(ctx, ada.ID, laptop.Fingerprint, "desktop", ev(ada.ID, "key.rename", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if k, err := s.Key(ctx, laptop.Fingerprint); err != nil || k.Name != "desktop" {
		t.Fatalf("after rename: %+v, %v", k, err)
	}
	err := s.RenameKey(ctx, ada.ID, laptop.Fingerprint, login.Name, ev(ada.ID, "key.rename", laptop.Fingerprint))
	wantErr(t, "RenameKey(to a taken name)", err, store.ErrExists)
	if k, _ := s.Key(ctx, laptop.Fingerprint); k.Name != "desktop" {
		t.Fatalf("name after refused rename: %q", k.Name)
	}
	// Bob cannot rename Ada's key; Bob's name "login" is his own business.
	err = s.RenameKey(ctx, bob.ID, laptop.Fingerprint, "mine", ev(bob.ID, "key.rename", laptop.Fingerprint))
	wantErr(t, "RenameKey(another user's key)", err, store.ErrNotFound)
	if err := s.RenameKey(ctx, bob.ID, bobLogin.Fingerprint, "desktop", ev(bob.ID, "key.rename", "x")); err != nil {
		t.Fatalf("RenameKey(name another user uses): %v", err)
	}
	err = s.RenameKey(ctx, ada.ID, randomFingerprint(), "x", ev(ada.ID, "key.rename", "x"))
	wantErr(t, "RenameKey(unknown key)", err, store.ErrNotFound)
}

func testAddTokenKeyAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	gen := newKey(ada.ID, "api-key")
	gen.Generated = true
	h := store.Exe1{ID: []byte("handle-hash"), Fingerprint: gen.Fingerprint, Sealed: []byte("sealed"), CreatedAt: t0}
	if err := s.AddTokenKey(ctx, gen, &h, ev(ada.ID, "token.generate", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Exe1(ctx, h.ID)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("Exe1 = %+v, %v; want %+v", got, err, h)
	}
	before := eventCount(t, s)

	// The exe1 insert fails (its id is taken): the key must not stay.
	gen2 := newKey(ada.ID, "api-key-2")
	gen2.Generated = true
	h2 := store.Exe1{ID: h.ID, Fingerprint: gen2.Fingerprint, Sealed: []byte("other"), CreatedAt: t0}
	err = s.AddTokenKey(ctx, gen2, &h2, ev(ada.ID, "token.generate", gen2.Fingerprint))
	wantErr(t, "AddTokenKey(taken exe1 id)", err, store.ErrExists)
	_, err = s.Key(ctx, gen2.Fingerprint)
	wantErr(t, "key after failed AddTokenKey", err, store.ErrNotFound)
	if n := eventCount(t, s); n != before {
		t.Fatalf("events after failed AddTokenKey: %d, want %d", n, before)
	}
	// The handle must be for the key being added.
	h3 := store.Exe1{ID: []byte("h3"), Fingerprint: randomFingerprint(), Sealed: []byte("x"), CreatedAt: t0}
	if err := s.AddTokenKey(ctx, gen2, &h3, store.Event{}); err == nil {
		t.Fatal("AddTokenKey with a handle for another key: no error")
	}
	_, err = s.Key(ctx, gen2.Fingerprint)
	wantErr(t, "key after mismatched AddTokenKey", err, store.ErrNotFound)
}

func testExe1(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, login := addUser(t, s, "ada@example.com")
	h := store.Exe1{ID: []byte{0, 1, 2, 0xff}, Fingerprint: login.Fingerprint, Sealed: []byte{0, 0xfe}, CreatedAt: t0}
	if err := s.AddExe1(ctx, h, ev(ada.ID, "exe1.create", login.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Exe1(ctx, h.ID)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("Exe1 = %+v, %v; want %+v", got, err, h)
	}
	_, err = s.Exe1(ctx, []byte{0, 1, 2})
	wantErr(t, "Exe1(unknown)", err, store.ErrNotFound)
	err = s.AddExe1(ctx, h, ev(ada.ID, "exe1.create", login.Fingerprint))
	wantErr(t, "AddExe1(same id)", err, store.ErrExists)
	orphan := store.Exe1{ID: []byte("o"), Fingerprint: randomFingerprint(), Sealed: []byte("x"), CreatedAt: t0}
	err = s.AddExe1(ctx, orphan, ev(ada.ID, "exe1.create", orphan.Fingerprint))
	wantErr(t, "AddExe1(unknown key)", err, store.ErrNotFound)
}

func testAssertionKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	if ks, err := s.AssertionKeys(ctx); err != nil || len(ks) != 0 {
		t.Fatalf("AssertionKeys on an empty store = %v, %v", ks, err)
	}
	key := func(gen int64) store.AssertionKey {
		return store.AssertionKey{
			ID: fmt.Sprintf("kid-%d", gen), Generation: gen,
			PublicKey: []byte{4, byte(gen), 0xff}, Sealed: []byte{0, byte(gen), 0xfe},
			CreatedAt: t0.Add(time.Duration(gen) * time.Hour), SignFrom: t0.Add(time.Duration(gen) * 25 * time.Hour),
		}
	}
	// Added out of order, listed by generation.
	for _, g := range []int64{2, 1, 3} {
		if err := s.AddAssertionKey(ctx, key(g), ev("system", "assertion_key.add", key(g).ID)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.AssertionKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.AssertionKey{key(1), key(2), key(3)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("AssertionKeys = %+v\nwant %+v", got, want)
	}
	// A generation is had by one key only: the second instance to rotate loses.
	dup := key(4)
	dup.Generation = 2
	err = s.AddAssertionKey(ctx, dup, ev("system", "assertion_key.add", dup.ID))
	wantErr(t, "AddAssertionKey(taken generation)", err, store.ErrExists)
	if !strings.Contains(err.Error(), "generation") {
		t.Errorf("taken generation: %v, want it named", err)
	}
	dup = key(4)
	dup.ID = key(1).ID
	err = s.AddAssertionKey(ctx, dup, ev("system", "assertion_key.add", dup.ID))
	wantErr(t, "AddAssertionKey(same kid)", err, store.ErrExists)
	if got, _ := s.AssertionKeys(ctx); len(got) != 3 {
		t.Fatalf("%d keys after refused additions, want 3", len(got))
	}
	if n := eventCount(t, s); n != 3 {
		t.Fatalf("%d events, want 3 (one per key added)", n)
	}
}

func testVMs(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	bob, _ := addUser(t, s, "bob@example.com")
	web := store.VM{Name: "web", OwnerID: ada.ID, Upstream: "http://127.0.0.1:8000", Public: false, CreatedAt: t0}
	api := store.VM{Name: "api", OwnerID: ada.ID, Upstream: "https://api.internal", Public: true, CreatedAt: t0}
	blog := store.VM{Name: "blog", OwnerID: bob.ID, Upstream: "http://10.0.0.2", CreatedAt: t0}
	for _, vm := range []store.VM{web, api, blog} {
		if err := s.AddVM(ctx, vm, ev("admin", "vm.add", vm.Name)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.VM(ctx, "api"); err != nil || !reflect.DeepEqual(got, api) {
		t.Fatalf("VM(api) = %+v, %v; want %+v", got, err, api)
	}
	_, err := s.VM(ctx, "nope")
	wantErr(t, "VM(unknown)", err, store.ErrNotFound)

	dup := blog
	dup.OwnerID = ada.ID
	err = s.AddVM(ctx, dup, ev("admin", "vm.add", dup.Name))
	wantErr(t, "AddVM(taken name)", err, store.ErrExists)
	if !strings.Contains(err.Error(), "VM name") {
		t.Errorf("error %q does not say the VM name is taken", err)
	}
	err = s.AddVM(ctx, store.VM{Name: "x", OwnerID: "usrnobody", Upstream: "http://x", CreatedAt: t0}, ev("admin", "vm.add", "x"))
	wantErr(t, "AddVM(unknown owner)", err, store.ErrNotFound)

	all, err := s.VMs(ctx, "")
	if err != nil || !reflect.DeepEqual(all, []store.VM{api, blog, web}) {
		t.Fatalf("VMs(all) = %+v, %v", all, err)
	}
	mine, err := s.VMs(ctx, ada.ID)
	if err != nil || !reflect.DeepEqual(mine, []store.VM{api, web}) {
		t.Fatalf("VMs(ada) = %+v, %v", mine, err)
	}
	if none, err := s.VMs(ctx, "usrnobody"); err != nil || len(none) != 0 {
		t.Fatalf("VMs(unknown owner) = %+v, %v", none, err)
	}

	if err := s.RemoveVM(ctx, "web", ev("admin", "vm.remove", "web")); err != nil {
		t.Fatal(err)
	}
	_, err = s.VM(ctx, "web")
	wantErr(t, "VM after removal", err, store.ErrNotFound)
	err = s.RemoveVM(ctx, "web", ev("admin", "vm.remove", "web"))
	wantErr(t, "RemoveVM twice", err, store.ErrNotFound)
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, login := addUser(t, s, "ada@example.com")
	laptop := newKey(ada.ID, "laptop")
	gen := newKey(ada.ID, "api-key")
	gen.Generated = true
	h := store.Exe1{ID: []byte("h"), Fingerprint: gen.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	e := func(i int, actor, action, subject string) store.Event {
		ev := store.Event{Time: at(i), ActorID: actor, Action: action, Subject: subject, RemoteAddr: fmt.Sprintf("192.0.2.%d:22", i)}
		if actor == ada.ID {
			ev.Credential, ev.Via = login.Fingerprint, []string{store.ViaSSH, store.ViaExec}[i%2]
		} else {
			ev.Via = store.ViaAdmin
		}
		return ev
	}
	want := []store.Event{
		{ID: 1, Time: t0, ActorID: "admin", Action: "user.add", Subject: "ada@example.com", RemoteAddr: "192.0.2.1:5555"},
	}
	steps := []struct {
		e  store.Event
		do func(store.Event) error
	}{
		{e(1, ada.ID, "key.add", laptop.Fingerprint), func(e store.Event) error { return s.AddKey(ctx, laptop, e) }},
		{e(2, ada.ID, "key.rename", laptop.Fingerprint), func(e store.Event) error {
			return s.RenameKey(ctx, ada.ID, laptop.Fingerprint, "desktop", e)
		}},
		{e(3, ada.ID, "token.generate", gen.Fingerprint), func(e store.Event) error { return s.AddTokenKey(ctx, gen, nil, e) }},
		{e(4, ada.ID, "exe1.create", gen.Fingerprint), func(e store.Event) error { return s.AddExe1(ctx, h, e) }},
		{e(5, "admin", "vm.add", "web"), func(e store.Event) error {
			return s.AddVM(ctx, store.VM{Name: "web", OwnerID: ada.ID, Upstream: "http://x", CreatedAt: t0}, e)
		}},
		{store.Event{Time: at(6), ActorID: "admin", Action: "vm.remove", Subject: "web"}, func(e store.Event) error {
			return s.RemoveVM(ctx, "web", e)
		}},
		{e(7, ada.ID, "key.remove", login.Fingerprint), func(e store.Event) error {
			return s.RemoveKey(ctx, ada.ID, login.Fingerprint, e)
		}},
	}
	for i, st := range steps {
		if err := st.do(st.e); err != nil {
			t.Fatalf("%s: %v", st.e.Action, err)
		}
		st.e.ID = int64(i + 2)
		if st.e.ActorID == ada.ID {
			st.e.ActorEmail = "ada@example.com" // filled in by the reads
		}
		want = append(want, st.e)
	}
	// A refused change leaves no event.
	if err := s.RemoveKey(ctx, ada.ID, login.Fingerprint, e(9, ada.ID, "key.remove", "x")); err == nil {
		t.Fatal("second removal succeeded")
	}

	got, err := s.Events(ctx, 0, 100)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Events = %+v, %v\nwant %+v", got, err, want)
	}
	// Paging by id.
	page, err := s.Events(ctx, 2, 3)
	if err != nil || !reflect.DeepEqual(page, want[2:5]) {
		t.Fatalf("Events(2, 3) = %+v, %v; want %+v", page, err, want[2:5])
	}
	if rest, err := s.Events(ctx, int64(len(want)), 10); err != nil || len(rest) != 0 {
		t.Fatalf("Events after the last = %+v, %v", rest, err)
	}
	if _, err := s.Events(ctx, 0, 0); err == nil {
		t.Fatal("Events(limit 0): no error")
	}

	// QueryEvents: by actor, since a time, after an id, either order.
	pick := func(f func(store.Event) bool) []store.Event {
		var out []store.Event
		for _, e := range want {
			if f(e) {
				out = append(out, e)
			}
		}
		return out
	}
	reversed := func(es []store.Event) []store.Event {
		out := slices.Clone(es)
		slices.Reverse(out)
		return out
	}
	adas := pick(func(e store.Event) bool { return e.ActorID == ada.ID })
	for _, tt := range []struct {
		name string
		q    store.EventQuery
		want []store.Event
	}{
		{"all", store.EventQuery{}, want},
		{"newest first", store.EventQuery{NewestFirst: true}, reversed(want)},
		{"ada's", store.EventQuery{ActorID: ada.ID}, adas},
		{"ada's newest two", store.EventQuery{ActorID: ada.ID, NewestFirst: true, Limit: 2}, reversed(adas)[:2]},
		{"since", store.EventQuery{Since: at(5)}, pick(func(e store.Event) bool { return !e.Time.Before(at(5)) })},
		{"ada's since", store.EventQuery{ActorID: ada.ID, Since: at(3)}, adas[2:]},
		{"after an id", store.EventQuery{AfterID: 6}, want[6:]},
		{"nobody's", store.EventQuery{ActorID: "usrnobody"}, nil},
	} {
		got, err := s.QueryEvents(ctx, tt.q)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("QueryEvents(%s) = %+v, %v\nwant %+v", tt.name, got, err, tt.want)
		}
	}
	for _, limit := range []int{-1, store.MaxEventQuery + 1} {
		if _, err := s.QueryEvents(ctx, store.EventQuery{Limit: limit}); err == nil {
			t.Errorf("QueryEvents(limit %d): no error", limit)
		}
	}
}

func testTouchKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, login := addUser(t, s, "ada@example.com")
	laptop := newKey(ada.ID, "laptop")
	if err := s.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	before := eventCount(t, s)
	t1 := t0.Add(time.Minute)
	if err := s.TouchKeys(ctx, map[string]time.Time{
		login.Fingerprint:   t1,
		randomFingerprint(): t1, // unknown: ignored
	}); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.Key(ctx, login.Fingerprint); !k.LastUsedAt.Equal(t1) {
		t.Fatalf("LastUsedAt = %v, want %v", k.LastUsedAt, t1)
	}
	if k, _ := s.Key(ctx, laptop.Fingerprint); !k.LastUsedAt.IsZero() {
		t.Fatalf("untouched key LastUsedAt = %v, want zero", k.LastUsedAt)
	}
	// A late batch from another instance must not move it back.
	if err := s.TouchKeys(ctx, map[string]time.Time{login.Fingerprint: t0}); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.Key(ctx, login.Fingerprint); !k.LastUsedAt.Equal(t1) {
		t.Fatalf("LastUsedAt after an older touch = %v, want %v", k.LastUsedAt, t1)
	}
	if err := s.TouchKeys(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := eventCount(t, s); n != before {
		t.Fatalf("TouchKeys wrote %d events; it is not an audited change", n-before)
	}
}

func testRestrictions(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	cases := []store.Key{
		{Name: "none"},
		{Name: "vm", VM: "web"},
		{Name: "cmds-empty", Cmds: []string{}},
		{Name: "cmds", Cmds: []string{"ssh-key list", "whoami", `quote"d`}},
		{Name: "expires", ExpiresAt: t0.Add(30 * 24 * time.Hour)},
		{Name: "all", VM: "web", Cmds: []string{"ls"}, ExpiresAt: t0.Add(time.Hour), Generated: true},
	}
	for _, c := range cases {
		k := newKey(ada.ID, c.Name)
		k.VM, k.Cmds, k.ExpiresAt, k.Generated = c.VM, c.Cmds, c.ExpiresAt, c.Generated
		if err := s.AddKey(ctx, k, ev(ada.ID, "key.add", k.Fingerprint)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Key(ctx, k.Fingerprint)
		if err != nil || !reflect.DeepEqual(got, k) {
			t.Fatalf("%s: Key = %+v, %v; want %+v", c.Name, got, err, k)
		}
		// nil (no restriction) and empty (nothing allowed) mean opposite things.
		if (got.Cmds == nil) != (c.Cmds == nil) {
			t.Fatalf("%s: Cmds nil-ness lost: got %#v, want %#v", c.Name, got.Cmds, c.Cmds)
		}
		// The Verifier's lookup decodes the same columns through its join.
		gotK, gotU, err := s.KeyAndUser(ctx, k.Fingerprint)
		if err != nil || !reflect.DeepEqual(gotK, k) || gotU != ada {
			t.Fatalf("%s: KeyAndUser = %+v, %+v, %v; want %+v, %+v", c.Name, gotK, gotU, err, k, ada)
		}
	}
}

func testTimesUTC(t *testing.T, s store.Store) {
	ctx := context.Background()
	tz := time.FixedZone("UTC+5:30", 5*3600+1800)
	local := time.Date(2026, 7, 4, 9, 30, 15, 123456789, tz)
	want := local.Truncate(time.Second).UTC()

	u := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: local}
	k := newKey(u.ID, "login")
	k.AddedAt, k.ExpiresAt = local, local.Add(time.Hour)
	if err := s.AddUser(ctx, u, k, store.Event{Time: local, ActorID: "admin", Action: "user.add", Subject: u.Email}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchKeys(ctx, map[string]time.Time{k.Fingerprint: local}); err != nil {
		t.Fatal(err)
	}
	h := store.Exe1{ID: []byte("h"), Fingerprint: k.Fingerprint, Sealed: []byte("s"), CreatedAt: local}
	if err := s.AddExe1(ctx, h, store.Event{Time: local}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddVM(ctx, store.VM{Name: "web", OwnerID: u.ID, Upstream: "http://x", CreatedAt: local}, store.Event{Time: local}); err != nil {
		t.Fatal(err)
	}

	gu, _ := s.UserByID(ctx, u.ID)
	gk, _ := s.Key(ctx, k.Fingerprint)
	gh, _ := s.Exe1(ctx, h.ID)
	gv, _ := s.VM(ctx, "web")
	ge, _ := s.Events(ctx, 0, 1)
	if len(ge) != 1 {
		t.Fatalf("events: %v", ge)
	}
	for name, got := range map[string]time.Time{
		"user.CreatedAt": gu.CreatedAt,
		"key.AddedAt":    gk.AddedAt,
		"key.LastUsedAt": gk.LastUsedAt,
		"key.ExpiresAt":  gk.ExpiresAt.Add(-time.Hour),
		"exe1.CreatedAt": gh.CreatedAt,
		"vm.CreatedAt":   gv.CreatedAt,
		"event.Time":     ge[0].Time,
	} {
		if got != want || got.Location() != time.UTC {
			t.Errorf("%s = %v (%v), want %v in UTC", name, got, got.Location(), want)
		}
	}
}

// TestEventsAppendOnly: the database itself refuses to rewrite the audit
// log, whoever asks.
func TestEventsAppendOnly(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			dsn, dir := b.fresh(t)
			s, err := Open(context.Background(), dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			addUser(t, s, "ada@example.com")
			db := rawDB(t, dsn, dir)
			for _, q := range []string{
				`UPDATE events SET actor_id = 'someone-else'`,
				`UPDATE events SET via = 'web', credential = ''`, // the columns 0004_shares_audit added
				`DELETE FROM events`,
			} {
				if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Errorf("%s: %v, want refused as append-only", q, err)
				}
			}
			if b.name == "postgres" {
				if _, err := db.Exec(`TRUNCATE events`); err == nil {
					t.Error("TRUNCATE events: allowed")
				}
			}
			if n := eventCount(t, s); n != 1 {
				t.Fatalf("%d events left, want 1", n)
			}
		})
	}
}

// testRemovedTokenKeyReAdded: a removed generated (token) key can never be
// registered again (ssh-key add of its public key brought its revoked
// tokens back to life), by anyone, through AddKey, AddUser or ReviveKey; a
// removed login key comes back only through ReviveKey, for its own user.
func testRemovedTokenKeyReAdded(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := addUser(t, s, "ada@example.com")
	bob, _ := addUser(t, s, "bob@example.com")
	second := newKey(ada.ID, "second")
	if err := s.AddKey(ctx, second, ev(ada.ID, "key.add", second.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	gen := newKey(ada.ID, "api-key")
	gen.Generated = true
	if err := s.AddTokenKey(ctx, gen, nil, ev(ada.ID, "token.generate", gen.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{gen, second} {
		if err := s.RemoveKey(ctx, ada.ID, k.Fingerprint, ev(ada.ID, "key.remove", k.Fingerprint)); err != nil {
			t.Fatal(err)
		}
	}
	before := eventCount(t, s)

	again := gen
	again.Generated, again.Name = false, "readded"
	err := s.AddKey(ctx, again, ev(ada.ID, "key.add", gen.Fingerprint))
	wantErr(t, "AddKey(removed token key)", err, store.ErrRevoked)
	var re *store.RevokedError
	if !errors.As(err, &re) || !re.Generated || re.UserID != ada.ID || !re.RemovedAt.Equal(t0) {
		t.Errorf("RevokedError = %+v", re)
	}
	wantErr(t, "ReviveKey(removed token key)", s.ReviveKey(ctx, again, ev(ada.ID, "key.add", gen.Fingerprint)), store.ErrRevoked)
	theirs := again
	theirs.UserID = bob.ID
	wantErr(t, "AddKey(another user adds it)", s.AddKey(ctx, theirs, ev(bob.ID, "key.add", gen.Fingerprint)), store.ErrRevoked)
	carol := store.User{ID: store.NewUserID(), Email: "carol@example.com", CreatedAt: t0}
	first := again
	first.UserID = carol.ID
	wantErr(t, "AddUser(with it)", s.AddUser(ctx, carol, first, ev("admin", "user.add", carol.Email)), store.ErrRevoked)
	if _, err := s.UserByEmail(ctx, carol.Email); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddUser refused, yet the user exists: %v", err)
	}

	// The removed login key: refused by AddKey, and by ReviveKey for
	// anyone but ada; ada may revive it.
	wantErr(t, "AddKey(removed login key)", s.AddKey(ctx, second, ev(ada.ID, "key.add", second.Fingerprint)), store.ErrRevoked)
	bobs := second
	bobs.UserID = bob.ID
	wantErr(t, "ReviveKey(by another user)", s.ReviveKey(ctx, bobs, ev(bob.ID, "key.add", second.Fingerprint)), store.ErrRevoked)
	if got := eventCount(t, s); got != before {
		t.Errorf("refusals wrote %d events", got-before)
	}
	for _, k := range []store.Key{gen, second} {
		if _, err := s.Key(ctx, k.Fingerprint); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused key %s is registered: %v", k.Name, err)
		}
	}
	if err := s.ReviveKey(ctx, second, ev(ada.ID, "key.add", second.Fingerprint)); err != nil {
		t.Fatalf("ReviveKey(own login key): %v", err)
	}
	// Removed again, it is revoked again.
	if err := s.RemoveKey(ctx, ada.ID, second.Fingerprint, ev(ada.ID, "key.remove", second.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AddKey(removed twice)", s.AddKey(ctx, second, ev(ada.ID, "key.add", second.Fingerprint)), store.ErrRevoked)
}
