package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

func TestCarriers(t *testing.T) {
	w := newWorld(t, nil)
	ctx := `{"role":"deploy","n":[1, 2]}`
	tok := w.vmToken("web", fmt.Sprintf(`{"exp":%d,"ctx":%s}`, future(), ctx))
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"x-exedev-authorization", map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}},
		{"x-exedev-authorization lowercase scheme", map[string]string{"X-Exedev-Authorization": "bearer " + tok}},
		{"authorization bearer", map[string]string{"Authorization": bearerHdr(tok)}},
		{"basic password", map[string]string{"Authorization": basicHdr("anything", tok)}},
		{"basic empty user", map[string]string{"Authorization": basicHdr("", tok)}},
		{"same token in two carriers", map[string]string{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": bearerHdr(tok)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := w.echo("web.exe.xyz", tc.hdr)
			wantIdentity(t, e, w.alice, ctx)
		})
	}
}

// The X-Exedev-Authorization carrier leaves the VM's own Authorization alone.
func TestVMOwnAuthorizationPassesThrough(t *testing.T) {
	w := newWorld(t, nil)
	tok := w.vmToken("web", `{}`)
	own := basicHdr("admin", "hunter2")
	e := w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": own})
	if got := e.header("Authorization"); len(got) != 1 || got[0] != own {
		t.Errorf("upstream Authorization = %q, want the VM's own %q", got, own)
	}
	if got := e.header("X-Exedev-Userid"); len(got) != 1 || got[0] != w.alice.User.ID {
		t.Errorf("upstream X-ExeDev-UserID = %q", got)
	}
}

