package tokens

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
)

// TestKeyCacheSkipsRegistry: a token the result cache has not seen, for a
// key seen within the TTL, is verified without a registry round trip.
func TestKeyCacheSkipsRegistry(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":1}`), api); err != nil {
		t.Fatal(err)
	}
	calls := f.reg.calls()
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":2}`), api); err != nil {
		t.Fatal(err)
	}
	if f.reg.calls() != calls {
		t.Fatal("a new token of a cached key went to the registry")
	}
	// After the TTL the key is read again.
	f.clock.Advance(DefaultCacheTTL)
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":3}`), api); err != nil {
		t.Fatal(err)
	}
	if f.reg.calls() != calls+1 {
		t.Fatalf("registry called %d times after the TTL, want 1", f.reg.calls()-calls)
	}
}

// TestRemovedKeyRefusedOnceForgetReturns: a removed key is refused the
// moment Forget returns, for the token that was cached and for one that
// was not (which the key cache would otherwise answer).
func TestRemovedKeyRefusedOnceForgetReturns(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	used := mint(t, f.signer, apiNS, `{"ctx":1}`)
	fresh := mint(t, f.signer, apiNS, `{"ctx":2}`)
	if _, err := f.v.Verify(ctx, used, api); err != nil {
		t.Fatal(err)
	}
	f.reg.removeKey(f.key.Fingerprint)
	f.v.Forget(f.key.Fingerprint)
	for _, tok := range []string{used, fresh} {
		_, err := f.v.Verify(ctx, tok, api)
		wantReason(t, err, ReasonUnknownKey, CheckKey)
	}
}

// TestRemovedKeyRefusedAfterTTLWithoutForget: a removal nobody announced
// (another instance's) is seen within the TTL, not a nanosecond later.
func TestRemovedKeyRefusedAfterTTLWithoutForget(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: 10 * time.Second})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":1}`), api); err != nil {
		t.Fatal(err)
	}
	f.reg.removeKey(f.key.Fingerprint)
	f.clock.Advance(10*time.Second - time.Nanosecond)
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":2}`), api); err != nil {
		t.Fatalf("a new token within the TTL (key cache): %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	_, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":3}`), api)
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

// TestForgetDuringKeyLookup: a Forget that lands while the registry is
// being read stops the key being cached, as it stops the result.
func TestForgetDuringKeyLookup(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	f.reg.onKey = func() { f.v.Forget(f.key.Fingerprint) }
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":1}`), api); err != nil {
		t.Fatal(err)
	}
	f.reg.onKey = nil
	f.reg.removeKey(f.key.Fingerprint)
	_, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":2}`), api)
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

// TestUnknownKeyRememberedAndForgotten: junk signed by an unregistered key
// reaches the registry once per TTL; the key, once added and announced
// (Forget, or ForgetAll), works at once.
func TestUnknownKeyRememberedAndForgotten(t *testing.T) {
	for _, forget := range []string{"Forget", "ForgetAll"} {
		t.Run(forget, func(t *testing.T) {
			f := newFixture(t, Config{CacheTTL: time.Hour})
			ctx := context.Background()
			api := Target{Namespace: apiNS}
			s := testkit.NewSigner(t)
			calls := f.reg.calls()
			for i := range 5 {
				_, err := f.v.Verify(ctx, mint(t, s, apiNS, fmt.Sprintf(`{"ctx":%d}`, i)), api)
				wantReason(t, err, ReasonUnknownKey, CheckKey)
			}
			if n := f.reg.calls() - calls; n != 1 {
				t.Fatalf("an unknown key went to the registry %d times, want 1", n)
			}
			k := f.addKey(s, "new", func(*store.Key) {})
			if forget == "Forget" {
				f.v.Forget(k.Fingerprint)
			} else {
				f.v.ForgetAll()
			}
			if _, err := f.v.Verify(ctx, mint(t, s, apiNS, `{"ctx":0}`), api); err != nil {
				t.Fatalf("a key just added and announced: %v", err)
			}
		})
	}
}

