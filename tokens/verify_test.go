package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
)

// memRegistry is a small in-memory Registry: a fake of our own interface
// (the real stores have their own conformance suite).
type memRegistry struct {
	mu       sync.Mutex
	keys     map[string]store.Key
	users    map[string]store.User
	exe1     map[string]store.Exe1
	fail     error  // when set, every method returns it
	onKey    func() // when set, called inside KeyAndUser
	keyCalls int
}

func newMemRegistry() *memRegistry {
	return &memRegistry{keys: map[string]store.Key{}, users: map[string]store.User{}, exe1: map[string]store.Exe1{}}
}

func (r *memRegistry) KeyAndUser(ctx context.Context, fp string) (store.Key, store.User, error) {
	r.mu.Lock()
	r.keyCalls++
	hook, fail := r.onKey, r.fail
	k, ok := r.keys[fp]
	u, userOK := r.users[k.UserID]
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
	switch {
	case fail != nil:
		return store.Key{}, store.User{}, fail
	case !ok:
		return store.Key{}, store.User{}, store.ErrNotFound
	case !userOK: // as store.Store: the key, and a not-found error for its user
		return k, store.User{}, fmt.Errorf("user %s: %w", k.UserID, store.ErrNotFound)
	}
	return k, u, nil
}

func (r *memRegistry) Exe1(ctx context.Context, id []byte) (store.Exe1, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return store.Exe1{}, r.fail
	}
	h, ok := r.exe1[string(id)]
	if !ok {
		return store.Exe1{}, store.ErrNotFound
	}
	return h, nil
}

func (r *memRegistry) addUser(u store.User) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users[u.ID] = u
}

func (r *memRegistry) addKey(k store.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[k.Fingerprint] = k
}

func (r *memRegistry) removeKey(fp string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, fp)
	for id, h := range r.exe1 {
		if h.Fingerprint == fp {
			delete(r.exe1, id)
		}
	}
}

func (r *memRegistry) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

func (r *memRegistry) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keyCalls
}

// t0 is the fixed "now" of these tests: 2026-01-01T00:00:00Z.
var t0 = time.Unix(1767225600, 0)

type fixture struct {
	reg    *memRegistry
	clock  *testkit.Clock
	v      *Verifier
	user   store.User
	other  store.User
	signer ssh.Signer
	key    store.Key
	web    *store.VM // owned by user
	theirs *store.VM // owned by other
}

func newFixture(t testing.TB, c Config) *fixture {
	t.Helper()
	f := &fixture{
		reg:    newMemRegistry(),
		clock:  testkit.NewClock(t0),
		user:   store.User{ID: "usr1", Email: "a@example.com"},
		other:  store.User{ID: "usr2", Email: "b@example.com"},
		web:    &store.VM{Name: "web", OwnerID: "usr1"},
		theirs: &store.VM{Name: "theirs", OwnerID: "usr2"},
	}
	f.reg.addUser(f.user)
	f.reg.addUser(f.other)
	f.signer = testkit.NewSigner(t)
	f.key = f.addKey(f.signer, "laptop", func(*store.Key) {})
	c.Registry = f.reg
	c.Now = f.clock.Now
	f.v = NewVerifier(c)
	return f
}

// addKey registers s's public key on f.user, after edit.
func (f *fixture) addKey(s ssh.Signer, name string, edit func(*store.Key)) store.Key {
	k := store.Key{
		UserID:      f.user.ID,
		Name:        name,
		Fingerprint: keys.Fingerprint(s.PublicKey()),
		PublicKey:   keys.MarshalAuthorized(s.PublicKey()),
		AddedAt:     t0,
	}
	edit(&k)
	f.reg.addKey(k)
	return k
}

// wantReason asserts that err is an *Error with reason and check.
func wantReason(t testing.TB, err error, reason Reason, check string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error with reason %q", err, reason)
	}
	if e.Reason != reason || e.Check != check {
		t.Fatalf("err = %v (reason %q, check %q), want reason %q at check %q", err, e.Reason, e.Check, reason, check)
	}
}