func TestConflictingCarriers(t *testing.T) {
	w := newWorld(t, nil)
	a := w.vmToken("web", `{}`)
	b := w.vmToken("web", `{"ctx":1}`)
	for _, hdr := range []map[string]string{
		{"X-Exedev-Authorization": bearerHdr(a), "Authorization": bearerHdr(b)},
		{"X-Exedev-Authorization": bearerHdr(a), "Authorization": basicHdr("x", b)},
		{"Authorization": bearerHdr(a), "authorization": basicHdr("x", b)},
	} {
		resp, _ := w.get("web.exe.xyz", "/", hdr)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: status %d, want 400", hdr, resp.StatusCode)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
}

func TestRefusals(t *testing.T) {
	w := newWorld(t, nil)
	deploy := w.addKey(w.alice, "deploy")
	removedTok := w.mint(deploy, vmNamespace("web"), `{}`)
	// It works, and is cached, before the key goes.
	w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(removedTok)})
	if _, err := w.run(w.alice, "ssh-key remove deploy"); err != nil {
		t.Fatalf("ssh-key remove: %v", err)
	}
	exe1Removed := func() string {
		d2 := w.addKey(w.alice, "deploy2")
		h := w.exe1(w.alice, "web", w.mint(d2, vmNamespace("web"), `{}`))
		w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(h)})
		if _, err := w.run(w.alice, "ssh-key remove deploy2"); err != nil {
			t.Fatalf("ssh-key remove: %v", err)
		}
		return h
	}()

	good := w.vmToken("web", `{}`)
	parts := strings.Split(good, ".")
	tamperedPayload := "exe0." + base64.RawURLEncoding.EncodeToString([]byte(`{"ctx":1}`)) + "." + parts[2]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)-1] ^= 1
	tamperedSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	stranger := w.addKey(w.bob, "stranger")

	for _, tc := range []struct{ name, token string }{
		{"expired", w.vmToken("web", fmt.Sprintf(`{"exp":%d}`, past()))},
		{"not yet valid", w.vmToken("web", fmt.Sprintf(`{"nbf":%d}`, future()))},
		{"API token at a VM", w.mint(w.alice.Signer, apiNamespace, `{}`)},
		{"other VM's token", w.vmToken("pub", `{}`)},
		{"other user's VM", w.mint(w.bob.Signer, vmNamespace("web"), `{}`)},
		{"other user's VM, another key", w.mint(stranger, vmNamespace("web"), `{}`)},
		{"removed key", removedTok},
		{"removed key exe1", exe1Removed},
		{"tampered payload", tamperedPayload},
		{"tampered signature", tamperedSig},
		{"unknown key", w.mint(testkit.NewSigner(t), vmNamespace("web"), `{}`)},
		{"garbage exe0", "exe0.e30.AAAA"},
		{"unknown exe1", "exe1.AAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"uppercase host namespace", w.mint(w.alice.Signer, "v0@WEB.exe.xyz", `{}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.hits.Load()
			for _, hdr := range []map[string]string{
				{"X-Exedev-Authorization": bearerHdr(tc.token)},
				{"Authorization": bearerHdr(tc.token)},
				{"Authorization": basicHdr("git", tc.token)},
			} {
				for _, host := range []string{"web.exe.xyz", "pub.exe.xyz"} {
					if host == "pub.exe.xyz" && tc.name == "other VM's token" {
						continue // it is pub's token
					}
					resp, body := w.get(host, "/", hdr)
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("%s %v: status %d, want 401", host, hdr, resp.StatusCode)
					}
					if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="exed"` {
						t.Errorf("WWW-Authenticate = %q", got)
					}
					if string(body) != "invalid token\n" {
						t.Errorf("body = %q, want only %q", body, "invalid token\n")
					}
				}
			}
			if n := w.hits.Load() - before; n != 0 {
				t.Errorf("upstream reached %d times", n)
			}
		})
	}
	// X-Exedev-Authorization is ours: anything but "Bearer T" in it is an
	// invalid credential, never ignored.
	for _, v := range []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+good)), "Bearer", "Bearer ", good} {
		resp, _ := w.get("pub.exe.xyz", "/", map[string]string{"X-Exedev-Authorization": v})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("X-Exedev-Authorization %.12q…: status %d, want 401", v, resp.StatusCode)
		}
	}
}

func TestPrivateVMWithoutToken(t *testing.T) {
	w := newWorld(t, nil)
	for _, hdr := range []map[string]string{
		nil,
		{"Authorization": basicHdr("git", "not-a-token")},
		{"Authorization": "Bearer something-else"},
		{"X-ExeDev-UserID": w.alice.User.ID},
	} {
		resp, body := w.get("web.exe.xyz", "/secret", hdr)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%v: status %d, want 401", hdr, resp.StatusCode)
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="exed"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		if strings.Contains(string(body), "headers") {
			t.Errorf("401 carries an upstream body: %q", body)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
}

func TestPublicVM(t *testing.T) {
	w := newWorld(t, nil)
	// No token: forwarded, anonymous, client-sent identity dropped.
	e := w.echo("pub.exe.xyz", map[string]string{"X-ExeDev-UserID": w.bob.User.ID, "X-Exedev-Email": "x@y"})
	wantAnonymous(t, e)

	// A valid token: forwarded with identity.
	tok := w.vmToken("pub", `{"ctx":"hi"}`)
	wantIdentity(t, w.echo("pub.exe.xyz", map[string]string{"Authorization": basicHdr("u", tok)}), w.alice, `"hi"`)

	// The VM's own credentials pass; anything shaped like an exe token in
	// Authorization does not, even where it is not the credential used.
	own := basicHdr("admin", "pw")
	e = w.echo("pub.exe.xyz", map[string]string{"Authorization": own})
	if got := e.header("Authorization"); len(got) != 1 || got[0] != own {
		t.Errorf("upstream Authorization = %q, want %q", got, own)
	}
	e = w.echo("pub.exe.xyz", map[string]string{"Authorization": basicHdr(tok, "pw")})
	wantAnonymous(t, e)
	if got := e.header("Authorization"); len(got) != 0 {
		t.Errorf("token-as-username reached the VM: %q", got)
	}
	e = w.echo("pub.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(tok), "Authorization": basicHdr(tok, "pw")})
	wantIdentity(t, e, w.alice, `"hi"`)
}

func TestExe1(t *testing.T) {
	w := newWorld(t, nil)
	ctx := `{"env":"ci"}`
	h := w.exe1(w.alice, "web", w.vmToken("web", `{"ctx":`+ctx+`}`))
	for _, hdr := range []map[string]string{
		{"X-Exedev-Authorization": bearerHdr(h)},
		{"Authorization": bearerHdr(h)},
		{"Authorization": basicHdr("git", h)},
	} {
		wantIdentity(t, w.echo("web.exe.xyz", hdr), w.alice, ctx)
	}
	// A handle differing in one character opens nothing.
	last := "A"
	if strings.HasSuffix(h, "A") {
		last = "B"
	}
	bad := h[:len(h)-1] + last
	if resp, _ := w.get("web.exe.xyz", "/", map[string]string{"Authorization": bearerHdr(bad)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("altered exe1: status %d, want 401", resp.StatusCode)
	}
}

// Tokens made with stock ssh-keygen by the documented recipe are accepted
// as is.
func TestSSHKeygenRecipe(t *testing.T) {
	w := newWorld(t, nil)
	for _, kt := range []struct {
		typ  string
		bits int
	}{{"ed25519", 0}, {"ecdsa", 256}, {"rsa", 3072}} {
		t.Run(kt.typ, func(t *testing.T) {
			path := testkit.SSHKeygen(t, t.TempDir(), kt.typ, kt.bits)
			line, err := os.ReadFile(path + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			pub, _, err := keys.ParsePublicKey(line)
			if err != nil {
				t.Fatal(err)
			}
			w.AddPublicKey(w.alice, "recipe-"+kt.typ, pub, nil)
			tok := testkit.RecipeToken(t, path, vmNamespace("web"), fmt.Sprintf(`{"exp":%d,"ctx":{"role":"deploy"}}`, future()), "")
			wantIdentity(t, w.echo("web.exe.xyz", map[string]string{"Authorization": basicHdr("x", tok)}), w.alice, `{"role":"deploy"}`)
		})
	}
}

// Identity headers come from the proxy only, whatever the spelling the
// client tried, and whatever its Connection header names.
func TestHeaderHygiene(t *testing.T) {
	w := newWorld(t, nil)
	spoofs := map[string]string{
		"X-ExeDev-UserID":        "usrspoofed",
		"x-exedev-userid":        "usrspoofed2",
		"X_ExeDev_UserID":        "usrspoofed3",
		"x_exedev_userid":        "usrspoofed4",
		"X.ExeDev.Email":         "spoof@example.com",
		"X-Exe-Dev-Email":        "spoof@example.com",
		"XExeDevEmail":           "spoof@example.com",
		"X-EXEDEV-TOKEN-CTX":     `{"admin":true}`,
		"X-Exedev-Token_Ctx":     `{"admin":true}`,
		"X-ExeDev-Anything-Else": "x",
		"X-Forwarded-For":        "10.9.9.9",
		"X-Forwarded-Host":       "evil.example",
		"X-Forwarded-Proto":      "https",
		"Forwarded":              "for=10.9.9.9",
	}
	for _, conn := range []string{"", "X-ExeDev-UserID", "X-ExeDev-UserID, X-ExeDev-Email, X-ExeDev-Token-Ctx, X-Forwarded-For"} {
		t.Run("connection="+conn, func(t *testing.T) {
			for _, withToken := range []bool{true, false} {
				hdr := map[string]string{}
				for k, v := range spoofs {
					hdr[k] = v
				}
				if conn != "" {
					hdr["Connection"] = conn
				}
				host := "pub.exe.xyz"
				if withToken {
					hdr["X-Exedev-Authorization"] = bearerHdr(w.vmToken("pub", `{"ctx":{"a":1}}`))
				}
				e := w.echo(host, hdr)
				if withToken {
					wantIdentity(t, e, w.alice, `{"a":1}`)
				} else {
					wantAnonymous(t, e)
				}
				if got := e.header("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("X-Forwarded-For = %q, want only the client's address", got)
				}
				if got := e.header("X-Forwarded-Host"); len(got) != 1 || got[0] != host {
					t.Errorf("X-Forwarded-Host = %q, want %q", got, host)
				}
				if got := e.header("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
					t.Errorf("X-Forwarded-Proto = %q", got)
				}
				if got := e.header("Forwarded"); len(got) != 0 {
					t.Errorf("Forwarded = %q", got)
				}
			}
		})
	}
}

// Header spellings the Go client would canonicalise or refuse, sent as raw
// bytes.
func TestHeaderHygieneRawWire(t *testing.T) {
	w := newWorld(t, nil)
	tok := w.vmToken("web", `{}`)
	raw := "GET / HTTP/1.1\r\nHost: web.exe.xyz\r\n" +
		"X-Exedev-Authorization: Bearer " + tok + "\r\n" +
		"x-EXEDEV-userid: spoof1\r\n" +
		"X_EXEDEV_USERID: spoof2\r\n" +
		"x.exedev.email: spoof3\r\n" +
		"X-ExeDev-UserID: spoof4\r\n" +
		"Connection: close, x-exedev-userid, X-ExeDev-Email\r\n\r\n"
	conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "spoof") {
		t.Errorf("a spoofed value reached the upstream: %s", body)
	}
	if !strings.Contains(string(body), w.alice.User.ID) {
		t.Errorf("upstream did not get the proxy's identity: %s", body)
	}
}

func TestRouting(t *testing.T) {
	w := newWorld(t, nil)
	tok := w.vmToken("web", `{}`)
	auth := map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}
	for _, tc := range []struct {
		host string
		want int
	}{
		{"web.exe.xyz", 200},
		{"WEB.Exe.XYZ", 200},
		{"web.exe.xyz.", 200},
		{"web.exe.xyz:8443", 200},
		{"Web.Exe.Xyz.:443", 200},
		{"web.exe.xyz..", 404},
		{"nosuchvm.exe.xyz", 404},
		{"exe.xyz", 404},
		{"a.web.exe.xyz", 404},
		{"-web.exe.xyz", 404},
		{"web-.exe.xyz", 404},
		{"we_b.exe.xyz", 404},
		{"web.exe.xyz.evil.example", 404},
		{"example.com", 404},
		{"127.0.0.1", 404},
		{"[::1]:80", 404},
	} {
		resp, _ := w.get(tc.host, "/", auth)
		if resp.StatusCode != tc.want {
			t.Errorf("Host %q: status %d, want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
}

// An absolute-form target naming another host than Host is refused: the
// route and the namespace must come from one value.
func TestAbsoluteFormMismatch(t *testing.T) {
	w := newWorld(t, nil)
	tok := w.vmToken("web", `{}`)
	for _, tc := range []struct {
		target, host string
		want         int
	}{
		{"http://pub.exe.xyz/", "web.exe.xyz", http.StatusBadRequest},
		{"http://web.exe.xyz/", "pub.exe.xyz", http.StatusBadRequest},
		{"http://WEB.exe.xyz:80/", "web.exe.xyz", http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		r.Host = tc.host
		r.Header.Set("X-Exedev-Authorization", bearerHdr(tok))
		rec := httptest.NewRecorder()
		w.h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s with Host %s: status %d, want %d", tc.target, tc.host, rec.Code, tc.want)
		}
	}
}

func TestReservedPath(t *testing.T) {
	w := newWorld(t, nil)
	tok := w.vmToken("web", `{}`)
	auth := map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}
	for _, p := range []string{"/__exe.dev/", "/__exe.dev/other", "/__exe.dev/login/x", "/__exe.dev/LOGIN", "/__exe.dev", "/__EXE.DEV/x", "/a/../__exe.dev/x", "//__exe.dev/x", "/%5F_exe.dev/x", "/__exe%2Edev/x"} {
		for _, host := range []string{"web.exe.xyz", "pub.exe.xyz"} {
			resp, _ := w.get(host, p, auth)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s%s: status %d, want 404", host, p, resp.StatusCode)
			}
		}
	}
	// The login routes are exed's own (login_test.go): never forwarded either.
	for _, p := range []string{"/__exe.dev/login", "/__exe.dev/auth", "/__exe.dev/logout"} {
		resp, _ := w.do(w.request(http.MethodGet, "web.exe.xyz", p, nil, auth))
		if resp.StatusCode == http.StatusOK && p != "/__exe.dev/logout" || resp.StatusCode == http.StatusNotFound {
			t.Errorf("%s: status %d, want exed's login route", p, resp.StatusCode)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
	for _, p := range []string{"/__exe.devx", "/x/__exe.dev/"} {
		if resp, _ := w.get("web.exe.xyz", p, auth); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (not reserved)", p, resp.StatusCode)
		}
	}
}

func TestUpgrades(t *testing.T) {
	up := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(rw, "want websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		sum := sha1.Sum([]byte(r.Header.Get("Sec-Websocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		accept := base64.StdEncoding.EncodeToString(sum[:])
		upgrade, connection := "websocket", "Upgrade"
		switch r.URL.Query().Get("bad") { // an upstream whose 101 is no WebSocket handshake
		case "accept":
			accept = "c3VyZWx5IG5vdA=="
		case "noaccept":
			accept = ""
		case "upgrade":
			upgrade = "h2c"
		case "connection":
			connection = "keep-alive"
		}
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: %s\r\n", upgrade, connection)
		if accept != "" {
			fmt.Fprintf(brw, "Sec-WebSocket-Accept: %s\r\n", accept)
		}
		fmt.Fprintf(brw, "X-Seen-User: %s\r\n\r\n", r.Header.Get("X-Exedev-Userid"))
		brw.Flush()
		io.Copy(conn, brw) // echo every byte back
	})
	w := newWorld(t, up)
	tok := w.vmToken("web", `{}`)

	t.Run("websocket", func(t *testing.T) {
		conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: web.exe.xyz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Exedev-Authorization: Bearer %s\r\n\r\n", tok)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Seen-User"); got != w.alice.User.ID {
			t.Errorf("upstream saw user %q, want %q", got, w.alice.User.ID)
		}
		for _, msg := range []string{"ping", "pong and more"} {
			io.WriteString(conn, msg)
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
			}
		}
	})

	// TestUpgrades/fake 101: an upstream's 101 that is no real WebSocket
	// handshake for the client's key was tunnelled; now it is a 502, and
	// no byte passes.
	t.Run("fake 101", func(t *testing.T) {
		for _, bad := range []string{"accept", "noaccept", "upgrade", "connection"} {
			conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET /ws?bad=%s HTTP/1.1\r\nHost: web.exe.xyz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Exedev-Authorization: Bearer %s\r\n\r\n", bad, tok)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("bad=%s: status %d, want 502", bad, resp.StatusCode)
			}
			conn.Close()
		}
	})

	t.Run("websocket needs a token on a private VM", func(t *testing.T) {
		resp, _ := w.get("web.exe.xyz", "/ws", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})

	before := w.hits.Load()
	for _, up := range []string{"h2c", "websocket, h2c", "TLS/1.0", "foo"} {
		hdr := map[string]string{"Upgrade": up, "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA", "X-Exedev-Authorization": bearerHdr(tok)}
		resp, _ := w.get("web.exe.xyz", "/", hdr)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Upgrade %q: status %d, want 400", up, resp.StatusCode)
		}
	}
	if n := w.hits.Load() - before; n != 0 {
		t.Errorf("refused upgrades reached the upstream %d times", n)
	}
}

// Responses stream: the first part arrives while the upstream still holds
// the response open, for server-sent events and for any response of
// unknown length (git's, a chunked download) — with no flush interval of
// the proxy's own.
func TestResponsesStream(t *testing.T) {
	for _, tt := range []struct{ contentType, first string }{
		{"text/event-stream", "data: first\n"},
		{"application/octet-stream", "first\n"},
	} {
		t.Run(tt.contentType, func(t *testing.T) {
			release := make(chan struct{})
			up := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				rw.Header().Set("Content-Type", tt.contentType)
				io.WriteString(rw, tt.first+"\n")
				http.NewResponseController(rw).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				io.WriteString(rw, "last\n\n")
			})
			w := newWorld(t, up)
			defer close(release)
			req := w.request(http.MethodGet, "web.exe.xyz", "/stream", nil, map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{}`))})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := w.front.Client().Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ContentLength != -1 {
				t.Fatalf("ContentLength %d, want -1 (unknown)", resp.ContentLength)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || line != tt.first {
				t.Fatalf("first part = %q, %v (buffered by the proxy?)", line, err)
			}
		})
	}
}

