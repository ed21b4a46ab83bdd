package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
)

// forged returns n distinct tokens of f's key whose signatures do not
// verify, numbered from "from": each P with the signature of another P, as
// a forger would send.
func (f *fixture) forged(t testing.TB, ns string, from, n int) []string {
	t.Helper()
	_, sig := parts(t, mint(t, f.signer, ns, `{}`))
	toks := make([]string, n)
	for i := range toks {
		toks[i] = "exe0." + enc(fmt.Sprintf(`{"ctx":%d}`, from+i)) + "." + sig
	}
	return toks
}

// TestRepeatedForgedTokenRefusedWithoutSignatureCheck: a token whose
// signature failed is refused again without a check, for the TTL.
func TestRepeatedForgedTokenRefusedWithoutSignatureCheck(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	tok := f.forged(t, apiNS, 0, 1)[0]
	for range 5 {
		_, err := f.v.Verify(ctx, tok, api)
		wantReason(t, err, ReasonBadSignature, CheckSignature)
	}
	if n := f.v.sigChecks.Load(); n != 1 {
		t.Fatalf("%d signature checks for one forged token sent 5 times, want 1", n)
	}
	f.clock.Advance(DefaultCacheTTL)
	_, err := f.v.Verify(ctx, tok, api)
	wantReason(t, err, ReasonBadSignature, CheckSignature)
	if n := f.v.sigChecks.Load(); n != 2 {
		t.Fatalf("after the TTL: %d signature checks, want 2", n)
	}
}

// TestForgedFloodThrottledWithoutSignatureCheck: distinct forged tokens
// against one key are checked until the key's budget is spent, then
// refused with ReasonThrottled (ErrThrottled, answered 429) without a
// check, until the budget refills.
func TestForgedFloodThrottledWithoutSignatureCheck(t *testing.T) {
	var reasons sync.Map
	f := newFixture(t, Config{OnVerify: func(r Reason) {
		n, _ := reasons.LoadOrStore(r, new(int))
		*n.(*int)++
	}})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	flood := f.forged(t, apiNS, 0, 100)
	for i, tok := range flood[:DefaultFailureBudget] {
		_, err := f.v.Verify(ctx, tok, api)
		wantReason(t, err, ReasonBadSignature, CheckSignature)
		if n := f.v.sigChecks.Load(); n != uint64(i+1) {
			t.Fatalf("forged token %d: %d signature checks", i, n)
		}
	}
	for _, tok := range flood[DefaultFailureBudget:] {
		_, err := f.v.Verify(ctx, tok, api)
		wantReason(t, err, ReasonThrottled, CheckSignature)
		if !errors.Is(err, ErrThrottled) {
			t.Fatalf("errors.Is(%v, ErrThrottled) is false", err)
		}
	}
	if n := f.v.sigChecks.Load(); n != DefaultFailureBudget {
		t.Fatalf("%d signature checks for a flood of 100, want the budget's %d", n, DefaultFailureBudget)
	}
	if n, _ := reasons.Load(ReasonThrottled); n == nil || *n.(*int) != 100-DefaultFailureBudget {
		t.Errorf("OnVerify told of %v throttled refusals, want %d", n, 100-DefaultFailureBudget)
	}

	// The budget refills at half its size per second: after one second,
	// ten more are checked.
	f.clock.Advance(time.Second)
	more := f.forged(t, apiNS, 100, 100)
	for _, tok := range more {
		f.v.Verify(ctx, tok, api)
	}
	if n := f.v.sigChecks.Load(); n != DefaultFailureBudget+DefaultFailureBudget/2 {
		t.Fatalf("%d signature checks after a second's refill, want %d", n, DefaultFailureBudget+DefaultFailureBudget/2)
	}

	// Another key is not affected.
	other := testkit.NewSigner(t)
	f.addKey(other, "other", func(*store.Key) {})
	if _, err := f.v.Verify(ctx, mint(t, other, apiNS, `{}`), api); err != nil {
		t.Fatalf("another key's token during the flood: %v", err)
	}
}

// TestValidTokenNotThrottledDuringFlood: a token known valid passes while
// its key is throttled: from the result cache, and, once its entry has
// expired, because it is known good (fully verified again, not held to
// the budget). A brand-new token of the key may be throttled: that is the
// documented price of the flood.
func TestValidTokenNotThrottledDuringFlood(t *testing.T) {
	for _, c := range []Config{{}, {CacheSize: -1}} {
		t.Run(fmt.Sprintf("CacheSize %d", c.CacheSize), func(t *testing.T) {
			f := newFixture(t, c)
			ctx := context.Background()
			api := Target{Namespace: apiNS}
			good := mint(t, f.signer, apiNS, `{"ctx":"good"}`)
			if _, err := f.v.Verify(ctx, good, api); err != nil {
				t.Fatal(err)
			}
			throttle := func(flood []string) {
				t.Helper()
				for _, tok := range flood {
					f.v.Verify(ctx, tok, api)
				}
				if _, err := f.v.Verify(ctx, mint(t, f.signer, apiNS, `{"ctx":"new"}`), api); !errors.Is(err, ErrThrottled) {
					t.Fatalf("a new token during the flood: %v, want throttled", err)
				}
			}
			throttle(f.forged(t, apiNS, 0, 40))
			if _, err := f.v.Verify(ctx, good, api); err != nil {
				t.Fatalf("the known token during the flood: %v", err)
			}

			// Its cache entry expires; the flood goes on.
			f.clock.Advance(2 * DefaultCacheTTL)
			throttle(f.forged(t, apiNS, 100, 40))
			checks := f.v.sigChecks.Load()
			if _, err := f.v.Verify(ctx, good, api); err != nil {
				t.Fatalf("the known-good token after its cache entry expired, during the flood: %v", err)
			}
			if f.v.sigChecks.Load() != checks+1 {
				t.Error("the known-good token was not verified in full")
			}
		})
	}
}

