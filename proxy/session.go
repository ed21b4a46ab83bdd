package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// Browser sessions as the proxy sees them: the cookie a request carries,
// the session it stands for (through a short-lived cache, as tokens go
// through the Verifier's), and whether that session lets its user in here.

const (
	// sessionCacheTTL bounds how long a session ended through another
	// instance keeps working here: the same second a removed key gets.
	sessionCacheTTL = time.Second
	// maxCachedSessions bounds the session cache; about 300 bytes an entry.
	maxCachedSessions = 100_000
	// maxCookieTries bounds how many cookies of our name one request may
	// make us look up (a sibling page's script can add more of that name
	// for its parent domain; they are refused, being for another host).
	maxCookieTries = 4
)

// origin is how the browser reached this server: the scheme, and the port
// in the Host header (or the scheme's default); behind a front proxy,
// what the front proxy says of both (forwardedOrigin). Every URL exed sends a
// browser to is built from it, so that a redirect never changes scheme or
// port, and cookies are named and bound by it.
type origin struct {
	scheme string // "https" or "http"
	port   string // "443", "8443"
}

func requestOrigin(r *http.Request) origin {
	if o, ok := forwardedOrigin(r); ok {
		return o
	}
	o := origin{scheme: "http", port: "80"}
	if r.TLS != nil {
		o = origin{scheme: "https", port: "443"}
	}
	if i := strings.LastIndexByte(r.Host, ':'); i >= 0 && !strings.Contains(r.Host[i:], "]") {
		if n, err := strconv.Atoi(r.Host[i+1:]); err == nil && n > 0 && n <= 65535 {
			o.port = strconv.Itoa(n)
		}
	}
	return o
}

// hostPort is host with this origin's port: what a session or secret is
// bound to ("web.exe.xyz:443").
func (o origin) hostPort(host string) string { return host + ":" + o.port }

// url is scheme://host, with the port unless it is the scheme's default.
func (o origin) url(host string) string {
	if o.scheme == "https" && o.port == "443" || o.scheme == "http" && o.port == "80" {
		return o.scheme + "://" + host
	}
	return o.scheme + "://" + host + ":" + o.port
}

// vmCookie is the name of the session cookie on a VM host for this port.
func (o origin) vmCookie() string { return tokens.VMCookiePrefix + o.port }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 5
}

// sessionEntry is one looked-up cookie hash: the session and its user, or
// (err set) none. Immutable once cached.
type sessionEntry struct {
	s        store.Session
	u        store.User
	touchKey string // string(s.Hash), for the last-used writer
	err      error
	expires  time.Time
}

// sessionCache is a small TTL cache in front of SessionStore.SessionAndUser.
// Misses are cached too: a cookie hash nobody minted never becomes one
// (fresh cookies are random), and a revoked cookie a browser keeps sending
// then costs no query per request. Entries go at once when the store
// announces that their session ended, or that their key or VM changed.
type sessionCache struct {
	st  store.SessionStore
	now func() time.Time

	mu  sync.RWMutex
	m   map[[sha256.Size]byte]*sessionEntry
	gen uint64 // counts forgets: a load that spans one caches nothing
}

func newSessionCache(st store.SessionStore, now func() time.Time) *sessionCache {
	return &sessionCache{st: st, now: now, m: make(map[[sha256.Size]byte]*sessionEntry)}
}

