package tokens

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

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
}

// cache is a bounded map of positive results with random replacement.
type cache struct {
	max          int
	hits, misses atomic.Uint64

	mu      sync.RWMutex
	entries map[cacheKey]*cacheEntry
	gen     uint64 // bumped by forget; results begun before it are not stored
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]*cacheEntry)}
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

// put stores e unless forget ran since gen was read.
func (c *cache) put(k cacheKey, e *cacheEntry, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = e
}

// evict makes room for one entry.
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
			delete(c.entries, k)
			removed = true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if !removed && seen > 0 {
		delete(c.entries, first)
	}
}

func (c *cache) forget(fingerprint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		if e.fingerprint == fingerprint {
			delete(c.entries, k)
		}
	}
}

func (c *cache) stats() (hits, misses uint64, size int) {
	c.mu.RLock()
	size = len(c.entries)
	c.mu.RUnlock()
	return c.hits.Load(), c.misses.Load(), size
}
