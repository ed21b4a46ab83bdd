package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/exed-dev/exed/store"
)

// Registry is what the Verifier needs from the store; store.Store
// satisfies it.
type Registry interface {
	// KeyAndUser is one round trip for the key and its user; see
	// store.Store.KeyAndUser for how a missing user is told apart.
	KeyAndUser(ctx context.Context, fingerprint string) (store.Key, store.User, error)
	Exe1(ctx context.Context, id []byte) (store.Exe1, error)
}

// Target says what a token is being used for.
type Target struct {
	Namespace string    // the namespace the token must be signed in
	VM        *store.VM // the VM being reached (the signer's user must Reach it); nil for the API
	Command   string    // /exec: canonical command path to check against cmds; "" = no command check
}

// Grant is what a valid token proves. A Grant returned by Verify may be
// shared with the Verifier's cache: treat it, and the slices in it, as
// read-only.
type Grant struct {
	User  store.User
	Key   store.Key // the signing key, as registered
	Perms Permissions
	// Ctx is Perms.Ctx as a string ("" when the token has none), made once
	// per verification rather than once per request: the proxy's
	// X-ExeDev-Token-Ctx header value.
	Ctx string
}

// Reason classifies a verification failure. The set is fixed (it is used
// as a metrics label, so it must never come from input).
type Reason string

// The reasons a token is refused.
const (
	ReasonMalformed    Reason = "malformed"     // breaks a format rule
	ReasonNamespace    Reason = "namespace"     // signed for another namespace
	ReasonUnknownKey   Reason = "unknown_key"   // signing key (or exe1 handle, or user) not registered
	ReasonBadSignature Reason = "bad_signature" // signature does not verify over P
	ReasonExpired      Reason = "expired"       // now > exp
	ReasonNotYetValid  Reason = "not_yet_valid" // now < nbf
	ReasonRestricted   Reason = "restricted"    // outside the signing key's own VM, cmds or expiry
	ReasonVM           Reason = "vm"            // the signer's user may not reach the VM
	ReasonNotGranted   Reason = "not_granted"   // command not granted by the token's cmds
	ReasonInternal     Reason = "internal"      // the registry failed; not the token's fault
	// ReasonThrottled: the signing key is past its budget of failed
	// signatures (a forged-token flood), so a token not already known
	// valid is refused without a signature check. Not the token's fault
	// either: callers answer 429 with Retry-After (ErrThrottled).
	ReasonThrottled Reason = "throttled"
)

// Names of the checks, in the order they run. They appear in Error.Check
// and in Explain's output (`ssh-key check-api-key --json`).
const (
	CheckFormat       = "format"       // ParseExe0, or the exe1 handle's shape
	CheckExe1         = "exe1"         // exe1 only: look the handle up and open its exe0
	CheckNamespace    = "namespace"    // signed in Target.Namespace
	CheckKey          = "key"          // signing key registered
	CheckSignature    = "signature"    // signature valid over P
	CheckValidity     = "validity"     // exp and nbf against now
	CheckRestrictions = "restrictions" // the signing key's VM, cmds and expiry
	CheckVM           = "vm"           // the key's user may reach Target.VM (Reach)
	CheckCommand      = "command"      // Target.Command granted by the token's cmds
	CheckUser         = "user"         // the key's user exists
)

// ErrNotGranted matches (errors.Is) an *Error whose Reason is
// ReasonNotGranted: /exec answers it 403 rather than 401.
var ErrNotGranted = errors.New("tokens: command not granted")

// ErrThrottled matches (errors.Is) an *Error whose Reason is
// ReasonThrottled: callers answer it 429 with a Retry-After of
// ThrottleRetryAfter, not 401.
var ErrThrottled = errors.New("tokens: signing key throttled after failed signatures")

// ThrottleRetryAfter is what a throttled client is told to wait.
const ThrottleRetryAfter = time.Second

