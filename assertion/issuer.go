package assertion

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// Defaults and bounds of Config.
const (
	// DefaultTTL is an assertion's lifetime (--assertion-ttl).
	DefaultTTL = 5 * time.Minute
	// MaxTTL bounds it: an assertion is a bearer credential
	// for the VM it names, so it must not outlive a short replay window.
	MaxTTL = 10 * time.Minute
	// DefaultRefresh is how often Run reads the keys again: a key added by
	// another instance (or `exed assertion rotate`) signs here within it.
	DefaultRefresh = time.Minute
	// DefaultCacheSize bounds the reused assertions: every identity in
	// active use on a busy instance within half a lifetime, at about 1 KiB
	// each.
	DefaultCacheSize = 100_000
)

// CheckTTL says whether d can be an assertion's lifetime: whole seconds,
// from one second to MaxTTL.
func CheckTTL(d time.Duration) error {
	if d < time.Second || d > MaxTTL || d%time.Second != 0 {
		return fmt.Errorf("assertion: lifetime %v: want whole seconds, at least 1s and at most %v", d, MaxTTL)
	}
	return nil
}

// SystemActor is the audit log's actor for a key the schedule added.
const SystemActor = "system"

// Config configures an Issuer.
type Config struct {
	Store    store.AssertionKeyStore
	Secret   *Secret
	Domain   string        // the API host: iss is https://Domain
	VMDomain string        // VM hosts are NAME.VMDomain: the audiences
	TTL      time.Duration // 0 → DefaultTTL; whole seconds, at most MaxTTL
	// CacheSize bounds the reused assertions; 0 → DefaultCacheSize.
	CacheSize int
	Now       func() time.Time // nil → time.Now
	Log       *slog.Logger     // nil → discard
}

// Issuer signs assertions and publishes the keys that verify them. It is
// safe for concurrent use.
type Issuer struct {
	c        Config
	iss      string
	vmSuffix string // "." + VMDomain
	seed     maphash.Seed

	state atomic.Pointer[keyState]

	mu     sync.Mutex             // serialises refreshes
	opened map[string]*signingKey // by kid; guarded by mu
}

// keyState is what one refresh found: the keys, the one that signs, the
// JWKS, and the assertions that key has signed for reuse. A refresh that
// changes the signer starts a fresh cache, so that from then on only the
// new key's assertions go out.
type keyState struct {
	keys   []store.AssertionKey
	signer *signingKey // nil: none opened (only between failed refreshes)
	jwks   []byte
	cache  *cache
}

// NewIssuer reads the keys from the store, adds the first (or the next)
// when due, and opens the ones in use. It fails when a key in the store
// does not open with c.Secret (a *WrongSecretError): an instance with the
// wrong secret must not start signing with keys nobody else publishes.
func NewIssuer(ctx context.Context, c Config) (*Issuer, error) {
	if c.Store == nil || c.Secret == nil {
		return nil, errors.New("assertion: NewIssuer: no store or no secret")
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if err := CheckTTL(c.TTL); err != nil {
		return nil, err
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	is := &Issuer{
		c:        c,
		iss:      "https://" + c.Domain,
		vmSuffix: "." + c.VMDomain,
		seed:     maphash.MakeSeed(),
		opened:   map[string]*signingKey{},
	}
	if err := is.refresh(ctx, true); err != nil {
		return nil, err
	}
	return is, nil
}

// Issuer returns the iss claim: https://<domain>.
func (is *Issuer) Issuer() string { return is.iss }

// TTL returns an assertion's lifetime.
func (is *Issuer) TTL() time.Duration { return is.c.TTL }

// Refresh reads the keys again, adds the next one if the schedule says
// so, and from then on signs with the one whose turn it is.
func (is *Issuer) Refresh(ctx context.Context) error { return is.refresh(ctx, false) }

// Run refreshes every interval (≤ 0: DefaultRefresh) until ctx is done,
// logging failures; the keys already opened keep signing meanwhile.
func (is *Issuer) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := is.Refresh(ctx); err != nil && ctx.Err() == nil {
				is.c.Log.Error("assertion keys: refresh failed; signing with the key in use", "err", err)
			}
		}
	}
}