func TestVerifyValid(t *testing.T) {
	f := newFixture(t, Config{CacheSize: -1})
	p := `{"exp":4070908800,"ctx":{"role":"deploy"}}`
	tok := mint(t, f.signer, vmNS, p)
	g, err := f.v.Verify(context.Background(), tok, Target{Namespace: vmNS, VM: f.web})
	if err != nil {
		t.Fatal(err)
	}
	if g.User != f.user || g.Key.Fingerprint != f.key.Fingerprint || g.Perms.Exp != 4070908800 || string(g.Perms.Ctx) != `{"role":"deploy"}` {
		t.Fatalf("grant = %+v", g)
	}
}

// TestVerifyFailures covers every step of the Verifier: each failure, its
// check and its reason, and that no error text contains the token.
func TestVerifyFailures(t *testing.T) {
	f := newFixture(t, Config{CacheSize: -1})
	ctx := context.Background()
	now := f.clock.Now().Unix()
	api := Target{Namespace: apiNS}

	stranger := testkit.NewSigner(t)
	restricted := func(name string, edit func(*store.Key)) ssh.Signer {
		s := testkit.NewSigner(t)
		f.addKey(s, name, edit)
		return s
	}
	expiredKey := restricted("expired", func(k *store.Key) { k.ExpiresAt = t0.Add(-time.Second) })
	expiringNow := restricted("expiring", func(k *store.Key) { k.ExpiresAt = t0 })
	vmKey := restricted("web-deploy", func(k *store.Key) { k.VM = "web" })
	cmdKey := restricted("ci", func(k *store.Key) { k.Cmds = []string{"ls", "whoami"} })
	noCmdsKey := restricted("ci-none", func(k *store.Key) { k.Cmds = []string{} })
	orphan := testkit.NewSigner(t)
	f.addKey(orphan, "orphan", func(k *store.Key) { k.UserID = "usr-gone" })

	good := mint(t, f.signer, apiNS, `{}`)
	gp, gs := parts(t, good)
	tampered := "exe0." + enc(`{"cmds":["ssh-key generate-api-key"]}`) + "." + gs
	_, orphanSig := parts(t, mint(t, orphan, apiNS, `{}`))
	orphanForged := "exe0." + enc(`{"ctx":1}`) + "." + orphanSig

	tests := []struct {
		name   string
		token  string
		target Target
		reason Reason
		check  string
	}{
		{"malformed", "exe0." + gp, api, ReasonMalformed, CheckFormat},
		{"not a token", "hello", api, ReasonMalformed, CheckFormat},
		{"wrong namespace", good, Target{Namespace: vmNS, VM: f.web}, ReasonNamespace, CheckNamespace},
		{"VM token on API", mint(t, f.signer, vmNS, `{}`), api, ReasonNamespace, CheckNamespace},
		{"namespace prefix", mint(t, f.signer, apiNS+".evil", `{}`), api, ReasonNamespace, CheckNamespace},
		{"unknown key", mint(t, stranger, apiNS, `{}`), api, ReasonUnknownKey, CheckKey},
		{"tampered payload", tampered, api, ReasonBadSignature, CheckSignature},
		{"signature of other payload", "exe0." + enc(`{ }`) + "." + gs, api, ReasonBadSignature, CheckSignature},
		{"expired", mint(t, f.signer, apiNS, fmt.Sprintf(`{"exp":%d}`, now-1)), api, ReasonExpired, CheckValidity},
		{"not yet valid", mint(t, f.signer, apiNS, fmt.Sprintf(`{"nbf":%d}`, now+1)), api, ReasonNotYetValid, CheckValidity},
		{"key expired", mint(t, expiredKey, apiNS, `{}`), api, ReasonRestricted, CheckRestrictions},
		{"key expires now", mint(t, expiringNow, apiNS, `{}`), api, ReasonRestricted, CheckRestrictions},
		{"VM key on API", mint(t, vmKey, apiNS, `{}`), api, ReasonRestricted, CheckRestrictions},
		{"VM key on other VM", mint(t, vmKey, "v0@theirs.exe.xyz", `{}`), Target{Namespace: "v0@theirs.exe.xyz", VM: &store.VM{Name: "other", OwnerID: f.user.ID}}, ReasonRestricted, CheckRestrictions},
		{"key cmds", mint(t, cmdKey, apiNS, `{"cmds":["ssh-key list"]}`), Target{Namespace: apiNS, Command: "ssh-key list"}, ReasonRestricted, CheckRestrictions},
		{"key cmds empty", mint(t, noCmdsKey, apiNS, `{}`), Target{Namespace: apiNS, Command: "ls"}, ReasonRestricted, CheckRestrictions},
		{"VM of another user", mint(t, f.signer, "v0@theirs.exe.xyz", `{}`), Target{Namespace: "v0@theirs.exe.xyz", VM: f.theirs}, ReasonVM, CheckVM},
		{"command not in default list", good, Target{Namespace: apiNS, Command: "ssh-key generate-api-key"}, ReasonNotGranted, CheckCommand},
		{"cmds [] grants nothing", mint(t, f.signer, apiNS, `{"cmds":[]}`), Target{Namespace: apiNS, Command: "help"}, ReasonNotGranted, CheckCommand},
		{"parent does not grant child", mint(t, f.signer, apiNS, `{"cmds":["ssh-key"]}`), Target{Namespace: apiNS, Command: "ssh-key list"}, ReasonNotGranted, CheckCommand},
		{"user gone", mint(t, orphan, apiNS, `{}`), api, ReasonUnknownKey, CheckUser},
		// The user is fetched with the key but checked last, as before.
		{"user gone, forged", orphanForged, api, ReasonBadSignature, CheckSignature},
		{"user gone, expired", mint(t, orphan, apiNS, fmt.Sprintf(`{"exp":%d}`, now-1)), api, ReasonExpired, CheckValidity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := f.v.Verify(ctx, tt.token, tt.target)
			if err == nil {
				t.Fatalf("accepted: %+v", g)
			}
			wantReason(t, err, tt.reason, tt.check)
			if got := errors.Is(err, ErrNotGranted); got != (tt.reason == ReasonNotGranted) {
				t.Errorf("errors.Is(err, ErrNotGranted) = %v for reason %q", got, tt.reason)
			}
			_, p64, _ := strings.Cut(tt.token, ".")
			if p64 != "" && strings.Contains(err.Error(), p64) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}

	// The same keys, used within their restrictions, are fine.
	for _, ok := range []struct {
		name   string
		token  string
		target Target
	}{
		{"VM key on its VM", mint(t, vmKey, vmNS, `{}`), Target{Namespace: vmNS, VM: f.web}},
		{"key cmds allow", mint(t, cmdKey, apiNS, `{}`), Target{Namespace: apiNS, Command: "ls"}},
		{"key cmds on a VM", mint(t, cmdKey, vmNS, `{}`), Target{Namespace: vmNS, VM: f.web}},
		{"exp is now", mint(t, f.signer, apiNS, fmt.Sprintf(`{"exp":%d}`, now)), api},
		{"nbf is now", mint(t, f.signer, apiNS, fmt.Sprintf(`{"nbf":%d}`, now)), api},
		{"explicit grant", mint(t, f.signer, apiNS, `{"cmds":["ssh-key generate-api-key"]}`), Target{Namespace: apiNS, Command: "ssh-key generate-api-key"}},
		{"default list", good, Target{Namespace: apiNS, Command: "ssh-key list"}},
		{"no command check", mint(t, f.signer, apiNS, `{"cmds":[]}`), api},
	} {
		if _, err := f.v.Verify(ctx, ok.token, ok.target); err != nil {
			t.Errorf("%s: %v", ok.name, err)
		}
	}

	// Registry failures are internal, not the token's fault.
	f.reg.setFail(errors.New("database is down"))
	_, err := f.v.Verify(ctx, good, api)
	wantReason(t, err, ReasonInternal, CheckKey)
	if !strings.Contains(err.Error(), "database is down") {
		t.Errorf("error %q lost its cause", err)
	}
}

func TestVerifyUnknownKeyBeforeCrypto(t *testing.T) {
	// An unknown key is refused at the registry, before the signature is
	// checked: a token from a stranger with a broken signature still says
	// unknown_key.
	f := newFixture(t, Config{CacheSize: -1})
	tok := mint(t, testkit.NewSigner(t), apiNS, `{}`)
	_, s64 := parts(t, tok)
	broken := "exe0." + enc(`{"exp":4070908800}`) + "." + s64
	_, err := f.v.Verify(context.Background(), broken, Target{Namespace: apiNS})
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

func TestExe1(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	exe0 := mint(t, f.signer, apiNS, `{"cmds":["ls"]}`)

	h, err := NewExe1()
	if err != nil {
		t.Fatal(err)
	}
	if err := ParseExe1(h); err != nil {
		t.Fatalf("ParseExe1(NewExe1()): %v", err)
	}
	if h2, _ := NewExe1(); h2 == h {
		t.Fatal("two handles are equal")
	}
	sealed, err := SealExe1(h, exe0)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), exe0[5:20]) {
		t.Fatal("sealed bytes contain the token")
	}
	f.reg.exe1[string(Exe1ID(h))] = store.Exe1{ID: Exe1ID(h), Fingerprint: f.key.Fingerprint, Sealed: sealed}

	g, err := f.v.Verify(ctx, h, Target{Namespace: apiNS, Command: "ls"})
	if err != nil {
		t.Fatal(err)
	}
	if g.User != f.user || !g.Perms.HasCmds || g.Perms.Cmds[0] != "ls" {
		t.Fatalf("grant = %+v", g)
	}
	// The exe0 behind the handle is verified in full.
	_, err = f.v.Verify(ctx, h, Target{Namespace: apiNS, Command: "whoami"})
	wantReason(t, err, ReasonNotGranted, CheckCommand)
	_, err = f.v.Verify(ctx, h, Target{Namespace: vmNS, VM: f.web})
	wantReason(t, err, ReasonNamespace, CheckNamespace)

	// A wrong handle: unknown, whether it is well-formed or not.
	other, _ := NewExe1()
	_, err = f.v.Verify(ctx, other, Target{Namespace: apiNS})
	wantReason(t, err, ReasonUnknownKey, CheckExe1)
	_, err = f.v.Verify(ctx, h[:len(h)-1], Target{Namespace: apiNS})
	wantReason(t, err, ReasonMalformed, CheckFormat)
	if _, err := OpenExe1(other, sealed); !errors.Is(err, ErrExe1Open) {
		t.Fatalf("OpenExe1 with the wrong handle: %v", err)
	}
	// Sealed bytes moved to another handle's row do not open either (the
	// ID is the associated data... and the key is derived from the handle).
	f.reg.exe1[string(Exe1ID(other))] = store.Exe1{ID: Exe1ID(other), Fingerprint: f.key.Fingerprint, Sealed: sealed}
	_, err = f.v.Verify(ctx, other, Target{Namespace: apiNS})
	wantReason(t, err, ReasonInternal, CheckExe1)

	// Tampered sealed bytes do not open.
	bad := append([]byte(nil), sealed...)
	bad[len(bad)-1] ^= 1
	if _, err := OpenExe1(h, bad); !errors.Is(err, ErrExe1Open) {
		t.Fatalf("OpenExe1 of tampered bytes: %v", err)
	}
	if got, err := OpenExe1(h, sealed); err != nil || got != exe0 {
		t.Fatalf("OpenExe1 = %q, %v", got, err)
	}

	// Removing the key kills the handle (the registry drops its row; the
	// Verifier forgets its cached result).
	f.reg.removeKey(f.key.Fingerprint)
	f.v.Forget(f.key.Fingerprint)
	_, err = f.v.Verify(ctx, h, Target{Namespace: apiNS, Command: "ls"})
	wantReason(t, err, ReasonUnknownKey, CheckExe1)
}

