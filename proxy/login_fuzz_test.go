package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// FuzzLoginRedirect drives every login route that redirects with a
// made-up `redirect` (and the browser's own request path): whatever comes
// in, no Location ever leaves the main host and the VM hosts, and the path
// carried along is what store.SafePath lets through.
func FuzzLoginRedirect(f *testing.F) {
	for _, s := range []string{"/", "/admin?x=1", "//evil.example", "/\\evil.example", "/%2F%2Fevil", "https://evil.example/", "/%0d%0aSet-Cookie:x=1", "/a%", "@evil.example"} {
		f.Add(s)
	}
	w := newWorld(f, nil)
	mainCookie, _ := w.login(w.alice, "web", "/")
	mainHost, vmHost := w.mainHost(), w.vmHost("web")
	serve := func(host, target string, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL = &url.URL{Path: "/"}
		if u, err := url.ParseRequestURI(target); err == nil {
			r.URL = u
		}
		r.Host = host
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		w.h.ServeHTTP(rec, r)
		return rec
	}
	// onHost checks that loc, resolved against https://from/, is on host.
	onHost := func(t *testing.T, what, from, loc, host string) *url.URL {
		t.Helper()
		base, _ := url.Parse("http://" + from + "/x/y")
		ref, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("%s: Location %q does not parse: %v", what, loc, err)
		}
		u := base.ResolveReference(ref)
		if u.Host != host || u.User != nil || strings.ContainsAny(loc, "\\\r\n\t ") {
			t.Fatalf("%s: Location %q leads to %q, want host %s", what, loc, u, host)
		}
		return u
	}
	f.Fuzz(func(t *testing.T, redirect string) {
		q := url.QueryEscape(redirect)
		// A browser opening a private page with that path.
		if rec := serve(vmHost, "/"+strings.TrimLeft(redirect, "/"), htmlNav); rec.Code == http.StatusTemporaryRedirect {
			onHost(t, "page", vmHost, rec.Header().Get("Location"), vmHost)
		}
		rec := serve(vmHost, "/__exe.dev/login?redirect="+q, nil)
		u := onHost(t, "login", vmHost, rec.Header().Get("Location"), mainHost)
		if got := u.Query().Get("redirect"); got != store.SafePath(redirect) {
			t.Fatalf("login carries redirect %q, want %q", got, store.SafePath(redirect))
		}
		rec = serve(mainHost, "/auth?return_host="+url.QueryEscape(vmHost)+"&redirect="+q, map[string]string{"Cookie": mainCookie})
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("/auth: %d", rec.Code)
		}
		u = onHost(t, "auth", mainHost, rec.Header().Get("Location"), vmHost)
		secret := u.Query().Get("secret")
		if !tokens.ValidSecret(secret) || u.Query().Get("redirect") != store.SafePath(redirect) {
			t.Fatalf("/auth sends the browser to %q", u)
		}
		// The VM host's own /__exe.dev/auth, with the real secret and the
		// raw redirect (not the one /auth passed on).
		rec = serve(vmHost, "/__exe.dev/auth?secret="+secret+"&redirect="+q, nil)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("/__exe.dev/auth: %d", rec.Code)
		}
		if loc := rec.Header().Get("Location"); loc != store.SafePath(redirect) {
			t.Fatalf("/__exe.dev/auth redirects to %q, want %q", loc, store.SafePath(redirect))
		}
		onHost(t, "vm auth", vmHost, rec.Header().Get("Location"), vmHost)
	})
}