// get returns the session whose cookie hashes to h (errors wrap
// store.ErrNotFound when there is none).
func (c *sessionCache) get(ctx context.Context, h [sha256.Size]byte, now time.Time) (*sessionEntry, error) {
	c.mu.RLock()
	e := c.m[h]
	gen := c.gen
	c.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		var err error
		if e, err = c.load(ctx, h, now, gen); err != nil {
			return nil, err
		}
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

func (c *sessionCache) load(ctx context.Context, h [sha256.Size]byte, now time.Time, gen uint64) (*sessionEntry, error) {
	e := &sessionEntry{expires: now.Add(sessionCacheTTL)}
	s, u, err := c.st.SessionAndUser(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.err = fmt.Errorf("proxy: session: %w", err)
	case err != nil:
		return nil, fmt.Errorf("proxy: look up session: %w", err)
	default:
		e.s, e.u, e.touchKey = s, u, string(s.Hash)
		if s.ExpiresAt.Before(e.expires) {
			e.expires = s.ExpiresAt
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return e, nil // maybe read before the change forget was told of
	}
	if len(c.m) >= maxCachedSessions {
		c.evict(now)
	}
	c.m[h] = e
	return e, nil
}

// forget drops the entries ch names: a session that ended (by its hash),
// the sessions of a key or of a VM that changed; everything for AllChanged.
func (c *sessionCache) forget(ch store.Change) {
	var drop func(*sessionEntry) bool
	switch ch.Kind {
	case store.SessionChanged:
		b, err := hex.DecodeString(ch.ID)
		if err != nil || len(b) != sha256.Size {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.m, [sha256.Size]byte(b))
		c.gen++
		return
	case store.KeyChanged:
		drop = func(e *sessionEntry) bool { return e.s.Fingerprint == ch.ID }
	case store.VMChanged:
		drop = func(e *sessionEntry) bool { return e.s.VM == ch.ID || e.s.OnlyVM == ch.ID }
	case store.AllChanged:
		c.mu.Lock()
		defer c.mu.Unlock()
		clear(c.m)
		c.gen++
		return
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.err == nil && drop(e) {
			delete(c.m, k)
		}
	}
	c.gen++
}

// evict drops expired entries, or arbitrary ones if none has expired.
// Called with mu held.
func (c *sessionCache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if len(c.m) < maxCachedSessions {
			break
		}
		delete(c.m, k)
	}
}

// ForgetSessions drops what the handler has cached about the sessions ch
// names: call it with every store.Change (it ignores kinds it does not
// use). Without it an ended session is refused within the cache's
// one-second TTL.
func (h *Handler) ForgetSessions(ch store.Change) {
	if h.sessions != nil {
		h.sessions.forget(ch)
	}
}

// sessionFor returns the live session the request's cookie called name
// carries for host (host:port), or nil. A cookie of the wrong shape, one
// nobody minted, one minted for another host or under another name, and an
// expired session all count as no cookie at all: the browser is then sent
// to log in again.
func (h *Handler) sessionFor(r *http.Request, name, host string) *sessionEntry {
	if h.sessions == nil {
		return nil
	}
	now := h.c.Now()
	tries := 0
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && tries < maxCookieTries; {
			var pair string
			pair, rest, _ = strings.Cut(rest, ";")
			n, v, ok := strings.Cut(strings.TrimLeft(pair, " \t"), "=")
			if !ok || n != name {
				continue
			}
			v = strings.Trim(strings.TrimRight(v, " \t"), `"`)
			if !tokens.ValidCookieValue(v) {
				continue
			}
			tries++
			e, err := h.sessions.get(r.Context(), tokens.CookieHash(v), now)
			if err != nil || e.s.Host != host || e.s.CookieName != name || e.s.Expired(now) {
				continue
			}
			return e
		}
	}
	return nil
}

// touch notes that the session was used (written at most once a minute).
func (h *Handler) touch(e *sessionEntry) {
	if h.c.SessionLastUsed != nil {
		h.c.SessionLastUsed.Touch(e.touchKey)
	}
}

// vmSession returns the session that lets its user into vm through this
// request, or nil: the VM host's cookie, for this very host and port,
// whose user may reach vm (Reach), within the restriction of the key that
// logged the browser in.
func (h *Handler) vmSession(r *http.Request, vm *vmEntry) *sessionEntry {
	if h.sessions == nil || !hasCookieHeader(r) {
		return nil
	}
	o := requestOrigin(r)
	e := h.sessionFor(r, o.vmCookie(), o.hostPort(h.ns.VMHost(vm.vm.Name)))
	if e == nil || e.s.VM != vm.vm.Name || e.s.OnlyVM != "" && e.s.OnlyVM != vm.vm.Name {
		return nil
	}
	switch tokens.Reach(&vm.vm, e.s.UserID) {
	case tokens.AccessOwner, tokens.AccessShare:
	default:
		return nil
	}
	h.touch(e)
	return e
}

func hasCookieHeader(r *http.Request) bool { return len(r.Header["Cookie"]) > 0 }

// isExedCookie reports whether a cookie name is one of exed's own, which
// never reach a VM and which a VM may never set (compared without regard
// to case: an upstream may read names so).
func isExedCookie(name string) bool {
	return strings.EqualFold(name, tokens.MainCookie) ||
		len(name) >= len(tokens.VMCookiePrefix) && strings.EqualFold(name[:len(tokens.VMCookiePrefix)], tokens.VMCookiePrefix)
}