func TestParseExe1(t *testing.T) {
	good := "exe1." + strings.Repeat("A", 20) + "234567"
	if err := ParseExe1(good); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
	for _, bad := range []string{
		"", "exe1.", "exe0." + good[5:], "EXE1." + good[5:], good + "A", good[:len(good)-1],
		"exe1." + strings.Repeat("a", 26), "exe1." + strings.Repeat("A", 25) + "1", "exe1." + strings.Repeat("A", 25) + "8",
		"exe1." + strings.Repeat("A", 25) + "=", good + "\n", " " + good,
	} {
		if err := ParseExe1(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseExe1(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	seen := map[byte]bool{}
	for range 50 {
		h, _ := NewExe1()
		if len(h) != 31 || ParseExe1(h) != nil {
			t.Fatalf("NewExe1() = %q", h)
		}
		for i := 5; i < len(h); i++ {
			seen[h[i]] = true
		}
	}
	if len(seen) != 32 {
		t.Errorf("50 handles use %d of 32 characters", len(seen))
	}
	if string(Exe1ID(good)) == string(Exe1ID(good[:len(good)-1]+"B")) || len(Exe1ID(good)) != 32 {
		t.Error("Exe1ID does not separate handles")
	}
}

func TestVerifyCache(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: 10 * time.Second})
	ctx := context.Background()
	tok := mint(t, f.signer, apiNS, `{}`)
	api := Target{Namespace: apiNS}

	g1, err := f.v.Verify(ctx, tok, api)
	if err != nil {
		t.Fatal(err)
	}
	calls := f.reg.calls()
	g2, err := f.v.Verify(ctx, tok, api)
	if err != nil {
		t.Fatal(err)
	}
	if f.reg.calls() != calls || g1 != g2 {
		t.Fatal("second Verify did not come from the cache")
	}
	if hits, misses, size := f.v.CacheStats(); hits != 1 || misses != 1 || size != 1 {
		t.Fatalf("CacheStats = %d hits, %d misses, size %d; want 1, 1, 1", hits, misses, size)
	}

	// A hit still checks the target: namespace, command, VM.
	_, err = f.v.Verify(ctx, tok, Target{Namespace: apiNS, Command: "ssh-key generate-api-key"})
	wantReason(t, err, ReasonNotGranted, CheckCommand)
	_, err = f.v.Verify(ctx, tok, Target{Namespace: vmNS, VM: f.web})
	wantReason(t, err, ReasonNamespace, CheckNamespace)

	// The key goes from the registry: the cached result lasts until the
	// TTL, and not a nanosecond longer.
	f.reg.removeKey(f.key.Fingerprint)
	f.clock.Advance(10*time.Second - time.Nanosecond)
	if _, err := f.v.Verify(ctx, tok, api); err != nil {
		t.Fatalf("before the TTL: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	_, err = f.v.Verify(ctx, tok, api)
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

func TestVerifyCacheDefaultTTL(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	tok := mint(t, f.signer, apiNS, `{}`)
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
		t.Fatal(err)
	}
	f.reg.removeKey(f.key.Fingerprint)
	f.clock.Advance(DefaultCacheTTL)
	_, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS})
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

func TestVerifyCacheExpiry(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	exp := f.clock.Now().Add(5 * time.Second).Unix()
	tok := mint(t, f.signer, apiNS, fmt.Sprintf(`{"exp":%d}`, exp))
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
		t.Fatal(err)
	}
	calls := f.reg.calls()
	f.clock.Set(time.Unix(exp, 0).Add(999 * time.Millisecond)) // still exp in whole seconds
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
		t.Fatalf("at exp: %v", err)
	}
	if f.reg.calls() != calls {
		t.Fatal("not a cache hit")
	}
	f.clock.Set(time.Unix(exp+1, 0))
	_, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS})
	wantReason(t, err, ReasonExpired, CheckValidity)

	// And at the signing key's own expiry, even within the TTL.
	s := testkit.NewSigner(t)
	f.clock.Set(t0)
	f.addKey(s, "short", func(k *store.Key) { k.ExpiresAt = t0.Add(time.Minute) })
	tok = mint(t, s, apiNS, `{}`)
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	_, err = f.v.Verify(ctx, tok, Target{Namespace: apiNS})
	wantReason(t, err, ReasonRestricted, CheckRestrictions)
}

