package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// seen is one change as a subscriber heard it, with what another
// connection found in the database at that moment: the row's name, email or
// upstream, or "" when there is no such row. A row visible from another
// connection is a committed one.
type seen struct {
	store.Change
	row string
}

// changeLog subscribes to s and records every change it hears, with what
// the database holds for it.
type changeLog struct {
	t  *testing.T
	db *sql.DB

	mu   sync.Mutex
	seen []seen
}

func newChangeLog(t *testing.T, s store.Changes, db *sql.DB) (*changeLog, func()) {
	l := &changeLog{t: t, db: db}
	return l, s.Subscribe(l.hear)
}

func (l *changeLog) hear(c store.Change) {
	var q string
	switch c.Kind {
	case store.KeyChanged:
		q = `SELECT name FROM keys WHERE fingerprint = $1`
	case store.UserChanged:
		q = `SELECT email FROM users WHERE id = $1`
	case store.VMChanged:
		q = `SELECT upstream FROM vms WHERE name = $1`
	case store.ShareChanged:
		q = `SELECT COUNT(*) FROM shares WHERE vm = $1`
	}
	var row string
	if q != "" {
		// Only the test's subscriber may read the database: it proves that
		// the write was committed when the change was announced.
		if err := l.db.QueryRow(q, c.ID).Scan(&row); err != nil && err != sql.ErrNoRows {
			l.t.Errorf("look %v up: %v", c, err)
		}
	}
	l.mu.Lock()
	l.seen = append(l.seen, seen{c, row})
	l.mu.Unlock()
}

// take returns what was heard since the last take.
func (l *changeLog) take() []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen
	l.seen = nil
	return s
}

