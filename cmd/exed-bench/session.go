package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Scenario 2's browser rows: a request carrying a valid session cookie
// against one carrying a cached token, and junk cookies against malformed
// tokens.

// cookieCred marks a load source's credential as a whole Cookie header
// value rather than a token (see conn.get).
const cookieCred = "\x00cookie:"

// benchSession logs a browser in to the bench VM the way a browser does —
// `browser` over SSH, then /auth/verify, /auth and /__exe.dev/auth over
// HTTP — and returns the VM host's cookie as name=value.
func benchSession(ctx context.Context, target sshTarget, httpAddr string) (string, error) {
	client, err := sshClient(target.addr, target.signer, target.hostKey)
	if err != nil {
		return "", err
	}
	out, err := sshRun(client, "browser --vm web --json")
	client.Close()
	if err != nil {
		return "", err
	}
	var link struct {
		MagicLink string `json:"magic_link"`
	}
	if err := json.Unmarshal(out, &link); err != nil {
		return "", fmt.Errorf("browser --json: %w", err)
	}
	u, err := url.Parse(link.MagicLink)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	hc := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, httpAddr)
		}},
	}
	defer hc.CloseIdleConnections()
	step := func(rawURL, cookie string, want int) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return nil, fmt.Errorf("GET %s: %d, want %d", req.URL.Path, resp.StatusCode, want)
		}
		return resp, nil
	}
	cookieOf := func(resp *http.Response, name string) (string, error) {
		for _, c := range resp.Cookies() {
			if c.Name == name {
				return c.Name + "=" + c.Value, nil
			}
		}
		return "", fmt.Errorf("no %s cookie", name)
	}
	resp, err := step("http://exe.dev"+u.RequestURI(), "", http.StatusSeeOther)
	if err != nil {
		return "", err
	}
	main, err := cookieOf(resp, "exe-auth")
	if err != nil {
		return "", err
	}
	if resp, err = step("http://exe.dev/auth?redirect=%2F&return_host="+vmHost, main, http.StatusSeeOther); err != nil {
		return "", err
	}
	if resp, err = step(resp.Header.Get("Location"), "", http.StatusSeeOther); err != nil {
		return "", err
	}
	return cookieOf(resp, "login-with-exe-80")
}

// junkCookies are n session cookies of the right shape that nobody
// minted: each costs exed a hash and a lookup (cached, as a miss, for the
// TTL).
func junkCookies(n int) []string {
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 32)
		rand.Read(b)
		out[i] = cookieCred + "login-with-exe-80=" + base64.RawURLEncoding.EncodeToString(b)
	}
	return out
}

func (ts *tokenSet) cookieSrc(int) source {
	return func(int) (string, bool) { return ts.cookie, true }
}
