package assertion_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// newClock is a clock the test moves by hand.
func newClock() *testkit.Clock { return testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

func openStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSecret(t *testing.T) *assertion.Secret {
	t.Helper()
	s, err := assertion.LoadOrCreateSecret(filepath.Join(t.TempDir(), "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newIssuer(t *testing.T, st store.AssertionKeyStore, secret *assertion.Secret, clk *testkit.Clock) *assertion.Issuer {
	t.Helper()
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{
		Store: st, Secret: secret, Domain: "exe.dev", VMDomain: "exe.xyz", Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

var alice = assertion.Identity{
	UserID: "usrALICE", Email: "alice@example.com", Method: assertion.MethodToken,
	Access: tokens.AccessOwner, KeyFingerprint: "SHA256:abc", TokenCtx: []byte(`{"role":"deploy","n":[1,2]}`),
}

var webTLS = assertion.Audience{VM: "web", TLS: true, Port: 443}

// verify checks token with go-jose against the JWKS jwks as a VM would, at
// time at, for the audience aud.
func verify(jwks []byte, token, aud string, at time.Time) (*assertion.Claims, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("not one signature")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, fmt.Errorf("kid %q not in the JWKS", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var c assertion.Claims
	if err := tok.Claims(keys[0].Key, &std, &c); err != nil {
		return nil, err
	}
	if std.Expiry == nil || std.NotBefore == nil || std.IssuedAt == nil {
		return nil, errors.New("missing a time claim")
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://exe.dev", AnyAudience: jwt.Audience{aud}, Time: at}, 0); err != nil {
		return nil, err
	}
	return &c, nil
}

func TestIssuerSignsVerifiableAssertions(t *testing.T) {
	clk := newClock()
	is := newIssuer(t, openStore(t), newSecret(t), clk)
	tok, err := is.Assert(&alice, webTLS)
	if err != nil {
		t.Fatal(err)
	}
	c, err := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	now := clk.Now().Unix()
	want := assertion.Claims{
		Issuer: "https://exe.dev", Subject: "usrALICE", Audience: "https://web.exe.xyz",
		IssuedAt: now, NotBefore: now, Expiry: now + 300, ID: c.ID,
		Email: "alice@example.com", VM: "web", AuthMethod: "token", Access: "owner",
		KeyFingerprint: "SHA256:abc", TokenCtx: `{"role":"deploy","n":[1,2]}`,
	}
	if *c != want || len(c.ID) < 20 {
		t.Fatalf("claims %+v\nwant %+v", *c, want)
	}
	// The header names the key by its RFC 7638 thumbprint, and says JWT.
	parsed, _ := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	h := parsed.Signatures[0].Protected
	var set jose.JSONWebKeySet
	json.Unmarshal(is.JWKS(), &set)
	tp, _ := set.Keys[0].Thumbprint(cryptoSHA256)
	if h.KeyID != is.SigningKeyID() || h.KeyID != b64(tp) || h.ExtraHeaders["typ"] != "JWT" || h.Algorithm != "ES256" {
		t.Errorf("header %+v, kid want %s", h, b64(tp))
	}
	if k := set.Keys[0]; k.Algorithm != "ES256" || k.Use != "sig" || !k.IsPublic() || len(set.Keys) != 1 {
		t.Errorf("JWKS %s", is.JWKS())
	}

	// Refused: another VM, another port, expired, not yet valid, tampered.
	for _, c := range []struct {
		name  string
		token string
		aud   string
		at    time.Time
	}{
		{"other VM", tok, "https://api.exe.xyz", clk.Now()},
		{"other port", tok, "https://web.exe.xyz:8443", clk.Now()},
		{"http", tok, "http://web.exe.xyz", clk.Now()},
		{"expired", tok, "https://web.exe.xyz", clk.Now().Add(301 * time.Second)},
		{"not yet valid", tok, "https://web.exe.xyz", clk.Now().Add(-2 * time.Second)},
		{"tampered payload", tamperPayload(t, tok), "https://web.exe.xyz", clk.Now()},
		{"tampered signature", tamperSignature(tok), "https://web.exe.xyz", clk.Now()},
	} {
		if _, err := verify(is.JWKS(), c.token, c.aud, c.at); err == nil {
			t.Errorf("%s: verified", c.name)
		}
	}
	// The boundary: still valid at exp itself.
	if _, err := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now().Add(300*time.Second)); err != nil {
		t.Errorf("at exp: %v", err)
	}
}

func TestIssuerAudiences(t *testing.T) {
	clk := newClock()
	is := newIssuer(t, openStore(t), newSecret(t), clk)
	for _, c := range []struct {
		aud  assertion.Audience
		want string
	}{
		{assertion.Audience{VM: "web", TLS: true, Port: 443}, "https://web.exe.xyz"},
		{assertion.Audience{VM: "web", TLS: true}, "https://web.exe.xyz"},
		{assertion.Audience{VM: "web", TLS: true, Port: 8443}, "https://web.exe.xyz:8443"},
		{assertion.Audience{VM: "web", Port: 80}, "http://web.exe.xyz"},
		{assertion.Audience{VM: "web", Port: 443}, "http://web.exe.xyz:443"},
		{assertion.Audience{VM: "web", Port: 8080}, "http://web.exe.xyz:8080"},
	} {
		tok, err := is.Assert(&alice, c.aud)
		if err != nil {
			t.Fatal(err)
		}
		got, err := verify(is.JWKS(), tok, c.want, clk.Now())
		if err != nil || got.Audience != c.want {
			t.Errorf("%+v: %v, %v; want aud %s", c.aud, got, err, c.want)
		}
	}
	// A cookie carries neither a key fingerprint nor a ctx.
	bob := assertion.Identity{UserID: "usrBOB", Email: "bob@example.com", Method: assertion.MethodCookie, Access: tokens.AccessShare}
	tok, _ := is.Assert(&bob, webTLS)
	var raw map[string]any
	parsed, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	parsed.UnsafeClaimsWithoutVerification(&raw)
	if _, ok := raw["key_fingerprint"]; ok || raw["token_ctx"] != nil || raw["auth_method"] != "cookie" || raw["access"] != "share" {
		t.Errorf("cookie claims %v", raw)
	}
	// A token without ctx has no token_ctx claim.
	noCtx := alice
	noCtx.TokenCtx = nil
	tok, _ = is.Assert(&noCtx, webTLS)
	raw = nil
	parsed, _ = jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	parsed.UnsafeClaimsWithoutVerification(&raw)
	if _, ok := raw["token_ctx"]; ok || raw["key_fingerprint"] != "SHA256:abc" {
		t.Errorf("token without ctx: claims %v", raw)
	}
	// No access, nothing to vouch for.
	none := alice
	none.Access = tokens.NoAccess
	if _, err := is.Assert(&none, webTLS); !errors.Is(err, assertion.ErrNoAccess) {
		t.Errorf("no access: %v", err)
	}
}

// TestIssuerReuse: the same identity and audience get the same assertion
// until half its lifetime has passed; anything else that differs gets its
// own; a hit allocates nothing.
func TestIssuerReuse(t *testing.T) {
	clk := newClock()
	is := newIssuer(t, openStore(t), newSecret(t), clk)
	first, _ := is.Assert(&alice, webTLS)
	clk.Advance(149 * time.Second)
	if again, _ := is.Assert(&alice, webTLS); again != first {
		t.Fatal("not reused before half its lifetime")
	}
	// Equal values, other memory: still a hit.
	same := alice
	same.TokenCtx = []byte(string(alice.TokenCtx))
	same.UserID = strings.Clone(alice.UserID)
	if again, _ := is.Assert(&same, webTLS); again != first {
		t.Fatal("an equal identity is not reused")
	}
	allocs := testing.AllocsPerRun(100, func() { is.Assert(&alice, webTLS) })
	if allocs != 0 {
		t.Errorf("a reused assertion costs %v allocations, want 0", allocs)
	}
	for name, change := range map[string]func(*assertion.Identity, *assertion.Audience){
		"ctx":         func(id *assertion.Identity, _ *assertion.Audience) { id.TokenCtx = []byte(`{"role":"other"}`) },
		"no ctx":      func(id *assertion.Identity, _ *assertion.Audience) { id.TokenCtx = nil },
		"access":      func(id *assertion.Identity, _ *assertion.Audience) { id.Access = tokens.AccessShare },
		"method":      func(id *assertion.Identity, _ *assertion.Audience) { id.Method = assertion.MethodCookie },
		"fingerprint": func(id *assertion.Identity, _ *assertion.Audience) { id.KeyFingerprint = "SHA256:other" },
		"email":       func(id *assertion.Identity, _ *assertion.Audience) { id.Email = "alice@example.org" },
		"user":        func(id *assertion.Identity, _ *assertion.Audience) { id.UserID = "usrOTHER" },
		"vm":          func(_ *assertion.Identity, a *assertion.Audience) { a.VM = "api" },
		"port":        func(_ *assertion.Identity, a *assertion.Audience) { a.Port = 8443 },
		"scheme":      func(_ *assertion.Identity, a *assertion.Audience) { a.TLS = false },
	} {
		id, aud := alice, webTLS
		change(&id, &aud)
		if other, _ := is.Assert(&id, aud); other == first {
			t.Errorf("%s differs, yet the assertion is reused", name)
		}
	}
	clk.Advance(time.Second) // half the lifetime: signed again
	renewed, _ := is.Assert(&alice, webTLS)
	if renewed == first {
		t.Fatal("reused past half its lifetime")
	}
	c, err := verify(is.JWKS(), renewed, "https://web.exe.xyz", clk.Now())
	if err != nil || c.IssuedAt != clk.Now().Unix() {
		t.Fatalf("renewed: %+v, %v", c, err)
	}
}

// TestIssuerCacheBounded: a flood of identities never grows the cache
// past its bound, and what it holds is still right.
func TestIssuerCacheBounded(t *testing.T) {
	clk := newClock()
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{
		Store: openStore(t), Secret: newSecret(t), Domain: "exe.dev", VMDomain: "exe.xyz", Now: clk.Now, CacheSize: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		id := alice
		id.UserID = fmt.Sprintf("usr%d", i)
		tok, err := is.Assert(&id, webTLS)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now()); err != nil || c.Subject != id.UserID {
			t.Fatalf("identity %d: %+v, %v", i, c, err)
		}
	}
	if n := assertion.CachedAssertions(is); n > 8 {
		t.Fatalf("%d assertions cached, bound 8", n)
	}
}

// TestIssuerCacheFollowsIdentitiesInUse: assertions past their renewal
// (never served again) leave the cache within a minute, full or not, so
// that its memory follows the identities in use rather than every one
// seen (a soak of churned tokens grew by each token's assertion).
func TestIssuerCacheFollowsIdentitiesInUse(t *testing.T) {
	clk := newClock()
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{
		Store: openStore(t), Secret: newSecret(t), Domain: "exe.dev", VMDomain: "exe.xyz", Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	assert := func(i int) {
		t.Helper()
		id := alice
		id.UserID = fmt.Sprintf("usr%d", i)
		if _, err := is.Assert(&id, webTLS); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		assert(i)
	}
	if n := assertion.CachedAssertions(is); n != 50 {
		t.Fatalf("%d assertions cached, want 50", n)
	}
	clk.Advance(assertion.DefaultTTL/2 + time.Minute)
	assert(50)
	if n := assertion.CachedAssertions(is); n != 1 {
		t.Errorf("%d assertions cached after the others passed their renewal, want 1", n)
	}
}

func TestIssuerTTL(t *testing.T) {
	for _, ttl := range []time.Duration{-time.Second, 500 * time.Millisecond, 1500 * time.Millisecond, 11 * time.Minute} {
		_, err := assertion.NewIssuer(context.Background(), assertion.Config{
			Store: openStore(t), Secret: newSecret(t), Domain: "exe.dev", VMDomain: "exe.xyz", TTL: ttl,
		})
		if err == nil {
			t.Errorf("TTL %v accepted", ttl)
		}
	}
	clk := newClock()
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{
		Store: openStore(t), Secret: newSecret(t), Domain: "exe.dev", VMDomain: "exe.xyz", TTL: 10 * time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := is.Assert(&alice, webTLS)
	c, _ := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now())
	if c == nil || c.Expiry-c.IssuedAt != 600 {
		t.Fatalf("10 min TTL: %+v", c)
	}
}

// TestWrongSecret: an instance whose secret does not open the keys in the
// store refuses to start, rather than signing with a key of its own.
func TestWrongSecret(t *testing.T) {
	st := openStore(t)
	clk := newClock()
	newIssuer(t, st, newSecret(t), clk)
	_, err := assertion.NewIssuer(context.Background(), assertion.Config{
		Store: st, Secret: newSecret(t), Domain: "exe.dev", VMDomain: "exe.xyz", Now: clk.Now,
	})
	var wrong *assertion.WrongSecretError
	if !errors.As(err, &wrong) || !strings.Contains(err.Error(), "--secret-key-file") {
		t.Fatalf("start with another secret: %v", err)
	}
	if ks, _ := st.AssertionKeys(context.Background()); len(ks) != 1 {
		t.Fatalf("%d keys after the refused start, want 1 (nothing added)", len(ks))
	}
	// Rotate with the wrong secret adds nothing either.
	if _, err := assertion.Rotate(context.Background(), st, newSecret(t), clk.Now(), true, "admin"); !errors.As(err, &wrong) {
		t.Fatalf("rotate with another secret: %v", err)
	}
	if ks, _ := st.AssertionKeys(context.Background()); len(ks) != 1 {
		t.Fatalf("%d keys after the refused rotate, want 1", len(ks))
	}
}

// TestRotationByTime drives two instances on one store through the
// schedule with one clock: the next key is published a day before it
// signs, both switch to it, and what the old key signed verifies until it
// retires.
func TestRotationByTime(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	secret := newSecret(t)
	clk := newClock()
	a := newIssuer(t, st, secret, clk)
	b := newIssuer(t, st, secret, clk)
	first := a.SigningKeyID()
	if b.SigningKeyID() != first || string(a.JWKS()) != string(b.JWKS()) {
		t.Fatal("two instances on one store disagree on the key")
	}
	old, _ := b.Assert(&alice, webTLS)

	clk.Advance(29 * 24 * time.Hour) // a day before the first key has signed 30 days
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, is := range []*assertion.Issuer{a, b} {
		wg.Go(func() { errs[i] = is.Refresh(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	keys, _ := st.AssertionKeys(ctx)
	if len(keys) != 2 {
		t.Fatalf("%d keys after both rotated at once, want 2", len(keys))
	}
	next := keys[1].ID
	for _, is := range []*assertion.Issuer{a, b} {
		if is.SigningKeyID() != first || !strings.Contains(string(is.JWKS()), next) {
			t.Fatalf("a day ahead: signing with %s, JWKS %s; want %s signing and %s published", is.SigningKeyID(), is.JWKS(), first, next)
		}
	}

	clk.Advance(24 * time.Hour)
	for _, is := range []*assertion.Issuer{a, b} {
		if err := is.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if is.SigningKeyID() != next {
			t.Fatalf("day 30: signing with %s, want %s", is.SigningKeyID(), next)
		}
		tok, _ := is.Assert(&alice, webTLS)
		if _, err := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now()); err != nil || kidOf(tok) != next {
			t.Fatalf("day 30: %s signed by %s: %v", tok, kidOf(tok), err)
		}
	}
	// The old key is still published (an assertion it signed would still
	// verify while valid); gone after 7 days.
	if _, err := verify(a.JWKS(), old, "https://web.exe.xyz", clk.Now().Add(-30*24*time.Hour)); err != nil {
		t.Fatalf("the old key's assertion against the JWKS of day 30: %v", err)
	}
	clk.Advance(7 * 24 * time.Hour)
	a.Refresh(ctx)
	if strings.Contains(string(a.JWKS()), first) {
		t.Fatalf("JWKS 7 days after the old key stopped signing still has it: %s", a.JWKS())
	}
	if _, err := verify(a.JWKS(), old, "https://web.exe.xyz", keys[0].SignFrom); err == nil {
		t.Fatal("an assertion of the retired key verifies")
	}
}

// TestRotateNow: `exed assertion rotate --now` from another process; each
// instance signs with the new key from its next refresh on, without
// reusing an assertion the old key signed.
func TestRotateNow(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	secret := newSecret(t)
	clk := newClock()
	is := newIssuer(t, st, secret, clk)
	before, _ := is.Assert(&alice, webTLS)
	k, err := assertion.Rotate(ctx, st, secret, clk.Now(), true, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := is.Assert(&alice, webTLS); got != before {
		t.Fatal("the key changed before a refresh")
	}
	if err := is.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := is.Assert(&alice, webTLS)
	if kidOf(after) != k.ID || is.SigningKeyID() != k.ID {
		t.Fatalf("after rotate --now and a refresh: signed by %s, want %s", kidOf(after), k.ID)
	}
	for _, tok := range []string{before, after} {
		if _, err := verify(is.JWKS(), tok, "https://web.exe.xyz", clk.Now()); err != nil {
			t.Errorf("%s: %v", kidOf(tok), err)
		}
	}
	// Without --now the new key waits a day.
	k2, err := assertion.Rotate(ctx, st, secret, clk.Now(), false, "admin")
	if err != nil || !k2.SignFrom.Equal(clk.Now().Add(assertion.PublishAhead)) {
		t.Fatalf("rotate: %+v, %v", k2, err)
	}
	is.Refresh(ctx)
	if is.SigningKeyID() != k.ID || !strings.Contains(string(is.JWKS()), k2.ID) {
		t.Fatalf("after rotate: signing with %s, want %s until the new one's turn", is.SigningKeyID(), k.ID)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secret.key")
	// Several processes starting at once agree on one secret.
	var wg sync.WaitGroup
	secrets := make([]*assertion.Secret, 4)
	for i := range secrets {
		wg.Go(func() {
			s, err := assertion.LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
			}
			secrets[i] = s
		})
	}
	wg.Wait()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != assertion.SecretSize {
		t.Fatalf("secret file: %v, %v", fi, err)
	}
	k, err := assertion.Rotate(context.Background(), openStore(t), secrets[0], time.Now(), true, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secrets {
		if !assertion.Opens(s, k) {
			t.Errorf("secret %d does not open the key sealed under secret 0", i)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := assertion.LoadOrCreateSecret(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("a readable secret: %v", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("0123456789"), 0o600)
	if _, err := assertion.LoadOrCreateSecret(short); err == nil || !strings.Contains(err.Error(), "want 32") {
		t.Errorf("a short secret: %v", err)
	}
}

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// kidOf is the kid in a JWT's header (unverified).
func kidOf(token string) string {
	parsed, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return ""
	}
	return parsed.Signatures[0].Protected.KeyID
}

// tamperPayload makes alice the owner of more: the payload re-encoded with
// another email, the signature kept.
func tamperPayload(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p = []byte(strings.Replace(string(p), "alice@example.com", "admin@example.com", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

// tamperSignature flips one bit of the signature.
func tamperSignature(token string) string {
	i := strings.LastIndex(token, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(token[i+1:])
	sig[10] ^= 1
	return token[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// BenchmarkAssertReused is the proxy's hot path with assertions on: a
// reused assertion, looked up in parallel.
func BenchmarkAssertReused(b *testing.B) {
	s, err := sqlstore.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	secret, err := assertion.LoadOrCreateSecret(filepath.Join(b.TempDir(), "secret.key"))
	if err != nil {
		b.Fatal(err)
	}
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{Store: s, Secret: secret, Domain: "exe.dev", VMDomain: "exe.xyz"})
	if err != nil {
		b.Fatal(err)
	}
	// The first Assert signs; what is timed is every one after it.
	first := alice
	if _, err := is.Assert(&first, webTLS); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := alice
		for pb.Next() {
			if _, err := is.Assert(&id, webTLS); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAssertSign is the cost of a fresh assertion (a cache miss).
func BenchmarkAssertSign(b *testing.B) {
	s, err := sqlstore.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	secret, err := assertion.LoadOrCreateSecret(filepath.Join(b.TempDir(), "secret.key"))
	if err != nil {
		b.Fatal(err)
	}
	is, err := assertion.NewIssuer(context.Background(), assertion.Config{Store: s, Secret: secret, Domain: "exe.dev", VMDomain: "exe.xyz", CacheSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := alice
		id.UserID = fmt.Sprint("usr", i)
		i++
		if _, err := is.Assert(&id, webTLS); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRotateEmptyStore: `exed assertion rotate` before any server ran
// adds the first key, and it signs at once (nothing has cached a JWKS
// yet), with or without --now.
func TestRotateEmptyStore(t *testing.T) {
	clk := newClock()
	st := openStore(t)
	secret := newSecret(t)
	k, err := assertion.Rotate(context.Background(), st, secret, clk.Now(), false, "admin")
	if err != nil || k.Generation != 1 || !k.SignFrom.Equal(clk.Now()) {
		t.Fatalf("first rotate: %+v, %v; want generation 1 signing now", k, err)
	}
	if is := newIssuer(t, st, secret, clk); is.SigningKeyID() != k.ID {
		t.Fatalf("a server then signs with %s, want %s", is.SigningKeyID(), k.ID)
	}
}
