package proxy

import (
	"net/http"
	"testing"
)

// TestHSTS: with TLS on, every answer from the API host carries HSTS
// (without includeSubDomains); a VM host's answers do not; with TLS off,
// none does.
func TestHSTS(t *testing.T) {
	for _, on := range []bool{true, false} {
		w := newWorld(t, nil, func(c *Config) { c.HSTS = on })
		apiWant := ""
		if on {
			apiWant = "max-age=31536000"
		}
		for _, c := range []struct {
			method, host, path, want string
		}{
			{http.MethodPost, testDomain, "/exec", apiWant},   // 401: no token
			{http.MethodGet, testDomain, "/nowhere", apiWant}, // 404 on the API host
			{http.MethodGet, "web." + testVMDomain, "/", ""},  // 401 from the proxy
			{http.MethodGet, "pub." + testVMDomain, "/", ""},  // the upstream's answer
			{http.MethodGet, "other.example", "/", ""},        // no route
		} {
			resp, _ := w.do(w.request(c.method, c.host, c.path, nil, nil))
			if got := resp.Header.Get("Strict-Transport-Security"); got != c.want {
				t.Errorf("HSTS %v: %s %s%s: Strict-Transport-Security %q, want %q", on, c.method, c.host, c.path, got, c.want)
			}
		}
	}
}
