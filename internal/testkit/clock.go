package testkit

import (
	"sync"
	"time"
)

// Clock is a clock the test sets and advances by hand, for code that takes
// a now func() time.Time (pass c.Now). It is safe for concurrent use.
//
// Code whose timing rests on timers or tickers is better tested in a
// testing/synctest bubble, where time itself is fake; Clock is for code
// that only asks the time, run beside real network I/O.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the time the clock shows.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set makes the clock show t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
