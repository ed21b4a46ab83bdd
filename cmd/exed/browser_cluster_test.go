package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
)

// clusterBrowser: a `browser` link minted through A is redeemed on B, the
// browser logs in to the VM on B, and a revocation through A is refused on
// B within the cache TTL (one second).
func clusterBrowser(t *testing.T, aliceA *sshClient, b *server) {
	link := linkOf(t, aliceA.ok(t, "", "browser --vm web --path /x --json"))
	br := newHTTPBrowser(t, b)
	_, port := splitHostPort(t, b.httpAddr)
	mainHost, vmHost := "exe.dev:"+port, "web.exe.xyz:"+port
	resp := br.get(t, "http://"+mainHost+link.RequestURI())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://"+vmHost+"/x" {
		t.Fatalf("A's link on B: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := br.follow(t, resp, 8); n.StatusCode != http.StatusOK {
		t.Fatalf("logging in to the VM on B: %d", n.StatusCode)
	}
	vmCookie := br.cookies[vmHost]
	if vmCookie == "" {
		t.Fatal("no VM cookie on B")
	}

	p := startCookieProber(t, "B session", b, "http://"+vmHost+"/x", vmCookie)
	testkit.WaitWithin(t, "the session accepted on B", 10*time.Second, func() bool { return countStatus(p.answers(), 200) >= 3 })
	out := aliceA.ok(t, "", "sessions revoke --all --json")
	revoked := time.Now()
	if !strings.Contains(out, `"revoked":2`) {
		t.Fatalf("sessions revoke --all on A: %s", out)
	}
	testkit.WaitWithin(t, "B asked past the staleness bound", 10*time.Second, func() bool {
		as := p.answers()
		return as[len(as)-1].start.After(revoked.Add(clusterTTL + 300*time.Millisecond))
	})
	m := measureSwitch(t, p.halt(), revoked, []int{401}, nil)
	if m.lastOK > clusterTTL {
		t.Errorf("session revoked on A, on B: %v; want nothing accepted past %v", m, clusterTTL)
	}
	t.Logf("browser session revoked on A, on B: %v", m)
}

// linkOf is the magic link of `browser --json` output.
func linkOf(t *testing.T, out string) *url.URL {
	t.Helper()
	var j struct {
		MagicLink string `json:"magic_link"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("browser --json: %v: %q", err, out)
	}
	u, err := url.Parse(j.MagicLink)
	if err != nil || u.Path != "/auth/verify" || len(u.Query().Get("token")) != 26 {
		t.Fatalf("magic_link %q", j.MagicLink)
	}
	return u
}

// httpBrowser is a minimal browser over net/http, for the tests that need
// no real one: it sends what a navigation sends, keeps cookies by host
// (host-only, as exed sets them) and follows redirects only when told.
type httpBrowser struct {
	c       *http.Client
	cookies map[string]string // host:port → "name=value; …"
}

func newHTTPBrowser(t *testing.T, s *server) *httpBrowser {
	c := clientTo(s)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	t.Cleanup(c.CloseIdleConnections)
	return &httpBrowser{c: c, cookies: map[string]string{}}
}

func (b *httpBrowser) get(t *testing.T, u string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	if c := b.cookies[req.URL.Host]; c != "" {
		req.Header.Set("Cookie", c)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.MaxAge > 0 {
			b.cookies[req.URL.Host] = c.Name + "=" + c.Value
		}
	}
	return resp
}

// follow follows up to n redirects from resp and returns the last answer.
func (b *httpBrowser) follow(t *testing.T, resp *http.Response, n int) *http.Response {
	t.Helper()
	for ; n > 0 && resp.StatusCode/100 == 3; n-- {
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		resp = b.get(t, loc.String())
	}
	return resp
}

// startCookieProber is startProber with a session cookie for credential.
func startCookieProber(t *testing.T, name string, s *server, u, cookie string) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{name: name, stop: cancel, done: make(chan struct{})}
	client := clientTo(s)
	go func() {
		defer close(p.done)
		defer client.CloseIdleConnections()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			a := probeAnswer{start: time.Now()}
			if req, err := http.NewRequest(http.MethodGet, u, nil); err == nil {
				req.Header.Set("Cookie", cookie)
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					a.status = resp.StatusCode
				}
			}
			a.end = time.Now()
			p.mu.Lock()
			p.got = append(p.got, a)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.halt() })
	return p
}