// refresh is Refresh; at start (strict) any key in use that does not open
// is an error, later only the one whose turn it is to sign.
func (is *Issuer) refresh(ctx context.Context, strict bool) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	now := is.c.Now()
	keys, err := is.c.Store.AssertionKeys(ctx)
	if err != nil {
		return fmt.Errorf("assertion: read keys: %w", err)
	}
	for try := 0; ; try++ {
		gen, signFrom, due := nextKeyDue(keys, now)
		if !due {
			break
		}
		if try == maxAddTries {
			return errors.New("assertion: other instances keep adding keys")
		}
		// Never add a key under a secret that does not open the others.
		if i := signerIndex(keys, now); i >= 0 {
			if _, err := is.open(keys[i]); err != nil {
				return err
			}
		}
		k, err := newKey(is.c.Secret, gen, now, signFrom)
		if err != nil {
			return err
		}
		switch err := is.c.Store.AddAssertionKey(ctx, k, addEvent(k, now, SystemActor)); {
		case errors.Is(err, store.ErrExists):
			// Another instance rotated first: take what it added.
		case err != nil:
			return fmt.Errorf("assertion: add key: %w", err)
		default:
			is.c.Log.Info("assertion key added", "kid", k.ID, "generation", k.Generation, "signs_from", k.SignFrom)
		}
		if keys, err = is.c.Store.AssertionKeys(ctx); err != nil {
			return fmt.Errorf("assertion: read keys: %w", err)
		}
	}

	var signer *signingKey
	for _, st := range Status(keys, now) {
		if st.State == StateRetired {
			delete(is.opened, st.ID)
			continue
		}
		// Every key still in use is opened, not only the signer: a key
		// sealed under another secret is found now, not when its turn comes.
		sk, err := is.open(st.AssertionKey)
		switch {
		case err != nil && (strict || st.State == StateSigning):
			return err
		case err != nil:
			is.c.Log.Error("assertion keys: a published key cannot sign here", "kid", st.ID, "err", err)
		case st.State == StateSigning:
			signer = sk
		}
	}
	jwks, err := JWKS(keys, now)
	if err != nil {
		return err
	}
	ns := &keyState{keys: keys, signer: signer, jwks: jwks}
	old := is.state.Load()
	if old != nil && old.signer == signer {
		ns.cache = old.cache
	} else {
		ns.cache = newCache(is.c.CacheSize)
		if signer != nil {
			is.c.Log.Info("assertion keys: signing", "kid", signer.id, "published", len(keys)-countRetired(keys, now))
		}
	}
	is.state.Store(ns)
	return nil
}

func countRetired(keys []store.AssertionKey, now time.Time) int {
	n := 0
	for _, st := range Status(keys, now) {
		if st.State == StateRetired {
			n++
		}
	}
	return n
}

// open returns k opened, from is.opened when it was before. Called with
// mu held.
func (is *Issuer) open(k store.AssertionKey) (*signingKey, error) {
	if sk := is.opened[k.ID]; sk != nil {
		return sk, nil
	}
	sk, err := openKey(is.c.Secret, k)
	if err != nil {
		return nil, err
	}
	is.opened[k.ID] = sk
	return sk, nil
}

// JWKS returns the JSON Web Key Set of every published key, as of the
// last refresh. The caller must not modify it.
func (is *Issuer) JWKS() []byte { return is.state.Load().jwks }

// SigningKeyID returns the kid assertions are signed with now.
func (is *Issuer) SigningKeyID() string {
	if sk := is.state.Load().signer; sk != nil {
		return sk.id
	}
	return ""
}

// Keys returns the keys as of the last refresh, by generation.
func (is *Issuer) Keys() []store.AssertionKey { return is.state.Load().keys }

// ErrNoAccess: the Identity says no way in (Access is not owner, share or
// public): nothing to vouch for.
var ErrNoAccess = errors.New("assertion: the identity has no access to the VM")

// Assert returns the assertion for id calling through aud. The same one
// is returned for the same identity (token ctx and access included) and
// audience until half its lifetime has passed; that lookup allocates
// nothing.
func (is *Issuer) Assert(id *Identity, aud Audience) (string, error) {
	switch id.Access {
	case tokens.AccessOwner, tokens.AccessShare, tokens.AccessPublic:
	default:
		return "", ErrNoAccess
	}
	if id.Method != MethodToken && id.Method != MethodCookie || id.UserID == "" {
		return "", errors.New("assertion: incomplete identity")
	}
	if aud.Port == 80 && !aud.TLS || aud.Port == 443 && aud.TLS || aud.Port < 0 {
		aud.Port = 0
	}
	st := is.state.Load()
	if st.signer == nil {
		return "", errors.New("assertion: no signing key")
	}
	now := is.c.Now()
	h := is.hash(id, aud)
	if jwt, ok := st.cache.get(h, id, aud, now); ok {
		return jwt, nil
	}
	jwt, err := is.sign(st.signer, id, aud, now)
	if err != nil {
		return "", err
	}
	st.cache.put(h, &entry{
		userID: id.UserID, email: id.Email, method: id.Method, access: id.Access,
		fingerprint: id.KeyFingerprint, ctx: string(id.TokenCtx), aud: aud,
		jwt: jwt, renew: now.Add(is.c.TTL / 2),
	}, now)
	return jwt, nil
}

