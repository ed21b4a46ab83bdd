package proxy

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestForwardedHeaderSpellingsReachVM: X_Forwarded_For, X.Forwarded.Host
// and the like reached the VM beside the real ones, where CGI, WSGI and
// Rack read them as the real ones. Every spelling of a forwarding header
// is dropped before the proxy sets its own.
func TestForwardedHeaderSpellingsReachVM(t *testing.T) {
	w := newWorld(t, nil)
	hdr := map[string]string{}
	spoofs := []string{
		"X_Forwarded_For", "X.Forwarded.Host", "x-forwarded_proto", "X-FORWARDED-FOR", "X-Forwarded-Host",
		"Forwarded", "X_Real_IP", "X-Real-Ip", "X-Forwarded-Port", "x.forwarded.prefix", "True-Client-IP",
	}
	for _, name := range spoofs {
		hdr[name] = "6.6.6.6"
	}
	for _, vm := range []string{"web", "pub"} {
		host := vm + ".exe.xyz"
		hdr["X-Exedev-Authorization"] = bearerHdr(w.vmToken(vm, `{}`))
		e := w.echo(host, hdr)
		for name, vals := range e.Headers {
			for _, v := range vals {
				if strings.Contains(v, "6.6.6.6") {
					t.Errorf("%s: the VM received %s: %q", host, name, v)
				}
			}
			if isForwardingHeader(name) && name != "X-Forwarded-For" && name != "X-Forwarded-Host" && name != "X-Forwarded-Proto" {
				t.Errorf("%s: the VM received %s", host, name)
			}
		}
		if got := e.header("X-Forwarded-Host"); len(got) != 1 || got[0] != host {
			t.Errorf("%s: X-Forwarded-Host = %q, want the proxy's own", host, got)
		}
		if got := e.header("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For = %q, want the client's address only", host, got)
		}
	}
}

// TestBasicUnpaddedTokenReachesVM: an Authorization: Basic credential that
// holds a token but is base64 without padding (or in the URL alphabet, or
// with whitespace) was neither used nor removed, so the token reached the
// VM. Anything that decodes leniently to an exe token is used as the
// credential and never reaches a VM.
func TestBasicUnpaddedTokenReachesVM(t *testing.T) {
	w := newWorld(t, nil)
	for _, vm := range []string{"web", "pub"} {
		tok := w.vmToken(vm, `{}`)
		cred := "git:" + tok
		std := base64.StdEncoding.EncodeToString([]byte(cred))
		for name, enc := range map[string]string{
			"unpadded":      base64.RawStdEncoding.EncodeToString([]byte(cred)),
			"url alphabet":  base64.URLEncoding.EncodeToString([]byte(cred)),
			"url, unpadded": base64.RawURLEncoding.EncodeToString([]byte(cred)),
			"with a tab":    std[:8] + "\t" + std[8:],
		} {
			// Used as the credential: the VM sees alice, and no Authorization.
			wantIdentity(t, w.echo(vm+".exe.xyz", map[string]string{"Authorization": "Basic " + enc}), w.alice, "")
			_ = name
		}
	}
	// Not a credential the proxy can use (no colon), but it holds a token:
	// it never reaches the (public) VM.
	e := w.echo("pub.exe.xyz", map[string]string{"Authorization": "Basic " + base64.RawStdEncoding.EncodeToString([]byte(w.vmToken("pub", `{}`)))})
	if v := e.header("Authorization"); len(v) != 0 {
		t.Errorf("the VM received Authorization %q", v)
	}
	// A VM's own Basic credential still passes.
	own := basicHdr("me", "hunter2")
	if got := w.echo("pub.exe.xyz", map[string]string{"Authorization": own}).header("Authorization"); len(got) != 1 || got[0] != own {
		t.Errorf("the VM's own Basic credential: %q", got)
	}
}

