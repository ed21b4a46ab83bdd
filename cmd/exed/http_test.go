package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
)

type echoed struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

// curl calls url through the server's HTTP listener with the stock curl,
// whatever the URL's host (--connect-to), and returns the status code and body.
func (s *server) curl(t *testing.T, url string, args ...string) (string, string) {
	t.Helper()
	host, port := splitHostPort(t, s.httpAddr)
	all := append([]string{"-sS", "--max-time", "20", "--connect-to", "::" + host + ":" + port,
		"-o", "-", "-w", "\n%{http_code}", url}, args...)
	r := runCmd(t, nil, "", "curl", all...)
	if r.code != 0 {
		t.Fatalf("curl %s: exit %d: %s", url, r.code, r.stderr)
	}
	i := strings.LastIndex(r.stdout, "\n")
	return r.stdout[i+1:], r.stdout[:i]
}

// TestProxyWithCurl drives the real binary's VM proxy with curl: each
// carrier reaches the upstream with the identity headers, removing the
// key makes the next request 401, and a locally minted token works.
func TestProxyWithCurl(t *testing.T) {
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	f := newFixture(t)
	env := f.srv.env
	mustRun(t, env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL)
	_, port := splitHostPort(t, f.srv.httpAddr)
	url := "http://app.exe.xyz:" + port + "/hello"

	gen := decode[generated](t, f.alice.ok(t, "", `ssh-key generate-api-key --vm=app --label=ci --ctx='{"role":"deploy"}' --json`))
	tok := gen.Token
	for name, args := range map[string][]string{
		"x-exedev-authorization": {"-H", "X-Exedev-Authorization: Bearer " + tok},
		"bearer":                 {"-H", "Authorization: Bearer " + tok},
		"basic":                  {"-u", "git:" + tok},
	} {
		t.Run(name, func(t *testing.T) {
			code, body := f.srv.curl(t, url, append(args, "-H", "X-ExeDev-Email: forged@example.com")...)
			if code != "200" {
				t.Fatalf("status %s: %s", code, body)
			}
			got := decode[echoed](t, body)
			h := got.Headers
			if got.Path != "/hello" || h["X-Exedev-Email"][0] != "alice@example.com" || len(h["X-Exedev-Email"]) != 1 ||
				!strings.HasPrefix(h["X-Exedev-Userid"][0], "usr") || h["X-Exedev-Token-Ctx"][0] != `{"role":"deploy"}` {
				t.Errorf("upstream got %+v", got)
			}
			if _, ok := h["Authorization"]; ok || strings.Contains(body, tok) {
				t.Errorf("the credential reached the upstream: %v", h)
			}
		})
	}
	if code, _ := f.srv.curl(t, url); code != "401" {
		t.Errorf("no token: %s", code)
	}
	if code, _ := f.srv.curl(t, url, "-H", "X-Exedev-Authorization: Bearer "+tok+"x"); code != "401" {
		t.Errorf("tampered token: %s", code)
	}
	// A token for another VM is refused here.
	other := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=web --label=webtok --json"))
	if code, _ := f.srv.curl(t, url, "-H", "X-Exedev-Authorization: Bearer "+other.Token); code != "401" {
		t.Errorf("other VM's token: %s", code)
	}

	// Minted offline with alice's own login key: accepted too.
	minted := strings.TrimSpace(mustRun(t, nil, "token", "mint", "--key", f.aliceKey, "--vm", "app"))
	if code, body := f.srv.curl(t, url, "-H", "Authorization: Bearer "+minted); code != "200" {
		t.Errorf("locally minted token: %s %s", code, body)
	}

	// /exec with an API token.
	api := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --label=api --json"))
	code, body := f.srv.curl(t, "http://exe.dev:"+port+"/exec", "-X", "POST", "-H", "Authorization: Bearer "+api.Token, "--data-binary", "whoami")
	if code != "200" || !strings.Contains(body, `"alice@example.com"`) {
		t.Errorf("/exec whoami: %s %s", code, body)
	}

	// Revocation: from the moment remove returns, the token is refused.
	f.alice.ok(t, "", "ssh-key", "remove", "ci")
	if code, _ := f.srv.curl(t, url, "-H", "X-Exedev-Authorization: Bearer "+tok); code != "401" {
		t.Errorf("after remove: %s", code)
	}
	if strings.Contains(f.srv.logs(), tok) || strings.Contains(f.srv.logs(), minted) {
		t.Errorf("a token appears in the server log")
	}
}

// TestProxyTLS: with --tls-cert/--tls-key the front speaks HTTPS.
func TestProxyTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "exe.dev")
	data := filepath.Join(dir, "data")
	k := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, []string{"EXED_DATA=" + data}, "user", "add", "--email", "alice@example.com", "--key-file", k+".pub")
	srv := startServer(t, data, "--tls-cert", cert, "--tls-key", key, "--http-redirect-addr", "127.0.0.1:0")
	_, port := splitHostPort(t, srv.httpAddr)
	c := srv.client(t, k)
	api := decode[generated](t, c.ok(t, "", "ssh-key generate-api-key --label=api --json"))
	code, body := srv.curl(t, "https://exe.dev:"+port+"/exec", "--cacert", cert, "-X", "POST",
		"-H", "Authorization: Bearer "+api.Token, "--data-binary", "whoami")
	if code != "200" || !strings.Contains(body, "alice@example.com") {
		t.Errorf("https /exec: %s %s", code, body)
	}
	// HSTS on the API host once TLS is on (HTTP/2 names are lower case).
	code, head := srv.curl(t, "https://exe.dev:"+port+"/exec", "--cacert", cert, "-I")
	if code != "405" || !strings.Contains(strings.ToLower(head), "strict-transport-security: max-age=31536000\r\n") {
		t.Errorf("https HEAD /exec: %s, no HSTS:\n%s", code, head)
	}
	// --http-redirect-addr sends plain HTTP to HTTPS on the TLS port.
	rhost, rport := splitHostPort(t, srv.redirectAddr(t))
	r := runCmd(t, nil, "", "curl", "-sS", "--max-time", "20", "--connect-to", "::"+rhost+":"+rport,
		"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://web.exe.xyz:"+rport+"/x?y=1")
	if want := "308 https://web.exe.xyz:" + port + "/x?y=1"; r.code != 0 || r.stdout != want {
		t.Errorf("plain HTTP: exit %d, %q; want %q (%s)", r.code, r.stdout, want, r.stderr)
	}
}

// selfSigned writes a self-signed certificate for host and returns the
// cert and key file paths.
func selfSigned(t *testing.T, dir, host string) (string, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host, "*.exe.xyz"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certPath, keyPath
}
