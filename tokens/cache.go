package tokens

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/exed-dev/exed/store"
)

// Memory accounting. An entry's cost is estimated from its real contents:
// the fixed part (the entry struct, its key and the map's slot for it) and
// every string and slice it holds (the user's id and email, the key's
// name, fingerprint, public key, VM and cmds, the token's cmds and ctx).
// Go's maps never give memory back, so a map that has shrunk well below
// its peak is rebuilt.
const (
	// entryOverhead is the fixed cost of one entry: the struct, the map
	// slot (key, pointer, and about a word of the map's own bookkeeping
	// per slot at its load factor), and an allocation header's rounding.
	entryOverhead = int64(unsafe.Sizeof(cacheEntry{})) + int64(unsafe.Sizeof(cacheKey{})) + 2*8 + 16
	// stringOverhead is what holding one more string costs beyond its
	// bytes: the allocator's rounding, on average.
	stringOverhead = 8
	// shrinkBelow: a map rebuilt when its entries drop under 1/shrinkBelow
	// of its peak (and the peak was at least shrinkMin).
	shrinkBelow = 4
	shrinkMin   = 1024
)

// entrySize estimates what e costs the heap.
func entrySize(e *cacheEntry) int64 {
	n := entryOverhead
	str := func(s string) {
		if len(s) > 0 {
			n += int64(len(s)) + stringOverhead
		}
	}
	strs := func(l []string) {
		if l != nil {
			n += int64(cap(l)) * int64(unsafe.Sizeof("")) // the slice's array of headers
			for _, s := range l {
				str(s)
			}
		}
	}
	g := &e.grant
	str(g.User.ID)
	str(g.User.Email)
	str(g.Key.UserID)
	str(g.Key.Name)
	str(g.Key.Fingerprint)
	str(g.Key.PublicKey)
	str(g.Key.VM)
	strs(g.Key.Cmds)
	strs(g.Perms.Cmds)
	if g.Perms.Ctx != nil {
		n += int64(cap(g.Perms.Ctx)) + stringOverhead
	}
	str(g.Ctx)
	str(e.namespace)
	str(e.fingerprint)
	return n
}

// evictSample is how many entries an insert into a full cache looks at:
// expired ones among them go, and if none has expired the first one does.
// Small, so an insert stays cheap; map iteration starts at a random place,
// so the victim is effectively random.
const evictSample = 8

// cacheKey is the SHA-256 of a token. A collision-resistant hash rather
// than a fast one: two tokens must never share an entry.
type cacheKey [sha256.Size]byte

// cacheKeyOf hashes token, which must be at most MaxTokenLen bytes, without
// allocating (the copy lives on the stack).
func cacheKeyOf(token string) cacheKey {
	var buf [MaxTokenLen]byte
	n := copy(buf[:], token)
	return sha256.Sum256(buf[:n])
}

// cacheEntry is one verified token. It is never modified once stored.
type cacheEntry struct {
	grant       Grant
	namespace   string // the token's namespace: a hit needs the same
	fingerprint string // the signing key, for forget
	expires     time.Time
	size        int64 // entrySize, once stored
}

// cache is a map of positive results bounded in entries and in estimated
// bytes, with random replacement; expired entries are swept at most once
// per sweepEvery, and the map is rebuilt when it has shrunk well below its
// peak, so that memory taken by a burst comes back.
type cache struct {
	max          int
	maxBytes     int64
	sweepEvery   time.Duration
	hits, misses atomic.Uint64

	// gen is the Verifier's generation (see Verifier.forget): a result
	// begun before it last moved is not stored.
	gen *atomic.Uint64

	mu        sync.RWMutex
	entries   map[cacheKey]*cacheEntry
	bytes     int64     // sum of the entries' sizes
	peak      int       // most entries since the map was made
	lastSweep time.Time // when expired entries were last swept
}

func newCache(max int, maxBytes int64, sweepEvery time.Duration, gen *atomic.Uint64) *cache {
	return &cache{max: max, maxBytes: maxBytes, sweepEvery: sweepEvery, gen: gen, entries: make(map[cacheKey]*cacheEntry)}
}

