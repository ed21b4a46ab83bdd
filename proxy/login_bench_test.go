package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/exed-dev/exed/tokens"
)

// The cost of the fourth source of identity, against the token carriers:
// authorize alone (no upstream), so that the difference is not lost in a
// proxied round trip. A valid session cookie should cost what a cached
// token does, a junk cookie no more than a malformed token.

func benchAuthorize(b *testing.B, w *world, hdr http.Header, wantStatus int) {
	b.Helper()
	vm, err := w.h.vms.get(context.Background(), "web")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "http://web.exe.xyz/bench", nil)
		r.Header = hdr.Clone()
		for pb.Next() {
			var a access
			w.h.authorize(r, vm, &a)
			if a.status != wantStatus {
				b.Fatalf("status %d, want %d (%v)", a.status, wantStatus, a.reason)
			}
		}
	})
}

// benchCookie logs alice's browser in to web on port 80 and returns the
// VM host's cookie.
func benchCookie(b *testing.B, w *world) string {
	b.Helper()
	tok := w.linkToken(w.alice, "--vm web")
	r := httptest.NewRequest(http.MethodGet, "http://exe.dev/auth/verify?token="+tok, nil)
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	main := rec.Result().Cookies()[0]
	r = httptest.NewRequest(http.MethodGet, "http://exe.dev/auth?redirect=%2F&return_host=web.exe.xyz", nil)
	r.AddCookie(main)
	rec = httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	r = httptest.NewRequest(http.MethodGet, rec.Header().Get("Location"), nil)
	rec = httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	for _, c := range rec.Result().Cookies() {
		if c.Name == tokens.VMCookiePrefix+"80" {
			return c.Name + "=" + c.Value
		}
	}
	b.Fatalf("no VM cookie: %d %v", rec.Code, rec.Header())
	return ""
}

func BenchmarkAuthorizeCachedToken(b *testing.B) {
	w := newWorld(b, nil)
	hdr := http.Header{"X-Exedev-Authorization": {bearerHdr(w.vmToken("web", `{}`))}}
	benchAuthorize(b, w, hdr, 0)
}

func BenchmarkAuthorizeSessionCookie(b *testing.B) {
	w := newWorld(b, nil)
	hdr := http.Header{"Cookie": {"_ga=GA1.1.12345; " + benchCookie(b, w) + "; theme=dark"}}
	benchAuthorize(b, w, hdr, 0)
}

func BenchmarkAuthorizeMalformedToken(b *testing.B) {
	w := newWorld(b, nil)
	raw := make([]byte, 300)
	rand.Read(raw)
	tok := "exe0." + base64.RawURLEncoding.EncodeToString(raw[:60]) + "." + base64.RawURLEncoding.EncodeToString(raw[60:])
	benchAuthorize(b, w, http.Header{"X-Exedev-Authorization": {bearerHdr(tok)}}, http.StatusUnauthorized)
}

// BenchmarkAuthorizeJunkCookie: a cookie of the right shape that nobody
// minted, sent again and again (a browser with a revoked session does).
func BenchmarkAuthorizeJunkCookie(b *testing.B) {
	w := newWorld(b, nil)
	raw := make([]byte, 32)
	rand.Read(raw)
	hdr := http.Header{"Cookie": {tokens.VMCookiePrefix + "80=" + base64.RawURLEncoding.EncodeToString(raw)}}
	benchAuthorize(b, w, hdr, http.StatusUnauthorized)
}

// BenchmarkAuthorizeBadShapeCookie: a cookie of our name and the wrong
// shape never reaches the store.
func BenchmarkAuthorizeBadShapeCookie(b *testing.B) {
	w := newWorld(b, nil)
	benchAuthorize(b, w, http.Header{"Cookie": {tokens.VMCookiePrefix + "80=junk"}}, http.StatusUnauthorized)
}

// BenchmarkStripExedCookies: what the cookie hygiene costs a forwarded
// request, with only exed's cookie and with the VM's own beside it.
func BenchmarkStripExedCookies(b *testing.B) {
	for name, v := range map[string]string{
		"exed's only": tokens.VMCookiePrefix + "443=" + strings.Repeat("A", 43),
		"mixed":       "_ga=GA1.1.1; " + tokens.VMCookiePrefix + "443=" + strings.Repeat("A", 43) + "; theme=dark",
		"none":        "_ga=GA1.1.1; theme=dark",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				hdr := http.Header{"Cookie": {v}}
				stripExedCookies(hdr)
			}
		})
	}
}
