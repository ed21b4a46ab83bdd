package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit/promtest"
	"github.com/exed-dev/exed/metrics"
	"github.com/exed-dev/exed/tokens"
)

// Forward auth at the HTTP level: the answers a front proxy gets from GET
// /auth for every kind of request, and the login routes served through the
// forward-auth listener with the origin the front proxy reports. The real
// nginx and Caddy in front of it: cmd/exed/forwardauth_test.go.

// faWorld is a world whose Handler also serves its forward-auth listener.
type faWorld struct {
	*world
	fa *httptest.Server
}

func newFAWorld(t *testing.T, opts ...worldOption) *faWorld {
	t.Helper()
	w := newWorld(t, nil, append([]worldOption{withAssertions(t)}, opts...)...)
	fa := httptest.NewServer(w.h.ForwardAuth())
	t.Cleanup(fa.Close)
	fa.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &faWorld{world: w, fa: fa}
}

// ask sends the forward-auth listener GET path with the headers given, as
// a front proxy would, and returns the answer with its body.
func (w *faWorld) ask(path string, hdr map[string]string) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, w.fa.URL+path, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = append(req.Header[k], v) // as spelled
	}
	resp, err := w.fa.Client().Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// nginxAsks is what the documented nginx config sends about GET uri on
// host (X-Original-*, and the scheme and port the browser used).
func nginxAsks(host, uri, proto, port string, more ...map[string]string) map[string]string {
	return merge(append([]map[string]string{{
		"X-Original-Host": host, "X-Original-URI": uri, "X-Original-Method": "GET",
		"X-Forwarded-Proto": proto, "X-Forwarded-Port": port,
	}}, more...)...)
}

// answerHeaders are the six headers of a 200, by their canonical names.
var answerHeaders = []string{headerUserID, headerEmail, headerCtx, headerAssertion, headerUpstreamCookie, headerUpstreamAuthorization}

// wantAnswer checks a 200 answer: every one of the six headers present
// exactly once, with the values given (missing from want: empty).
func wantAnswer(t *testing.T, resp *http.Response, body string, want map[string]string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", resp.StatusCode, body)
	}
	for _, name := range answerHeaders {
		got := resp.Header[name]
		if len(got) != 1 {
			t.Errorf("%s: %q, want exactly one value", name, got)
			continue
		}
		if w, ok := want[name]; ok && w != "*" && got[0] != w || !ok && got[0] != "" {
			t.Errorf("%s = %q, want %q", name, got[0], want[name])
		}
		if want[name] == "*" && got[0] == "" {
			t.Errorf("%s is empty", name)
		}
	}
}

