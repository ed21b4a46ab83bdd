package store

// Test hooks for the external test package (store_test), which tests the
// LastUsedWriter against the real SQL store and so cannot be this package.

// NotedKeys is the number of keys w remembers having queued.
func NotedKeys(w *LastUsedWriter) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.noted)
}
