package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
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

	b := newTab(t, ctx, shotDir)
	// A phone's viewport: headless Chromium keeps its window at least
	// 500 px wide, whatever WindowSize asks.
	b.do("phone width", chromedp.EmulateViewport(412, 915, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	step, shot, eval, location, text := b.step, b.shot, b.eval, b.location, b.text
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
