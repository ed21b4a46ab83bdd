package tokens

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// heapNow is the live heap after a full collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheLargeCtxUnboundedMemory: the cache counted entries only, each
// ~11 KB with a large ctx rather than the ~1 KB assumed, and its map never
// shrank: one user filled 100k entries and a gigabyte. It is bounded by
// estimated bytes, the estimate follows the real heap, and the memory of a
// burst comes back once its entries expire.
func TestCacheLargeCtxUnboundedMemory(t *testing.T) {
	const bound = 2 << 20 // 2 MiB
	f := newFixture(t, Config{CacheBytes: bound, CacheTTL: time.Hour})
	ctx := context.Background()
	big := strings.Repeat("x", 5500) // near the largest ctx a token can carry
	toks := make([]string, 1500)     // ~9 MB of entries unbounded
	for i := range toks {
		toks[i] = mint(t, f.signer, apiNS, fmt.Sprintf(`{"ctx":{"n":%d,"pad":%q}}`, i, big))
	}
	for _, tok := range toks {
		if _, err := f.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
		if b, _ := f.v.CacheUsage(); b > bound {
			t.Fatalf("cache holds an estimated %d bytes, over its bound %d", b, bound)
		}
	}
	est, _ := f.v.CacheUsage()
	_, _, n := f.v.CacheStats()
	// What the cache really holds: the heap with it full, less the heap
	// once it is emptied.
	full := heapNow()
	f.v.Forget(f.key.Fingerprint)
	grown := int64(full) - int64(heapNow())
	runtime.KeepAlive(toks)
	t.Logf("%d entries, estimated %d bytes (%d each), the cache held %d bytes of heap", n, est, est/int64(n), grown)
	if est < bound/2 {
		t.Errorf("estimated %d bytes: the cache should fill its bound with this many tokens", est)
	}
	// The estimate is of the real heap: what the cache holds is within a
	// factor of two of it, so the byte bound bounds memory.
	if grown > 2*est || grown < est/2 {
		t.Errorf("heap grew %d bytes for an estimated %d", grown, est)
	}

	// Memory comes back: the entries expire, a sweep drops them, and the
	// map, far below its peak, is rebuilt.
	g := newFixture(t, Config{CacheTTL: time.Second})
	small := make([]string, 3000)
	for i := range small {
		small[i] = mint(t, g.signer, apiNS, fmt.Sprintf(`{"ctx":%d}`, i))
	}
	base := heapNow()
	for _, tok := range small {
		if _, err := g.v.Verify(ctx, tok, Target{Namespace: apiNS}); err != nil {
			t.Fatal(err)
		}
	}
	fullG := heapNow()
	runtime.KeepAlive(small)
	g.clock.Advance(2 * time.Second)
	if _, err := g.v.Verify(ctx, small[0], Target{Namespace: apiNS}); err != nil { // a put: sweeps
		t.Fatal(err)
	}
	after := heapNow()
	runtime.KeepAlive(small)
	b, peak := g.v.CacheUsage()
	if _, _, size := g.v.CacheStats(); size != 1 || peak != 1 || b > 2000 {
		t.Errorf("after the sweep: %d entries, peak %d, %d bytes; want 1, 1 and little", size, peak, b)
	}
	t.Logf("heap: %d before, %d full, %d after the sweep", base, fullG, after)
	if after > base+(fullG-base)/4 {
		t.Errorf("heap %d after the sweep, %d full, %d before: the memory did not come back", after, fullG, base)
	}
}
