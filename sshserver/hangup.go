package sshserver

import (
	"net"
	"sync/atomic"
)

// hangupConn is a connection that can be told to close itself right after
// its next write. Authentication uses it to end a login the server cannot
// decide (the registry is down): x/crypto sends the banner that says so as
// the next write after the auth callback returns, and nothing after it, so
// the client reads the reason and then sees the connection close, rather
// than being refused as if its key were unknown.
type hangupConn struct {
	net.Conn
	hangup atomic.Bool
}

// afterNextWrite arms the hang-up.
func (c *hangupConn) afterNextWrite() { c.hangup.Store(true) }

func (c *hangupConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.hangup.Load() {
		c.Conn.Close()
	}
	return n, err
}
