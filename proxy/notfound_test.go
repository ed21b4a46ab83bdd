package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUnknownVMSaysNoVMNamed: a VM-shaped host with no such VM answers 404
// `no VM named "dmeo"` in plain text, reaches no upstream, and is logged
// with the name; Go's bare "404 page not found" would not tell a typo from
// a broken server.
func TestUnknownVMSaysNoVMNamed(t *testing.T) {
	w := newWorld(t, nil)
	resp, body := w.get("dmeo."+testVMDomain, "/", nil)
	if resp.StatusCode != http.StatusNotFound || string(body) != "no VM named \"dmeo\"\n" {
		t.Errorf("unknown VM: %d %q, want 404 %q", resp.StatusCode, body, `no VM named "dmeo"`)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
	logged := false
	for _, l := range w.logs.Lines() {
		if strings.Contains(l, "route=vm") && strings.Contains(l, "vm=dmeo") && strings.Contains(l, "status=404") {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no log line for the unknown VM:\n%s", w.logs.String())
	}
}

// TestUnknownHostNamesTheServedHosts: a request for the bare address, or
// for a name of neither domain, answers 404 naming the API host and the VM
// hosts, repeats what it was asked for only quoted and bounded, and is
// logged.
func TestUnknownHostNamesTheServedHosts(t *testing.T) {
	w := newWorld(t, nil)
	want := "exed serves " + testDomain + " (the API) and NAME." + testVMDomain + " (the VMs)"
	for host, asked := range map[string]string{
		"127.0.0.1:8080":                `"127.0.0.1"`,
		"example.com":                   `"example.com"`,
		"web.exe.xyz.example.com":       `"web.exe.xyz.example.com"`,
		"Not_A_VM." + testVMDomain:      `"not_a_vm.exe.xyz"`,
		"":                              "no Host",
		strings.Repeat("a", 300) + ".x": `"` + strings.Repeat("a", maxEchoedHost) + `"…`,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		w.h.ServeHTTP(rec, r)
		body := rec.Body.String()
		if rec.Code != http.StatusNotFound || !strings.HasPrefix(body, want) || !strings.HasSuffix(body, "this request was for "+asked+"\n") {
			t.Errorf("Host %.40q: %d %q, want 404 %q … %s", host, rec.Code, body, want, asked)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
	if !strings.Contains(w.logs.String(), "route=unknown_host host=example.com ") {
		t.Errorf("no log line for the unknown host:\n%s", w.logs.String())
	}
}