// A request body streams: the upstream reads its start before the client
// has sent the rest.
func TestUploadStreams(t *testing.T) {
	const chunk = 1 << 20
	gotFirst := make(chan struct{})
	total := make(chan int64, 1)
	up := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		buf := make([]byte, chunk)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(rw, err.Error(), 500)
			return
		}
		close(gotFirst)
		n, _ := io.Copy(io.Discard, r.Body)
		total <- n + chunk
	})
	w := newWorld(t, up)
	pr, pw := io.Pipe()
	req := w.request(http.MethodPut, "web.exe.xyz", "/upload", pr, map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{}`))})
	done := make(chan error, 1)
	go func() {
		resp, err := w.front.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if _, err := pw.Write(make([]byte, chunk)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotFirst:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not see the first chunk before the body ended: buffered")
	}
	for range 16 {
		pw.Write(make([]byte, chunk))
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := <-total; n != 17*chunk {
		t.Errorf("upstream read %d bytes, want %d", n, 17*chunk)
	}
}

func TestTLSFront(t *testing.T) {
	w := newWorld(t, nil)
	srv := httptest.NewTLSServer(w.h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "web.exe.xyz"
	req.Header.Set("X-Exedev-Authorization", bearerHdr(w.vmToken("web", `{}`)))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"https"`) {
		t.Errorf("status %d, body %s: want 200 with X-Forwarded-Proto https", resp.StatusCode, body)
	}
}

