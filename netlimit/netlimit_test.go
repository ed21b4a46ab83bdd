package netlimit

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address src (Linux routes
// all of 127.0.0.0/8 to loopback).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether the server closed c without a word.
func refused(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestListenerBounds(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reasons := make(chan string, 10)
	ln := Listen(raw, Limits{Total: 5, PerSource: 3, OnRefuse: func(r string) { reasons <- r }})
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := raw.Addr().String()
	var held []net.Conn
	for range 3 {
		dialFrom(t, "127.0.0.2", addr)
		held = append(held, <-accepted)
	}
	// A fourth from the same source is refused; another source is not.
	if c := dialFrom(t, "127.0.0.2", addr); !refused(c) {
		t.Error("a fourth connection from one source was accepted")
	}
	for range 2 {
		dialFrom(t, "127.0.0.3", addr)
		held = append(held, <-accepted)
	}
	// Five open: the total refuses a new source too.
	if c := dialFrom(t, "127.0.0.4", addr); !refused(c) {
		t.Error("a connection over the total was accepted")
	}
	// Closing one frees its place, once (a second Close frees nothing).
	held[0].Close()
	held[0].Close()
	dialFrom(t, "127.0.0.2", addr)
	held = append(held, <-accepted)
	if c := dialFrom(t, "127.0.0.4", addr); !refused(c) {
		t.Error("a double Close freed two places")
	}
	if open, n := ln.Stats(); open != 5 || n != 3 {
		t.Errorf("stats %d open, %d refused", open, n)
	}
	for _, want := range []string{"source", "total", "total"} {
		if got := <-reasons; got != want {
			t.Errorf("refused for %q, want %q", got, want)
		}
	}
	for _, c := range held {
		c.Close()
	}
	ln.mu.Lock()
	open, sources := ln.open, len(ln.bySource)
	ln.mu.Unlock()
	if open != 0 || sources != 0 {
		t.Errorf("after closing all: %d open, %d sources kept", open, sources)
	}
}

func TestSourcePrefix(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1:1", "192.0.2.1:2", true},
		{"192.0.2.1:1", "192.0.2.2:1", false},
		{"[2001:db8::1]:1", "[2001:db8::ffff:1]:2", true}, // one /64
		{"[2001:db8:0:1::1]:1", "[2001:db8:0:2::1]:1", false},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1:1", true},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tt.a)
		b, _ := net.ResolveTCPAddr("tcp", tt.b)
		if got := source(a) == source(b); got != tt.same {
			t.Errorf("%s and %s: same source %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

func TestBudget(t *testing.T) {
	for _, limit := range []uint64{256, 1024, 65536, 1 << 20} {
		ssh, http := Budget(limit)
		if ssh < 1 || http < 1 || limit > 320 && uint64(ssh+2*http) > limit-256 {
			t.Errorf("Budget(%d) = %d, %d: over what is left after the reserve", limit, ssh, http)
		}
	}
}