// Origin returns the audience as the VM sees it: its origin URL.
func (is *Issuer) Origin(aud Audience) string {
	var b strings.Builder
	if aud.TLS {
		b.WriteString("https://")
	} else {
		b.WriteString("http://")
	}
	b.WriteString(aud.VM)
	b.WriteString(is.vmSuffix)
	if aud.Port > 0 && !(aud.TLS && aud.Port == 443) && !(!aud.TLS && aud.Port == 80) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(aud.Port))
	}
	return b.String()
}

// sign makes a fresh assertion.
func (is *Issuer) sign(sk *signingKey, id *Identity, aud Audience, now time.Time) (string, error) {
	var jti [16]byte
	rand.Read(jti[:])
	iat := now.Unix()
	c := Claims{
		Issuer: is.iss, Subject: id.UserID, Audience: is.Origin(aud),
		IssuedAt: iat, NotBefore: iat, Expiry: iat + int64(is.c.TTL/time.Second),
		ID:    base64.RawURLEncoding.EncodeToString(jti[:]),
		Email: id.Email, VM: aud.VM, AuthMethod: id.Method, Access: string(id.Access),
	}
	if id.Method == MethodToken {
		c.KeyFingerprint, c.TokenCtx = id.KeyFingerprint, string(id.TokenCtx)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("assertion: claims: %w", err)
	}
	obj, err := sk.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	jwt, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	return jwt, nil
}

// hash is the cache key of (id, aud). Entries are compared in full on a
// hit, so a collision costs a signature, never a wrong assertion.
func (is *Issuer) hash(id *Identity, aud Audience) uint64 {
	var h maphash.Hash
	h.SetSeed(is.seed)
	for _, s := range [...]string{id.UserID, id.Email, string(id.Method), string(id.Access), id.KeyFingerprint, aud.VM} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	h.Write(id.TokenCtx)
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(aud.Port))
	if aud.TLS {
		b[8] = 1
	}
	h.Write(b[:])
	return h.Sum64()
}

// entry is one signed assertion kept for reuse.
type entry struct {
	userID, email, fingerprint, ctx string
	method                          Method
	access                          tokens.Access
	aud                             Audience
	jwt                             string
	renew                           time.Time // signed again from then on: half its lifetime
}

func (e *entry) matches(id *Identity, aud Audience) bool {
	return e.userID == id.UserID && e.email == id.Email && e.method == id.Method &&
		e.access == id.Access && e.fingerprint == id.KeyFingerprint &&
		e.ctx == string(id.TokenCtx) && e.aud == aud
}

// cache holds the assertions one key signed, bounded in size.
type cache struct {
	max   int
	mu    sync.RWMutex
	m     map[uint64]*entry
	swept time.Time // when put last dropped the entries due for renewal
}

// cacheSweepEvery paces put's sweep of entries due for renewal (never
// returned again): without it they stayed until the cache was full, so
// memory followed every identity seen rather than those in use.
const cacheSweepEvery = time.Minute

func newCache(max int) *cache { return &cache{max: max, m: map[uint64]*entry{}} }

func (c *cache) get(h uint64, id *Identity, aud Audience, now time.Time) (string, bool) {
	c.mu.RLock()
	e := c.m[h]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.renew) || !e.matches(id, aud) {
		return "", false
	}
	return e.jwt, true
}

// put stores e under h. At most once a minute, and whenever the cache is
// full, it first drops the entries due for renewal; a full cache that
// freed less than a quarter so then drops arbitrary entries (map order is
// random) down to three quarters: a flood of identities churns the cache
// but never grows it, and the scans stay rare.
func (c *cache) put(h uint64, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	full := len(c.m) >= c.max
	if full || now.Sub(c.swept) >= cacheSweepEvery {
		c.swept = now
		for k, old := range c.m {
			if !now.Before(old.renew) {
				delete(c.m, k)
			}
		}
	}
	if full {
		for k := range c.m {
			if len(c.m) <= c.max*3/4 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[h] = e
}
