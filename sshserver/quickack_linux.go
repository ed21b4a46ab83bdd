//go:build linux

package sshserver

import (
	"net"
	"syscall"
)

// quickAck wraps an accepted TCP connection so that the kernel acknowledges
// what arrives at once instead of delaying the ACK.
//
// Why: OpenSSH's client keeps Nagle's algorithm on until a session opens,
// and twice before that it sends a small packet right behind another
// (KEX_ECDH_INIT behind KEXINIT; SERVICE_REQUEST behind NEWKEYS). Nagle
// holds the second until the first is acknowledged, and Linux delays that
// ACK for at least 40 ms when the server has nothing to send back: two such
// stalls were about 80 ms of a 110 ms cold `ssh HOST whoami` on loopback.
// TCP_QUICKACK does not stick (the kernel returns to delayed ACKs on its
// own), so it is set again after every read; setting it also sends an ACK
// that is already pending.
//
// A connection wrapped by a listener (netlimit's) is unwrapped through its
// NetConn method to reach the socket; the wrapper itself is kept.
func quickAck(c net.Conn) net.Conn {
	tc := tcpConn(c)
	if tc == nil {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{Conn: c, rc: rc}
	q.set()
	return q
}

// tcpConn is the *net.TCPConn under c and the wrappers that expose theirs
// with NetConn, or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for range 8 { // wrappers rarely nest; a cycle must not hang
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// quickAckConn embeds net.Conn, not *net.TCPConn, so that every read goes
// through Read (no WriteTo or splice around it).
type quickAckConn struct {
	net.Conn
	rc syscall.RawConn
}

func (c *quickAckConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.set()
	return n, err
}

// set turns quick ACKs on. Best effort: failing costs latency, not
// correctness.
func (c *quickAckConn) set() {
	c.rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