func TestUpstreamDown(t *testing.T) {
	w := newWorld(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	now := time.Now().UTC()
	if err := w.Store.AddVM(context.Background(), store.VM{Name: "dead", OwnerID: w.alice.User.ID, Upstream: dead, CreatedAt: now}, store.Event{Time: now, ActorID: "admin", Action: "vm.add", Subject: "dead"}); err != nil {
		t.Fatal(err)
	}
	resp, _ := w.get("dead.exe.xyz", "/", map[string]string{"Authorization": bearerHdr(w.vmToken("dead", `{}`))})
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	// The shared ReverseProxy's ErrorHandler finds the request's log record
	// through the context: the line says why, at WARN.
	testkit.WaitFor(t, "the 502 log line", func() bool {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, "status=502") && strings.Contains(line, "level=WARN") && strings.Contains(line, `detail="upstream: `) {
				return true
			}
		}
		return false
	})
}

// A proxied request's access-log line: one line with every field.
func TestAccessLogLine(t *testing.T) {
	w := newWorld(t, nil)
	e := w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{}`))})
	wantIdentity(t, e, w.alice, "")
	var lines []string
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, "route=vm") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d access-log lines, want 1: %q", len(lines), lines)
	}
	for _, want := range []string{"level=INFO", "msg=proxy", "vm=web", "method=GET", "status=200", "duration=", "bytes=",
		"remote_addr=127.0.0.1:", "carrier=x-exedev-authorization", "user_id=" + w.alice.User.ID, "fingerprint=" + w.alice.Key.Fingerprint} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("access-log line lacks %q: %s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "bytes=0 ") {
		t.Errorf("access-log line counts no body bytes: %s", lines[0])
	}
}

// The VM cache serves a VM for at most vmCacheTTL after it changes.
func TestVMCacheTTL(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	w := newWorld(t, nil, func(c *Config) { c.Now = clock.Now })
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := w.Store.RemoveVM(context.Background(), "pub", store.Event{Time: time.Now(), ActorID: "admin", Action: "vm.remove", Subject: "pub"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("within the TTL: status %d, want 200 (cached)", resp.StatusCode)
	}
	clock.Advance(vmCacheTTL)
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after the TTL: status %d, want 404", resp.StatusCode)
	}
	// Unknown names are cached too, and then found once the TTL passes.
	w.AddVM("pub", w.alice, true)
	clock.Advance(vmCacheTTL)
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("re-added: status %d, want 200", resp.StatusCode)
	}
}

func TestLastUsedTouched(t *testing.T) {
	var lu *store.LastUsedWriter
	w := newWorld(t, nil, func(c *Config) {
		lu = store.NewLastUsedWriter(c.Store.(store.KeyStore), time.Minute, nil) // the world's registry
		c.LastUsed = lu
	})
	w.echo("web.exe.xyz", map[string]string{"Authorization": bearerHdr(w.vmToken("web", `{}`))})
	if n := lu.Backlog(); n != 1 {
		t.Fatalf("backlog %d, want 1", n)
	}
	if err := lu.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, err := w.Store.Key(context.Background(), w.alice.Key.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if k.LastUsedAt.IsZero() {
		t.Error("last_used_at not written")
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"web.exe.xyz":       "web.exe.xyz",
		"WEB.EXE.XYZ":       "web.exe.xyz",
		"web.exe.xyz.":      "web.exe.xyz",
		"web.exe.xyz..":     "web.exe.xyz.",
		"web.exe.xyz:8080":  "web.exe.xyz",
		"Web.Exe.Xyz.:8080": "web.exe.xyz",
		"[::1]:80":          "::1",
		"":                  "",
		"\u212Aa.exe.xyz":   "\u212Aa.exe.xyz", // Kelvin sign: not lowered to "k"
	} {
		if got := canonicalHost(in); got != want {
			t.Errorf("canonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
	// A VM named "ka" is not reachable through a Unicode look-alike.
	w := newWorld(t, nil)
	w.AddVM("ka", w.alice, true)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = "\u212Aa.exe.xyz"
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	if rec.Code != http.StatusNotFound {
		t.Errorf("Kelvin-sign host: status %d, want 404", rec.Code)
	}
}

// CONNECT would make the proxy a tunnel to the upstream: refused.
func TestConnectRefused(t *testing.T) {
	w := newWorld(t, nil)
	conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT pub.exe.xyz:443 HTTP/1.1\r\nHost: pub.exe.xyz:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("CONNECT: status %d Allow %q, want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times", n)
	}
}

// ctx reaches the VM byte for byte; a ctx that cannot travel as a header
// value (JSON allows a raw DEL in a string) is refused, not mangled.
func TestCtxHeaderBytes(t *testing.T) {
	w := newWorld(t, nil)
	for _, ctx := range []string{`{ "a" :	[1, 2.50, "é"] }`, `"x"`, `0`, `[]`} {
		tok := w.vmToken("web", `{"ctx":`+ctx+`}`)
		wantIdentity(t, w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}), w.alice, ctx)
	}
	// ctx null counts as absent: no header.
	wantIdentity(t, w.echo("web.exe.xyz", map[string]string{"X-Exedev-Authorization": bearerHdr(w.vmToken("web", `{"ctx":null}`))}), w.alice, "")

	// MintExe0 refuses such a ctx (tokens.CheckCtxHeader); one signed
	// elsewhere, as ssh-keygen would, is refused at use.
	p := []byte("{\"ctx\":\"a\x7fb\"}")
	blob, err := keys.Sign(w.alice.Signer, vmNamespace("web"), keys.HashSHA512, p)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokens.FormatExe0(p, blob)
	resp, _ := w.get("web.exe.xyz", "/", map[string]string{"X-Exedev-Authorization": bearerHdr(tok)})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("ctx with DEL: status %d, want 400", resp.StatusCode)
	}
}

// One ReverseProxy serves every request: concurrent requests for different
// users, VMs and ctx values must each reach the upstream with their own
// identity, and anonymous ones with none.
func TestConcurrentIdentities(t *testing.T) {
	w := newWorld(t, nil)
	const workers, each = 6, 20
	type client struct {
		host, token string
		who         *testreg.Account // nil: anonymous
		ctx         string
	}
	clients := make([]client, workers)
	for i := range clients {
		ctx := fmt.Sprintf(`{"n":%d}`, i)
		switch i % 3 {
		case 0:
			clients[i] = client{"web.exe.xyz", w.vmToken("web", `{"ctx":`+ctx+`}`), &w.alice, ctx}
		case 1:
			clients[i] = client{"bobvm.exe.xyz", w.mint(w.bob.Signer, vmNamespace("bobvm"), `{"ctx":`+ctx+`}`), &w.bob, ctx}
		default:
			clients[i] = client{host: "pub.exe.xyz"}
		}
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for range each {
				req := w.request(http.MethodGet, c.host, "/", nil, nil)
				if c.token != "" {
					req.Header.Set("X-Exedev-Authorization", bearerHdr(c.token))
				}
				resp, err := w.front.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var e echoReply
				err = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d, %v", c.host, resp.StatusCode, err)
					return
				}
				want := map[string][]string{}
				if c.who != nil {
					want["X-Exedev-Userid"] = []string{c.who.User.ID}
					want["X-Exedev-Email"] = []string{c.who.User.Email}
					want["X-Exedev-Token-Ctx"] = []string{c.ctx}
				}
				if got := e.exedevHeaders(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: upstream saw %v, want %v", c.host, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// rewrite sets the identity headers straight into the header map, so
// their names must be in canonical form (as Header.Set would store them),
// and they are the documented names (X-ExeDev-UserID, X-ExeDev-Email,
// X-ExeDev-Token-Ctx).
func TestIdentityHeaderNames(t *testing.T) {
	for spec, name := range map[string]string{
		"X-ExeDev-UserID":    headerUserID,
		"X-ExeDev-Email":     headerEmail,
		"X-ExeDev-Token-Ctx": headerCtx,
	} {
		if name != http.CanonicalHeaderKey(spec) {
			t.Errorf("%s is spelled %q, want %q", spec, name, http.CanonicalHeaderKey(spec))
		}
	}
}

// The copy-buffer pool keeps array pointers: Put must not allocate (a
// boxed slice header per request), and Get hands out full-size buffers.
func TestBufferPool(t *testing.T) {
	var p bufferPool
	buf := p.Get()
	if len(buf) != copyBufSize {
		t.Fatalf("Get: len %d, want %d", len(buf), copyBufSize)
	}
	if n := testing.AllocsPerRun(100, func() { p.Put(buf[:10]) }); n != 0 {
		t.Errorf("Put allocates %v times", n)
	}
	if got := p.Get(); len(got) != copyBufSize {
		t.Errorf("Get after Put: len %d, want %d", len(got), copyBufSize)
	}
}