// TestTokenInTrailersReachesVM: request trailers were left to how
// ReverseProxy and the transport copy them; identity headers and tokens
// sent as trailers now never reach the VM, and the Trailer announcement
// naming them does not either.
func TestTokenInTrailersReachesVM(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	var announced []string
	up := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = r.Trailer.Clone()
		announced = r.Header.Values("Trailer")
		mu.Unlock()
	})
	w := newWorld(t, up)
	tok := w.vmToken("web", `{}`)
	conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: web.exe.xyz\r\nX-Exedev-Authorization: Bearer %s\r\n"+
		"Transfer-Encoding: chunked\r\nTrailer: X-Exedev-Userid, Authorization, X_Forwarded_For, X-Fine\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Exedev-Userid: usrmallory\r\nAuthorization: Bearer %s\r\nX_Forwarded_For: 6.6.6.6\r\nX-Fine: yes\r\n\r\n", tok, tok)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, vals := range seen {
		if isExedevHeader(name) || isForwardingHeader(name) || http.CanonicalHeaderKey(name) == "Authorization" {
			t.Errorf("the VM received trailer %s: %q", name, vals)
		}
		for _, v := range vals {
			if containsToken(v) {
				t.Errorf("the VM received a token in trailer %s", name)
			}
		}
	}
	for _, a := range announced {
		if strings.Contains(strings.ToLower(a), "exedev") || strings.Contains(strings.ToLower(a), "authorization") {
			t.Errorf("the VM received the announcement Trailer: %q", a)
		}
	}
}

// TestReservedPathSpellings: /__exe.dev/ was reserved only as Go decodes
// and cleans a path; an upstream (Tomcat, Jetty, Spring, nginx, Express,
// IIS) that strips path parameters, decodes twice, takes '\' for '/',
// drops trailing dots or control bytes reached its own /__exe.dev/. Each
// such spelling is refused (400, or 404 for the plain ones) and never
// forwarded; ordinary odd paths still pass.
func TestReservedPathSpellings(t *testing.T) {
	w := newWorld(t, nil)
	auth := map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{}`))}
	refused := []string{
		"/__exe.dev;jsessionid=1/login", // path parameters (Tomcat, Jetty, Spring)
		"/x/..;/__exe.dev/login",        // "..;" is ".." to Tomcat
		"/__exe.dev;/x",
		"/%255F_exe.dev/x",      // double encoding
		"/%25255F_exe.dev/x",    // triple
		"/__exe%252edev/x",      //
		"/__exe.dev%2fx",        // encoded slash
		"/x%2f..%2f__exe.dev/x", //
		"/x%5c..%5c__exe.dev/x", // encoded backslash
		"/__exe.dev./x",         // trailing dot (IIS)
		"/__exe.dev%20/x",       // trailing space
		"/__exe.dev%00/x",       // NUL: cut or dropped
		"/%00/__exe.dev/x",      //
		"/__exe%09.dev/x",       // a control byte dropped
		"/__EXE.DEV%2e/x",       // case and an encoded dot
		"/%c0%ae%c0%ae/__exe.dev/x",
		"/x/%c0%ae%c0%ae/__exe.dev/x", // overlong UTF-8 dots
		"/%ef%bc%bf_exe.dev/x",        // a fullwidth low line
		// Chained rewrites: a space or control byte dropped from inside an
		// overlong '.', and an overlong space then dropped (FuzzReservedPath
		// found the first two).
		"/%C0%20%AE/__exe.dev/login",
		"/%c0%09%ae/__exe.dev/x",
		"/__exe%c0%a0.dev/x",
		// Nested so that each pass uncovers the next pair: past the passes
		// checkPath spends, refused as ambiguous.
		"/%C0" + strings.Repeat("%C0", 4) + "%20" + strings.Repeat("%A0", 4) + "%AE/__exe.dev/x",
	}
	for _, p := range refused {
		req := w.request(http.MethodGet, "web.exe.xyz", "/", nil, auth)
		req.URL.Opaque = p // sent exactly as written
		resp, _ := w.do(req)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 400 or 404", p, resp.StatusCode)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("the upstream was reached %d times", n)
	}
	for _, p := range []string{"/a%2Fb", "/my%20file.txt", "/v1/x;y=1", "/%E2%82%AC", "/x./y", "/__exe.devx/", "/api/group%2Fproject"} {
		req := w.request(http.MethodGet, "web.exe.xyz", "/", nil, auth)
		req.URL.Opaque = p
		resp, body := w.do(req)
		var e echoReply
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil {
			t.Errorf("%s: status %d, want it forwarded", p, resp.StatusCode)
		}
	}
}
