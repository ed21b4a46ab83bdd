package store

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"
)

// shutdownFlushTimeout bounds Run's last flush, made after its context is
// done: long enough for one batch, short enough not to hold up shutdown.
const shutdownFlushTimeout = 5 * time.Second

// LastUsedWriter records when keys were last used without a database
// write per request: Touch notes a use in memory, and Run writes the
// notes in batches via KeyStore.TouchKeys, at most once per key per
// interval (a minute by default: last_used_at is only that precise).
type LastUsedWriter struct {
	write func(ctx context.Context, used map[string]time.Time) error
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	noted   map[string]time.Time // when each key was last queued
	pending map[string]time.Time // queued, not yet written
}

// NewLastUsedWriter returns a writer that writes each key's last use at
// most once per every (a minute when every <= 0), reading the time from
// now (time.Now when nil).
func NewLastUsedWriter(s KeyStore, every time.Duration, now func() time.Time) *LastUsedWriter {
	return NewLastUsedFunc(s.TouchKeys, every, now)
}

// NewLastUsedFunc is NewLastUsedWriter for anything else whose last use is
// recorded the same way: write stores a batch (SessionStore.TouchSessions
// for browser sessions, keyed by string(Session.Hash)).
func NewLastUsedFunc(write func(ctx context.Context, used map[string]time.Time) error, every time.Duration, now func() time.Time) *LastUsedWriter {
	if every <= 0 {
		every = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &LastUsedWriter{
		write:   write,
		every:   every,
		now:     now,
		noted:   make(map[string]time.Time),
		pending: make(map[string]time.Time),
	}
}

// Touch notes that the key with this fingerprint was just used. It never
// blocks on the database, and a key already noted within the interval
// costs one map lookup and no allocation: it is called on the request
// path.
func (w *LastUsedWriter) Touch(fingerprint string) {
	t := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.noted[fingerprint]; ok && t.Sub(last) < w.every {
		return
	}
	w.noted[fingerprint] = t
	w.pending[fingerprint] = t
}

// Backlog is the number of keys noted but not yet written.
func (w *LastUsedWriter) Backlog() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// Flush writes every pending note in one batch. On failure the batch is
// kept to be retried by the next Flush.
func (w *LastUsedWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	batch := w.pending
	w.pending = make(map[string]time.Time)
	// Notes older than the interval no longer hold anything back.
	now := w.now()
	maps.DeleteFunc(w.noted, func(_ string, t time.Time) bool { return now.Sub(t) >= w.every })
	w.mu.Unlock()

	if len(batch) == 0 {
		return nil
	}
	err := w.write(ctx, batch)
	if err == nil {
		return nil
	}
	w.mu.Lock()
	for fp, t := range batch {
		if p, ok := w.pending[fp]; !ok || p.Before(t) {
			w.pending[fp] = t
		}
	}
	w.mu.Unlock()
	return fmt.Errorf("store: write last used: %w", err)
}

// Run flushes every interval until ctx is done, then flushes once more so
// that a clean shutdown loses nothing, and returns that flush's error. A
// failed periodic flush is retried at the next tick (see Backlog).
func (w *LastUsedWriter) Run(ctx context.Context) error {
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			w.Flush(ctx) // kept for the next tick on failure
		case <-ctx.Done():
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownFlushTimeout)
			defer cancel()
			return w.Flush(ctx)
		}
	}
}
