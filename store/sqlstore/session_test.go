package sqlstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// TestSessionStore is the conformance suite of store.SessionStore, against
// every backend.
func TestSessionStore(t *testing.T) {
	behaviours := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"LoginLink", testLoginLink},
		{"MagicSecret", testMagicSecret},
		{"Sessions", testSessions},
		{"RemoveKeyEndsSessions", testRemoveKeyEndsSessions},
		{"RemoveVMEndsSessions", testRemoveVMEndsSessions},
		{"PurgeExpired", testPurgeExpired},
		{"TouchSessions", testTouchSessions},
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

func randomHash() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	h := sha256.Sum256(b)
	return h[:]
}

func newLink(u store.User, k store.Key) store.LoginLink {
	return store.LoginLink{
		Hash: randomHash(), UserID: u.ID, Fingerprint: k.Fingerprint, Path: "/admin",
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute), SessionExpiresAt: t0.Add(30 * 24 * time.Hour),
	}
}

func newSession(host, cookie string) store.Session {
	return store.Session{ID: store.NewSessionID(), Hash: randomHash(), Host: host, CookieName: cookie, CreatedAt: t0, UserAgent: "test/1"}
}

// changesOf records the SessionChanged announcements of s.
func changesOf(t *testing.T, s store.Store) func() []string {
	var mu sync.Mutex
	var ids []string
	t.Cleanup(s.Subscribe(func(c store.Change) {
		if c.Kind == store.SessionChanged {
			mu.Lock()
			ids = append(ids, c.ID)
			mu.Unlock()
		}
	}))
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ids)
	}
}

func testLoginLink(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	addVM(t, s, "web", u)
	l := newLink(u, k)
	l.OnlyVM, l.TargetVM = "web", "web"
	l.Cmds = []string{"browser", "whoami"} // a token's cmds
	l.SessionExpiresAt = t0.Add(time.Hour) // cut short by the key's expiry
	if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "web")); err != nil {
		t.Fatal(err)
	}
	before := eventCount(t, s)

	// Expired: from ExpiresAt on. Nothing written.
	_, _, err := s.RedeemLoginLink(ctx, l.Hash, l.ExpiresAt, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", "exe.dev:443"))
	wantErr(t, "redeem at expiry", err, store.ErrNotFound)
	if n := eventCount(t, s); n != before {
		t.Fatalf("a refused redemption appended %d events", n-before)
	}

	sess := newSession("exe.dev:443", "exe-auth")
	sess.UserID, sess.ExpiresAt = "someone-else", t0.Add(1000*time.Hour) // the link decides these
	gotLink, got, err := s.RedeemLoginLink(ctx, l.Hash, l.ExpiresAt.Add(-time.Second), sess, ev("", "session.start", "exe.dev:443"))
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if gotLink.TargetVM != "web" || gotLink.Path != "/admin" || gotLink.UserID != u.ID || !slices.Equal(gotLink.Cmds, l.Cmds) {
		t.Fatalf("redeemed link %+v", gotLink)
	}
	if got.UserID != u.ID || got.Fingerprint != k.Fingerprint || got.OnlyVM != "web" || !slices.Equal(got.Cmds, l.Cmds) || !got.ExpiresAt.Equal(l.SessionExpiresAt) {
		t.Fatalf("started session %+v: want the link's user, key, VM and command restrictions and session expiry", got)
	}
	es, _ := s.Events(ctx, 0, 1000)
	if last := es[len(es)-1]; last.Action != "session.start" || last.ActorID != u.ID {
		t.Fatalf("last event %+v, want session.start by %s", last, u.ID)
	}
	stored, su, err := s.SessionAndUser(ctx, sess.Hash)
	if err != nil || stored.ID != sess.ID || su.Email != "ada@example.com" || stored.OnlyVM != "web" || !slices.Equal(stored.Cmds, l.Cmds) {
		t.Fatalf("SessionAndUser = %+v, %+v, %v", stored, su, err)
	}

	// Used: a second redemption finds nothing.
	_, _, err = s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", "x"))
	wantErr(t, "second redemption", err, store.ErrNotFound)
	_, _, err = s.RedeemLoginLink(ctx, randomHash(), t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", "x"))
	wantErr(t, "unknown link", err, store.ErrNotFound)
}

func testMagicSecret(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	addVM(t, s, "web", u)
	m := store.MagicSecret{
		Hash: randomHash(), UserID: u.ID, Host: "web.exe.xyz:443", VM: "web", Fingerprint: k.Fingerprint,
		CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Minute), SessionExpiresAt: t0.Add(24 * time.Hour),
	}
	if err := s.AddMagicSecret(ctx, m, ev(u.ID, "browser.authorize", m.Host)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		host string
		at   time.Time
	}{
		{"another VM", "api.exe.xyz:443", t0},
		{"another port", "web.exe.xyz:8443", t0},
		{"no port", "web.exe.xyz", t0},
		{"expired", m.Host, m.ExpiresAt},
	} {
		_, err := s.RedeemMagicSecret(ctx, m.Hash, c.host, c.at, newSession(c.host, "login-with-exe-443"), ev("", "session.start", c.host))
		wantErr(t, c.what, err, store.ErrNotFound)
	}
	// None of those used it up.
	got, err := s.RedeemMagicSecret(ctx, m.Hash, m.Host, t0.Add(time.Minute), newSession(m.Host, "login-with-exe-443"), ev("", "session.start", m.Host))
	if err != nil {
		t.Fatalf("redeem on its own host: %v", err)
	}
	if got.UserID != u.ID || got.VM != "web" || got.Fingerprint != k.Fingerprint || !got.ExpiresAt.Equal(m.SessionExpiresAt) {
		t.Fatalf("session %+v", got)
	}
	_, err = s.RedeemMagicSecret(ctx, m.Hash, m.Host, t0, newSession(m.Host, "login-with-exe-443"), ev("", "session.start", m.Host))
	wantErr(t, "second redemption", err, store.ErrNotFound)
}

func testSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	other, otherKey := addUser(t, s, "bob@example.com")
	changes := changesOf(t, s)
	start := func(u store.User, k store.Key) store.Session {
		t.Helper()
		l := newLink(u, k)
		if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
			t.Fatal(err)
		}
		_, sess, err := s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", "exe.dev:443"))
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	a1, a2, a3 := start(u, k), start(u, k), start(u, k)
	b1 := start(other, otherKey)
	ss, err := s.Sessions(ctx, u.ID)
	if err != nil || len(ss) != 3 {
		t.Fatalf("Sessions = %d, %v; want 3", len(ss), err)
	}
	for _, sess := range ss {
		if sess.UserID != u.ID || sess.UserAgent != "test/1" || !sess.LastUsedAt.IsZero() {
			t.Fatalf("listed %+v", sess)
		}
	}

	// Only one's own.
	err = s.RevokeSession(ctx, u.ID, b1.ID, ev(u.ID, "session.revoke", b1.ID))
	wantErr(t, "revoke another user's session", err, store.ErrNotFound)
	if err := s.RevokeSession(ctx, u.ID, a1.ID, ev(u.ID, "session.revoke", a1.ID)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionAndUser(ctx, a1.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked session still found: %v", err)
	}
	n, err := s.RevokeSessions(ctx, u.ID, ev(u.ID, "session.revoke", "all"))
	if err != nil || n != 2 {
		t.Fatalf("RevokeSessions = %d, %v; want 2", n, err)
	}
	if _, _, err := s.SessionAndUser(ctx, b1.Hash); err != nil {
		t.Fatalf("another user's session went too: %v", err)
	}
	want := []string{hex.EncodeToString(a1.Hash), hex.EncodeToString(a2.Hash), hex.EncodeToString(a3.Hash)}
	got := changes()
	slices.Sort(got[1:])
	slices.Sort(want[1:])
	if !slices.Equal(got, want) {
		t.Fatalf("announced %q, want %q", got, want)
	}
	if n, err := s.RevokeSessions(ctx, u.ID, ev(u.ID, "session.revoke", "all")); err != nil || n != 0 {
		t.Fatalf("RevokeSessions of none = %d, %v", n, err)
	}
}

