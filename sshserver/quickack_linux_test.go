//go:build linux

package sshserver

import (
	"net"
	"syscall"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/netlimit"
)

// quickAckOpt reads TCP_QUICKACK: 1 while the socket acknowledges at once,
// 0 once it has gone back to delayed ACKs.
func quickAckOpt(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	})
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestQuickAckSetAfterRead: the wrapper turns quick ACKs back on after
// every read, after the kernel (here: the test) has turned them off.
func TestQuickAckSetAfterRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn := quickAck(raw)
	if _, ok := conn.(*quickAckConn); !ok {
		t.Fatalf("quickAck returned %T, want *quickAckConn", conn)
	}
	buf := make([]byte, 8)
	for i := range 3 {
		rc, _ := raw.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
		})
		if got := quickAckOpt(t, raw); got != 0 {
			t.Fatalf("round %d: TCP_QUICKACK is %d after turning it off", i, got)
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		if got := quickAckOpt(t, raw); got != 1 {
			t.Errorf("round %d: TCP_QUICKACK is %d after a read, want 1", i, got)
		}
	}
}

// TestQuickAckThroughTheBoundedListener: exed serve accepts SSH through
// netlimit's bounded listener, whose connections wrap the TCP one; quick
// ACKs must reach the socket under the wrapper (they once silently did
// not, and cold logins stalled again).
func TestQuickAckThroughTheBoundedListener(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := netlimit.Listen(tcp, netlimit.Limits{Total: 4, PerSource: 4})
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	bounded, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bounded.Close()
	if _, ok := bounded.(*net.TCPConn); ok {
		t.Fatal("netlimit no longer wraps: this test tests nothing")
	}
	conn := quickAck(bounded)
	q, ok := conn.(*quickAckConn)
	if !ok {
		t.Fatalf("quickAck of a bounded connection returned %T, want *quickAckConn", conn)
	}
	if q.Conn != bounded {
		t.Error("quickAck dropped the bounded wrapper: closing would not release its place")
	}
	raw := bounded.(interface{ NetConn() net.Conn }).NetConn()
	if got := quickAckOpt(t, raw); got != 1 {
		t.Errorf("TCP_QUICKACK is %d on the socket, want 1", got)
	}
}

// BenchmarkNagleClientLogin measures the cold-login stall quick ACKs
// remove: a client with Nagle's algorithm on (as OpenSSH's is until a
// session opens) used to wait at least one 40 ms delayed ACK per login.
// Timing is measured here, never asserted in a test; TestQuickAckSetAfterRead
// pins the behaviour.
func BenchmarkNagleClientLogin(b *testing.B) {
	e := newTestEnv(b)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServerB(b)
	for b.Loop() {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(false) // Nagle on, as OpenSSH during login
		sc, chans, reqs, err := gossh.NewClientConn(c, ts.addr, ts.config(gossh.PublicKeys(alice.Signer)))
		if err != nil {
			b.Fatal(err)
		}
		client := gossh.NewClient(sc, chans, reqs)
		if _, errOut, code := execSSH(b, client, "whoami", ""); code != 0 {
			b.Fatalf("whoami: %s", errOut)
		}
		client.Close()
	}
}
