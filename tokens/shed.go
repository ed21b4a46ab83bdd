package tokens

import (
	"encoding/binary"
	"sync"
	"time"
)

// Junk shedding: a flood of forged tokens must not cost a signature check
// each. Two defences, both per Verifier and bounded in memory:
//
//   - a token whose signature failed is remembered (by its hash) for the
//     cache TTL, and refused again (ReasonBadSignature) without a check;
//   - each signing key has a budget of failed signatures, a token bucket
//     of DefaultFailureBudget that refills at half that per second. Once
//     it is spent, a token for that key is refused (ReasonThrottled, which
//     callers answer 429) without a check, unless it is known good.
//
// Tokens already known valid are never held to the budget: a result cache
// hit comes before all of this, and every token whose signature verified
// on this key in the last knownGoodFor is remembered as known good, so it
// is still fully verified (and accepted) while its key is throttled. A
// token never seen before may be throttled while its key is flooded: its
// client is told to retry (Retry-After), and is served once the flood
// stops or slows below the refill rate.

const (
	// DefaultFailureBudget is how many failed signatures a key may have in
	// a burst before its tokens are throttled; the budget refills at half
	// that per second. Honest clients do not send bad signatures at all
	// (a bad signature is a forged or corrupted token), so the budget is
	// for mistakes, never reached by real traffic.
	DefaultFailureBudget = 20
	// knownGoodFor is how long a token whose signature verified stays
	// exempt from its key's budget: much longer than the result cache's
	// TTL, so a token in use every few minutes is never throttled.
	knownGoodFor = 10 * time.Minute
	// knownGoodPerKey bounds the tokens remembered as good per key; past
	// it the one seen longest ago gives way. A key rarely signs more
	// tokens in active use (one per deployment, say).
	knownGoodPerKey = 16
	// maxBudgetKeys bounds the keys with a budget or known-good tokens
	// (~300 bytes each).
	maxBudgetKeys = 10_000
	// maxBadTokens bounds the tokens remembered as having failed their
	// signature check.
	maxBadTokens = 4096
)

// shedder holds the failure budgets, the known-good tokens and the
// tokens whose signature failed.
type shedder struct {
	burst float64       // the budget when full
	rate  float64       // its refill, per second
	ttl   time.Duration // how long a bad token is remembered

	mu    sync.Mutex
	keys  map[string]*keyBudget // by fingerprint
	bad   map[cacheKey]time.Time
	swept time.Time // when budget last dropped the idle budgets
}

// shedSweepEvery paces the sweep of idle budgets (full, no live known-good
// token), so that memory follows the keys in use, not every key seen.
const shedSweepEvery = time.Minute

// keyBudget is one key's budget of failed signatures and its known-good
// tokens.
type keyBudget struct {
	left float64   // budget left at at
	at   time.Time // when left was last brought up to date
	good [knownGoodPerKey]knownGood
}

type knownGood struct {
	h     uint64    // the first bytes of the token's cacheKey (see goodHash)
	until time.Time // zero: an empty slot
}

// goodHash is what the known-good set keeps of a token. A collision only
// lets a token through to a full signature check, so 64 bits are plenty.
func goodHash(k cacheKey) uint64 { return binary.LittleEndian.Uint64(k[:8]) }

func newShedder(budget int, ttl time.Duration) *shedder {
	return &shedder{
		burst: float64(budget), rate: float64(budget) / 2, ttl: ttl,
		keys: make(map[string]*keyBudget), bad: make(map[cacheKey]time.Time),
	}
}

// refill brings b's budget up to now.
func (s *shedder) refill(b *keyBudget, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.left = min(s.burst, b.left+d.Seconds()*s.rate)
		b.at = now
	}
}

// budget returns fingerprint's budget, made full if it had none.
func (s *shedder) budget(fingerprint string, now time.Time) *keyBudget {
	b := s.keys[fingerprint]
	if b != nil {
		s.refill(b, now)
		return b
	}
	if now.Sub(s.swept) >= shedSweepEvery {
		s.swept = now
		for fp, b := range s.keys {
			if s.idle(b, now) {
				delete(s.keys, fp)
			}
		}
	}
	if len(s.keys) >= maxBudgetKeys {
		evictOne(s.keys, func(b *keyBudget) bool { return s.idle(b, now) })
	}
	b = &keyBudget{left: s.burst, at: now}
	s.keys[fingerprint] = b
	return b
}

// idle reports whether b holds nothing worth keeping: a full budget and
// no live known-good token.
func (s *shedder) idle(b *keyBudget, now time.Time) bool {
	if b.left+now.Sub(b.at).Seconds()*s.rate < s.burst {
		return false
	}
	for _, g := range b.good {
		if now.Before(g.until) {
			return false
		}
	}
	return true
}

// check says whether a token may go on to its signature check: refused
// as bad (its signature failed within the TTL) or throttled (its key's
// budget is spent and the token is not known good).
func (s *shedder) check(fingerprint string, k cacheKey, now time.Time) (bad, throttled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.bad[k]; ok {
		if now.Before(until) {
			return true, false
		}
		delete(s.bad, k)
	}
	b := s.keys[fingerprint]
	if b == nil {
		return false, false
	}
	s.refill(b, now)
	if b.left >= 1 {
		return false, false
	}
	h := goodHash(k)
	for _, g := range b.good {
		if g.h == h && now.Before(g.until) {
			return false, false
		}
	}
	return false, true
}

// failed records a failed signature check: the token is remembered as
// bad and its key's budget goes down by one.
func (s *shedder) failed(fingerprint string, k cacheKey, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bad[k]; !ok && len(s.bad) >= maxBadTokens {
		evictOne(s.bad, func(until time.Time) bool { return !now.Before(until) })
	}
	s.bad[k] = now.Add(s.ttl)
	b := s.budget(fingerprint, now)
	b.left = max(0, b.left-1)
}

// verified records a token whose signature verified as known good for
// its key.
func (s *shedder) verified(fingerprint string, k cacheKey, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.budget(fingerprint, now)
	h, until := goodHash(k), now.Add(knownGoodFor)
	oldest := 0
	for i, g := range b.good {
		if g.h == h {
			b.good[i].until = until
			return
		}
		if g.until.Before(b.good[oldest].until) {
			oldest = i
		}
	}
	b.good[oldest] = knownGood{h: h, until: until}
}

// forgetKey drops fingerprint's budget and known-good tokens: the key was
// removed or changed (Verifier.Forget), so what they vouched for is moot.
func (s *shedder) forgetKey(fingerprint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, fingerprint)
}

// forgetBad drops every token remembered as bad (ForgetAll).
func (s *shedder) forgetBad() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bad = make(map[cacheKey]time.Time)
}