// Error is a verification failure. Its text is precise, for logs and
// check-api-key; it never contains the token. Clients are told only
// "invalid token" (or, for ErrNotGranted, that the command is not granted).
type Error struct {
	Check  string // which check failed (Check… constants)
	Reason Reason
	Detail string
	Err    error // the underlying error, if any
}

func (e *Error) Error() string { return e.Check + ": " + e.Detail }

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotGranted) true for a command refusal and
// errors.Is(err, ErrThrottled) for a throttled key.
func (e *Error) Is(target error) bool {
	return target == ErrNotGranted && e.Reason == ReasonNotGranted ||
		target == ErrThrottled && e.Reason == ReasonThrottled
}

// Check is one step of a verification, as Explain reports it.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Config configures a Verifier.
type Config struct {
	Registry  Registry
	Now       func() time.Time // nil → time.Now
	CacheSize int              // max cached positive results; 0 → DefaultCacheSize; < 0 → no cache
	// CacheBytes bounds the cache's estimated memory (every string and
	// slice an entry holds, a large ctx included); 0 → DefaultCacheBytes.
	CacheBytes int64
	CacheTTL   time.Duration // max age of a cached result (and of a cached key); ≤ 0 → DefaultCacheTTL
	// KeyCacheSize bounds the keys (each with its user) cached by
	// fingerprint, so that a token the result cache misses skips the
	// registry when its key was seen within the TTL; unregistered
	// fingerprints are remembered too, apart (up to 4096). 0 →
	// DefaultKeyCacheSize, or no key cache at all when CacheSize < 0;
	// < 0 → no key cache. (CacheSize: -1 with KeyCacheSize > 0 is the
	// path of every result-cache miss.)
	KeyCacheSize int
	// FailureBudget is how many failed signatures a signing key may have
	// in a burst before its tokens not known good are refused
	// (ReasonThrottled) without a signature check; it refills at half
	// that per second. Tokens whose signature failed are remembered for
	// the TTL and refused without a check. 0 → DefaultFailureBudget;
	// < 0 → neither.
	FailureBudget int
	// OnVerify, if set, is told the outcome of every Verify (not Explain):
	// "" for a valid token, else the refusal's Reason. It runs on the
	// request path, so it must be cheap (a metrics counter).
	OnVerify func(Reason)
}

// Cache defaults.
const (
	// DefaultCacheSize covers every token in active use on a busy
	// instance (the cache fills only if that many distinct tokens arrive
	// within one TTL). An entry is about 0.6 KB with an ed25519 key and
	// no ctx, and up to about 12 KB with the largest ctx a token can hold
	// (held twice: P's bytes, and the header value Grant.Ctx made once per
	// verification), so memory is bounded by bytes as well
	// (DefaultCacheBytes).
	DefaultCacheSize = 100_000
	// DefaultCacheBytes bounds the cache's estimated memory: 64 MiB, a
	// hundred thousand ordinary entries or five thousand of the largest.
	DefaultCacheBytes = 64 << 20
	// DefaultCacheTTL bounds how long a key removed through another
	// instance sharing the registry keeps working here: a removed key is
	// refused everywhere within one second.
	DefaultCacheTTL = time.Second
	// DefaultKeyCacheSize covers the keys in active use on a busy
	// instance; an entry is well under a kilobyte (an RSA-4096 key is the
	// largest), so ten thousand take a few megabytes at most.
	DefaultKeyCacheSize = 10_000
)

// Verifier checks tokens. It is the only place that does: the proxy, /exec,
// exe0-to-exe1 and check-api-key all call it. It is safe for concurrent use.
type Verifier struct {
	reg      Registry
	now      func() time.Time
	ttl      time.Duration
	cache    *cache       // results by token; nil: disabled
	keys     *keyCache    // registry answers by fingerprint; nil: disabled
	shed     *shedder     // failure budgets and bad tokens; nil: disabled
	onVerify func(Reason) // nil: nobody listens

	// gen moves on every Forget, ForgetUser and ForgetAll, before they
	// drop anything. A verification reads it before it reads the key (from
	// the registry or the key cache) and caches nothing if it has moved by
	// the time it stores: each cache checks it under its own lock, so a
	// store either sees the move and is dropped, or lands before the
	// forget's drop and is dropped by it.
	gen atomic.Uint64
	// sigChecks counts signature checks (for the tests of junk shedding).
	sigChecks atomic.Uint64
}