// TestExplainBypassesShedding: check-api-key runs every step whatever the
// budget: a new token of a throttled key is checked (and valid), a token
// remembered as bad has its signature checked again.
func TestExplainBypassesShedding(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	flood := f.forged(t, apiNS, 0, 40)
	for _, tok := range flood {
		f.v.Verify(ctx, tok, api)
	}
	fresh := mint(t, f.signer, apiNS, `{}`)
	for _, c := range f.v.Explain(ctx, fresh, api) {
		if !c.OK {
			t.Fatalf("Explain of a valid token of a throttled key: %+v", c)
		}
	}
	checks := f.v.sigChecks.Load()
	got := f.v.Explain(ctx, flood[0], api)
	if last := got[len(got)-1]; last.Name != CheckSignature || last.OK || f.v.sigChecks.Load() != checks+1 {
		t.Fatalf("Explain of a known-bad token: %+v, %d signature checks", got, f.v.sigChecks.Load()-checks)
	}
}

// TestNoFailureBudget: FailureBudget < 0 checks every signature.
func TestNoFailureBudget(t *testing.T) {
	f := newFixture(t, Config{FailureBudget: -1})
	ctx := context.Background()
	flood := f.forged(t, apiNS, 0, 30)
	for _, tok := range append(flood, flood...) {
		_, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS})
		wantReason(t, err, ReasonBadSignature, CheckSignature)
	}
	if n := f.v.sigChecks.Load(); n != 60 {
		t.Fatalf("%d signature checks, want 60", n)
	}
}

// TestShedderBounded: the budgets, known-good tokens and bad tokens a
// Verifier keeps are bounded however many keys and tokens arrive.
func TestShedderBounded(t *testing.T) {
	s := newShedder(DefaultFailureBudget, time.Second)
	for i := range maxBudgetKeys + 100 {
		var k cacheKey
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		fp := fmt.Sprint("SHA256:", i)
		s.failed(fp, k, t0)
		s.verified(fp, k, t0)
		for range knownGoodPerKey + 2 {
			k[3]++
			s.verified(fp, k, t0)
		}
	}
	if len(s.keys) > maxBudgetKeys || len(s.bad) > maxBadTokens {
		t.Fatalf("%d budgets and %d bad tokens, over the bounds %d and %d", len(s.keys), len(s.bad), maxBudgetKeys, maxBadTokens)
	}
}

// TestShedderFollowsKeysInUse: a removed (forgotten) key's budget goes at
// once, and idle budgets (full, no live known-good token) within a minute,
// so that memory follows the keys in use rather than every key seen.
func TestShedderFollowsKeysInUse(t *testing.T) {
	s := newShedder(DefaultFailureBudget, time.Second)
	for i := range 100 {
		var k cacheKey
		k[0] = byte(i)
		s.verified(fmt.Sprint("SHA256:", i), k, t0)
	}
	s.forgetKey("SHA256:7")
	if _, ok := s.keys["SHA256:7"]; ok || len(s.keys) != 99 {
		t.Fatalf("after forgetKey: %d budgets, SHA256:7's kept: %v", len(s.keys), ok)
	}
	later := t0.Add(knownGoodFor + shedSweepEvery)
	s.verified("SHA256:new", cacheKey{1, 2, 3}, later)
	if len(s.keys) != 1 {
		t.Errorf("%d budgets once the others' known-good tokens expired, want 1", len(s.keys))
	}
}

// TestFloodConcurrent: valid traffic, a forged flood and Forget at once,
// under -race; the valid token is never refused.
func TestFloodConcurrent(t *testing.T) {
	f := newFixture(t, Config{CacheSize: 4})
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	good := mint(t, f.signer, apiNS, `{"ctx":"good"}`)
	flood := f.forged(t, apiNS, 0, 64)
	if _, err := f.v.Verify(ctx, good, api); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch {
				case w == 0 && i%20 == 0:
					f.v.Forget(f.key.Fingerprint)
				case w%2 == 0:
					if _, err := f.v.Verify(ctx, good, api); err != nil {
						errs <- err
						return
					}
				default:
					f.v.Verify(ctx, flood[(w*i)%len(flood)], api)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
