package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/store"
)

// withAssertions gives the world's Handler an Issuer on its own store.
func withAssertions(t testing.TB) worldOption {
	return func(c *Config) {
		secret, err := assertion.LoadOrCreateSecret(t.TempDir() + "/secret.key")
		if err != nil {
			t.Fatal(err)
		}
		is, err := assertion.NewIssuer(context.Background(), assertion.Config{
			Store: c.Store.(store.AssertionKeyStore), Secret: secret, Domain: testDomain, VMDomain: testVMDomain,
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Assertions = is
	}
}

// verifyAssertion checks tok with go-jose against jwks for aud, now.
func verifyAssertion(t *testing.T, jwks []byte, tok, aud string) (*assertion.Claims, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS %q: %v", jwks, err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, jose.ErrUnsupportedKeyType
	}
	var std jwt.Claims
	var c assertion.Claims
	if err := parsed.Claims(keys[0].Key, &std, &c); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://" + testDomain, AnyAudience: jwt.Audience{aud}}, 0); err != nil {
		return nil, err
	}
	return &c, nil
}

func frontPort(t *testing.T, s *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestAssertionForwarded: a request with a valid token reaches the VM
// with exactly one X-ExeDev-Jwt-Assertion, exed's, naming the caller and
// the origin the request came in on; anonymous requests carry none, and a
// client's own copy never gets through.
func TestAssertionForwarded(t *testing.T) {
	w := newWorld(t, nil, withAssertions(t))
	_, jwks := w.get(testDomain, jwksPath, nil)
	aud := "http://web.exe.xyz:" + frontPort(t, w.front)
	tok := w.vmToken("web", `{"ctx":{"role":"deploy","list":[1, 2]}}`)

	for name, hdr := range map[string]map[string]string{
		"token":                 {"X-Exedev-Authorization": bearerHdr(tok)},
		"token and forged copy": {"X-Exedev-Authorization": bearerHdr(tok), "X-ExeDev-Jwt-Assertion": "forged.forged.forged", "x_exedev_jwt_assertion": "forged"},
	} {
		t.Run(name, func(t *testing.T) {
			e := w.echo("web.exe.xyz", hdr)
			got := e.header(headerAssertion)
			if len(got) != 1 {
				t.Fatalf("upstream got %d assertions: %q", len(got), got)
			}
			c, err := verifyAssertion(t, jwks, got[0], aud)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if c.Subject != w.alice.User.ID || c.Email != "alice@example.com" || c.VM != "web" || c.Audience != aud ||
				c.AuthMethod != assertion.MethodToken || c.Access != "owner" ||
				c.KeyFingerprint != w.alice.Key.Fingerprint || c.TokenCtx != `{"role":"deploy","list":[1, 2]}` {
				t.Errorf("claims %+v", c)
			}
			if _, err := verifyAssertion(t, jwks, got[0], "http://pub.exe.xyz:"+frontPort(t, w.front)); err == nil {
				t.Error("verified for another VM's origin")
			}
			// The other identity headers are as without assertions.
			if e.header(headerUserID)[0] != w.alice.User.ID || len(e.exedevHeaders()) != 4 {
				t.Errorf("identity headers %v", e.exedevHeaders())
			}
		})
	}
	t.Run("anonymous", func(t *testing.T) {
		for _, hdr := range []map[string]string{nil, {"X-ExeDev-Jwt-Assertion": "forged"}} {
			e := w.echo("pub.exe.xyz", hdr)
			wantAnonymous(t, e)
		}
	})
	t.Run("token on a public VM", func(t *testing.T) {
		e := w.echo("pub.exe.xyz", map[string]string{"Authorization": bearerHdr(w.vmToken("pub", `{}`))})
		c, err := verifyAssertion(t, jwks, e.header(headerAssertion)[0], "http://pub.exe.xyz:"+frontPort(t, w.front))
		if err != nil || c.Access != "owner" || c.TokenCtx != "" {
			t.Fatalf("claims %+v, %v", c, err)
		}
	})
}

// TestAssertionTLS: over TLS the audience is https, with the listener's
// port, whatever port the Host header names.
func TestAssertionTLS(t *testing.T) {
	w := newWorld(t, nil, withAssertions(t))
	front := httptest.NewTLSServer(w.h)
	defer front.Close()
	req, _ := http.NewRequest(http.MethodGet, front.URL+"/", nil)
	req.Host = "web.exe.xyz:9999"
	req.Header.Set("X-Exedev-Authorization", bearerHdr(w.vmToken("web", `{}`)))
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoReply
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	_, jwks := w.get(testDomain, jwksPath, nil)
	aud := "https://web.exe.xyz:" + frontPort(t, front)
	if c, err := verifyAssertion(t, jwks, e.header(headerAssertion)[0], aud); err != nil || c.Audience != aud {
		t.Fatalf("over TLS: %+v, %v; want aud %s", c, err, aud)
	}
}

// TestJWKSRoutes: the JWKS on the API host and on every VM host, cacheable
// for an hour; nothing with assertions off.
func TestJWKSRoutes(t *testing.T) {
	w := newWorld(t, nil, withAssertions(t))
	var first []byte
	for _, c := range []struct{ host, path string }{
		{testDomain, jwksPath},
		{"web.exe.xyz", vmJWKSPath},
		{"nosuchvm.exe.xyz", vmJWKSPath}, // every VM host
	} {
		resp, body := w.get(c.host, c.path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=3600" ||
			resp.Header.Get("Content-Type") != "application/jwk-set+json" {
			t.Fatalf("GET %s%s: %d %v", c.host, c.path, resp.StatusCode, resp.Header)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() ||
			set.Keys[0].KeyID != w.h.c.Assertions.SigningKeyID() {
			t.Fatalf("GET %s%s: %s, %v", c.host, c.path, body, err)
		}
		if strings.Contains(string(body), `"d"`) {
			t.Fatalf("JWKS holds a private key: %s", body)
		}
		if first == nil {
			first = body
		} else if string(body) != string(first) {
			t.Errorf("%s%s serves another set", c.host, c.path)
		}
	}
	if w.hits.Load() != 0 {
		t.Errorf("a JWKS request reached the upstream")
	}
	resp, _ := w.do(w.request(http.MethodPost, testDomain, jwksPath, nil, nil))
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	resp, body := w.do(w.request(http.MethodHead, "web.exe.xyz", vmJWKSPath, nil, nil))
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	// Only the exact path: the rest of /__exe.dev/ stays reserved.
	for _, p := range []string{"/__exe.dev/jwks.json/", "/__exe.dev/JWKS.json", "/x/../__exe.dev/jwks.json"} {
		if resp, _ := w.get("web.exe.xyz", p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}

	off := newWorld(t, nil)
	for _, c := range []struct{ host, path string }{{testDomain, jwksPath}, {"web.exe.xyz", vmJWKSPath}} {
		if resp, _ := off.get(c.host, c.path, nil); resp.StatusCode != 404 {
			t.Errorf("assertions off: GET %s%s: %d", c.host, c.path, resp.StatusCode)
		}
	}
	e := off.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(off.vmToken("web", `{}`))})
	if got := e.header(headerAssertion); len(got) != 0 {
		t.Errorf("assertions off: upstream got %q", got)
	}
}

// TestAssertionReusedAcrossRequests: the same token through the proxy
// gets the same assertion while it is young (far less than the 2.5
// minutes this test takes).
func TestAssertionReusedAcrossRequests(t *testing.T) {
	w := newWorld(t, nil, withAssertions(t))
	hdr := map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{}`))}
	first := w.echo("web.exe.xyz", hdr).header(headerAssertion)[0]
	for range 3 {
		if got := w.echo("web.exe.xyz", hdr).header(headerAssertion)[0]; got != first {
			t.Fatal("a second request got a new assertion")
		}
	}
}