// NewVerifier returns a Verifier. It panics if c.Registry is nil, a
// wiring mistake better found at start than on the first request.
func NewVerifier(c Config) *Verifier {
	if c.Registry == nil {
		panic("tokens: NewVerifier: nil Registry")
	}
	v := &Verifier{reg: c.Registry, now: c.Now, ttl: c.CacheTTL, onVerify: c.OnVerify}
	if v.now == nil {
		v.now = time.Now
	}
	if v.ttl <= 0 {
		v.ttl = DefaultCacheTTL
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	switch {
	case c.CacheSize == 0:
		v.cache = newCache(DefaultCacheSize, c.CacheBytes, v.ttl, &v.gen)
	case c.CacheSize > 0:
		v.cache = newCache(c.CacheSize, c.CacheBytes, v.ttl, &v.gen)
	}
	switch {
	case c.KeyCacheSize == 0 && c.CacheSize >= 0:
		v.keys = newKeyCache(DefaultKeyCacheSize, v.ttl, &v.gen)
	case c.KeyCacheSize > 0:
		v.keys = newKeyCache(c.KeyCacheSize, v.ttl, &v.gen)
	}
	switch {
	case c.FailureBudget == 0:
		v.shed = newShedder(DefaultFailureBudget, v.ttl)
	case c.FailureBudget > 0:
		v.shed = newShedder(c.FailureBudget, v.ttl)
	}
	return v
}

// Verify checks an exe0 or exe1 token for use on t. The steps, in order,
// stopping at the first failure:
//
//	format (ParseExe0, or the exe1 shape → Registry.Exe1 → OpenExe1 → ParseExe0)
//	→ namespace == t.Namespace
//	→ the key registered (Registry.KeyAndUser, which fetches its user too),
//	  before any cryptography, so unknown keys are cheap
//	→ signature over P
//	→ exp and nbf against now
//	→ the signing key's restrictions: its expiry, its VM, its cmds
//	→ the key's user may reach t.VM (Reach)
//	→ t.Command granted by the token's cmds
//	→ the key's user exists.
//
// A valid result is cached (keyed by a hash of the token) for at most the
// cache TTL; a hit skips the registry and the cryptography but re-checks
// everything that depends on now or on t. The registry's answer for a key
// is cached as well (Config.KeyCacheSize), for the same TTL, so a miss for
// a known key skips the registry; a fingerprint it does not know is
// remembered as such.
//
// Before the signature check, junk is shed (Config.FailureBudget): a
// token whose signature failed within the TTL is refused again
// (ReasonBadSignature) without a check, and once a key has spent its
// budget of failed signatures, its tokens not known good are refused with
// ReasonThrottled, also without a check. A token known good (its signature
// verified in the last ten minutes) is never throttled; a new one may be,
// while its key is flooded.
//
// Errors are *Error. Callers answer clients only "invalid token" (401),
// except errors.Is(err, ErrNotGranted), which /exec answers 403, and
// errors.Is(err, ErrThrottled), answered 429 with Retry-After.
func (v *Verifier) Verify(ctx context.Context, token string, t Target) (*Grant, error) {
	g, err := v.run(ctx, token, t, nil, nil)
	v.report(err)
	return g, err
}

// report tells OnVerify the outcome of one verification.
func (v *Verifier) report(err error) {
	if v.onVerify == nil {
		return
	}
	var reason Reason
	if e, ok := err.(*Error); ok {
		reason = e.Reason
	} else if err != nil {
		reason = ReasonInternal // not reached: run returns only *Error
	}
	v.onVerify(reason)
}

// Pending is a token that passed every check of Verify but the command's,
// and is not cached yet: /exec holds one while it applies its rate limit
// and reads the body, which names the command. Finish completes it.
type Pending struct {
	v     *Verifier
	grant *Grant
	t     Target
	put   func() // caches the result; nil when there is nothing to cache
}

// Grant is what the token proves so far: its key and user (the rate limit
// goes by the key). Treat it as read-only.
func (p *Pending) Grant() *Grant { return p.grant }

// Begin is the first half of Verify for a caller that checks the
// credential before it knows the command (/exec, which must not read a
// body for a client without a valid token): every check but t.Command's,
// without caching. A failure is reported (OnVerify) at once. Finish, once
// the caller has admitted the request (its rate limit), checks the
// command, reports the outcome and caches a valid result: so nothing a
// rate-limited request brings is cached.
func (v *Verifier) Begin(ctx context.Context, token string, t Target) (*Pending, error) {
	t.Command = ""
	p := &Pending{v: v, t: t}
	g, err := v.run(ctx, token, t, nil, p)
	if err != nil {
		v.report(err)
		return nil, err
	}
	p.grant = g
	return p, nil
}

// Finish checks that command (a canonical path; "" for none: --help) is
// allowed by the token and its key, reports the outcome, and caches the
// result if it is valid. Errors are *Error, as Verify's.
func (p *Pending) Finish(command string) (*Grant, error) {
	t := p.t
	t.Command = command
	err := checkUse(p.v.now(), &p.grant.Key, &p.grant.Perms, t, nil)
	p.v.report(err)
	if err != nil {
		return nil, err
	}
	if p.put != nil {
		p.put()
	}
	return p.grant, nil
}

// Explain runs Verify's steps (the same code, bypassing the caches and
// the junk shedding, so every step really runs and none is refused for
// another token's sake) and reports each one, for `ssh-key check-api-key`.
// Steps after the first failure are not run; steps that do not apply to t
// (vm, command) are left out.
func (v *Verifier) Explain(ctx context.Context, token string, t Target) []Check {
	r := &report{}
	v.run(ctx, token, t, r, nil)
	return r.checks
}

// Forget drops every cached result whose token was signed by fingerprint,
// whatever token bytes reached it (an ECDSA signature can be re-encoded, so
// invalidating by token string alone would not do), and the cached key
// (or the memory that it is not registered). Call it when a key is added,
// removed or changed (store.KeyChanged): once it returns, a removed key's
// tokens are refused and an added key's accepted on this instance. A
// verification already in flight when Forget is called caches nothing.
func (v *Verifier) Forget(fingerprint string) {
	if fingerprint != "" {
		v.forget(fingerprint, "")
		if v.shed != nil {
			v.shed.forgetKey(fingerprint)
		}
	}
}

// ForgetUser drops the cached keys of userID and the cached results of
// tokens they signed. Call it when a user changes (store.UserChanged): a
// key whose user did not exist yet is looked up again.
func (v *Verifier) ForgetUser(userID string) {
	if userID != "" {
		v.forget("", userID)
	}
}

// ForgetAll drops every cached result and key, and every token remembered
// as bad: call it when changes may have been missed (a lost notification
// feed), so that nothing cached outlives the registry it came from. The
// failure budgets and known-good tokens stay: they hold no registry data.
func (v *Verifier) ForgetAll() {
	v.forget("", "")
	if v.shed != nil {
		v.shed.forgetBad()
	}
}

// forget is Forget (fingerprint), ForgetUser (userID) or ForgetAll
// (neither): the generation moves first (see Verifier.gen), then the key
// cache and the result cache drop what they hold of it.
func (v *Verifier) forget(fingerprint, userID string) {
	v.gen.Add(1)
	if v.keys != nil {
		v.keys.forget(fingerprint, userID)
	}
	if v.cache == nil {
		return
	}
	switch {
	case fingerprint != "":
		v.cache.forget(func(e *cacheEntry) bool { return e.fingerprint == fingerprint })
	case userID != "":
		v.cache.forget(func(e *cacheEntry) bool { return e.grant.Key.UserID == userID })
	default:
		v.cache.forget(nil)
	}
}

// CacheStats reports cache hits and misses since start, and the number of
// entries now held.
func (v *Verifier) CacheStats() (hits, misses uint64, size int) {
	if v.cache == nil {
		return 0, 0, 0
	}
	return v.cache.stats()
}

// CacheUsage reports the cache's estimated bytes (bounded by
// Config.CacheBytes) and the most entries its map has held since it was
// last rebuilt.
func (v *Verifier) CacheUsage() (bytes int64, peak int) {
	if v.cache == nil {
		return 0, 0
	}
	return v.cache.usage()
}

// run is Verify, Begin and Explain. r is nil for Verify and Begin: then
// nothing is reported, and the caches and the junk shedding are used; with
// hold (Begin), a result to cache is left in hold.put instead of being
// cached.
func (v *Verifier) run(ctx context.Context, token string, t Target, r *report, hold *Pending) (*Grant, error) {
	now := v.now()
	hashable := r == nil && len(token) <= MaxTokenLen
	useCache := hashable && v.cache != nil
	shed := hashable && v.shed != nil
	var (
		ck  cacheKey
		gen uint64
	)
	if useCache || shed {
		ck = cacheKeyOf(token)
	}
	if useCache {
		if e := v.cache.get(ck, t.Namespace, now); e != nil {
			if err := checkUse(now, &e.grant.Key, &e.grant.Perms, t, nil); err != nil {
				return nil, err
			}
			return &e.grant, nil
		}
	}
	// Taken before the key is read: a Forget from here on stops this
	// verification caching anything.
	gen = v.gen.Load()

	var (
		x   *Exe0
		err error
	)
	if strings.HasPrefix(token, Exe1Prefix) {
		if x, err = v.openExe1(ctx, token, r); err != nil {
			return nil, err
		}
	} else {
		if x, err = ParseExe0(token); err != nil {
			return nil, r.fail(CheckFormat, ReasonMalformed, err.Error(), err)
		}
		if r != nil {
			r.pass(CheckFormat, fmt.Sprintf("exe0 token, %s key, hash %s", x.Sig.PublicKey.Type(), x.Sig.HashAlgorithm))
		}
		if (useCache || shed) && x.Sig.HighS() {
			// The other encoding of an ECDSA signature: cached (and found)
			// under the canonical one only, so one signature is one entry.
			ck = cacheKeyOf(x.Canonical())
			if useCache {
				if e := v.cache.get(ck, t.Namespace, now); e != nil {
					if err := checkUse(now, &e.grant.Key, &e.grant.Perms, t, nil); err != nil {
						return nil, err
					}
					return &e.grant, nil
				}
			}
		}
	}

	sig := x.Sig
	if sig.Namespace != t.Namespace {
		return nil, r.fail(CheckNamespace, ReasonNamespace,
			fmt.Sprintf("signed for %.100q, want %q", sig.Namespace, t.Namespace), nil)
	}
	r.pass(CheckNamespace, sig.Namespace)

	fp := sig.Fingerprint()
	key, user, err := v.keyAndUser(ctx, fp, now, gen, r == nil)
	var userErr error
	switch {
	case err == nil:
	case key.Fingerprint != "" && errors.Is(err, store.ErrNotFound):
		userErr = err // the key is registered but its user is not: the user check, last as before
	case errors.Is(err, store.ErrNotFound):
		return nil, r.fail(CheckKey, ReasonUnknownKey, "key "+fp+" is not registered (never added, or removed)", err)
	default:
		return nil, r.fail(CheckKey, ReasonInternal, "look up key "+fp+": "+err.Error(), err)
	}
	if r != nil {
		r.pass(CheckKey, fmt.Sprintf("%s (%q)", fp, key.Name))
	}

	if shed {
		switch bad, throttled := v.shed.check(fp, ck, now); {
		case bad:
			return nil, r.fail(CheckSignature, ReasonBadSignature, "signature did not verify (this very token failed moments ago: not checked again)", nil)
		case throttled:
			return nil, r.fail(CheckSignature, ReasonThrottled, "key "+fp+" is past its budget of failed signatures: not checked", nil)
		}
	}
	v.sigChecks.Add(1)
	if err := sig.Verify(x.Payload); err != nil {
		if shed {
			v.shed.failed(fp, ck, now)
		}
		return nil, r.fail(CheckSignature, ReasonBadSignature, err.Error(), err)
	}
	if shed {
		v.shed.verified(fp, ck, now)
	}
	r.pass(CheckSignature, "valid")

	if err := checkUse(now, &key, &x.Perms, t, r); err != nil {
		return nil, err
	}

	if userErr != nil {
		return nil, r.fail(CheckUser, ReasonUnknownKey, "user "+key.UserID+" of key "+fp+" does not exist", userErr)
	}
	r.pass(CheckUser, user.ID)

	g := &Grant{User: user, Key: key, Perms: x.Perms, Ctx: string(x.Perms.Ctx)}
	if useCache {
		e := &cacheEntry{grant: *g, namespace: t.Namespace, fingerprint: fp}
		e.expires = v.expiry(now, &key, &x.Perms)
		put := func() { v.cache.put(ck, e, gen, now) }
		if hold != nil {
			hold.put = put
		} else {
			put()
		}
		return &e.grant, nil
	}
	return g, nil
}

// keyAndUser is Registry.KeyAndUser through the key cache (when useKeys
// and there is one): a cached answer, a not-found for a fingerprint
// remembered as unregistered, or the registry's answer, then cached unless
// the generation moved since gen. A registry failure is not cached.
func (v *Verifier) keyAndUser(ctx context.Context, fp string, now time.Time, gen uint64, useKeys bool) (store.Key, store.User, error) {
	useKeys = useKeys && v.keys != nil
	if useKeys {
		switch e, unknown := v.keys.get(fp, now); {
		case e != nil:
			return e.key, e.user, e.userErr
		case unknown:
			return store.Key{}, store.User{}, store.ErrNotFound
		}
	}
	key, user, err := v.reg.KeyAndUser(ctx, fp)
	if useKeys {
		switch {
		case err == nil || key.Fingerprint != "" && errors.Is(err, store.ErrNotFound):
			v.keys.put(fp, &keyEntry{key: key, user: user, userErr: err}, gen, now)
		case errors.Is(err, store.ErrNotFound):
			v.keys.put(fp, nil, gen, now)
		}
	}
	return key, user, err
}

// expiry is when a cached result must be dropped: after the TTL, and never
// later than the token or the key expires (a hit re-checks both anyway;
// this just stops dead entries taking room).
func (v *Verifier) expiry(now time.Time, key *store.Key, p *Permissions) time.Time {
	exp := now.Add(v.ttl)
	if p.Exp != 0 {
		if t := p.End(); t.Before(exp) {
			exp = t
		}
	}
	if !key.ExpiresAt.IsZero() && key.ExpiresAt.Before(exp) {
		exp = key.ExpiresAt
	}
	return exp
}

// openExe1 turns an exe1 handle into its parsed exe0.
func (v *Verifier) openExe1(ctx context.Context, handle string, r *report) (*Exe0, error) {
	if err := ParseExe1(handle); err != nil {
		return nil, r.fail(CheckFormat, ReasonMalformed, err.Error(), err)
	}
	r.pass(CheckFormat, "exe1 handle")

	row, err := v.reg.Exe1(ctx, Exe1ID(handle))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, r.fail(CheckExe1, ReasonUnknownKey, "no such exe1 token (never issued, or its key was removed)", err)
	case err != nil:
		return nil, r.fail(CheckExe1, ReasonInternal, "look up exe1 token: "+err.Error(), err)
	}
	exe0, err := OpenExe1(handle, row.Sealed)
	if err != nil {
		return nil, r.fail(CheckExe1, ReasonInternal, "stored exe1 token of key "+row.Fingerprint+": "+err.Error(), err)
	}
	x, err := ParseExe0(exe0)
	if err != nil {
		return nil, r.fail(CheckExe1, ReasonMalformed, "stored exe0 token: "+err.Error(), err)
	}
	if r != nil {
		r.pass(CheckExe1, fmt.Sprintf("stands for an exe0 token, %s key, hash %s", x.Sig.PublicKey.Type(), x.Sig.HashAlgorithm))
	}
	return x, nil
}