// TestChanges: every write announces exactly the entities it changed, once
// it has committed; a failed write announces nothing; cancel stops
// delivery.
func TestChanges(t *testing.T) {
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
			log, cancel := newChangeLog(t, s, rawDB(t, dsn, dir))
			defer cancel()

			key := func(fp, name string) seen { return seen{store.Change{Kind: store.KeyChanged, ID: fp}, name} }
			user := func(id, email string) seen { return seen{store.Change{Kind: store.UserChanged, ID: id}, email} }
			vm := func(name, upstream string) seen { return seen{store.Change{Kind: store.VMChanged, ID: name}, upstream} }
			share := func(vm string, n int) seen {
				return seen{store.Change{Kind: store.ShareChanged, ID: vm}, fmt.Sprint(n)}
			}

			ada := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: t0}
			login := newKey(ada.ID, "login")
			laptop := newKey(ada.ID, "laptop")
			tok := newKey(ada.ID, "tok")
			tok.Generated = true
			handle := &store.Exe1{ID: []byte("exe1 id"), Fingerprint: tok.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}
			web := store.VM{Name: "web", OwnerID: ada.ID, Upstream: "http://127.0.0.1:8080", CreatedAt: t0}
			dupEmail := store.User{ID: store.NewUserID(), Email: "ADA@example.com", CreatedAt: t0}
			dupName := newKey(ada.ID, "login")
			orphan := newKey("usrnobody", "k")
			cat := store.User{ID: store.NewUserID(), Email: "cat@example.com", CreatedAt: t0}
			catKey := newKey(cat.ID, "login")
			dan := store.User{ID: store.NewUserID(), Email: "dan@example.com", CreatedAt: t0}
			danKey := newKey(dan.ID, "login")
			link := store.ShareLink{ID: []byte("link id"), Name: "AAAAAAAA…", VM: "web", CreatedAt: t0}

			steps := []struct {
				name    string
				write   func() error
				wantErr error // nil: the write succeeds
				want    []seen
			}{
				{"AddUser", func() error { return s.AddUser(ctx, ada, login, ev("admin", "user.add", ada.Email)) },
					nil, []seen{user(ada.ID, ada.Email), key(login.Fingerprint, "login")}},
				{"AddKey", func() error { return s.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)) },
					nil, []seen{key(laptop.Fingerprint, "laptop")}},
				{"AddTokenKey", func() error { return s.AddTokenKey(ctx, tok, handle, ev(ada.ID, "token.generate", tok.Fingerprint)) },
					nil, []seen{key(tok.Fingerprint, "tok")}},
				{"AddExe1", func() error {
					return s.AddExe1(ctx, store.Exe1{ID: []byte("another"), Fingerprint: login.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}, ev(ada.ID, "exe1.create", login.Fingerprint))
				}, nil, nil},
				{"TouchKeys", func() error { return s.TouchKeys(ctx, map[string]time.Time{login.Fingerprint: t0.Add(time.Hour)}) },
					nil, nil},
				{"RenameKey", func() error {
					return s.RenameKey(ctx, ada.ID, laptop.Fingerprint, "desk", ev(ada.ID, "key.rename", laptop.Fingerprint))
				},
					nil, []seen{key(laptop.Fingerprint, "desk")}},
				{"RemoveKey", func() error {
					return s.RemoveKey(ctx, ada.ID, tok.Fingerprint, ev(ada.ID, "key.remove", tok.Fingerprint))
				},
					nil, []seen{key(tok.Fingerprint, "")}},
				{"AddVM", func() error { return s.AddVM(ctx, web, ev(ada.ID, "vm.add", web.Name)) },
					nil, []seen{vm("web", web.Upstream)}},
				{"AddUser cat", func() error { return s.AddUser(ctx, cat, catKey, ev("admin", "user.add", cat.Email)) },
					nil, []seen{user(cat.ID, cat.Email), key(catKey.Fingerprint, "login")}},
				{"AddShare", func() error {
					_, err := s.AddShare(ctx, "web", cat.Email, t0, ev(ada.ID, "share.add", "web cat"))
					return err
				}, nil, []seen{share("web", 1)}},
				{"AddShare pending", func() error {
					_, err := s.AddShare(ctx, "web", dan.Email, t0, ev(ada.ID, "share.add", "web dan"))
					return err
				}, nil, nil},
				{"SetVMPublic", func() error { return s.SetVMPublic(ctx, "web", true, ev(ada.ID, "vm.public", "web")) },
					nil, []seen{vm("web", web.Upstream)}},
				{"AddShareLink", func() error { return s.AddShareLink(ctx, link, ev(ada.ID, "share.link.add", "web")) },
					nil, nil},
				{"UseShareLink owner", func() error {
					_, err := s.UseShareLink(ctx, "web", link.ID, ada.ID, t0, ev(ada.ID, "share.link.use", "web"))
					return err
				}, nil, nil},
				{"RemoveShare", func() error { return s.RemoveShare(ctx, "web", cat.Email, ev(ada.ID, "share.remove", "web cat")) },
					nil, []seen{share("web", 0)}},
				{"UseShareLink", func() error {
					_, err := s.UseShareLink(ctx, "web", link.ID, cat.ID, t0, ev(cat.ID, "share.link.use", "web"))
					return err
				}, nil, []seen{share("web", 1)}},
				{"UseShareLink shared already", func() error {
					_, err := s.UseShareLink(ctx, "web", link.ID, cat.ID, t0, ev(cat.ID, "share.link.use", "web"))
					return err
				}, nil, nil},
				{"AddUser with a pending share", func() error { return s.AddUser(ctx, dan, danKey, ev("admin", "user.add", dan.Email)) },
					nil, []seen{user(dan.ID, dan.Email), key(danKey.Fingerprint, "login"), share("web", 2)}},
				{"RemoveShareLink", func() error { return s.RemoveShareLink(ctx, "web", link.ID, ev(ada.ID, "share.link.remove", "web")) },
					nil, nil},
				{"AddShare taken", func() error {
					_, err := s.AddShare(ctx, "web", dan.Email, t0, ev(ada.ID, "share.add", "web dan"))
					return err
				}, store.ErrExists, nil},
				{"AddShare owner", func() error {
					_, err := s.AddShare(ctx, "web", ada.Email, t0, ev(ada.ID, "share.add", "web ada"))
					return err
				}, store.ErrSelfShare, nil},
				{"RemoveShare unknown", func() error {
					return s.RemoveShare(ctx, "web", "nobody@example.com", ev(ada.ID, "share.remove", "web"))
				},
					store.ErrNotFound, nil},
				{"UseShareLink removed", func() error {
					_, err := s.UseShareLink(ctx, "web", link.ID, ada.ID, t0, ev(ada.ID, "share.link.use", "web"))
					return err
				}, store.ErrNotFound, nil},
				{"RemoveVM", func() error { return s.RemoveVM(ctx, "web", ev(ada.ID, "vm.remove", "web")) },
					nil, []seen{vm("web", "")}},

				// Failed writes announce nothing.
				{"AddUser taken email", func() error {
					return s.AddUser(ctx, dupEmail, newKey(dupEmail.ID, "k"), ev("admin", "user.add", dupEmail.Email))
				},
					store.ErrExists, nil},
				{"AddKey taken fingerprint", func() error { return s.AddKey(ctx, login, ev(ada.ID, "key.add", login.Fingerprint)) },
					store.ErrExists, nil},
				{"AddKey taken name", func() error { return s.AddKey(ctx, dupName, ev(ada.ID, "key.add", dupName.Fingerprint)) },
					store.ErrExists, nil},
				{"AddKey unknown user", func() error { return s.AddKey(ctx, orphan, ev("usrnobody", "key.add", orphan.Fingerprint)) },
					store.ErrNotFound, nil},
				{"AddTokenKey taken fingerprint", func() error {
					k := login
					k.Generated, k.Name = true, "again"
					return s.AddTokenKey(ctx, k, nil, ev(ada.ID, "token.generate", k.Fingerprint))
				}, store.ErrExists, nil},
				{"RenameKey taken name", func() error {
					return s.RenameKey(ctx, ada.ID, laptop.Fingerprint, "login", ev(ada.ID, "key.rename", laptop.Fingerprint))
				},
					store.ErrExists, nil},
				{"RenameKey unknown", func() error { return s.RenameKey(ctx, ada.ID, randomFingerprint(), "x", ev(ada.ID, "key.rename", "x")) },
					store.ErrNotFound, nil},
				{"RemoveKey unknown", func() error {
					return s.RemoveKey(ctx, ada.ID, tok.Fingerprint, ev(ada.ID, "key.remove", tok.Fingerprint))
				},
					store.ErrNotFound, nil},
				{"RemoveKey another's", func() error {
					return s.RemoveKey(ctx, "usrnobody", login.Fingerprint, ev("usrnobody", "key.remove", login.Fingerprint))
				},
					store.ErrNotFound, nil},
				{"RemoveKey desk", func() error {
					return s.RemoveKey(ctx, ada.ID, laptop.Fingerprint, ev(ada.ID, "key.remove", laptop.Fingerprint))
				},
					nil, []seen{key(laptop.Fingerprint, "")}},
				{"RemoveKey last login key", func() error {
					return s.RemoveKey(ctx, ada.ID, login.Fingerprint, ev(ada.ID, "key.remove", login.Fingerprint))
				},
					store.ErrLastKey, nil},
				{"AddVM taken name", func() error {
					if err := s.AddVM(ctx, web, ev(ada.ID, "vm.add", web.Name)); err != nil {
						return fmt.Errorf("first AddVM: %w", err)
					}
					log.take() // the first one's
					return s.AddVM(ctx, web, ev(ada.ID, "vm.add", web.Name))
				}, store.ErrExists, nil},
				{"RemoveVM unknown", func() error { return s.RemoveVM(ctx, "nosuch", ev(ada.ID, "vm.remove", "nosuch")) },
					store.ErrNotFound, nil},
			}
			for _, st := range steps {
				err := st.write()
				switch {
				case st.wantErr == nil && err != nil:
					t.Fatalf("%s: %v", st.name, err)
				case st.wantErr != nil:
					wantErr(t, st.name, err, st.wantErr)
				}
				// Synchronous: heard before the write returned.
				if got := log.take(); !reflect.DeepEqual(got, st.want) {
					t.Errorf("%s announced %+v, want %+v", st.name, got, st.want)
				}
			}

			// cancel stops delivery to that subscriber only, and may be
			// called again, or from the subscriber itself.
			other, cancelOther := newChangeLog(t, s, rawDB(t, dsn, dir))
			cancel()
			cancel()
			k := newKey(ada.ID, "after-cancel")
			if err := s.AddKey(ctx, k, ev(ada.ID, "key.add", k.Fingerprint)); err != nil {
				t.Fatal(err)
			}
			if got := log.take(); len(got) != 0 {
				t.Errorf("cancelled subscriber heard %+v", got)
			}
			if got, want := other.take(), []seen{key(k.Fingerprint, "after-cancel")}; !reflect.DeepEqual(got, want) {
				t.Errorf("remaining subscriber heard %+v, want %+v", got, want)
			}
			cancelOther()

			var once []store.Change
			var cancelSelf func()
			cancelSelf = s.Subscribe(func(c store.Change) {
				once = append(once, c)
				cancelSelf()
			})
			if err := s.AddUser(ctx, dupEmail, newKey(dupEmail.ID, "k"), ev("admin", "user.add", "bob")); err == nil {
				t.Fatal("AddUser with a taken email succeeded")
			}
			bob := store.User{ID: store.NewUserID(), Email: "bob@example.com", CreatedAt: t0}
			if err := s.AddUser(ctx, bob, newKey(bob.ID, "k"), ev("admin", "user.add", bob.Email)); err != nil {
				t.Fatal(err)
			}
			if want := []store.Change{{Kind: store.UserChanged, ID: bob.ID}}; !reflect.DeepEqual(once, want) {
				t.Errorf("self-cancelling subscriber heard %+v, want %+v", once, want)
			}
		})
	}
}

