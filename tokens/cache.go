package tokens

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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

	mu        sync.RWMutex
	entries   map[cacheKey]*cacheEntry
	bytes     int64     // sum of the entries' sizes
	peak      int       // most entries since the map was made
	lastSweep time.Time // when expired entries were last swept
	gen       uint64    // bumped by forget; results begun before it are not stored
}

func newCache(max int, maxBytes int64, sweepEvery time.Duration) *cache {
	return &cache{max: max, maxBytes: maxBytes, sweepEvery: sweepEvery, entries: make(map[cacheKey]*cacheEntry)}
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

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put stores e unless forget ran since gen was read. An entry larger than
// a sixteenth of the byte bound is not cached at all: one request must not
// be able to empty the cache.
func (c *cache) put(k cacheKey, e *cacheEntry, gen uint64, now time.Time) {
	e.size = entrySize(e)
	if e.size > c.maxBytes/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
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

func (c *cache) forget(fingerprint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		if e.fingerprint == fingerprint {
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
