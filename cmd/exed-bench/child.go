package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
)

// The harness starts its servers as child processes of its own binary, so
// that they do not share a Go runtime with the load generator (and exed's
// own process holds exed alone). A child is picked by envChild; it prints
// its listening address(es) on one line of stdout and exits when its stdin
// closes, so it never outlives the harness.
const (
	envChild    = "EXED_BENCH_CHILD"    // "upstream", "bare" or "sshd"
	envUpstream = "EXED_BENCH_UPSTREAM" // bare: the upstream URL
	envHostKey  = "EXED_BENCH_HOST_KEY" // sshd: host key file
	envUserKey  = "EXED_BENCH_USER_KEY" // sshd: the one authorized key, authorized_keys form
	envWhoami   = "EXED_BENCH_WHOAMI"   // sshd: what whoami prints
)

// upstreamBody is what the trivial upstream answers to everything.
const upstreamBody = "ok\n"

// runChild runs the child named in the environment, if any, and reports
// whether it did.
func runChild() bool {
	mode := os.Getenv(envChild)
	if mode == "" {
		return false
	}
	var err error
	switch mode {
	case "upstream":
		err = serveUpstream()
	case "bare":
		err = serveBare(os.Getenv(envUpstream))
	case "sshd":
		err = serveBareSSH(os.Getenv(envHostKey), os.Getenv(envUserKey), os.Getenv(envWhoami))
	default:
		err = fmt.Errorf("unknown child %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "exed-bench %s: %v\n", mode, err)
		os.Exit(1)
	}
	return true
}

// listenAll listens on n loopback ports and prints them on one line.
func listenAll(n int) ([]net.Listener, error) {
	var lns []net.Listener
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	fmt.Println(strings.Join(addrs, " "))
	return lns, nil
}

// untilStdinCloses serves until the parent goes.
func untilStdinCloses() {
	io.Copy(io.Discard, os.Stdin)
}

// serveUpstream is the trivial VM: a few bytes for every request.
func serveUpstream() error {
	lns, err := listenAll(1)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case streamPath:
				serveStream(w, r)
			case wsPath:
				serveWebSocketEcho(w, r)
			default:
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, upstreamBody)
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(lns[0])
	untilStdinCloses()
	return nil
}

// serveBare is the baseline proxy: httputil.ReverseProxy with exed's
// transport (proxy.NewTransport) and pooled copy buffers, and otherwise
// its defaults (FlushInterval 0, which already flushes streams: responses
// of unknown length and server-sent events). On the second port the same
// with Go's default transport, to show what sizing the pool is worth; on
// the third, with exed's FlushInterval -1 (flush after every write).
func serveBare(upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad upstream %q", upstream)
	}
	lns, err := listenAll(3)
	if err != nil {
		return err
	}
	tuned := proxy.NewTransport()
	for i, c := range []struct {
		rt    http.RoundTripper
		flush time.Duration
	}{
		{tuned, 0},
		{http.DefaultTransport.(*http.Transport).Clone(), 0},
		{tuned, -1},
	} {
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
			},
			Transport:     c.rt,
			FlushInterval: c.flush,
			BufferPool:    &bufferPool{},
			ErrorLog:      log.New(io.Discard, "", 0),
		}
		// The same server settings as exed serve's.
		srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		go srv.Serve(lns[i])
	}
	untilStdinCloses()
	return nil
}

// bufferPool is a sync.Pool of ReverseProxy copy buffers, as exed's.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// serveBareSSH is the baseline SSH server: gliderlabs/ssh with default
// settings (the same host key type as exed's), one authorized key, and a
// whoami answered from memory.
func serveBareSSH(hostKeyFile, userKey, whoami string) error {
	pem, err := os.ReadFile(hostKeyFile)
	if err != nil {
		return err
	}
	host, err := keys.ParsePrivateKey(pem)
	if err != nil {
		return err
	}
	allowed, _, err := keys.ParsePublicKey([]byte(userKey))
	if err != nil {
		return err
	}
	lns, err := listenAll(1)
	if err != nil {
		return err
	}
	srv := &gliderssh.Server{
		HostSigners: []gliderssh.Signer{host},
		PublicKeyHandler: func(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
			return gliderssh.KeysEqual(key, allowed)
		},
		Handler: func(s gliderssh.Session) {
			if s.RawCommand() != "whoami" {
				fmt.Fprintln(s.Stderr(), "only whoami")
				s.Exit(1)
				return
			}
			io.WriteString(s, whoami)
			s.Exit(0)
		},
	}
	go srv.Serve(lns[0])
	untilStdinCloses()
	return nil
}

// child is a running child process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addrs []string
}

// startChild starts this binary as the named child with extra environment
// and waits for its addresses.
func startChild(ctx context.Context, name string, env ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), append([]string{envChild + "=" + name}, env...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		c.addrs = strings.Fields(s)
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if len(c.addrs) == 0 {
		c.stop()
		return nil, fmt.Errorf("%s child printed no address", name)
	}
	return c, nil
}

// stop closes the child's stdin, which ends it, and waits; a child that
// does not go within a few seconds is killed.
func (c *child) stop() error {
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
		return errors.New(c.name + ": killed after it did not stop")
	}
}

// writePrivateKey writes priv as an OpenSSH private key file (0600).
func writePrivateKey(path string, priv any) error {
	pem, err := keys.MarshalPrivateKey(priv, "exed-bench")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem, 0o600)
}

// authorizedLine is the authorized_keys form of a signer's public key.
func authorizedLine(s gossh.Signer) string { return keys.MarshalAuthorized(s.PublicKey()) }
