package assertion

import "github.com/exed-dev/exed/store"

// Test hooks for the external test package.

// CachedAssertions is how many assertions is holds for reuse.
func CachedAssertions(is *Issuer) int {
	c := is.state.Load().cache
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// Opens reports whether secret opens k's private key.
func Opens(secret *Secret, k store.AssertionKey) bool {
	_, err := openKey(secret, k)
	return err == nil
}