// TestForgetDropsEveryEncoding: two different tokens signed by one key
// (ECDSA signatures differ on every signing, like a re-encoded signature
// would) are both dropped by Forget, while the registry still answers
// from before: the refusal comes from the registry, not from the cache.
func TestForgetDropsEveryEncoding(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	ec, err := ssh.NewSignerFromKey(mustECDSA(t))
	if err != nil {
		t.Fatal(err)
	}
	k := f.addKey(ec, "ecdsa", func(*store.Key) {})
	tok1 := mint(t, ec, apiNS, `{}`)
	tok2 := mint(t, ec, apiNS, `{}`)
	if tok1 == tok2 {
		t.Fatal("ECDSA signed twice gave one token")
	}
	other := mint(t, f.signer, apiNS, `{}`)
	for _, tok := range []string{tok1, tok2, other} {
		if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, size := f.v.CacheStats(); size != 3 {
		t.Fatalf("cache size %d, want 3", size)
	}

	f.reg.removeKey(k.Fingerprint)
	// Cached: the removal is not seen yet (TTL is an hour).
	if _, err := f.v.Verify(ctx, tok1, Target{Namespace: apiNS}); err != nil {
		t.Fatalf("before Forget: %v", err)
	}
	f.v.Forget(k.Fingerprint)
	for _, tok := range []string{tok1, tok2} {
		_, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS})
		wantReason(t, err, ReasonUnknownKey, CheckKey)
	}
	if _, _, size := f.v.CacheStats(); size != 1 {
		t.Fatalf("cache size %d after Forget, want 1 (the other key's token)", size)
	}
	calls := f.reg.calls()
	if _, err := f.v.Verify(ctx, other, Target{Namespace: apiNS}); err != nil || f.reg.calls() != calls {
		t.Fatalf("another key's cached token: %v, registry called %d times", err, f.reg.calls()-calls)
	}
}