// TestChangesGroupCommit: concurrent AddTokenKey calls (committed in
// groups on SQLite) each announce their key exactly once, after the
// commit, and before the call returns; the ones that fail announce
// nothing.
func TestChangesGroupCommit(t *testing.T) {
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
			ada, login := addUser(t, s, "ada@example.com")
			log, cancel := newChangeLog(t, s, rawDB(t, dsn, dir))
			defer cancel()

			const n = 40
			keys := make([]store.Key, n)
			errs := make([]error, n)
			heard := make([]bool, n) // the call's change was heard when it returned
			var wg sync.WaitGroup
			for i := range n {
				keys[i] = newKey(ada.ID, fmt.Sprintf("tok-%d", i))
				keys[i].Generated = true
				if i%5 == 0 {
					keys[i].Fingerprint = login.Fingerprint // taken: fails
				}
				wg.Go(func() {
					errs[i] = s.AddTokenKey(ctx, keys[i], nil, ev(ada.ID, "token.generate", keys[i].Fingerprint))
					log.mu.Lock()
					for _, c := range log.seen {
						heard[i] = heard[i] || c.ID == keys[i].Fingerprint
					}
					log.mu.Unlock()
				})
			}
			wg.Wait()

			want := map[seen]int{}
			for i, k := range keys {
				if i%5 == 0 {
					wantErr(t, k.Name, errs[i], store.ErrExists)
					if heard[i] {
						t.Errorf("%s: failed, yet announced", k.Name)
					}
					continue
				}
				if errs[i] != nil {
					t.Fatalf("%s: %v", k.Name, errs[i])
				}
				if !heard[i] {
					t.Errorf("%s: returned before its change was announced", k.Name)
				}
				want[seen{store.Change{Kind: store.KeyChanged, ID: k.Fingerprint}, k.Name}]++
			}
			got := map[seen]int{}
			for _, c := range log.take() {
				got[c]++
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("announced %v,\nwant %v", got, want)
			}
		})
	}
}