// TestForwardAuthToken: a valid token, in each carrier, is answered 200
// with the identity to copy, the token's ctx, an assertion for the origin
// the front proxy reports (here https on 8443), and the Cookie and
// Authorization headers the VM is to get instead: the VM's own, without
// exed's credentials.
func TestForwardAuthToken(t *testing.T) {
	w := newFAWorld(t)
	tok := w.vmToken("web", `{"ctx":{"role":"deploy"}}`)
	jwks := w.h.c.Assertions.JWKS()
	for name, carrier := range map[string]map[string]string{
		"x-exedev-authorization": {"X-Exedev-Authorization": bearerHdr(tok)},
		"bearer":                 {"Authorization": bearerHdr(tok)},
		"basic":                  {"Authorization": basicHdr("git", tok)},
	} {
		t.Run(name, func(t *testing.T) {
			hdr := nginxAsks("web.exe.xyz", "/deploy?x=1", "https", "8443", carrier,
				map[string]string{"Cookie": "theme=dark; " + tokens.VMCookiePrefix + "8443=" + strings.Repeat("A", 43)})
			resp, body := w.ask("/auth", hdr)
			wantAnswer(t, resp, body, map[string]string{
				headerUserID: w.alice.User.ID, headerEmail: "alice@example.com", headerCtx: `{"role":"deploy"}`,
				headerAssertion: "*", headerUpstreamCookie: "theme=dark",
			})
			c, err := verifyAssertion(t, jwks, resp.Header.Get(headerAssertion), "https://web.exe.xyz:8443")
			if err != nil {
				t.Fatalf("assertion: %v", err)
			}
			if c.Email != "alice@example.com" || c.AuthMethod != "token" || c.Access != "owner" || c.TokenCtx != `{"role":"deploy"}` || c.VM != "web" {
				t.Errorf("claims %+v", c)
			}
			if strings.Contains(body, tok) {
				t.Error("the token is in the answer")
			}
		})
	}
	// The VM's own Authorization is the VM's business: it passes.
	own := basicHdr("admin", "hunter2")
	resp, body := w.ask("/auth", nginxAsks("web.exe.xyz", "/", "http", "80",
		map[string]string{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": own}))
	wantAnswer(t, resp, body, map[string]string{
		headerUserID: w.alice.User.ID, headerEmail: "alice@example.com", headerCtx: `{"role":"deploy"}`,
		headerAssertion: "*", headerUpstreamAuthorization: own,
	})
	// Caddy's and Traefik's spelling, and the port in the host.
	resp, body = w.ask("/auth", map[string]string{
		"X-Forwarded-Host": "Web.Exe.Xyz:8443", "X-Forwarded-Uri": "/", "X-Forwarded-Method": "GET",
		"X-Forwarded-Proto": "https", "X-Exedev-Authorization": bearerHdr(tok),
	})
	if resp.StatusCode != 200 {
		t.Fatalf("X-Forwarded-*: %d %s", resp.StatusCode, body)
	}
	if _, err := verifyAssertion(t, jwks, resp.Header.Get(headerAssertion), "https://web.exe.xyz:8443"); err != nil {
		t.Errorf("assertion for the port in X-Forwarded-Host: %v", err)
	}
	if strings.Contains(w.logs.String(), tok) {
		t.Error("the token is in the log")
	}
}

// TestForwardAuthRefusals: every refusal as a front proxy sees it: the
// reverse proxy's status, the Basic challenge with each 401, and the login
// URL only for a browser opening a page without any credential.
func TestForwardAuthRefusals(t *testing.T) {
	w := newFAWorld(t)
	tok := w.vmToken("web", `{}`)
	bobs := w.mint(w.bob.Signer, vmNamespace("web"), `{}`) // bob may not reach web
	loginURL := "https://web.exe.xyz:8443/__exe.dev/login?redirect=" + url.QueryEscape("/a%20b/c?d=1")
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		login  string // X-ExeDev-Login-URL
	}{
		{"no token", nginxAsks("web.exe.xyz", "/", "https", "8443"), 401, ""},
		{"browser", nginxAsks("web.exe.xyz", "/a%20b/c?d=1", "https", "8443", htmlNav), 401, loginURL},
		{"browser, HEAD", merge(nginxAsks("web.exe.xyz", "/a%20b/c?d=1", "https", "8443", htmlNav), map[string]string{"X-Original-Method": "HEAD"}), 401, loginURL},
		{"browser posting", merge(nginxAsks("web.exe.xyz", "/", "https", "8443", htmlNav), map[string]string{"X-Original-Method": "POST"}), 401, ""},
		{"browser, method not said", merge(htmlNav, map[string]string{"X-Forwarded-Host": "web.exe.xyz", "X-Forwarded-Uri": "/"}), 401, ""},
		{"invalid token", nginxAsks("web.exe.xyz", "/", "https", "8443", htmlNav, map[string]string{"X-Exedev-Authorization": bearerHdr(tok + "x")}), 401, ""},
		{"a user who may not reach the VM", nginxAsks("web.exe.xyz", "/", "https", "8443", map[string]string{"Authorization": bearerHdr(bobs)}), 401, ""},
		{"a token for another VM", nginxAsks("bobvm.exe.xyz", "/", "https", "8443", map[string]string{"Authorization": bearerHdr(tok)}), 401, ""},
		{"conflicting tokens", nginxAsks("web.exe.xyz", "/", "https", "8443", map[string]string{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": bearerHdr(bobs)}), 400, ""},
		{"public VM, invalid token", nginxAsks("pub.exe.xyz", "/", "https", "443", map[string]string{"Authorization": bearerHdr(tok + "x")}), 401, ""},
		{"no such VM", nginxAsks("nope.exe.xyz", "/", "https", "443"), 404, ""},
		{"not a VM host", nginxAsks("example.com", "/", "https", "443"), 404, ""},
		{"the reserved path", nginxAsks("web.exe.xyz", "/__exe.dev/x", "https", "443", map[string]string{"Authorization": bearerHdr(tok)}), 404, ""},
		{"an h2c upgrade", nginxAsks("web.exe.xyz", "/", "https", "443", map[string]string{"Authorization": bearerHdr(tok), "Upgrade": "h2c"}), 400, ""},
		{"no host said", map[string]string{"X-Original-URI": "/", "Authorization": bearerHdr(tok)}, 400, ""},
		{"no URI said", map[string]string{"X-Original-Host": "web.exe.xyz", "Authorization": bearerHdr(tok)}, 400, ""},
		{"a URI that is no path", nginxAsks("web.exe.xyz", "http://web.exe.xyz/", "https", "443", map[string]string{"Authorization": bearerHdr(tok)}), 400, ""},
		{"a scheme that is neither", nginxAsks("web.exe.xyz", "/", "gopher", "443", map[string]string{"Authorization": bearerHdr(tok)}), 400, ""},
		{"a port that is none", nginxAsks("web.exe.xyz", "/", "https", "99999", map[string]string{"Authorization": bearerHdr(tok)}), 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := w.ask("/auth", c.hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, c.status)
			}
			if got := resp.Header.Get(headerLoginURL); got != c.login {
				t.Errorf("X-ExeDev-Login-URL %q, want %q", got, c.login)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (c.status == 401) != (got == authRealm) {
				t.Errorf("WWW-Authenticate %q with a %d", got, c.status)
			}
			for _, name := range answerHeaders {
				if _, ok := resp.Header[name]; ok {
					t.Errorf("a refusal carries %s", name)
				}
			}
		})
	}
	if resp, _ := w.ask("/auth", nil); resp.StatusCode != 400 {
		t.Errorf("nothing said: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, w.fa.URL+"/auth", nil)
	if resp, err := w.fa.Client().Do(req); err != nil || resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /auth: %v %v", resp, err)
	}
	if w.hits.Load() != 0 {
		t.Errorf("forward auth reached the upstream %d times", w.hits.Load())
	}
}

// TestForwardAuthClientCannotPickTheHost pins the weakness of a front
// proxy that passes the client's own headers on to the auth request:
// a client adding an X-Forwarded-Host (or an X-Original-URI, a second
// value…) of its own must not choose which VM, path or origin exed decides
// about. Where two headers say the same thing they must agree, or the
// answer is 400 and nothing is let through.
func TestForwardAuthClientCannotPickTheHost(t *testing.T) {
	w := newFAWorld(t)
	bobs := w.mint(w.bob.Signer, vmNamespace("bobvm"), `{}`) // valid for bob's own VM
	for name, hdr := range map[string]map[string]string{
		"X-Forwarded-Host beside X-Original-Host": nginxAsks("web.exe.xyz", "/", "https", "443", map[string]string{"X-Forwarded-Host": "bobvm.exe.xyz"}),
		"X-Original-Host beside X-Forwarded-Host": {"X-Forwarded-Host": "web.exe.xyz", "X-Forwarded-Uri": "/", "X-Original-Host": "bobvm.exe.xyz"},
		"X-Original-URI beside X-Forwarded-Uri":   {"X-Forwarded-Host": "web.exe.xyz", "X-Forwarded-Uri": "/", "X-Original-URI": "/__exe.dev/login"},
		"X-Original-Method beside":                {"X-Forwarded-Host": "web.exe.xyz", "X-Forwarded-Uri": "/", "X-Forwarded-Method": "POST", "X-Original-Method": "GET"},
	} {
		hdr["Authorization"] = bearerHdr(bobs)
		if resp, body := w.ask("/auth", hdr); resp.StatusCode != 400 || !strings.Contains(body, "disagree") {
			t.Errorf("%s: %d %s, want 400", name, resp.StatusCode, body)
		}
	}
	// Two values of one header.
	req, _ := http.NewRequest(http.MethodGet, w.fa.URL+"/auth", nil)
	req.Header["X-Forwarded-Host"] = []string{"web.exe.xyz", "bobvm.exe.xyz"}
	req.Header.Set("X-Forwarded-Uri", "/")
	req.Header.Set("Authorization", bearerHdr(bobs))
	if resp, err := w.fa.Client().Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("two X-Forwarded-Host: %v %v", resp, err)
	}
}

// TestForwardAuthPublic: an anonymous visitor of a public VM is let
// through with every identity header empty; a token still names its user.
func TestForwardAuthPublic(t *testing.T) {
	w := newFAWorld(t)
	resp, body := w.ask("/auth", nginxAsks("pub.exe.xyz", "/", "http", "80",
		map[string]string{"X-Exedev-Email": "forged@example.com", "Cookie": "a=1"}))
	wantAnswer(t, resp, body, map[string]string{headerUpstreamCookie: "a=1"})
	resp, body = w.ask("/auth", nginxAsks("pub.exe.xyz", "/", "http", "80",
		map[string]string{"Authorization": bearerHdr(w.vmToken("pub", `{}`))}))
	wantAnswer(t, resp, body, map[string]string{headerUserID: w.alice.User.ID, headerEmail: "alice@example.com", headerAssertion: "*"})
}

// TestForwardAuthSession: the VM host's session cookie, for the host and
// port the front proxy reports, is the fourth source of identity, as in
// the reverse proxy; exed's cookies are taken out of the Cookie header the
// VM gets; the same cookie reported on another port is no session.
func TestForwardAuthSession(t *testing.T) {
	w := newFAWorld(t)
	_, vmCookie := w.login(w.alice, "web", "/")
	port := w.port()
	hdr := nginxAsks("web.exe.xyz", "/", "http", port, map[string]string{"Cookie": "theme=dark; " + vmCookie + "; lang=en"})
	resp, body := w.ask("/auth", hdr)
	wantAnswer(t, resp, body, map[string]string{
		headerUserID: w.alice.User.ID, headerEmail: "alice@example.com", headerAssertion: "*",
		headerUpstreamCookie: "theme=dark; lang=en",
	})
	c, err := verifyAssertion(t, w.h.c.Assertions.JWKS(), resp.Header.Get(headerAssertion), "http://web.exe.xyz:"+port)
	if err != nil || c.AuthMethod != "cookie" {
		t.Errorf("assertion %+v: %v", c, err)
	}
	otherPort := "8080"
	if port == otherPort {
		otherPort = "8081"
	}
	// The same value under the other port's name: bound to its own port.
	_, value, _ := strings.Cut(vmCookie, "=")
	other := nginxAsks("web.exe.xyz", "/", "http", otherPort, map[string]string{"Cookie": tokens.VMCookiePrefix + otherPort + "=" + value})
	if resp, _ := w.ask("/auth", other); resp.StatusCode != 401 {
		t.Errorf("the cookie reported on another port: %d", resp.StatusCode)
	}
	// Revoked: refused from the next question on.
	if _, err := w.run(w.alice, "sessions revoke --all"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.ask("/auth", hdr); resp.StatusCode != 401 {
		t.Errorf("after sessions revoke: %d", resp.StatusCode)
	}
}

// TestForwardAuthRevocation: a removed key is refused from the next
// question on, as by the reverse proxy.
func TestForwardAuthRevocation(t *testing.T) {
	w := newFAWorld(t)
	signer := w.addKey(w.alice, "ci")
	tok := w.mint(signer, vmNamespace("web"), `{}`)
	hdr := nginxAsks("web.exe.xyz", "/", "https", "443", map[string]string{"Authorization": bearerHdr(tok)})
	if resp, body := w.ask("/auth", hdr); resp.StatusCode != 200 {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	if _, err := w.run(w.alice, "ssh-key remove ci"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.ask("/auth", hdr); resp.StatusCode != 401 {
		t.Errorf("after ssh-key remove: %d", resp.StatusCode)
	}
}

// TestForwardAuthLoginThroughListener: a browser logs in through the
// forward-auth listener alone, as behind nginx terminating TLS on 443: the
// VM host's login route, the main host's /auth/verify and /auth, the magic
// secret's redemption; every URL is https on the reported port, the
// cookies are Secure, named for port 443, and the session then passes the
// forward-auth question.
func TestForwardAuthLoginThroughListener(t *testing.T) {
	w := newFAWorld(t)
	front := func(host string, more ...map[string]string) map[string]string {
		return merge(append([]map[string]string{{"Host": host, "X-Forwarded-Host": host, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}}, more...)...)
	}
	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, w.fa.URL+path, nil)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := w.fa.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// 1. The question: a browser without a session is sent to log in.
	resp, _ := w.ask("/auth", nginxAsks("web.exe.xyz", "/admin", "https", "443", htmlNav))
	login, _ := url.Parse(resp.Header.Get(headerLoginURL))
	if resp.StatusCode != 401 || login.String() != "https://web.exe.xyz/__exe.dev/login?redirect=%2Fadmin" {
		t.Fatalf("question: %d, login URL %q", resp.StatusCode, login)
	}
	// 2. The VM host's login route, through the listener.
	resp = get(login.RequestURI(), front("web.exe.xyz", htmlNav))
	next, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 307 || next.Scheme != "https" || next.Host != "exe.dev" || next.Query().Get("return_host") != "web.exe.xyz" {
		t.Fatalf("/__exe.dev/login: %d to %s", resp.StatusCode, next)
	}
	// 3. The `browser` link on the main host, then /auth.
	tok := w.linkToken(w.alice, "--vm web --path /admin")
	resp = get("/auth/verify?token="+tok, front("exe.dev", htmlNav))
	mc, raw := setCookie(t, resp, tokens.MainCookie)
	wantCookieAttrs(t, mc, raw, int(tokens.SessionTTL.Seconds()), true)
	resp = get(next.RequestURI(), front("exe.dev", htmlNav, cookieHdr(mc.Name+"="+mc.Value)))
	next, _ = url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 303 || next.Scheme != "https" || next.Host != "web.exe.xyz" || next.Path != pathVMAuth {
		t.Fatalf("/auth: %d to %s", resp.StatusCode, next)
	}
	// 4. The secret becomes the VM host's cookie for port 443.
	resp = get(next.RequestURI(), front("web.exe.xyz", htmlNav))
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/admin" {
		t.Fatalf("/__exe.dev/auth: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	vc, raw := setCookie(t, resp, tokens.VMCookiePrefix+"443")
	wantCookieAttrs(t, vc, raw, int(tokens.SessionTTL.Seconds()), true)
	// 5. The question again, with the cookie.
	resp, body := w.ask("/auth", nginxAsks("web.exe.xyz", "/admin", "https", "443", htmlNav, cookieHdr(vc.Name+"="+vc.Value)))
	wantAnswer(t, resp, body, map[string]string{headerUserID: w.alice.User.ID, headerEmail: "alice@example.com", headerAssertion: "*"})
	// The JWKS on the VM host, through the listener; the VM's own pages
	// are never served there.
	if resp := get(vmJWKSPath, front("web.exe.xyz")); resp.StatusCode != 200 {
		t.Errorf("JWKS: %d", resp.StatusCode)
	}
	if resp := get("/admin", front("web.exe.xyz", cookieHdr(vc.Name+"="+vc.Value))); resp.StatusCode != 404 {
		t.Errorf("a VM page through the forward-auth listener: %d", resp.StatusCode)
	}
	if w.hits.Load() != 0 {
		t.Errorf("the forward-auth listener reached the upstream %d times", w.hits.Load())
	}
}

// TestForwardAuthShareLink: a share link never goes on to the VM: a
// visitor it is for is sent (401, X-ExeDev-Login-URL) to the same URL
// without it, and the use is counted; an invalid link is refused 403.
func TestForwardAuthShareLink(t *testing.T) {
	w := newFAWorld(t)
	out, err := w.run(w.alice, "share add-link web --json")
	if err != nil {
		t.Fatal(err)
	}
	link := tokenIn(t, out)
	hdr := nginxAsks("web.exe.xyz", "/page?a=1&share="+link+"&b=2", "https", "443",
		map[string]string{"Authorization": bearerHdr(w.vmToken("web", `{}`))})
	resp, body := w.ask("/auth", hdr)
	if resp.StatusCode != 401 || resp.Header.Get(headerLoginURL) != "https://web.exe.xyz/page?a=1&b=2" ||
		resp.Header.Get("Referrer-Policy") != "no-referrer" || strings.Contains(resp.Header.Get(headerLoginURL), link) {
		t.Fatalf("share link: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	show, _ := w.run(w.alice, "share show web --json")
	var s struct {
		Links []struct {
			UseCount int `json:"use_count"`
		} `json:"links"`
	}
	if err := json.Unmarshal([]byte(show), &s); err != nil || len(s.Links) != 1 || s.Links[0].UseCount != 1 {
		t.Errorf("share show after the visit: %s (%v)", show, err)
	}
	if _, err := w.run(w.alice, "share remove-link web "+link); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.ask("/auth", hdr); resp.StatusCode != 403 {
		t.Errorf("a removed link: %d, want 403", resp.StatusCode)
	}
}

// TestForwardAuthMetricsAndLog: each question is one line with route
// forward_auth, the client's method and the VM, and counts on the
// forward-auth series, not the proxy's.
func TestForwardAuthMetricsAndLog(t *testing.T) {
	m := metrics.New()
	w := newFAWorld(t, func(c *Config) { c.Metrics = m })
	w.ask("/auth", nginxAsks("web.exe.xyz", "/", "https", "443", map[string]string{"Authorization": bearerHdr(w.vmToken("web", `{}`)), "X-Original-Method": "PUT"}))
	w.ask("/auth", nginxAsks("web.exe.xyz", "/", "https", "443"))
	w.ask("/auth", nginxAsks("nope.exe.xyz", "/", "https", "443"))
	got := promtest.Scrape(t, m.Handler(nil, nil))
	for series, want := range map[string]float64{
		"exed_forward_auth_requests_total{class=2xx}": 1,
		"exed_forward_auth_requests_total{class=4xx}": 2,
		"exed_proxy_requests_total{class=2xx}":        0,
		"exed_proxy_requests_total{class=4xx}":        0,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	logs := w.logs.String()
	if !strings.Contains(logs, "route=forward_auth vm=web method=PUT status=200") || !strings.Contains(logs, "route=forward_auth vm=web method=GET status=401") {
		t.Errorf("log lines:\n%s", logs)
	}
}

// FuzzReadForwarded feeds the forward-auth question made-up forwarded
// headers (the X-Forwarded-* and X-Original-* pairs, the scheme and port):
// readForwarded never panics, accepts only a canonical host, a path, a
// token for a method, http or https and a port in range, and refuses two
// names that disagree; and the question, asked with alice's valid token,
// is let through (200) only for a VM alice may reach, on the host that was
// said.
func FuzzReadForwarded(f *testing.F) {
	for _, s := range [][6]string{
		{"web.exe.xyz", "/", "GET", "https", "443", ""},
		{"Web.Exe.Xyz.:8443", "/a?b=1", "HEAD", "HTTPS", "", ""},
		{"web.exe.xyz", "/", "GET", "http", "80", "bobvm.exe.xyz"},
		{"web.exe.xyz", "//__exe.dev/login", "GET", "", "", "web.exe.xyz"},
		{"web.exe.xyz:0", "/", "G ET", "ftp", "99999", ""},
		{"user@web.exe.xyz", "http://x/", "", "", "08080", ""},
		{"[::1]:80", "/\x00", "GET\r\n", "http", "-1", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	w := newWorld(f, nil)
	tok := w.vmToken("web", `{}`)
	fa := w.h.ForwardAuth()
	f.Fuzz(func(t *testing.T, host, uri, method, proto, port, origHost string) {
		hdr := http.Header{}
		for name, v := range map[string]string{"X-Forwarded-Host": host, "X-Forwarded-Uri": uri, "X-Forwarded-Method": method,
			"X-Forwarded-Proto": proto, "X-Forwarded-Port": port, "X-Original-Host": origHost} {
			if v != "" {
				hdr[name] = []string{v}
			}
		}
		fw, err := readForwarded(hdr)
		if err == nil {
			n, perr := strconv.Atoi(fw.origin.port)
			if fw.origin.scheme != "http" && fw.origin.scheme != "https" || perr != nil || n < 1 || n > 65535 || strconv.Itoa(n) != fw.origin.port {
				t.Fatalf("origin %+v", fw.origin)
			}
			if fw.host != tokens.CanonicalHost(fw.host) || strings.ContainsAny(fw.host, "/\\@?#[] \t") {
				t.Fatalf("host %q", fw.host)
			}
			if fw.uri != "" && fw.uri[0] != '/' || !isToken(fw.method) {
				t.Fatalf("uri %q, method %q", fw.uri, fw.method)
			}
			if host != "" && origHost != "" && host != origHost {
				t.Fatalf("%q and %q disagree, and were accepted", host, origHost)
			}
		}
		req := httptest.NewRequest(http.MethodGet, "/auth", nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("Authorization", bearerHdr(tok))
		rec := httptest.NewRecorder()
		fa.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK && (err != nil || fw.host != "web.exe.xyz") {
			t.Fatalf("let through for host %q (read %+v, %v)", host, fw, err)
		}
	})
}
