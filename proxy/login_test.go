package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The browser login routes at the HTTP level: every status code, cookie
// name and attribute of the login flow, the replays it must refuse, and
// the clients (git, curl, scripts) it must leave alone.

// htmlNav is what a browser sends when it opens a page.
var htmlNav = map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "Sec-Fetch-Mode": "navigate"}

// port is the front server's port: the port "the browser used".
func (w *world) port() string {
	u, _ := url.Parse(w.front.URL)
	return u.Port()
}

func (w *world) mainHost() string        { return testDomain + ":" + w.port() }
func (w *world) vmHost(vm string) string { return vm + "." + testVMDomain + ":" + w.port() }
func (w *world) vmCookie() string        { return tokens.VMCookiePrefix + w.port() }

// linkToken runs `browser` (with args) as a over the suite and returns the
// token of the link it prints.
func (w *world) linkToken(a testreg.Account, args string) string {
	w.t.Helper()
	out, err := w.run(a, "browser "+args)
	if err != nil {
		w.t.Fatalf("browser %s: %v", args, err)
	}
	var j struct {
		MagicLink string `json:"magic_link"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		w.t.Fatal(err)
	}
	u, err := url.Parse(j.MagicLink)
	if err != nil {
		w.t.Fatal(err)
	}
	return u.Query().Get("token")
}

// cookieHdr is a Cookie header value for the given name=value pairs.
func cookieHdr(pairs ...string) map[string]string {
	return map[string]string{"Cookie": strings.Join(pairs, "; ")}
}

// setCookie returns the response's Set-Cookie named name, parsed, and its
// raw line; it fails the test when there is none or more than one.
func setCookie(t testing.TB, resp *http.Response, name string) (*http.Cookie, string) {
	t.Helper()
	var found *http.Cookie
	var raw string
	for i, c := range resp.Cookies() {
		if c.Name == name {
			if found != nil {
				t.Fatalf("two Set-Cookie %s", name)
			}
			found, raw = c, resp.Header.Values("Set-Cookie")[i]
		}
	}
	if found == nil {
		t.Fatalf("no Set-Cookie %s in %q", name, resp.Header.Values("Set-Cookie"))
	}
	return found, raw
}

// wantCookieAttrs checks a session cookie's attributes exactly: host-only
// (no Domain), Path=/, HttpOnly, SameSite=Lax, Max-Age, Secure iff TLS,
// and a value of 32 random bytes in base64url.
func wantCookieAttrs(t testing.TB, c *http.Cookie, raw string, maxAge int, secure bool) {
	t.Helper()
	if c.Domain != "" || strings.Contains(strings.ToLower(raw), "domain") {
		t.Errorf("cookie %s has a Domain: %q", c.Name, raw)
	}
	if c.Path != "/" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != maxAge || c.Secure != secure {
		t.Errorf("cookie %q: want Path=/, HttpOnly, SameSite=Lax, Max-Age=%d, Secure=%v", raw, maxAge, secure)
	}
	if !tokens.ValidCookieValue(c.Value) {
		t.Errorf("cookie value %q: not 32 bytes of base64url", c.Value)
	}
}

// login runs the whole flow for a through the front server, as a browser
// would, and returns the main and VM cookies (name=value).
func (w *world) login(a testreg.Account, vm, path string) (mainCookie, vmCookie string) {
	w.t.Helper()
	tok := w.linkToken(a, "--vm "+vm+" --path "+path)
	resp, _ := w.get(w.mainHost(), "/auth/verify?token="+tok, htmlNav)
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("/auth/verify: %d", resp.StatusCode)
	}
	mc, _ := setCookie(w.t, resp, tokens.MainCookie)
	mainCookie = mc.Name + "=" + mc.Value
	next, _ := url.Parse(resp.Header.Get("Location"))
	if next.Host != w.vmHost(vm) || next.Path != path {
		w.t.Fatalf("/auth/verify sends the browser to %s, want %s%s", next, w.vmHost(vm), path)
	}
	// The VM page without a VM cookie: sent to log in.
	resp, _ = w.get(w.vmHost(vm), path, htmlNav)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		w.t.Fatalf("%s without a cookie: %d, want 307", path, resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	resp, _ = w.get(w.vmHost(vm), loc.RequestURI(), htmlNav)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		w.t.Fatalf("%s: %d, want 307", loc, resp.StatusCode)
	}
	loc, _ = url.Parse(resp.Header.Get("Location"))
	resp, _ = w.get(w.mainHost(), loc.RequestURI(), merge(htmlNav, cookieHdr(mainCookie)))
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("%s: %d, want 303", loc, resp.StatusCode)
	}
	loc, _ = url.Parse(resp.Header.Get("Location"))
	resp, _ = w.get(w.vmHost(vm), loc.RequestURI(), htmlNav)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != path {
		w.t.Fatalf("%s: %d to %q, want 303 to %s", loc.Path, resp.StatusCode, resp.Header.Get("Location"), path)
	}
	vc, _ := setCookie(w.t, resp, w.vmCookie())
	return mainCookie, vc.Name + "=" + vc.Value
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestBrowserDetection: only a browser opening a page with no credential
// at all is sent to log in; git, curl, scripts and POSTs keep the 401
// challenge, and nothing reaches the VM.
func TestBrowserDetection(t *testing.T) {
	w := newWorld(t, nil)
	web := w.vmHost("web")
	for _, c := range []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{"navigation", http.MethodGet, htmlNav, http.StatusTemporaryRedirect},
		{"Sec-Fetch-Mode alone", http.MethodGet, map[string]string{"Sec-Fetch-Mode": "navigate"}, http.StatusTemporaryRedirect},
		{"Accept text/html alone", http.MethodGet, map[string]string{"Accept": "text/html"}, http.StatusTemporaryRedirect},
		{"HEAD", http.MethodHead, htmlNav, http.StatusTemporaryRedirect},
		{"Accept */* (curl)", http.MethodGet, map[string]string{"Accept": "*/*"}, http.StatusUnauthorized},
		{"no Accept (git)", http.MethodGet, nil, http.StatusUnauthorized},
		{"fetch from a page", http.MethodGet, map[string]string{"Accept": "application/json", "Sec-Fetch-Mode": "cors"}, http.StatusUnauthorized},
		{"POST", http.MethodPost, htmlNav, http.StatusUnauthorized},
		{"invalid token", http.MethodGet, merge(htmlNav, map[string]string{"X-Exedev-Authorization": "Bearer exe1.AAAAAAAAAAAAAAAAAAAAAAAAAA"}), http.StatusUnauthorized},
		{"junk cookie", http.MethodGet, merge(htmlNav, cookieHdr(w.vmCookie()+"=junk")), http.StatusTemporaryRedirect},
	} {
		resp, body := w.do(w.request(c.method, web, "/a/b?c=1&d=%2F", nil, c.hdr))
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
			continue
		}
		switch c.want {
		case http.StatusUnauthorized:
			if resp.Header.Get("WWW-Authenticate") != authRealm {
				t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
			}
		case http.StatusTemporaryRedirect:
			want := "http://" + web + "/__exe.dev/login?redirect=" + url.QueryEscape("/a/b?c=1&d=%2F")
			if got := resp.Header.Get("Location"); got != want {
				t.Errorf("%s: Location %q, want %q", c.name, got, want)
			}
			if len(body) > 100 {
				t.Errorf("%s: a %d-byte body", c.name, len(body))
			}
		}
	}
	// A public VM is not a login matter.
	if resp, _ := w.get(w.vmHost("pub"), "/", htmlNav); resp.StatusCode != http.StatusOK {
		t.Errorf("public VM, browser: %d", resp.StatusCode)
	}
	if n := w.hits.Load(); n != 1 {
		t.Errorf("upstream reached %d times, want 1 (the public VM)", n)
	}
}

// TestLoginFlow walks the whole chain, checking each status, Location and
// cookie, and what the VM finally sees.
func TestLoginFlow(t *testing.T) {
	w := newWorld(t, nil)
	web := w.vmHost("web")

	// VM host /__exe.dev/login → main host /auth.
	resp, _ := w.get(web, "/__exe.dev/login?redirect="+url.QueryEscape("/admin?x=1"), htmlNav)
	wantLoc := "http://" + w.mainHost() + "/auth?redirect=" + url.QueryEscape("/admin?x=1") + "&return_host=" + url.QueryEscape(web)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != wantLoc {
		t.Fatalf("/__exe.dev/login: %d %q, want 307 %q", resp.StatusCode, resp.Header.Get("Location"), wantLoc)
	}
	// /auth without a session: the 401 page with the exact ssh line.
	resp, body := w.get(w.mainHost(), "/auth?redirect=%2Fadmin&return_host="+url.QueryEscape(web), htmlNav)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/auth without a session: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if want := "ssh -p 2222 ssh.exe.dev browser --vm web --path /admin"; !strings.Contains(string(body), want) {
		t.Fatalf("login page lacks %q:\n%s", want, body)
	}

	// The link from `browser`: main session, then on to the VM path.
	tok := w.linkToken(w.alice, "--vm web --path /admin")
	resp, _ = w.get(w.mainHost(), "/auth/verify?token="+tok, htmlNav)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://"+web+"/admin" {
		t.Fatalf("/auth/verify: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/auth/verify: Referrer-Policy %q, Cache-Control %q", resp.Header.Get("Referrer-Policy"), resp.Header.Get("Cache-Control"))
	}
	mc, raw := setCookie(t, resp, tokens.MainCookie)
	wantCookieAttrs(t, mc, raw, int(tokens.SessionTTL/time.Second), false)
	mainCookie := mc.Name + "=" + mc.Value
	// The link works once.
	if resp, _ := w.get(w.mainHost(), "/auth/verify?token="+tok, htmlNav); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("link used twice: %d, want 401", resp.StatusCode)
	}

	// /auth with the session: a magic secret for exactly this host.
	resp, _ = w.get(w.mainHost(), "/auth?redirect=%2Fadmin&return_host="+url.QueryEscape(web), merge(htmlNav, cookieHdr(mainCookie)))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Host != web || loc.Path != "/__exe.dev/auth" || loc.Query().Get("redirect") != "/admin" || !tokens.ValidSecret(loc.Query().Get("secret")) {
		t.Fatalf("/auth with a session: %d %q", resp.StatusCode, loc)
	}
	resp, _ = w.get(web, loc.RequestURI(), htmlNav)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin" {
		t.Fatalf("/__exe.dev/auth: %d %q, want 303 /admin", resp.StatusCode, resp.Header.Get("Location"))
	}
	vc, raw := setCookie(t, resp, w.vmCookie())
	wantCookieAttrs(t, vc, raw, int(tokens.SessionTTL/time.Second), false)

	// The VM page: the user's identity, no token ctx, no exed cookie, the
	// VM's own cookies untouched.
	resp, body = w.get(web, "/admin?x=1", merge(htmlNav, cookieHdr("app=1", vc.Name+"="+vc.Value, mainCookie, "Login-With-Exe-1=x", "theme=dark")))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("VM page with the cookie: %d %s", resp.StatusCode, body)
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	wantIdentity(t, e, w.alice, "")
	if e.Path != "/admin" || strings.Join(e.header("Cookie"), "|") != "app=1; theme=dark" {
		t.Errorf("upstream saw path %q, Cookie %q", e.Path, e.header("Cookie"))
	}
	// Two sessions, both of the key that ran `browser`: the main host's,
	// and the VM host's, bound to its host and cookie name.
	ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID)
	hosts := map[string]store.Session{}
	for _, s := range ss {
		if s.Fingerprint != w.alice.Key.Fingerprint {
			t.Errorf("session %s of key %s", s.ID, s.Fingerprint)
		}
		hosts[s.Host] = s
	}
	if len(ss) != 2 || hosts[web].VM != "web" || hosts[web].CookieName != w.vmCookie() || hosts[w.mainHost()].CookieName != tokens.MainCookie {
		t.Errorf("sessions: %+v", ss)
	}
	if strings.Contains(w.logs.String(), tok) || strings.Contains(w.logs.String(), loc.Query().Get("secret")) || strings.Contains(w.logs.String(), vc.Value) {
		t.Error("a secret or cookie value is in the log")
	}
}

// TestMagicSecretRefusals: a secret used twice, expired, redeemed on
// another VM or another port, or missing.
func TestMagicSecretRefusals(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	w := newWorld(t, nil, func(c *Config) { c.Now = clock.Now })
	w.AddVM("api", w.alice, false)
	tok := w.linkToken(w.alice, "")
	resp, _ := w.get(w.mainHost(), "/auth/verify?token="+tok, nil)
	mc, _ := setCookie(t, resp, tokens.MainCookie)
	secretFor := func(vm string) string {
		t.Helper()
		resp, _ := w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(w.vmHost(vm)), cookieHdr(mc.Name+"="+mc.Value))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("/auth for %s: %d", vm, resp.StatusCode)
		}
		return loc.Query().Get("secret")
	}
	redeem := func(host, secret string) int {
		resp, _ := w.get(host, "/__exe.dev/auth?redirect=%2F&secret="+secret, nil)
		if resp.StatusCode != http.StatusSeeOther && len(resp.Cookies()) > 0 {
			t.Errorf("a refused redemption set %q", resp.Header.Values("Set-Cookie"))
		}
		return resp.StatusCode
	}
	s := secretFor("web")
	for _, c := range []struct {
		what, host string
	}{
		{"another VM", w.vmHost("api")},
		{"another port", "web." + testVMDomain + ":1"},
		{"the default port", "web." + testVMDomain},
	} {
		if got := redeem(c.host, s); got != http.StatusUnauthorized {
			t.Errorf("secret redeemed on %s: %d, want 401", c.what, got)
		}
	}
	if got := redeem(w.vmHost("web"), s); got != http.StatusSeeOther {
		t.Fatalf("secret on its own host, after the refusals: %d, want 303", got)
	}
	if got := redeem(w.vmHost("web"), s); got != http.StatusUnauthorized {
		t.Errorf("secret used twice: %d, want 401", got)
	}
	s = secretFor("web")
	clock.Advance(tokens.MagicSecretTTL)
	if got := redeem(w.vmHost("web"), s); got != http.StatusUnauthorized {
		t.Errorf("expired secret: %d, want 401", got)
	}
	for _, junk := range []string{"", "nope", strings.Repeat("A", 26)} {
		want := http.StatusUnauthorized
		if junk == "" {
			want = http.StatusBadRequest
		}
		if got := redeem(w.vmHost("web"), junk); got != want {
			t.Errorf("secret %q: %d, want %d", junk, got, want)
		}
	}
	// A login link expires too.
	tok = w.linkToken(w.alice, "")
	clock.Advance(tokens.LoginLinkTTL)
	if resp, _ := w.get(w.mainHost(), "/auth/verify?token="+tok, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired link: %d, want 401", resp.StatusCode)
	}
}

// TestCookieReplay: a cookie is good only on the host and under the name
// it was minted for.
func TestCookieReplay(t *testing.T) {
	w := newWorld(t, nil)
	w.AddVM("api", w.alice, false)
	mainCookie, vmCookie := w.login(w.alice, "web", "/")
	_, vmValue, _ := strings.Cut(vmCookie, "=")
	_, mainValue, _ := strings.Cut(mainCookie, "=")
	if resp, _ := w.get(w.vmHost("web"), "/", cookieHdr(vmCookie)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the cookie on its own host: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		what, host, cookie string
	}{
		{"another VM", w.vmHost("api"), vmCookie},
		{"another port", "web." + testVMDomain + ":1", vmCookie},
		{"another port, renamed for it", "web." + testVMDomain + ":1", tokens.VMCookiePrefix + "1=" + vmValue},
		{"the main cookie on the VM host", w.vmHost("web"), w.vmCookie() + "=" + mainValue},
		{"under the main host's name", w.vmHost("web"), tokens.MainCookie + "=" + vmValue},
	} {
		resp, _ := w.get(c.host, "/", cookieHdr(c.cookie))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", c.what, resp.StatusCode)
		}
	}
	// The VM cookie on the main host is no session there.
	resp, _ := w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(w.vmHost("web")), cookieHdr(tokens.MainCookie+"="+vmValue))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("VM cookie as exe-auth on the main host: %d, want 401", resp.StatusCode)
	}
	// Bob's own session does not reach alice's VM: 403 naming the fix.
	tok := w.linkToken(w.bob, "")
	resp, _ = w.get(w.mainHost(), "/auth/verify?token="+tok, nil)
	bc, _ := setCookie(t, resp, tokens.MainCookie)
	resp, body := w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(w.vmHost("web")), cookieHdr(bc.Name+"="+bc.Value))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "share add web bob@example.com") {
		t.Errorf("bob's /auth for alice's VM: %d\n%s", resp.StatusCode, body)
	}
	if n := w.hits.Load(); n != 1 {
		t.Errorf("upstream reached %d times, want 1", n)
	}
}

// TestAuthReturnHost: /auth refuses (400) a return_host that is not one of
// this server's VM hosts on the port the browser used: no redirect ever
// leaves the main host and the VM hosts.
func TestAuthReturnHost(t *testing.T) {
	w := newWorld(t, nil)
	mainCookie, _ := w.login(w.alice, "web", "/")
	for _, h := range []string{"", "evil.example", testDomain, "web.exe.xyz.evil.example", "web.exe.xyz@evil.example",
		"web.exe.xyz:" + w.port() + "/x", "web.exe.xyz:1", "web.exe.xyz:99999", "Bad_Name.exe.xyz", "a.b.exe.xyz", "web.exe.xyz:" + w.port() + "#"} {
		resp, _ := w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(h), cookieHdr(mainCookie))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("return_host %q: %d, want 400 (Location %q)", h, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A VM host in capitals, with the port: the same host.
	resp, _ := w.get(w.mainHost(), "/auth?redirect=%2F%2Fevil.example&return_host="+url.QueryEscape("WEB.EXE.XYZ:"+w.port()), cookieHdr(mainCookie))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Host != w.vmHost("web") || loc.Query().Get("redirect") != "/" {
		t.Errorf("capitals, //evil redirect: %d %q", resp.StatusCode, loc)
	}
}

// TestLogout: POST only, cross-origin protected, 303; the VM host's ends
// its own session, the main host's every session of the user.
func TestLogout(t *testing.T) {
	w := newWorld(t, nil)
	mainCookie, vmCookie := w.login(w.alice, "web", "/")
	main2, _ := w.login(w.alice, "web", "/") // another browser

	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
	} {
		resp, _ := w.do(w.request(http.MethodPost, w.mainHost(), "/logout", nil, merge(hdr, cookieHdr(mainCookie))))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site POST /logout %v: %d, want 403", hdr, resp.StatusCode)
		}
		resp, _ = w.do(w.request(http.MethodPost, w.vmHost("web"), "/__exe.dev/logout", nil, merge(hdr, cookieHdr(vmCookie))))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site POST /__exe.dev/logout %v: %d, want 403", hdr, resp.StatusCode)
		}
	}
	if resp, _ := w.get(w.vmHost("web"), "/", cookieHdr(vmCookie)); resp.StatusCode != http.StatusOK {
		t.Fatalf("after refused logouts the session is gone: %d", resp.StatusCode)
	}
	if resp, _ := w.get(w.mainHost(), "/logout", cookieHdr(mainCookie)); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /logout: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// VM host: a page with a form; POST ends this session only.
	resp, body := w.get(w.vmHost("web"), "/__exe.dev/logout", cookieHdr(vmCookie))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `method="post" action="/__exe.dev/logout"`) {
		t.Errorf("GET /__exe.dev/logout: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = w.do(w.request(http.MethodPost, w.vmHost("web"), "/__exe.dev/logout", nil, merge(cookieHdr(vmCookie), map[string]string{"Origin": "http://" + w.vmHost("web")})))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://"+w.mainHost()+"/logged-out" {
		t.Fatalf("POST /__exe.dev/logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c, _ := setCookie(t, resp, w.vmCookie()); c.MaxAge != -1 || c.Value != "" {
		t.Errorf("the VM cookie is not cleared: %+v", c)
	}
	if resp, _ := w.get(w.vmHost("web"), "/", cookieHdr(vmCookie)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the VM session after its logout: %d, want 401", resp.StatusCode)
	}
	if ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID); len(ss) != 3 {
		t.Errorf("%d sessions left, want 3", len(ss))
	}

	// Main host: every session of the user ends.
	resp, _ = w.do(w.request(http.MethodPost, w.mainHost(), "/logout", nil, merge(cookieHdr(mainCookie), map[string]string{"Sec-Fetch-Site": "same-origin"})))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/logged-out" {
		t.Fatalf("POST /logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID); len(ss) != 0 {
		t.Errorf("%d sessions left after logout everywhere", len(ss))
	}
	resp, _ = w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(w.vmHost("web")), cookieHdr(main2))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the other browser's session after logout everywhere: %d, want 401", resp.StatusCode)
	}
	if resp, body := w.get(w.mainHost(), "/logged-out", nil); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "logged out") {
		t.Errorf("/logged-out: %d", resp.StatusCode)
	}
}

// TestSessionEnds: a session is refused from the next request on when it
// is revoked, its key removed or its VM removed; a new VM of the same name
// inherits nothing.
func TestSessionEnds(t *testing.T) {
	w := newWorld(t, nil)
	ok := func(cookie string) int {
		resp, _ := w.get(w.vmHost("web"), "/", cookieHdr(cookie))
		return resp.StatusCode
	}
	_, vmCookie := w.login(w.alice, "web", "/")
	ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID)
	if ok(vmCookie) != http.StatusOK {
		t.Fatal("no access with a fresh cookie")
	}
	var vmID string
	for _, s := range ss {
		if s.VM == "web" {
			vmID = s.ID
		}
	}
	if _, err := w.run(w.alice, "sessions revoke "+vmID); err != nil {
		t.Fatal(err)
	}
	if got := ok(vmCookie); got != http.StatusUnauthorized {
		t.Errorf("after sessions revoke: %d, want 401", got)
	}

	// A token key logs a browser in; removing the key logs it out.
	tokKey := w.AddKey(w.alice, "laptop2", 9, nil)
	_, vmCookie = w.login(tokKey, "web", "/")
	if ok(vmCookie) != http.StatusOK {
		t.Fatal("no access with the second key's cookie")
	}
	if _, err := w.run(w.alice, "ssh-key remove laptop2"); err != nil {
		t.Fatal(err)
	}
	if got := ok(vmCookie); got != http.StatusUnauthorized {
		t.Errorf("after its key was removed: %d, want 401", got)
	}

	_, vmCookie = w.login(w.alice, "web", "/")
	ctx := context.Background()
	if err := w.Store.RemoveVM(ctx, "web", store.Event{Time: time.Now(), ActorID: "admin", Action: "vm.remove", Subject: "web"}); err != nil {
		t.Fatal(err)
	}
	w.h.ForgetVM("web")
	w.AddVM("web", w.alice, false)
	w.h.ForgetVM("web")
	if got := ok(vmCookie); got != http.StatusUnauthorized {
		t.Errorf("on a new VM of the same name: %d, want 401", got)
	}
}

// TestTokenBeforeSession: a token, when one comes along, is the identity,
// whatever the cookie says.
func TestTokenBeforeSession(t *testing.T) {
	w := newWorld(t, nil)
	_, vmCookie := w.login(w.alice, "web", "/")
	tok := w.vmToken("web", `{"ctx":{"via":"token"}}`)
	e := w.echo(w.vmHost("web"), merge(cookieHdr(vmCookie), map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}))
	wantIdentity(t, e, w.alice, `{"via":"token"}`)
	resp, _ := w.get(w.vmHost("web"), "/", merge(cookieHdr(vmCookie), map[string]string{"X-Exedev-Authorization": "Bearer exe1.AAAAAAAAAAAAAAAAAAAAAAAAAA"}))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an invalid token with a valid cookie: %d, want 401", resp.StatusCode)
	}
}

// TestUpstreamSetCookie: a VM cannot set exed's cookies, nor any cookie
// for a wider domain than its own host.
func TestUpstreamSetCookie(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		for _, c := range []string{
			"exe-auth=stolen; Path=/",
			"login-with-exe-80=tossed; Domain=exe.xyz",
			"LOGIN-WITH-EXE-" + "1=x",
			"app=1; Domain=exe.xyz; Path=/; HttpOnly",
			"theme=dark; domain=.exe.xyz",
			"plain=1",
		} {
			rw.Header().Add("Set-Cookie", c)
		}
	}))
	tok := w.vmToken("web", `{}`)
	resp, _ := w.get(w.vmHost("web"), "/", map[string]string{"X-Exedev-Authorization": bearerHdr(tok)})
	got := strings.Join(resp.Header.Values("Set-Cookie"), " | ")
	if want := "app=1; Path=/; HttpOnly | theme=dark | plain=1"; got != want {
		t.Errorf("Set-Cookie from the VM: %q, want %q", got, want)
	}
}

// TestBrowserOverExec: `browser` runs over /exec only when a token's cmds
// name it.
func TestBrowserOverExec(t *testing.T) {
	w := newWorld(t, nil)
	def := w.mint(w.alice.Signer, apiNamespace, `{}`)
	resp, _ := w.postExec("browser", map[string]string{"Authorization": bearerHdr(def)})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("browser with a default token: %d, want 403", resp.StatusCode)
	}
	granted := w.mint(w.alice.Signer, apiNamespace, `{"cmds":["browser","sessions"]}`)
	resp, m := w.postExec("browser --vm web", map[string]string{"Authorization": bearerHdr(granted)})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(m["magic_link"].(string), "https://exe.dev/auth/verify?token=") {
		t.Errorf("browser with a granting token: %d %v", resp.StatusCode, m)
	}
}

// TestSecureCookiesOverTLS: over TLS the cookies are Secure and the VM
// cookie is named for port the browser used.
func TestSecureCookiesOverTLS(t *testing.T) {
	w := newWorld(t, nil)
	srv := httptest.NewTLSServer(w.h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u, _ := url.Parse(srv.URL)
	get := func(host, path, cookie string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Host = host + ":" + u.Port()
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := get(testDomain, "/auth/verify?token="+w.linkToken(w.alice, "--vm web"), "")
	mc, raw := setCookie(t, resp, tokens.MainCookie)
	wantCookieAttrs(t, mc, raw, int(tokens.SessionTTL/time.Second), true)
	if loc := resp.Header.Get("Location"); loc != "https://web.exe.xyz:"+u.Port()+"/" {
		t.Errorf("Location %q", loc)
	}
	resp = get(testDomain, "/auth?redirect=%2F&return_host="+url.QueryEscape("web.exe.xyz:"+u.Port()), mc.Name+"="+mc.Value)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Scheme != "https" {
		t.Fatalf("/auth over TLS: %d %q", resp.StatusCode, loc)
	}
	resp = get("web.exe.xyz", loc.RequestURI(), "")
	vc, raw := setCookie(t, resp, tokens.VMCookiePrefix+u.Port())
	wantCookieAttrs(t, vc, raw, int(tokens.SessionTTL/time.Second), true)
}

// TestPages renders every page and checks what a phone and a careful
// browser need: a viewport, no script, escaping, and the headers.
func TestPages(t *testing.T) {
	w := newWorld(t, nil)
	for _, name := range pageNames {
		rec := httptest.NewRecorder()
		w.h.render(rec, http.StatusOK, name, pageData{Title: "t", Host: "web.exe.xyz", Email: `<b>"x"</b>@example.com`, SSHLine: "ssh x browser", Heading: "h", Message: "m", Redirect: "/a?b=<c>", ReturnHost: "web.exe.xyz"})
		body := rec.Body.String()
		for _, want := range []string{`<meta name="viewport" content="width=device-width, initial-scale=1">`, "max-width"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %q", name, want)
			}
		}
		if strings.Contains(body, "<script") || strings.Contains(body, `<b>"x"</b>`) {
			t.Errorf("%s: a script, or the email unescaped:\n%s", name, body)
		}
		if rec.Header().Get("Content-Security-Policy") != pageCSP || rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", name, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	w.h.render(rec, http.StatusOK, "confirm", pageData{Host: "web.exe.xyz", Email: "bob@example.com", Redirect: "/admin", ReturnHost: "web.exe.xyz"})
	for _, want := range []string{`<form method="post" action="/auth">`, `name="redirect" value="/admin"`, `name="return_host" value="web.exe.xyz"`, "bob@example.com"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("confirm page: no %q", want)
		}
	}
}

// TestSSHLine: the line the login page shows survives the user's shell
// and the server's split as the path it names.
func TestSSHLine(t *testing.T) {
	w := newWorld(t, nil)
	for path, want := range map[string]string{
		"/":                 "ssh -p 2222 ssh.exe.dev browser --vm web",
		"/admin":            "ssh -p 2222 ssh.exe.dev browser --vm web --path /admin",
		"/a?b=1&c=2":        `ssh -p 2222 ssh.exe.dev "browser --vm web --path '/a?b=1&c=2'"`,
		"/$(id)`x`'\"\\!;|": `ssh -p 2222 ssh.exe.dev "browser --vm web --path '/%24(id)%60x%60%27%22%5C%21;|'"`,
	} {
		if got := w.h.sshLine("web", path); got != want {
			t.Errorf("sshLine(%q) = %s, want %s", path, got, want)
		}
	}
}

// TestSessionAssertion: a request let in by a browser session carries a
// signed assertion too, with auth_method cookie and no token claims.
func TestSessionAssertion(t *testing.T) {
	w := newWorld(t, nil, withAssertions(t))
	_, jwks := w.get(testDomain, jwksPath, nil)
	_, vmCookie := w.login(w.alice, "web", "/")
	e := w.echo(w.vmHost("web"), cookieHdr(vmCookie))
	got := e.header(headerAssertion)
	if len(got) != 1 {
		t.Fatalf("upstream got %d assertions", len(got))
	}
	c, err := verifyAssertion(t, jwks, got[0], "http://"+w.vmHost("web"))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Subject != w.alice.User.ID || c.Email != "alice@example.com" || c.VM != "web" || c.AuthMethod != assertion.MethodCookie ||
		c.Access != "owner" || c.KeyFingerprint != "" || c.TokenCtx != "" {
		t.Errorf("claims %+v", c)
	}
}

// TestRestrictedKeySession: a browser logged in by a key restricted to
// one VM reaches that VM and no other, even one its user owns; and its
// cookies last no longer than the key.
func TestRestrictedKeySession(t *testing.T) {
	w := newWorld(t, nil)
	w.AddVM("api", w.alice, false)
	exp := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	ci := w.AddKey(w.alice, "ci", 11, func(k *store.Key) { k.VM, k.ExpiresAt = "web", exp })
	mainCookie, vmCookie := w.login(ci, "web", "/")
	if resp, _ := w.get(w.vmHost("web"), "/", cookieHdr(vmCookie)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the restricted key's VM: %d", resp.StatusCode)
	}
	resp, body := w.get(w.mainHost(), "/auth?redirect=%2F&return_host="+url.QueryEscape(w.vmHost("api")), cookieHdr(mainCookie))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "restricted to another VM") {
		t.Errorf("another VM of the same user, through a web-only login: %d\n%s", resp.StatusCode, body)
	}
	ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID)
	for _, s := range ss {
		if !s.ExpiresAt.Equal(exp) || s.OnlyVM != "web" || s.Fingerprint != ci.Key.Fingerprint {
			t.Errorf("session %s: expires %v, only %q, key %s; want the key's %v, web, %s", s.Host, s.ExpiresAt, s.OnlyVM, s.Fingerprint, exp, ci.Key.Fingerprint)
		}
	}
	// The cookies say so too.
	tok := w.linkToken(ci, "")
	resp, _ = w.get(w.mainHost(), "/auth/verify?token="+tok, nil)
	if c, _ := setCookie(t, resp, tokens.MainCookie); c.MaxAge > int(time.Until(exp)/time.Second)+1 || c.MaxAge < int(time.Until(exp)/time.Second)-5 {
		t.Errorf("Max-Age %d, want the key's remaining %v", c.MaxAge, time.Until(exp))
	}
	if loc := resp.Header.Get("Location"); loc != "http://"+w.vmHost("web")+"/" {
		t.Errorf("a web-only key's link without --vm goes to %q, want web", loc)
	}
}

// TestSharedUserLogin: a user the VM is shared with is asked to confirm
// (200, a POST button) before the VM sees their email; the POST is
// cross-origin protected; and when the share goes, the session no longer
// lets them in.
func TestSharedUserLogin(t *testing.T) {
	w := newWorld(t, nil)
	t.Cleanup(w.Store.Subscribe(func(c store.Change) {
		if c.Kind == store.ShareChanged || c.Kind == store.VMChanged {
			w.h.ForgetVM(c.ID)
		}
	}))
	w.Share("web", w.alice, "bob@example.com")
	resp, _ := w.get(w.mainHost(), "/auth/verify?token="+w.linkToken(w.bob, ""), nil)
	mc, _ := setCookie(t, resp, tokens.MainCookie)
	main := cookieHdr(mc.Name + "=" + mc.Value)
	q := "redirect=%2Fadmin&return_host=" + url.QueryEscape(w.vmHost("web"))

	resp, body := w.get(w.mainHost(), "/auth?"+q, main)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "bob@example.com") || !strings.Contains(string(body), `<form method="post" action="/auth">`) {
		t.Fatalf("/auth for a shared user: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://"+w.vmHost("web")) {
		t.Errorf("confirm page CSP %q: its form must be able to end on the VM host", csp)
	}
	post := func(hdr map[string]string) *http.Response {
		req := w.request(http.MethodPost, w.mainHost(), "/auth", strings.NewReader(q), merge(main, hdr))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := w.do(req)
		return resp
	}
	if resp := post(map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST /auth: %d, want 403", resp.StatusCode)
	}
	resp = post(map[string]string{"Origin": "http://" + w.mainHost()})
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Host != w.vmHost("web") || loc.Path != pathVMAuth {
		t.Fatalf("POST /auth: %d %q", resp.StatusCode, loc)
	}
	resp, _ = w.get(w.vmHost("web"), loc.RequestURI(), nil)
	vc, _ := setCookie(t, resp, w.vmCookie())
	vmCookie := cookieHdr(vc.Name + "=" + vc.Value)
	e := w.echo(w.vmHost("web"), vmCookie)
	wantIdentity(t, e, w.bob, "")

	if err := w.Store.RemoveShare(context.Background(), "web", "bob@example.com", store.Event{Time: time.Now(), ActorID: w.alice.User.ID, Action: "share.remove", Subject: "web bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.get(w.vmHost("web"), "/", vmCookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's session after the share was removed: %d, want 401", resp.StatusCode)
	}
	if resp, body := w.get(w.mainHost(), "/auth?"+q, main); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "share add web bob@example.com") {
		t.Errorf("/auth after the share was removed: %d", resp.StatusCode)
	}
}

// TestShareLinkLogin: a logged-in visitor who opens a share link is sent
// through the login, confirms, and gets a share of their own; the VM never
// sees the link, and the browser ends on the URL without it.
func TestShareLinkLogin(t *testing.T) {
	w := newWorld(t, nil)
	t.Cleanup(w.Store.Subscribe(func(c store.Change) {
		if c.Kind == store.ShareChanged || c.Kind == store.VMChanged {
			w.h.ForgetVM(c.ID)
		}
	}))
	out, err := w.run(w.alice, "share add-link web")
	if err != nil {
		t.Fatal(err)
	}
	var link struct{ URL string }
	if err := json.Unmarshal([]byte(out), &link); err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(link.URL)
	share := lu.Query().Get("share")
	resp, _ := w.get(w.mainHost(), "/auth/verify?token="+w.linkToken(w.bob, ""), nil)
	mc, _ := setCookie(t, resp, tokens.MainCookie)
	main := cookieHdr(mc.Name + "=" + mc.Value)

	// bob opens the link: no access yet, so to log in, the link along.
	resp, _ = w.get(w.vmHost("web"), "/docs?x=1&share="+share, htmlNav)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	resp, _ = w.get(w.vmHost("web"), loc.RequestURI(), htmlNav)
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusTemporaryRedirect || loc.Path != "/auth" {
		t.Fatalf("login route: %d %q", resp.StatusCode, loc)
	}
	resp, body := w.get(w.mainHost(), loc.RequestURI(), merge(htmlNav, main))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/auth"`) {
		t.Fatalf("/auth with a share link: %d, want the confirm page\n%s", resp.StatusCode, body)
	}
	req := w.request(http.MethodPost, w.mainHost(), "/auth", strings.NewReader(loc.RawQuery), merge(main, map[string]string{"Sec-Fetch-Site": "same-origin"}))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = w.do(req)
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("redirect") != "/docs?x=1" {
		t.Fatalf("POST /auth: %d %q, want 303 on to /docs?x=1", resp.StatusCode, loc)
	}
	resp, _ = w.get(w.vmHost("web"), loc.RequestURI(), nil)
	vc, _ := setCookie(t, resp, w.vmCookie())
	if resp.Header.Get("Location") != "/docs?x=1" {
		t.Fatalf("/__exe.dev/auth: Location %q", resp.Header.Get("Location"))
	}
	e := w.echo(w.vmHost("web"), cookieHdr(vc.Name+"="+vc.Value))
	wantIdentity(t, e, w.bob, "")
	vm, err := w.Store.VM(context.Background(), "web")
	if err != nil || tokens.Reach(&vm, w.bob.User.ID) != tokens.AccessShare {
		t.Fatalf("bob's access after the link: %v, %v", tokens.Reach(&vm, w.bob.User.ID), err)
	}
	if strings.Contains(w.logs.String(), share) {
		t.Error("the share link's token is in the log")
	}
	// Another VM's link does not share this one: 403 at the POST.
	resp, _ = w.get(w.mainHost(), "/auth/verify?token="+w.linkToken(w.alice, ""), nil)
	ac, _ := setCookie(t, resp, tokens.MainCookie)
	form := "return_host=" + url.QueryEscape(w.vmHost("bobvm")) + "&redirect=" + url.QueryEscape("/?share="+share)
	req = w.request(http.MethodPost, w.mainHost(), "/auth", strings.NewReader(form), merge(cookieHdr(ac.Name+"="+ac.Value), map[string]string{"Sec-Fetch-Site": "same-origin"}))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := w.do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("web's link used for bobvm: %d, want 403", resp.StatusCode)
	}
	if vm, _ := w.Store.VM(context.Background(), "bobvm"); tokens.Reach(&vm, w.alice.User.ID) != tokens.NoAccess {
		t.Error("another VM's link shared bobvm")
	}
}
