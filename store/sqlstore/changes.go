package sqlstore

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/exed-dev/exed/store"
)

// changes is the store's list of subscribers to committed writes
// (store.Changes). Publishing reads the list without a lock, so that a
// write pays one atomic load when nobody listens; subscribing and
// cancelling copy it.
type changes struct {
	mu   sync.Mutex                    // serialises changes to subs
	subs atomic.Pointer[[]*subscriber] // nil: none yet
}

// subscriber is one Subscribe call.
type subscriber struct {
	fn        func(store.Change)
	cancelled atomic.Bool
}

// Subscribe implements store.Changes.
func (s *Store) Subscribe(fn func(store.Change)) (cancel func()) {
	return s.changes.subscribe(fn)
}

func (c *changes) subscribe(fn func(store.Change)) (cancel func()) {
	sub := &subscriber{fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old []*subscriber
	if p := c.subs.Load(); p != nil {
		old = *p
	}
	subs := append(slices.Clip(old), sub)
	c.subs.Store(&subs)
	return func() {
		// First, so that a publish that already loaded the list skips sub.
		if sub.cancelled.Swap(true) {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		subs := slices.DeleteFunc(slices.Clone(*c.subs.Load()), func(s *subscriber) bool { return s == sub })
		c.subs.Store(&subs)
	}
}

// publish calls every subscriber with each change, in order. Called only
// after the write that made the changes has committed.
func (c *changes) publish(cs ...store.Change) {
	p := c.subs.Load()
	if p == nil || len(cs) == 0 {
		return
	}
	for _, ch := range cs {
		for _, sub := range *p {
			if !sub.cancelled.Load() {
				sub.fn(ch)
			}
		}
	}
}