// testRemoveKeyEndsSessions: removing the key that minted a login link
// ends every session and secret that came of it.
func testRemoveKeyEndsSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, _ := addUser(t, s, "ada@example.com")
	addVM(t, s, "web", u)
	tok := newKey(u.ID, "token")
	tok.Generated = true
	if err := s.AddKey(ctx, tok, ev(u.ID, "key.add", tok.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	l := newLink(u, tok)
	pending := newLink(u, tok)
	for _, l := range []store.LoginLink{l, pending} {
		if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
			t.Fatal(err)
		}
	}
	_, main, err := s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
	if err != nil {
		t.Fatal(err)
	}
	m := store.MagicSecret{Hash: randomHash(), UserID: u.ID, Host: "web.exe.xyz:443", VM: "web", Fingerprint: tok.Fingerprint,
		CreatedAt: t0, ExpiresAt: t0.Add(time.Minute), SessionExpiresAt: t0.Add(time.Hour)}
	if err := s.AddMagicSecret(ctx, m, ev(u.ID, "browser.authorize", m.Host)); err != nil {
		t.Fatal(err)
	}
	m2 := m
	m2.Hash = randomHash()
	if err := s.AddMagicSecret(ctx, m2, ev(u.ID, "browser.authorize", m.Host)); err != nil {
		t.Fatal(err)
	}
	vmSess, err := s.RedeemMagicSecret(ctx, m.Hash, m.Host, t0, newSession(m.Host, "login-with-exe-443"), ev("", "session.start", m.Host))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKey(ctx, u.ID, tok.Fingerprint, ev(u.ID, "key.remove", tok.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]byte{main.Hash, vmSess.Hash} {
		if _, _, err := s.SessionAndUser(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a session of the removed key survives: %v", err)
		}
	}
	_, _, err = s.RedeemLoginLink(ctx, pending.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
	wantErr(t, "a link of the removed key", err, store.ErrNotFound)
	_, err = s.RedeemMagicSecret(ctx, m2.Hash, m.Host, t0, newSession(m.Host, "login-with-exe-443"), ev("", "session.start", m.Host))
	wantErr(t, "a secret of the removed key", err, store.ErrNotFound)
}

// testRemoveVMEndsSessions: a removed VM takes its sessions and secrets
// along, and a new VM of the same name inherits none of them.
func testRemoveVMEndsSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	addVM(t, s, "web", u)
	addVM(t, s, "api", u)
	secret := func(vm string) store.MagicSecret {
		m := store.MagicSecret{Hash: randomHash(), UserID: u.ID, Host: vm + ".exe.xyz:443", VM: vm, Fingerprint: k.Fingerprint,
			CreatedAt: t0, ExpiresAt: t0.Add(time.Minute), SessionExpiresAt: t0.Add(time.Hour)}
		if err := s.AddMagicSecret(ctx, m, ev(u.ID, "browser.authorize", m.Host)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	web, api, webPending := secret("web"), secret("api"), secret("web")
	webSess, err := s.RedeemMagicSecret(ctx, web.Hash, web.Host, t0, newSession(web.Host, "login-with-exe-443"), ev("", "session.start", web.Host))
	if err != nil {
		t.Fatal(err)
	}
	apiSess, err := s.RedeemMagicSecret(ctx, api.Hash, api.Host, t0, newSession(api.Host, "login-with-exe-443"), ev("", "session.start", api.Host))
	if err != nil {
		t.Fatal(err)
	}
	// A main-host session restricted to web goes too.
	l := newLink(u, k)
	l.OnlyVM = "web"
	if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
		t.Fatal(err)
	}
	_, mainWeb, err := s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
	if err != nil {
		t.Fatal(err)
	}

	if err := s.RemoveVM(ctx, "web", ev("admin", "vm.remove", "web")); err != nil {
		t.Fatal(err)
	}
	addVM(t, s, "web", u)
	for _, h := range [][]byte{webSess.Hash, mainWeb.Hash} {
		if _, _, err := s.SessionAndUser(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a session for the removed VM survives: %v", err)
		}
	}
	_, err = s.RedeemMagicSecret(ctx, webPending.Hash, webPending.Host, t0, newSession(web.Host, "login-with-exe-443"), ev("", "session.start", web.Host))
	wantErr(t, "a secret for the removed VM, on the new one", err, store.ErrNotFound)
	if _, _, err := s.SessionAndUser(ctx, apiSess.Hash); err != nil {
		t.Fatalf("another VM's session went too: %v", err)
	}
}

func testPurgeExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	changes := changesOf(t, s)
	var sessions []store.Session
	for _, exp := range []time.Duration{time.Hour, 2 * time.Hour} {
		l := newLink(u, k)
		l.SessionExpiresAt = t0.Add(exp)
		if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
			t.Fatal(err)
		}
		_, sess, err := s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	stale := newLink(u, k)
	if err := s.AddLoginLink(ctx, stale, ev(u.ID, "browser.link", "")); err != nil {
		t.Fatal(err)
	}
	events := eventCount(t, s)
	n, err := s.PurgeExpired(ctx, t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want 1", n, err)
	}
	if got := changes(); !slices.Equal(got, []string{hex.EncodeToString(sessions[0].Hash)}) {
		t.Fatalf("announced %q", got)
	}
	if eventCount(t, s) != events {
		t.Fatal("PurgeExpired appended events")
	}
	if _, _, err := s.SessionAndUser(ctx, sessions[1].Hash); err != nil {
		t.Fatalf("a live session went: %v", err)
	}
	// The expired link is gone, even at a time it would have been good.
	_, _, err = s.RedeemLoginLink(ctx, stale.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
	wantErr(t, "purged link", err, store.ErrNotFound)
}

func testTouchSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, k := addUser(t, s, "ada@example.com")
	l := newLink(u, k)
	if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
		t.Fatal(err)
	}
	_, sess, err := s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	if err := s.TouchSessions(ctx, map[string]time.Time{string(sess.Hash): later, string(randomHash()): later}); err != nil {
		t.Fatal(err)
	}
	// Never backwards.
	if err := s.TouchSessions(ctx, map[string]time.Time{string(sess.Hash): t0}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.SessionAndUser(ctx, sess.Hash)
	if err != nil || !got.LastUsedAt.Equal(later) || !bytes.Equal(got.Hash, sess.Hash) {
		t.Fatalf("after touch: %+v, %v", got, err)
	}
}

// TestConcurrentRedeem redeems one login link and one magic secret from
// many goroutines at once, many times over: exactly one redemption wins
// each time, and exactly one session exists afterwards.
func TestConcurrentRedeem(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			u, k := addUser(t, s, "ada@example.com")
			addVM(t, s, "web", u)
			const rounds, racers = 10, 8
			for range rounds {
				l := newLink(u, k)
				if err := s.AddLoginLink(ctx, l, ev(u.ID, "browser.link", "")); err != nil {
					t.Fatal(err)
				}
				m := store.MagicSecret{Hash: randomHash(), UserID: u.ID, Host: "web.exe.xyz:443", VM: "web", Fingerprint: k.Fingerprint,
					CreatedAt: t0, ExpiresAt: t0.Add(time.Minute), SessionExpiresAt: t0.Add(time.Hour)}
				if err := s.AddMagicSecret(ctx, m, ev(u.ID, "browser.authorize", m.Host)); err != nil {
					t.Fatal(err)
				}
				start := make(chan struct{})
				var mu sync.Mutex
				won := map[string]int{}
				var wg sync.WaitGroup
				for i := range racers * 2 {
					wg.Go(func() {
						<-start
						var err error
						kind := "link"
						if i%2 == 0 {
							_, _, err = s.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
						} else {
							kind = "secret"
							_, err = s.RedeemMagicSecret(ctx, m.Hash, m.Host, t0, newSession(m.Host, "login-with-exe-443"), ev("", "session.start", m.Host))
						}
						switch {
						case err == nil:
							mu.Lock()
							won[kind]++
							mu.Unlock()
						case !errors.Is(err, store.ErrNotFound):
							t.Errorf("%s redemption: %v, want nil or ErrNotFound", kind, err)
						}
					})
				}
				close(start)
				wg.Wait()
				if won["link"] != 1 || won["secret"] != 1 {
					t.Fatalf("wins: %v, want exactly one of each", won)
				}
			}
			ss, err := s.Sessions(ctx, u.ID)
			if err != nil || len(ss) != 2*rounds {
				t.Fatalf("%d sessions stored, %v; want %d", len(ss), err, 2*rounds)
			}
		})
	}
}

func addVM(t *testing.T, s store.Store, name string, owner store.User) {
	t.Helper()
	vm := store.VM{Name: name, OwnerID: owner.ID, Upstream: "http://127.0.0.1:1", CreatedAt: t0}
	if err := s.AddVM(context.Background(), vm, ev("admin", "vm.add", name)); err != nil {
		t.Fatal(err)
	}
}