// TestForgetUser: a key whose user did not exist is looked up again once
// the user is announced, and ForgetUser drops that user's keys only.
func TestForgetUser(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	early := testkit.NewSigner(t)
	f.addKey(early, "early", func(k *store.Key) { k.UserID = "usr3" })
	_, err := f.v.Verify(ctx, mint(t, early, apiNS, `{}`), api)
	wantReason(t, err, ReasonUnknownKey, CheckUser)

	f.reg.addUser(store.User{ID: "usr3", Email: "c@example.com"})
	_, err = f.v.Verify(ctx, mint(t, early, apiNS, `{"ctx":1}`), api)
	wantReason(t, err, ReasonUnknownKey, CheckUser) // the key cache still says no user
	f.v.ForgetUser("usr3")
	if g, err := f.v.Verify(ctx, mint(t, early, apiNS, `{"ctx":2}`), api); err != nil || g.User.ID != "usr3" {
		t.Fatalf("after ForgetUser: %+v, %v", g, err)
	}

	// usr1's key stays cached through usr3's change, and goes with usr1's.
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":1}`), api); err != nil {
		t.Fatal(err)
	}
	calls := f.reg.calls()
	f.v.ForgetUser("usr3")
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":2}`), api); err != nil || f.reg.calls() != calls {
		t.Fatalf("another user's change dropped usr1's key: %v, %d registry calls", err, f.reg.calls()-calls)
	}
	if _, err := f.v.Verify(ctx, mint(t, early, apiNS, `{"ctx":3}`), api); err != nil {
		t.Fatal(err)
	}
	if _, _, size := f.v.CacheStats(); size != 3 {
		t.Fatalf("the result cache holds %d entries, want 3 (two of usr1's, one of usr3's)", size)
	}
	calls = f.reg.calls()
	f.v.ForgetUser(f.user.ID)
	if _, _, size := f.v.CacheStats(); size != 1 {
		t.Errorf("after ForgetUser(usr1) the result cache holds %d entries, want usr3's 1", size)
	}
	if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":3}`), api); err != nil || f.reg.calls() != calls+1 {
		t.Fatalf("after ForgetUser: %v, %d registry calls, want 1", err, f.reg.calls()-calls)
	}
}

// TestForgetAll drops every cached result and key.
func TestForgetAll(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Hour})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	tok := mint(t, f.signer, apiNS, `{}`)
	if _, err := f.v.Verify(ctx, tok, api); err != nil {
		t.Fatal(err)
	}
	f.reg.removeKey(f.key.Fingerprint)
	f.v.ForgetAll()
	if _, _, size := f.v.CacheStats(); size != 0 {
		t.Fatalf("%d results cached after ForgetAll", size)
	}
	_, err := f.v.Verify(ctx, tok, api)
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

// TestKeyCacheConfig: CacheSize < 0 turns the key cache off too (every
// Verify reads the registry), unless KeyCacheSize asks for one; and the
// key cache holds at most KeyCacheSize keys.
func TestKeyCacheConfig(t *testing.T) {
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	for _, tt := range []struct {
		c     Config
		calls int
	}{
		{Config{CacheSize: -1}, 3},
		{Config{CacheSize: -1, KeyCacheSize: 10}, 1},
		{Config{KeyCacheSize: -1}, 3},
		{Config{}, 1},
	} {
		f := newFixture(t, tt.c)
		for i := range 3 {
			if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, fmt.Sprintf(`{"ctx":%d}`, i)), api); err != nil {
				t.Fatal(err)
			}
		}
		if f.reg.calls() != tt.calls {
			t.Errorf("%+v: %d registry calls for 3 tokens, want %d", tt.c, f.reg.calls(), tt.calls)
		}
	}

	f := newFixture(t, Config{KeyCacheSize: 2, CacheTTL: time.Hour})
	for i := range 5 {
		s := testkit.NewSigner(t)
		f.addKey(s, fmt.Sprint("k", i), func(*store.Key) {})
		if _, err := f.v.Verify(ctx, mint(t, s, apiNS, `{}`), api); err != nil {
			t.Fatal(err)
		}
		if n := len(f.v.keys.known); n > 2 {
			t.Fatalf("key cache holds %d keys, over its bound 2", n)
		}
	}
	var gen atomic.Uint64
	c := newKeyCache(1, time.Hour, &gen)
	for i := range maxUnknownKeys + 10 {
		c.put(fmt.Sprint("SHA256:", i), nil, 0, t0)
	}
	if len(c.unknown) > maxUnknownKeys {
		t.Errorf("%d unknown fingerprints remembered, over the bound %d", len(c.unknown), maxUnknownKeys)
	}
}
