package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
)

// floodConn opens a TCP connection to addr from the loopback address src
// and tells whether the server kept it (it sent its SSH version line) or
// refused it (closed it at once). The connection is left open, idle,
// pre-authentication, until the test ends.
func (f *flood) conn(t *testing.T, src, addr string) (kept bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("flood dial from %s: %v", src, err)
	}
	f.conns = append(f.conns, c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8)
	n, err := io.ReadFull(c, buf)
	switch {
	case err == nil && string(buf[:n]) == "SSH-2.0-":
		return true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return false
	}
	t.Fatalf("flood conn from %s: read %q, %v", src, buf[:n], err)
	return false
}

// flood is the idle connections a test holds open.
type flood struct{ conns []net.Conn }

func (f *flood) close() {
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// TestIdlePreAuthFloodStarvesServers: idle pre-auth SSH connections were
// unbounded, so tens of thousands of them took the file descriptors of the
// HTTP front and metrics with SSH's own. Bounded and loopback-only: with
// the bounds set low (200 in total, 50 per source), a flooder's idle
// connections pile up to the per-source bound and its extra ones are
// refused, while stock ssh and HTTP keep serving a legitimate client; with
// the total reached from several sources, new SSH connections are refused
// but an authenticated connection, /exec and the admin listener still
// serve; once the flood goes, SSH serves new clients again.
func TestIdlePreAuthFloodStarvesServers(t *testing.T) {
	const total, perSource = 200, 50
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	env := []string{"EXED_DATA=" + data}
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", key+".pub")
	srv := startServer(t, data, "--admin-addr", "127.0.0.1:0",
		"--ssh-max-conns", fmt.Sprint(total), "--ssh-max-conns-per-source", fmt.Sprint(perSource))
	alice := srv.client(t, key)
	admin := srv.adminAddr(t)
	tok := strings.TrimSpace(mustRun(t, nil, "token", "mint", "--key", key))
	execOK := func(when string) {
		t.Helper()
		if code, body := srv.front(t, "POST", "exe.localhost", "/exec", "whoami", headerOf("Authorization", "Bearer "+tok)); code != 200 || !strings.Contains(body, "alice@example.com") {
			t.Fatalf("%s: /exec whoami = %d %s", when, code, body)
		}
		if code, _ := getURL(t, "http://"+admin+"/healthz"); code != 200 {
			t.Fatalf("%s: /healthz = %d", when, code)
		}
		scrapeMetrics(t, admin)
	}
	sshOK := func(when string) {
		t.Helper()
		if r := alice.ssh(t, "", "whoami"); r.code != 0 || !strings.Contains(r.stdout, "alice@example.com") {
			t.Fatalf("%s: ssh whoami = %d %q %q", when, r.code, r.stdout, r.stderr)
		}
	}

	f := &flood{}
	defer f.close()
	// One flooder: its connections up to the per-source bound are kept,
	// the rest refused; everyone else is served meanwhile.
	var kept, refused int
	for range perSource + 10 {
		if f.conn(t, "127.0.0.2", srv.sshAddr) {
			kept++
		} else {
			refused++
		}
	}
	if kept != perSource || refused != 10 {
		t.Fatalf("one source: %d kept, %d refused; want %d and 10", kept, refused, perSource)
	}
	sshOK("during one source's flood")
	execOK("during one source's flood")

	// An authenticated connection, made before the total is reached.
	signer, err := keys.ParsePrivateKey(mustRead(t, key))
	if err != nil {
		t.Fatal(err)
	}
	held, err := gossh.Dial("tcp", srv.sshAddr, &gossh.ClientConfig{
		User: "x", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	// Many sources fill the total (the per-source bound holds each).
	for i := 3; kept < total-1; i++ {
		for range perSource {
			if kept == total-1 {
				break
			}
			if !f.conn(t, fmt.Sprintf("127.0.0.%d", i), srv.sshAddr) {
				t.Fatalf("refused at %d connections, under the total", kept+1)
			}
			kept++
		}
	}
	if f.conn(t, "127.0.0.99", srv.sshAddr) {
		t.Fatal("a connection over the total was kept")
	}
	// The authenticated connection, HTTP and the admin listener go on.
	s, err := held.NewSession()
	if err != nil {
		t.Fatalf("session on the authenticated connection at the total: %v", err)
	}
	if out, err := s.Output("whoami"); err != nil || !strings.Contains(string(out), "alice@example.com") {
		t.Fatalf("whoami on the authenticated connection at the total: %q %v", out, err)
	}
	execOK("with SSH at its total")
	if !strings.Contains(srv.logs(), "connection refused: at its bound") {
		t.Error("no refusal in the log")
	}

	// The flood ends: SSH serves new clients again.
	held.Close()
	f.close()
	testkit.WaitFor(t, "SSH to accept a new connection once the flood is gone", func() bool {
		c, err := net.DialTimeout("tcp", srv.sshAddr, 5*time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 8)
		_, err = io.ReadFull(c, buf)
		return err == nil
	})
	sshOK("after the flood")
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSlowAndOversizedRequestHeaders: the HTTP front cuts a client that
// sends part of its request headers and stops (ReadHeaderTimeout, 10 s),
// and answers 431 to headers past its 64 KiB bound, without reading on;
// other clients are served meanwhile.
func TestSlowAndOversizedRequestHeaders(t *testing.T) {
	srv := startServer(t, t.TempDir())
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", srv.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	slow := dial()
	if _, err := io.WriteString(slow, "GET / HTTP/1.1\r\nHost: exe.localhost\r\nX-Partial: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	big := dial()
	fmt.Fprintf(big, "GET / HTTP/1.1\r\nHost: exe.localhost\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 70<<10))
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatalf("headers past the bound: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers past the bound: %d, want 431", resp.StatusCode)
	}

	// Served while the slow one waits.
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.httpAddr+"/", nil)
	req.Host = "exe.localhost"
	ok, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a normal request meanwhile: %v", err)
	}
	ok.Body.Close()
	if ok.StatusCode != http.StatusOK {
		t.Errorf("a normal request meanwhile: %d", ok.StatusCode)
	}

	// The slow client is cut: its read ends (EOF, or a 408 and then EOF)
	// long before this deadline.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(slow)
	if err != nil {
		t.Fatalf("the slow client was not cut within 30 s: %v", err)
	}
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 408") {
		t.Errorf("the slow client got %.60q", rest)
	}
	t.Logf("the slow client was cut after %v", time.Since(start).Round(100*time.Millisecond))
}