// TestForgetDuringVerify: a Forget that lands while a verification is
// reading the registry stops that verification's result from being
// cached, so a removal cannot be undone by a request in flight.
func TestForgetDuringVerify(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	tok := mint(t, f.signer, apiNS, `{}`)
	f.reg.onKey = func() { f.v.Forget(f.key.Fingerprint) }
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
		t.Fatal(err)
	}
	f.reg.onKey = nil
	if _, _, size := f.v.CacheStats(); size != 0 {
		t.Fatalf("result cached across a Forget (size %d)", size)
	}
	f.reg.removeKey(f.key.Fingerprint)
	_, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS})
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

func TestCacheBounded(t *testing.T) {
	f := newFixture(t, Config{CacheSize: 3, CacheTTL: time.Hour})
	ctx := context.Background()
	for i := range 10 {
		tok := mint(t, f.signer, apiNS, fmt.Sprintf(`{"ctx":%d}`, i))
		if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
		if _, _, size := f.v.CacheStats(); size > 3 {
			t.Fatalf("cache size %d over its bound 3", size)
		}
	}
	if _, _, size := f.v.CacheStats(); size != 3 {
		t.Fatalf("cache size %d, want 3", size)
	}
	// Disabled: nothing is cached.
	g := newFixture(t, Config{CacheSize: -1})
	tok := mint(t, g.signer, apiNS, `{}`)
	for range 2 {
		if _, err := g.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	if hits, _, size := g.v.CacheStats(); hits != 0 || size != 0 || g.reg.calls() != 2 {
		t.Fatalf("disabled cache: %d hits, size %d, %d registry calls", hits, size, g.reg.calls())
	}
}

func TestCacheEvictsExpiredFirst(t *testing.T) {
	f := newFixture(t, Config{CacheSize: 2, CacheTTL: time.Second})
	ctx := context.Background()
	a := mint(t, f.signer, apiNS, `{"ctx":"a"}`)
	if _, err := f.v.Verify(ctx, a, Target{Namespace: apiNS}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Second) // a has expired
	b := mint(t, f.signer, apiNS, `{"ctx":"b"}`)
	c := mint(t, f.signer, apiNS, `{"ctx":"c"}`)
	for _, tok := range []string{b, c} {
		if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.reg.calls()
	for _, tok := range []string{b, c} {
		if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	if f.reg.calls() != calls {
		t.Fatal("a live entry was evicted while an expired one was there")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t, Config{CacheSize: 8})
	ctx := context.Background()
	var toks []string
	for i := range 16 {
		toks = append(toks, mint(t, f.signer, apiNS, fmt.Sprintf(`{"ctx":%d}`, i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if w == 0 && i%10 == 0 {
					f.v.Forget(f.key.Fingerprint)
					continue
				}
				if _, err := f.v.Verify(ctx, toks[(w+i)%len(toks)], Target{Namespace: apiNS, Command: "ls"}); err != nil {
					errs <- err
					return
				}
				f.v.CacheStats()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	names := func(cs []Check) string {
		var s []string
		for _, c := range cs {
			s = append(s, fmt.Sprintf("%s=%v", c.Name, c.OK))
		}
		return strings.Join(s, " ")
	}

	tok := mint(t, f.signer, vmNS, `{"exp":4070908800}`)
	got := f.v.Explain(ctx, tok, Target{Namespace: vmNS, VM: f.web})
	want := "format=true namespace=true key=true signature=true validity=true restrictions=true vm=true user=true"
	if names(got) != want {
		t.Fatalf("Explain = %s\nwant      %s", names(got), want)
	}
	for _, c := range got {
		if c.Detail == "" {
			t.Errorf("check %s has no detail", c.Name)
		}
	}
	if !strings.Contains(got[2].Detail, f.key.Fingerprint) || !strings.Contains(got[4].Detail, "2099-01-01T00:00:00Z") {
		t.Errorf("details: %+v", got)
	}

	// Explain bypasses the cache: a removed key shows at once, and a
	// cached result does not shorten the report.
	if _, err := f.v.Verify(ctx, tok, Target{Namespace: vmNS, VM: f.web}); err != nil {
		t.Fatal(err)
	}
	if got := f.v.Explain(ctx, tok, Target{Namespace: vmNS, VM: f.web}); names(got) != want {
		t.Fatalf("Explain after a cached Verify = %s", names(got))
	}

	// It stops at the first failure.
	_, s64 := parts(t, tok)
	tampered := "exe0." + enc(`{"exp":4070908801}`) + "." + s64
	got = f.v.Explain(ctx, tampered, Target{Namespace: vmNS, VM: f.web})
	if names(got) != "format=true namespace=true key=true signature=false" {
		t.Fatalf("Explain(tampered) = %s", names(got))
	}
	got = f.v.Explain(ctx, tok, Target{Namespace: apiNS, Command: "ls"})
	if names(got) != "format=true namespace=false" || !strings.Contains(got[1].Detail, vmNS) {
		t.Fatalf("Explain(wrong namespace) = %+v", got)
	}
	got = f.v.Explain(ctx, "exe0.bad", Target{Namespace: apiNS})
	if names(got) != "format=false" {
		t.Fatalf("Explain(malformed) = %+v", got)
	}
	apiTok := mint(t, f.signer, apiNS, `{}`)
	got = f.v.Explain(ctx, apiTok, Target{Namespace: apiNS, Command: "ssh-key generate-api-key"})
	if names(got) != "format=true namespace=true key=true signature=true validity=true restrictions=true command=false" {
		t.Fatalf("Explain(not granted) = %s", names(got))
	}

	// The same steps as Verify: Verify's error is Explain's failed check.
	// (Forget, as a removal announces it: else the key cache would answer
	// Verify for the TTL.)
	f.reg.removeKey(f.key.Fingerprint)
	f.v.Forget(f.key.Fingerprint)
	_, err := f.v.Verify(ctx, apiTok, Target{Namespace: apiNS})
	got = f.v.Explain(ctx, apiTok, Target{Namespace: apiNS})
	var e *Error
	if !errors.As(err, &e) || len(got) == 0 || got[len(got)-1].Name != e.Check || got[len(got)-1].Detail != e.Detail {
		t.Fatalf("Verify: %v; Explain: %+v", err, got)
	}

	// exe1 handles get their own step.
	f.reg.addKey(f.key)
	h, _ := NewExe1()
	sealed, _ := SealExe1(h, apiTok)
	f.reg.exe1[string(Exe1ID(h))] = store.Exe1{ID: Exe1ID(h), Fingerprint: f.key.Fingerprint, Sealed: sealed}
	got = f.v.Explain(ctx, h, Target{Namespace: apiNS, Command: "ls"})
	if names(got) != "format=true exe1=true namespace=true key=true signature=true validity=true restrictions=true command=true user=true" {
		t.Fatalf("Explain(exe1) = %s", names(got))
	}
}

func mustECDSA(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestECDSAHighSTokenIsSecondEntry: an ECDSA token and its other encoding
// (s → n-s) are one token: both verify, Canonical is the same, and the
// cache holds one entry for the two (a second string was a second entry).
func TestECDSAHighSTokenIsSecondEntry(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	ec, err := ssh.NewSignerFromKey(mustECDSA(t))
	if err != nil {
		t.Fatal(err)
	}
	f.addKey(ec, "ecdsa", func(*store.Key) {})
	tok := mint(t, ec, apiNS, `{}`)
	x, err := ParseExe0(tok)
	if err != nil {
		t.Fatal(err)
	}
	// The other encoding: the same P, the signature with s' = n - s.
	blob, _ := b64.DecodeString(strings.Split(tok, ".")[2])
	var parts struct {
		Magic                   [6]byte
		Version                 uint32
		Key, NS, Reserved, Hash []byte
		Sig                     []byte
	}
	if err := ssh.Unmarshal(blob, &parts); err != nil {
		t.Fatal(err)
	}
	var sig ssh.Signature
	ssh.Unmarshal(parts.Sig, &sig)
	var rs struct{ R, S *big.Int }
	ssh.Unmarshal(sig.Blob, &rs)
	rs.S.Sub(mustECDSA(t).Curve.Params().N, rs.S)
	sig.Blob = ssh.Marshal(rs)
	parts.Sig = ssh.Marshal(sig)
	other := FormatExe0(x.Payload, ssh.Marshal(parts))
	y, err := ParseExe0(other)
	if err != nil {
		t.Fatal(err)
	}
	if x.Canonical() != y.Canonical() || (x.Canonical() != tok && y.Canonical() != other) {
		t.Fatal("the two encodings do not share one canonical form, itself one of them")
	}
	for _, s := range []string{tok, other, tok, other} {
		if _, err := f.v.Verify(ctx, s, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, size := f.v.CacheStats(); size != 1 {
		t.Errorf("cache holds %d entries for one signature's two encodings, want 1", size)
	}
}