// get returns a live entry for k in namespace, or nil.
func (c *cache) get(k cacheKey, namespace string, now time.Time) *cacheEntry {
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e == nil || e.namespace != namespace || !now.Before(e.expires) {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return e
}

// put stores e unless the generation moved since gen was read. An entry larger than
// a sixteenth of the byte bound is not cached at all: one request must not
// be able to empty the cache.
func (c *cache) put(k cacheKey, e *cacheEntry, gen uint64, now time.Time) {
	e.size = entrySize(e)
	if e.size > c.maxBytes/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	if now.Sub(c.lastSweep) >= c.sweepEvery {
		c.sweep(now)
	}
	if old, ok := c.entries[k]; ok {
		c.remove(k, old)
	}
	for len(c.entries) > 0 && (len(c.entries) >= c.max || c.bytes+e.size > c.maxBytes) {
		c.evict(now)
	}
	c.entries[k] = e
	c.bytes += e.size
	c.peak = max(c.peak, len(c.entries))
}

// remove deletes one entry. Called with mu held.
func (c *cache) remove(k cacheKey, e *cacheEntry) {
	delete(c.entries, k)
	c.bytes -= e.size
}

// evict makes room for one entry: the expired ones among a sample go, or
// if none has expired the first of them. Called with mu held.
func (c *cache) evict(now time.Time) {
	var (
		first   cacheKey
		seen    int
		removed bool
	)
	for k, e := range c.entries {
		if seen == 0 {
			first = k
		}
		if !now.Before(e.expires) {
			c.remove(k, e)
			removed = true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if !removed && seen > 0 {
		c.remove(first, c.entries[first])
	}
}

// sweep drops every expired entry, then shrinks the map if it is well
// below its peak. Called with mu held.
func (c *cache) sweep(now time.Time) {
	c.lastSweep = now
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			c.remove(k, e)
		}
	}
	c.shrink()
}

// shrink rebuilds the map once it holds under 1/shrinkBelow of its peak:
// a Go map keeps the buckets of its largest size, so a map once filled by
// a burst would hold that memory for good. Called with mu held.
func (c *cache) shrink() {
	if c.peak < shrinkMin || len(c.entries)*shrinkBelow >= c.peak {
		return
	}
	m := make(map[cacheKey]*cacheEntry, len(c.entries))
	for k, e := range c.entries {
		m[k] = e
	}
	c.entries, c.peak = m, len(m)
}

// forget drops the entries drop picks (all of them for a nil drop). The
// caller has moved the generation first.
func (c *cache) forget(drop func(*cacheEntry) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if drop == nil {
		c.entries, c.bytes, c.peak = make(map[cacheKey]*cacheEntry), 0, 0
		return
	}
	for k, e := range c.entries {
		if drop(e) {
			c.remove(k, e)
		}
	}
	c.shrink()
}

// usage reports the entries' estimated bytes and the map's peak size.
func (c *cache) usage() (bytes int64, peak int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes, c.peak
}

func (c *cache) stats() (hits, misses uint64, size int) {
	c.mu.RLock()
	size = len(c.entries)
	c.mu.RUnlock()
	return c.hits.Load(), c.misses.Load(), size
}

// keyCache holds registry answers by fingerprint, so that a token the
// result cache does not know (a new token, or one whose entry expired) for
// a key it has seen skips the registry round trip: each key with its user,
// and, apart, the fingerprints the registry said were not registered (so
// that junk signed by unknown keys does not reach the registry either,
// nor push known keys out). Entries live at most the TTL and are dropped
// by Verifier.Forget, ForgetUser and ForgetAll, as the result cache's are.
type keyCache struct {
	max int
	ttl time.Duration
	gen *atomic.Uint64 // the Verifier's generation, as for cache

	mu      sync.RWMutex
	known   map[string]*keyEntry // by fingerprint
	unknown map[string]time.Time // fingerprint → until when it is taken as unregistered
}

// maxUnknownKeys bounds the fingerprints remembered as unregistered:
// enough for a flood from many made-up keys to be answered from memory
// for the TTL, and kept apart so that it cannot evict the known keys.
const maxUnknownKeys = 4096

// keyEntry is one registry answer, never modified once stored.
type keyEntry struct {
	key     store.Key
	user    store.User
	userErr error // the key is registered but its user is not (KeyAndUser's not-found)
	expires time.Time
}

func newKeyCache(max int, ttl time.Duration, gen *atomic.Uint64) *keyCache {
	return &keyCache{max: max, ttl: ttl, gen: gen, known: make(map[string]*keyEntry), unknown: make(map[string]time.Time)}
}

// get returns the live answer for fingerprint: a known key (e), an
// unregistered one (unknown), or neither (a miss).
func (c *keyCache) get(fingerprint string, now time.Time) (e *keyEntry, unknown bool) {
	c.mu.RLock()
	e = c.known[fingerprint]
	until, isUnknown := c.unknown[fingerprint]
	c.mu.RUnlock()
	switch {
	case e != nil && now.Before(e.expires):
		return e, false
	case isUnknown && now.Before(until):
		return nil, true
	}
	return nil, false
}

// put stores the registry's answer for fingerprint (e nil: not
// registered) unless the generation moved since gen was read.
func (c *keyCache) put(fingerprint string, e *keyEntry, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	if e == nil {
		if _, ok := c.unknown[fingerprint]; !ok && len(c.unknown) >= maxUnknownKeys {
			evictOne(c.unknown, func(until time.Time) bool { return !now.Before(until) })
		}
		c.unknown[fingerprint] = now.Add(c.ttl)
		return
	}
	delete(c.unknown, fingerprint)
	if _, ok := c.known[fingerprint]; !ok && len(c.known) >= c.max {
		evictOne(c.known, func(e *keyEntry) bool { return !now.Before(e.expires) })
	}
	e.expires = now.Add(c.ttl)
	c.known[fingerprint] = e
}

// forget drops fingerprint's answers, known or not ("" with userID: the
// keys of that user; both empty: everything). The caller has moved the
// generation first.
func (c *keyCache) forget(fingerprint, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case fingerprint != "":
		delete(c.known, fingerprint)
		delete(c.unknown, fingerprint)
	case userID != "":
		for fp, e := range c.known {
			if e.key.UserID == userID {
				delete(c.known, fp)
			}
		}
	default:
		c.known, c.unknown = make(map[string]*keyEntry), make(map[string]time.Time)
	}
}

// evictOne makes room in a full map: the expired entries among a sample
// go, or if none has expired the first of them (map iteration starts at
// a random place, so the victim is effectively random).
func evictOne[K comparable, V any](m map[K]V, expired func(V) bool) {
	var (
		first   K
		seen    int
		removed bool
	)
	for k, v := range m {
		if seen == 0 {
			first = k
		}
		if expired(v) {
			delete(m, k)
			removed = true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if !removed && seen > 0 {
		delete(m, first)
	}
}
