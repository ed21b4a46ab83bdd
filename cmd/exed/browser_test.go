package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
)

// The browser's side of browser sessions: headless Chromium against the
// real `exed serve` over TLS.

// Names the browser test serves under: .test is reserved (RFC 2606), and
// Chromium's host resolver rules send every name to 127.0.0.1 anyway.
const (
	browserDomain   = "exe.test"
	browserVMDomain = "vm.test"
)

// testCA makes a CA and, signed by it, a certificate for names; it writes
// the leaf and its key to dir and returns their paths and the base64
// SHA-256 of the leaf's public key (SPKI), which Chromium is told to trust.
func testCA(t *testing.T, dir string, names ...string) (certFile, keyFile, spki string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "exed test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificate(leafDER)
	sum := sha256.Sum256(parsed.RawSubjectPublicKeyInfo)
	return certFile, keyFile, base64.StdEncoding.EncodeToString(sum[:])
}

// findChromium returns Debian's chromium, or ends the test (Unavailable:
// a failure under CI=true).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testkit.Unavailable(t, "chromium not installed")
	return ""
}

// newChromium starts headless Chromium with a fresh profile, every name
// resolved to 127.0.0.1, and the test certificate trusted by its SPKI
// hash, at a phone's window size.
func newChromium(t *testing.T, spki string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in a container
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(412, 915),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
		chromedp.Flag("host-resolver-rules", "MAP * 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser now, outside any timeout
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shots is where screenshots go: $EXED_SCREENSHOTS to keep them, else the
// test's temp dir.
func shots(t *testing.T) string {
	if d := os.Getenv("EXED_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestBrowserLogin drives a real browser through the whole login: a
// private VM page → the login page (401) → the `browser` link, minted with
// stock ssh → the VM's page, with the user's identity headers and the
// path asked for → the cookie's attributes → logout → the login page again;
// and a user the VM is shared with confirms before the VM sees their email.
func TestBrowserLogin(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen")
	dir := t.TempDir()
	certFile, keyFile, spki := testCA(t, dir, browserDomain, "*."+browserVMDomain)
	ctx := newChromium(t, spki)
	shotDir := shots(t)

	s := startServer(t, filepath.Join(dir, "data"), "--domain", browserDomain, "--vm-domain", browserVMDomain,
		"--tls-cert", certFile, "--tls-key", keyFile)
	upstream := httptest.NewServer(proxy.Echo())
	t.Cleanup(upstream.Close)
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, s.env, "user", "add", "--email", "alice@example.com", "--key-file", key+".pub")
	mustRun(t, s.env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)
	// Shared with bob before the server has looked the VM up: the admin
	// commands are another process, whose writes the server sees within
	// its caches' TTL.
	bobKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, s.env, "user", "add", "--email", "bob@example.com", "--key-file", bobKey+".pub")
	mustRun(t, s.env, "vm", "share", "add", "web", "bob@example.com")
	alice := s.client(t, key)
	_, port := splitHostPort(t, s.httpAddr)
	_, sshPort := splitHostPort(t, s.sshAddr)
	mainOrigin := "https://" + browserDomain + ":" + port
	vmOrigin := "https://web." + browserVMDomain + ":" + port
	page := vmOrigin + "/private/page?x=1"

	step := func(name string, a chromedp.Action[chromedp.Void]) *network.Response {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := chromedp.RunResponse(c, a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return resp
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	text := func() string { return eval(`document.body.innerText`) }
	wantLoginPage := func(when string) {
		t.Helper()
		resp := step(when, chromedp.Navigate(page))
		if resp.Status != 401 || !strings.HasPrefix(location(), mainOrigin+"/auth?") {
			t.Fatalf("%s: %d at %s, want the 401 login page on %s", when, resp.Status, location(), mainOrigin)
		}
		want := `ssh -p ` + sshPort + ` 127.0.0.1 "browser --vm web --path '/private/page?x=1'"`
		if got := text(); !strings.Contains(got, want) {
			t.Fatalf("%s: the login page does not show %q:\n%s", when, want, got)
		}
	}

	// 1. A private page: the browser is sent to log in.
	wantLoginPage("private page, not logged in")
	shot("1-login")

	// 2. The link from `browser`, minted over SSH with the stock client.
	link := linkOf(t, alice.ok(t, "", "browser --vm web --path '/private/page?x=1' --json"))
	if got := link.Scheme + "://" + link.Host; got != mainOrigin {
		t.Fatalf("magic_link on %s, want %s", got, mainOrigin)
	}
	resp := step("open the link", chromedp.Navigate(link.String()))
	if resp.Status != 200 || location() != page {
		t.Fatalf("after the link: %d at %s, want 200 at %s", resp.Status, location(), page)
	}
	var echo struct {
		Path    string              `json:"path"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(text()), &echo); err != nil {
		t.Fatalf("the VM page: %v: %s", err, text())
	}
	h := echo.Headers
	if echo.Path != "/private/page" || h["X-Exedev-Email"][0] != "alice@example.com" || !strings.HasPrefix(h["X-Exedev-Userid"][0], "usr") {
		t.Fatalf("the VM saw %s with %v", echo.Path, h)
	}
	if _, ok := h["X-Exedev-Token-Ctx"]; ok || strings.Contains(strings.Join(h["Cookie"], ";"), "exe") {
		t.Fatalf("the VM saw a token ctx or exed's cookies: %v", h)
	}
	shot("2-vm-page")

	// 3. The cookies: host-only, HttpOnly, Secure, Lax, 30 days; invisible
	// to the page's scripts.
	cookies, err := chromedp.Run(ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{mainOrigin + "/", vmOrigin + "/"}})
		return r.Cookies, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"exe-auth": browserDomain, "login-with-exe-" + port: "web." + browserVMDomain}
	for _, c := range cookies {
		host, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected cookie %s for %s", c.Name, c.Domain)
			continue
		}
		delete(want, c.Name)
		days := time.Until(time.Unix(int64(c.Expires), 0)).Hours() / 24
		if c.Domain != host || c.Path != "/" || !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Session || days < 29.9 || days > 30.1 {
			t.Errorf("cookie %s: domain %q (want host-only %q), path %q, HttpOnly %v, Secure %v, SameSite %q, %.2f days",
				c.Name, c.Domain, host, c.Path, c.HTTPOnly, c.Secure, c.SameSite, days)
		}
	}
	if len(want) > 0 {
		t.Errorf("cookies missing: %v", want)
	}
	if dc := eval(`document.cookie`); dc != "" {
		t.Errorf("document.cookie on the VM page = %q, want nothing", dc)
	}

	// 4. Log out of the VM host: a page with a button; the POST ends this
	// session only.
	step("VM logout page", chromedp.Navigate(vmOrigin+"/__exe.dev/logout"))
	shot("3-vm-logout")
	resp = step("VM logout", chromedp.Click(chromedp.CSS("button")))
	if resp.Status != 200 || location() != mainOrigin+"/logged-out" {
		t.Fatalf("after VM logout: %d at %s", resp.Status, location())
	}
	shot("4-logged-out")
	// The main host's session is still there: the VM page logs in again
	// at once, without a link.
	if resp := step("VM page, main session left", chromedp.Navigate(page)); resp.Status != 200 || location() != page {
		t.Fatalf("VM page after the VM logout: %d at %s", resp.Status, location())
	}

	// 5. Log out everywhere, from the main host's page.
	step("main page", chromedp.Navigate(mainOrigin+"/"))
	if !strings.Contains(text(), "Logged in as alice@example.com") {
		t.Fatalf("main page: %s", text())
	}
	shot("5-main")
	if resp := step("log out everywhere", chromedp.Click(chromedp.CSS("button"))); resp.Status != 200 || location() != mainOrigin+"/logged-out" {
		t.Fatalf("after logout everywhere: %d at %s", resp.Status, location())
	}
	wantLoginPage("private page after logout")
	shot("6-login-again")
	if out := alice.ok(t, "", "sessions --json"); out != "{\"sessions\":[]}\n" {
		t.Errorf("sessions after logout everywhere: %s", out)
	}
	// The link, used once, is no good a second time.
	if resp := step("the link again", chromedp.Navigate(link.String())); resp.Status != 401 {
		t.Errorf("the link a second time: %d, want 401", resp.Status)
	}
	shot("7-link-used")

	// 6. A user the VM is shared with confirms before the VM sees their
	// email.
	bob := s.client(t, bobKey)
	bobLink := linkOf(t, bob.ok(t, "", "browser --vm web --json"))
	if resp := step("bob's link", chromedp.Navigate(bobLink.String())); resp.Status != 200 || !strings.HasPrefix(location(), mainOrigin+"/auth?") ||
		!strings.Contains(text(), "It will see your email address, bob@example.com") {
		t.Fatalf("bob's link: %d at %s:\n%s", resp.Status, location(), text())
	}
	shot("8-confirm")
	if resp := step("continue", chromedp.Click(chromedp.CSS("button"))); resp.Status != 200 || location() != vmOrigin+"/" {
		t.Fatalf("after continue: %d at %s", resp.Status, location())
	}
	if !strings.Contains(text(), `"bob@example.com"`) {
		t.Fatalf("the VM page for bob: %s", text())
	}
	t.Logf("screenshots in %s", shotDir)
}
