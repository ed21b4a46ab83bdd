package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

const (
	// vmCacheTTL bounds how stale a VM seen by the proxy may be (its owner,
	// upstream, public flag, shares, existence): the same one-second bound a
	// revoked key gets (tokens.DefaultCacheTTL), while sparing the
	// database a query per request.
	vmCacheTTL = time.Second
	// maxCachedVMs bounds the VM cache; a flood of made-up VM names can
	// churn it but never grow it.
	maxCachedVMs = 10_000
	// maxLimiters bounds the /exec rate limiters (one per signing key in
	// use; about 100 bytes each).
	maxLimiters = 10_000
)

// vmEntry is a looked-up VM with what the proxy derives from it. Immutable
// once cached. A cached ErrNotFound has err set.
type vmEntry struct {
	vm        store.VM
	target    *url.URL
	namespace string // v0@NAME.<vm-domain>
	err       error
	expires   time.Time
}

// vmSource is what the VM cache reads: VMs by name, each with its active
// shares (store.VM.SharedWith), so that the access decision needs nothing
// more on the request path.
type vmSource interface {
	VM(ctx context.Context, name string) (store.VM, error)
}

// vmCache is a small TTL cache in front of Registry.VM. Its entries also
// go when forget is told their VM, or who it is shared with, changed.
type vmCache struct {
	st  vmSource
	now func() time.Time
	ns  tokens.Namespaces

	mu  sync.RWMutex
	m   map[string]*vmEntry
	gen uint64 // counts forgets: a load that spans one caches nothing
}

func newVMCache(st vmSource, now func() time.Time, ns tokens.Namespaces) *vmCache {
	return &vmCache{st: st, now: now, ns: ns, m: make(map[string]*vmEntry)}
}

// get returns the VM called name, or an error wrapping store.ErrNotFound.
func (c *vmCache) get(ctx context.Context, name string) (*vmEntry, error) {
	now := c.now()
	c.mu.RLock()
	e := c.m[name]
	gen := c.gen // before the store is read: see forget
	c.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		var err error
		if e, err = c.load(ctx, name, now, gen); err != nil {
			return nil, err
		}
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// load reads name from the store and caches the answer, found or not,
// unless a forget came since gen was read. Other errors (the database is
// down) are not cached.
func (c *vmCache) load(ctx context.Context, name string, now time.Time, gen uint64) (*vmEntry, error) {
	e := &vmEntry{expires: now.Add(vmCacheTTL)}
	vm, err := c.st.VM(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.err = fmt.Errorf("proxy: vm %s: %w", name, err)
	case err != nil:
		return nil, fmt.Errorf("proxy: look up vm %s: %w", name, err)
	default:
		u, err := url.Parse(vm.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("proxy: vm %s: bad upstream %q", name, vm.Upstream)
		}
		e.vm, e.target, e.namespace = vm, u, c.ns.VM(name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return e, nil // maybe read before the change forget was told of
	}
	if len(c.m) >= maxCachedVMs {
		c.evict(now)
	}
	c.m[name] = e
	return e, nil
}

// forget drops name's entry, so that the next request reads the VM again,
// and keeps a load already in flight from caching what it read.
func (c *vmCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, name)
	c.gen++
}

// forgetAll drops every entry, and keeps loads in flight from caching.
func (c *vmCache) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.gen++
}

// evict drops expired entries, or one arbitrary entry if none has expired
// (map order is random: a simple bounded policy). Called with mu held.
func (c *vmCache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if len(c.m) < maxCachedVMs {
			break
		}
		delete(c.m, k)
	}
}

// limiters holds one token bucket per signing key fingerprint.
type limiters struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	return &limiters{limit: limit, burst: burst, m: make(map[string]*rate.Limiter)}
}

// allow takes one token from fingerprint's bucket at now.
func (l *limiters) allow(fingerprint string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[fingerprint]
	if lim == nil {
		if len(l.m) >= maxLimiters {
			l.evict(now)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[fingerprint] = lim
	}
	return lim.AllowN(now, 1)
}

// evict drops the buckets that are full again: a fresh bucket is the same
// thing, so nothing is forgiven. If every bucket is in use, it drops an
// arbitrary one (that key's limit restarts full). Called with mu held.
func (l *limiters) evict(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < maxLimiters {
			break
		}
		delete(l.m, k)
	}
}

// copyBufSize is ReverseProxy's own copy buffer size.
const copyBufSize = 32 << 10

// bufferPool recycles ReverseProxy's copy buffers (without one it
// allocates 32 KiB per proxied body). It holds pointers to the arrays, so
// Put boxes nothing.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufSize]byte); ok {
		return v[:]
	}
	return make([]byte, copyBufSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufSize {
		b.p.Put((*[copyBufSize]byte)(buf[:copyBufSize]))
	}
}