// mentionsExedCookie is a quick look for an exed cookie name in a header
// value, so that requests and responses without one cost no parsing.
func mentionsExedCookie(v string) bool {
	for i := 0; i+len("exe-auth") <= len(v); i++ {
		if c := v[i] | 0x20; c == 'e' || c == 'l' {
			if n := len(tokens.MainCookie); i+n <= len(v) && strings.EqualFold(v[i:i+n], tokens.MainCookie) {
				return true
			}
			if n := len(tokens.VMCookiePrefix); i+n <= len(v) && strings.EqualFold(v[i:i+n], tokens.VMCookiePrefix) {
				return true
			}
		}
	}
	return false
}

// stripExedCookies removes exed's cookies from the Cookie header a VM
// receives (hdr, the upstream request's, is changed in place); the VM's
// own cookies pass unchanged. A header holding exed's
// cookies only (a browser on a VM that sets none) goes without allocating.
func stripExedCookies(hdr http.Header) {
	vals := hdr["Cookie"]
	mentioned := false
	for _, v := range vals {
		if mentionsExedCookie(v) {
			mentioned = true
			break
		}
	}
	if !mentioned {
		return
	}
	// Filtered in place: hdr is the upstream request's own (ReverseProxy
	// gives Rewrite a deep clone of the client's header).
	kept := vals[:0]
	for _, v := range vals {
		if v = withoutExedCookies(v); v != "" {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(hdr, "Cookie")
		return
	}
	hdr["Cookie"] = kept[:len(kept):len(kept)]
}

// withoutExedCookies is one Cookie header value less exed's pairs ("" if
// nothing is left); it allocates only when something is kept beside them.
func withoutExedCookies(v string) string {
	var b strings.Builder
	dropped := false
	for rest := v; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		p := strings.TrimSpace(pair)
		name, _, _ := strings.Cut(p, "=")
		if p == "" || isExedCookie(strings.TrimSpace(name)) {
			dropped = true
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		} else {
			b.Grow(len(v)) // the most it can hold: one allocation
		}
		b.WriteString(p)
	}
	if !dropped {
		return v
	}
	return b.String()
}

// filterSetCookies is what a VM's response may set in a browser: none of
// exed's cookies, and no cookie for a wider domain than its own host (the
// Domain attribute is dropped, so no VM can toss a cookie to a sibling).
func filterSetCookies(hdr http.Header) {
	vals := hdr["Set-Cookie"]
	if len(vals) == 0 {
		return
	}
	kept := vals[:0:0]
	for _, v := range vals {
		name, _, _ := strings.Cut(v, "=")
		if i := strings.IndexByte(name, ';'); i >= 0 {
			name = name[:i]
		}
		if isExedCookie(strings.TrimSpace(name)) {
			continue
		}
		kept = append(kept, stripDomain(v))
	}
	if len(kept) == 0 {
		delete(hdr, "Set-Cookie")
		return
	}
	hdr["Set-Cookie"] = kept
}

// stripDomain drops every Domain attribute from a Set-Cookie value.
func stripDomain(v string) string {
	if !strings.Contains(strings.ToLower(v), "domain") {
		return v
	}
	parts := strings.Split(v, ";")
	out := parts[:1]
	for _, a := range parts[1:] {
		name, _, _ := strings.Cut(a, "=")
		if strings.EqualFold(strings.TrimSpace(name), "domain") {
			continue
		}
		out = append(out, a)
	}
	return strings.Join(out, ";")
}

// modifyResponse is the ReverseProxy's ModifyResponse: a 101 must be a
// real WebSocket handshake (checkUpgrade), and cookie hygiene on what a VM
// answers.
func modifyResponse(resp *http.Response) error {
	if err := checkUpgrade(resp); err != nil {
		return err
	}
	filterSetCookies(resp.Header)
	return nil
}

// canonicalHostPort splits a return_host value ("web.exe.xyz",
// "Web.Exe.Xyz:8443") into its canonical host and its port ("" when it
// has none). ok is false for anything that is not a host with an optional
// decimal port.
func canonicalHostPort(v string) (host, port string, ok bool) {
	if v == "" || strings.ContainsAny(v, "/\\@?#[] \t") {
		return "", "", false
	}
	host = v
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		h, p, err := net.SplitHostPort(v)
		if err != nil || !allDigits(p) {
			return "", "", false
		}
		n, _ := strconv.Atoi(p)
		if n < 1 || n > 65535 {
			return "", "", false
		}
		host, port = h, strconv.Itoa(n)
	}
	return tokens.CanonicalHost(host), port, true
}