// checkUse runs the checks that depend on now and on t, and not on the
// registry: on every verification, whether its result was cached or not.
// On success it does not allocate.
func checkUse(now time.Time, key *store.Key, p *Permissions, t Target, r *report) error {
	if p.Exp != 0 && !now.Before(p.End()) {
		return r.fail(CheckValidity, ReasonExpired, "expired at "+unixUTC(p.Exp), nil)
	}
	if p.Nbf != 0 && now.Unix() < p.Nbf {
		return r.fail(CheckValidity, ReasonNotYetValid, "not valid before "+unixUTC(p.Nbf), nil)
	}
	if r != nil {
		r.pass(CheckValidity, validityDetail(p))
	}

	kr := KeyRestrictions(*key)
	if kr.Expired(now) {
		return r.fail(CheckRestrictions, ReasonRestricted,
			fmt.Sprintf("key %q expired at %s", key.Name, rfc3339(key.ExpiresAt)), nil)
	}
	vmName := ""
	if t.VM != nil {
		vmName = t.VM.Name
	}
	if !kr.AllowsVM(vmName) {
		where := "the API"
		if t.VM != nil {
			where = fmt.Sprintf("VM %q", t.VM.Name)
		}
		return r.fail(CheckRestrictions, ReasonRestricted,
			fmt.Sprintf("key %q is restricted to VM %q, used for %s", key.Name, key.VM, where), nil)
	}
	if t.Command != "" && !kr.AllowsCommand(t.Command) {
		return r.fail(CheckRestrictions, ReasonRestricted,
			fmt.Sprintf("key %q is restricted to commands %q; %q is not one", key.Name, key.Cmds, t.Command), nil)
	}
	if r != nil {
		r.pass(CheckRestrictions, kr.String())
	}

	if t.VM != nil {
		switch Reach(t.VM, key.UserID) {
		case AccessOwner, AccessShare:
		default:
			return r.fail(CheckVM, ReasonVM, fmt.Sprintf("the key's user may not reach VM %q", t.VM.Name), nil)
		}
		if r != nil {
			r.pass(CheckVM, fmt.Sprintf("the key's user may reach VM %q", t.VM.Name))
		}
	}

	if t.Command != "" {
		if !p.Grants(t.Command) {
			from := "the default list"
			if p.HasCmds {
				from = "the token's cmds"
			}
			return r.fail(CheckCommand, ReasonNotGranted, fmt.Sprintf("%q is not in %s", t.Command, from), nil)
		}
		if r != nil {
			r.pass(CheckCommand, fmt.Sprintf("%q granted", t.Command))
		}
	}
	return nil
}

func unixUTC(sec int64) string { return rfc3339(time.Unix(sec, 0)) }

func validityDetail(p *Permissions) string {
	var parts []string
	if p.Nbf != 0 {
		parts = append(parts, "valid from "+unixUTC(p.Nbf))
	}
	if p.Exp != 0 {
		parts = append(parts, "expires "+unixUTC(p.Exp))
	} else {
		parts = append(parts, "never expires")
	}
	return strings.Join(parts, ", ")
}

// report collects Explain's checks. A nil *report records nothing, so the
// steps above read the same for Verify and Explain.
type report struct{ checks []Check }

func (r *report) pass(name, detail string) {
	if r != nil {
		r.checks = append(r.checks, Check{Name: name, OK: true, Detail: detail})
	}
}

// fail records a failed check and returns its error.
func (r *report) fail(name string, reason Reason, detail string, cause error) *Error {
	if r != nil {
		r.checks = append(r.checks, Check{Name: name, OK: false, Detail: detail})
	}
	return &Error{Check: name, Reason: reason, Detail: detail, Err: cause}
}
