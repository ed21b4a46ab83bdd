package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

// Requests with tokens, valid and not, through every route and carrier:
// the log must hold no token nor any part of one.
func TestNoTokenInLogs(t *testing.T) {
	w := newWorld(t, nil)
	valid := w.vmToken("web", `{"ctx":{"secret":"s3cr3t-ctx"}}`)
	api := w.mint(w.alice.Signer, apiNamespace, `{}`)
	handle := w.exe1(w.alice, "web", valid)
	bad := valid[:len(valid)-4] + "AAAA" // bad signature
	apiHandle := w.exe1(w.alice, "", api)
	secrets := []string{valid, api, handle, bad, apiHandle}

	serve := func(method, host, body string, hdr map[string]string) int {
		target := "http://" + host + "/some/path?q=1"
		if host == testDomain {
			target = "http://" + host + "/exec"
		}
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		w.h.ServeHTTP(rec, r) // synchronous: the log line is written when it returns
		return rec.Code
	}
	for _, tok := range secrets {
		for _, hdr := range []map[string]string{
			{"X-Exedev-Authorization": bearerHdr(tok)},
			{"Authorization": bearerHdr(tok)},
			{"Authorization": basicHdr("git", tok)},
			{"X-Exedev-Authorization": tok},                                                   // malformed carrier
			{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": bearerHdr(tok + "x")}, // conflict
		} {
			for _, host := range []string{"web.exe.xyz", "pub.exe.xyz", "bobvm.exe.xyz", "nosuch.exe.xyz"} {
				serve(http.MethodGet, host, "", hdr)
			}
			serve(http.MethodPost, testDomain, "whoami", hdr)
			serve(http.MethodPost, testDomain, "ssh-key generate-api-key", hdr)
			serve(http.MethodPost, testDomain, "exe0-to-exe1 "+tok, hdr) // a token in the arguments
			serve(http.MethodPost, testDomain, "nosuch "+tok, hdr)
			serve(http.MethodPost, testDomain, "whoami '"+tok, hdr) // bad quoting echoes input to the client only
		}
	}
	// The proxy's log did get lines with identities and reasons.
	logs := w.logs.String()
	for _, want := range []string{"user_id=" + w.alice.User.ID, "reason=bad_signature", "carrier=authorization-basic", "route=exec", "command=whoami"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, s := range secrets {
		for _, frag := range testkit.SecretFragments(s) {
			if strings.Contains(logs, frag) {
				t.Errorf("log holds a token fragment %.16q…", frag)
			}
		}
	}
	if strings.Contains(logs, "s3cr3t-ctx") {
		t.Error("log holds the token's ctx")
	}
}
