package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheck probes the listeners that `exed serve` opens with the same
// flags and environment: the SSH port must greet with an SSH version line,
// the HTTP port must answer an HTTP request (any status), and with an admin
// address, /readyz must answer 200 (the store is reachable). It is the
// container image's HEALTHCHECK, which has no shell or curl to do it.
func (a *app) healthcheck(ctx context.Context, args []string) error {
	fs := a.flagSet("healthcheck", "healthcheck [--ssh-addr A] [--http-addr A] [--admin-addr A] [--tls-cert F] [--timeout D]\n\n"+
		"Exits 0 when exed serve answers on its addresses. Flags default to the environment, as for serve.")
	sshAddr := fs.String("ssh-addr", "127.0.0.1:2222", "serve's SSH listen address (0.0.0.0 is probed on 127.0.0.1)")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "serve's HTTP(S) listen address")
	tlsCert := fs.String("tls-cert", "", "serve's --tls-cert: when set, the HTTP probe speaks TLS")
	adminAddr := fs.String("admin-addr", "", "serve's --admin-addr: when set, its /readyz must answer 200")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, a.getenv); err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := probeSSH(ctx, probeAddr(*sshAddr)); err != nil {
		return fmt.Errorf("healthcheck: ssh %s: %w", *sshAddr, err)
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	// Any status will do: a 404 for an unknown host still shows the front
	// is serving.
	if _, err := probeHTTP(ctx, scheme+"://"+probeAddr(*httpAddr)+"/"); err != nil {
		return fmt.Errorf("healthcheck: http %s: %w", *httpAddr, err)
	}
	if *adminAddr != "" {
		status, err := probeHTTP(ctx, "http://"+probeAddr(*adminAddr)+"/readyz")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("/readyz answered %d", status)
		}
		if err != nil {
			return fmt.Errorf("healthcheck: admin %s: %w", *adminAddr, err)
		}
	}
	fmt.Fprintln(a.stdout, "ok")
	return nil
}

// probeAddr turns a listen address into one to dial: a server listening
// on every interface (0.0.0.0, ::, or no host) is reached on loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// probeSSH reads the server's version line (RFC 4253 §4.2).
func probeSSH(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read version line: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return errors.New("not an SSH server")
	}
	return nil
}

// probeHTTP sends one GET to url and returns the response's status.
func probeHTTP(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	tr := &http.Transport{
		// Liveness only, on loopback, with nothing secret sent: the
		// certificate names the public hosts, never 127.0.0.1.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
		Proxy:             nil, // never through an HTTP(S)_PROXY from the environment
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
