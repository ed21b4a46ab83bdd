// Package netlimit bounds what unauthenticated clients can hold open: a
// listener that accepts at most so many connections in total and from one
// source address (refusing the rest at once, by closing them), and the
// file-descriptor budget the bounds are sized from, so that a flood on one
// listener (idle pre-auth SSH connections) cannot take the file
// descriptors the others (HTTP, metrics, the database) need.
package netlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Limits bound one listener.
type Limits struct {
	Total     int // connections open at once; <= 0: no bound
	PerSource int // from one source (an IPv4 address, an IPv6 /64); <= 0: no bound
	// OnRefuse, if set, is told of each connection refused, with "total"
	// or "source": for a metric or a rate-limited log line. It runs in
	// Accept's goroutine and must be cheap.
	OnRefuse func(reason string)
}

// Listener is a net.Listener under Limits. Its Accept closes a connection
// over a bound as soon as it arrives and goes on accepting; a connection
// counts until it is closed.
type Listener struct {
	net.Listener
	l Limits

	mu       sync.Mutex
	open     int
	bySource map[netip.Prefix]int
	refused  atomic.Uint64
}

// Listen wraps ln with l.
func Listen(ln net.Listener, l Limits) *Listener {
	return &Listener{Listener: ln, l: l, bySource: make(map[netip.Prefix]int)}
}

// Accept returns the next connection within the bounds.
func (ln *Listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if reason := ln.admit(src); reason != "" {
			c.Close()
			ln.refused.Add(1)
			if ln.l.OnRefuse != nil {
				ln.l.OnRefuse(reason)
			}
			continue
		}
		return &conn{Conn: c, release: func() { ln.release(src) }}, nil
	}
}

// admit counts a connection from src, or says which bound refuses it.
func (ln *Listener) admit(src netip.Prefix) string {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	switch {
	case ln.l.Total > 0 && ln.open >= ln.l.Total:
		return "total"
	case ln.l.PerSource > 0 && src.IsValid() && ln.bySource[src] >= ln.l.PerSource:
		return "source"
	}
	ln.open++
	if src.IsValid() {
		ln.bySource[src]++
	}
	return ""
}

func (ln *Listener) release(src netip.Prefix) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	ln.open--
	if src.IsValid() {
		if ln.bySource[src]--; ln.bySource[src] <= 0 {
			delete(ln.bySource, src) // the map shrinks with the sources
		}
	}
}

// Stats reports the connections open now and those refused since start.
func (ln *Listener) Stats() (open int, refused uint64) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	return ln.open, ln.refused.Load()
}

// source is what a per-source bound counts by: the IPv4 address, or the
// /64 of an IPv6 one (a single host is routinely handed a whole /64).
func source(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// conn releases its place once, on the first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

// NetConn is the connection accepted (as tls.Conn's NetConn): what wants
// the socket itself, such as the SSH server's quick ACKs, reaches it here.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Budget splits a file-descriptor limit between the listeners. reserve is
// kept for everything that is not a client connection (the database pool,
// log files, the listeners themselves, the admin server, the proxy's idle
// upstream connections): the SSH and HTTP bounds share what is left, a
// quarter to SSH (one descriptor a connection) and, for HTTP, a quarter of
// connections that each may hold an upstream connection too (half the
// descriptors). So neither front's flood can starve the other.
func Budget(fileLimit uint64) (ssh, http int) {
	const reserve = 256
	if fileLimit <= reserve+64 {
		return 16, 16 // a tiny limit: keep the fronts working, barely
	}
	avail := fileLimit - reserve
	const most = 1 << 20
	q := min(avail/4, most)
	return int(q), int(q)
}
