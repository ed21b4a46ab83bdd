package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
)

// The account web page, in a real browser: headless Chromium against the
// real `exed serve` over TLS, with stock ssh to log in and stock curl to
// use what the page made.

// The widths every page is looked at: a laptop, and a small phone.
const (
	desktopWidth = 1280
	phoneWidth   = 360
)

// shots saves the page at the desktop and the phone width (NAME-1280.png,
// NAME-360.png), failing the test if at either the page scrolls sideways
// or anything sticks out of the page's column (a table wider than its
// box), and leaves the window at the desktop width.
func (b *tab) shots(name string) {
	b.t.Helper()
	b.do("phone width", chromedp.EmulateViewport(phoneWidth, 740, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	b.wantNoOverflow(name, phoneWidth)
	b.shot(fmt.Sprintf("%s-%d", name, phoneWidth))
	b.do("desktop width", chromedp.EmulateViewport(desktopWidth, 800))
	b.wantNoOverflow(name, desktopWidth)
	b.shot(fmt.Sprintf("%s-%d", name, desktopWidth))
}

// overflowJS reports how far the page is wider than the window, and every
// element whose right edge passes the right edge of <main>'s content box.
const overflowJS = `(function(){
var out=[], d=document.documentElement, over=d.scrollWidth-d.clientWidth;
if(over>0) out.push("the page scrolls sideways by "+over+" px");
var m=document.querySelector("main"), r=m.getBoundingClientRect().right-parseFloat(getComputedStyle(m).paddingRight);
m.querySelectorAll("*").forEach(function(e){
for(var a=e;a&&a!==m;a=a.parentElement){if(getComputedStyle(a).clipPath!=="none")return} // visually hidden (a table's head on a phone)
var x=e.getBoundingClientRect().right; if(x>r+1) out.push("<"+e.tagName.toLowerCase()+(e.className?" class="+e.className:"")+"> sticks out by "+Math.round(x-r)+" px")});
return out.slice(0,5).join("; ");
})()`

func (b *tab) wantNoOverflow(name string, width int) {
	b.t.Helper()
	if got := b.eval(overflowJS); got != "" {
		b.t.Errorf("%s at %d px: %s", name, width, got)
	}
}

// responseHeader is the value of a response's header name (HTTP/2 sends
// them lowercase).
func responseHeader(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// value is the text of the element sel selects ("" when there is none).
func (b *tab) value(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return b.eval(`(function(){var e=document.querySelector(` + string(q) + `);return e?e.innerText.trim():""})()`)
}

// focused is the id of the element that has the keyboard focus.
func (b *tab) focused() string {
	return b.eval(`document.activeElement ? (document.activeElement.id || document.activeElement.tagName) : ""`)
}

// TestWebPage drives the account page as a person would, in Chromium:
// log in with a link from stock ssh; make a token on the page (by
// keyboard) and use it with curl (200, the identity headers); see its
// "last used" change after a reload; rename it, remove it (after the
// confirmation), and the next curl is refused (401); end another
// browser's session from the page (that browser is logged out), then this
// browser's own; share the VM and the shared user reaches it; a refusal
// shows the SSH command's own line. Every page is saved at 1280 and 360
// px wide (EXED_SCREENSHOTS=DIR keeps them) and must not scroll sideways
// on the phone.
func TestWebPage(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen", "curl")
	dir := t.TempDir()
	certFile, keyFile, spki := testCA(t, dir, browserDomain, "*."+browserVMDomain)
	ctx := newChromium(t, spki)
	shotDir := shots(t)

	// The last-used writers flush every 100 ms (a minute in production):
	// a token's first use shows on the page after a reload, polled.
	s := startServer(t, filepath.Join(dir, "data"), "--domain", browserDomain, "--vm-domain", browserVMDomain,
		"--tls-cert", certFile, "--tls-key", keyFile, "--last-used-interval", "100ms")
	upstream := httptest.NewServer(proxy.Echo())
	t.Cleanup(upstream.Close)
	aliceKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	bobKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, s.env, "user", "add", "--email", "alice@example.com", "--key-file", aliceKey+".pub")
	mustRun(t, s.env, "user", "add", "--email", "bob@example.com", "--key-file", bobKey+".pub")
	mustRun(t, s.env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)
	alice, bob := s.client(t, aliceKey), s.client(t, bobKey)
	_, port := splitHostPort(t, s.httpAddr)
	mainOrigin := "https://" + browserDomain + ":" + port
	vmURL := "https://web." + browserVMDomain + ":" + port + "/"
	b := newTab(t, ctx, shotDir)

	// curl reaches the server's names at its loopback address and trusts
	// the test CA.
	curl := func(url, token string) (status int, body string) {
		t.Helper()
		r := runCmd(t, nil, "", "curl", "-sS", "--max-time", "30", "--cacert", filepath.Join(dir, "ca.pem"),
			"--connect-to", "::"+s.httpAddr, "-H", "X-Exedev-Authorization: Bearer "+token, "-w", "\n%{http_code}", url)
		if r.code != 0 {
			t.Fatalf("curl %s: exit %d: %s", url, r.code, r.stderr)
		}
		i := strings.LastIndexByte(r.stdout, '\n')
		status, _ = strconv.Atoi(r.stdout[i+1:])
		return status, r.stdout[:i]
	}
	identity := func(body string) (email, userID string) {
		t.Helper()
		var echo struct {
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(body), &echo); err != nil {
			t.Fatalf("the VM's echo: %v: %s", err, body)
		}
		return strings.Join(echo.Headers["X-Exedev-Email"], ","), strings.Join(echo.Headers["X-Exedev-Userid"], ",")
	}
	who := struct {
		UserID string `json:"user_id"`
	}{}
	if err := json.Unmarshal([]byte(alice.ok(t, "", "whoami --json")), &who); err != nil {
		t.Fatal(err)
	}

	// 1. Log in with a link from `browser`: the account page.
	link := linkOf(t, alice.ok(t, "", "browser --json"))
	if resp := b.step("open the link", chromedp.Navigate(link.String())); resp.Status != 200 || b.location() != mainOrigin+"/" {
		t.Fatalf("after the link: %d at %s", resp.Status, b.location())
	}
	if txt := b.text(); !strings.Contains(txt, "Logged in as alice@example.com") || !strings.Contains(txt, who.UserID) {
		t.Fatalf("the account page:\n%s", txt)
	}
	b.shots("01-account")

	// 2. A new token for web, made with the keyboard only: the fields in
	// the order they are read, Enter submits.
	b.step("keys", chromedp.Navigate(mainOrigin+"/keys"))
	b.shots("02-keys")
	b.step("new token", chromedp.Click(chromedp.CSS(`a[href="/tokens/new"]`)))
	b.shots("03-token-new")
	b.do("label", chromedp.Focus(chromedp.CSS("#label")), chromedp.KeyEvent("deploy"))
	var order []string
	for range 4 {
		b.do("tab", chromedp.KeyEvent("\t"))
		order = append(order, b.focused())
	}
	if got := strings.Join(order, " "); got != "vm exp cmds BUTTON" {
		t.Errorf("Tab from the label goes through %q, want vm exp cmds BUTTON", got)
	}
	// The keyboard's focus shows: the submit button, reached by Tab, has
	// its outline.
	if o := b.eval(`(function(){var s=getComputedStyle(document.activeElement);return s.outlineStyle+" "+s.outlineWidth})()`); o != "solid 3px" {
		t.Errorf("the focused button's outline: %q, want solid 3px", o)
	}
	b.shot("03-token-new-focus-1280")
	b.do("choose web", chromedp.Focus(chromedp.CSS("#vm")), chromedp.KeyEvent(kb.ArrowDown), chromedp.Focus(chromedp.CSS("#label")))
	if v := b.eval(`document.querySelector("#vm").value`); v != "web" {
		t.Fatalf("typing on the VM list chose %q, want web", v)
	}
	resp := b.step("make the token", chromedp.KeyEvent("\r"))
	if resp.Status != 200 || b.location() != mainOrigin+"/tokens/new" || responseHeader(resp, "Cache-Control") != "no-store" {
		t.Fatalf("the token page: %d at %s, Cache-Control %q", resp.Status, b.location(), responseHeader(resp, "Cache-Control"))
	}
	token, fp := b.value("#token"), b.value("#fingerprint")
	if !strings.HasPrefix(token, "exe1.") || !strings.HasPrefix(fp, "SHA256:") {
		t.Fatalf("the token page shows %q, key %q:\n%s", token, fp, b.text())
	}
	if curlLine := b.value("#curl"); curlLine != `curl -H "X-Exedev-Authorization: Bearer `+token+`" `+vmURL {
		t.Errorf("the curl line: %q", curlLine)
	}
	if n := b.eval(`String(document.querySelectorAll("button.copy").length)`); n != "2" {
		t.Errorf("%s copy buttons, want 2 (the script did not run under the page's CSP?)", n)
	}
	b.shots("04-token-shown")

	// 3. The keys page lists it, never used; curl with it: the VM sees
	// alice.
	row := `tr[data-key="` + fp + `"]`
	lastUsed := func() string { return b.value(row + ` [data-field="last-used"]`) }
	b.step("keys", chromedp.Navigate(mainOrigin+"/keys"))
	before := lastUsed()
	status, body := curl(vmURL, token)
	if email, id := identity(body); status != 200 || email != "alice@example.com" || id != who.UserID {
		t.Fatalf("curl with the new token: %d, %s %s", status, email, id)
	}

	// 4. After a reload, its "last used" is no longer "never".
	testkit.WaitFor(t, `the token's "last used" to change after a reload`, func() bool {
		b.step("reload", chromedp.Reload())
		return lastUsed() != before
	})
	if before != "never" || !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d$`).MatchString(lastUsed()) {
		t.Errorf("last used went from %q to %q", before, lastUsed())
	}
	b.shots("05-keys-used")

	// 5. Rename it.
	b.step("rename page", chromedp.Click(chromedp.CSS(row+` a[href^="/keys/rename"]`)))
	b.shots("06-key-rename")
	b.do("new name", chromedp.Clear(chromedp.CSS("#name")), chromedp.Focus(chromedp.CSS("#name")), chromedp.KeyEvent("deploy-web"))
	if resp := b.step("rename", chromedp.KeyEvent("\r")); resp.Status != 200 || b.location() != mainOrigin+"/keys" ||
		!strings.Contains(b.value(row), "deploy-web") {
		t.Fatalf("after rename: %d at %s: %q", resp.Status, b.location(), b.value(row))
	}

	// 6. Remove it, after the confirmation; the next curl is refused.
	b.step("remove page", chromedp.Click(chromedp.CSS(row+` a[href^="/keys/remove"]`)))
	if !strings.Contains(b.text(), "Remove deploy-web?") {
		t.Fatalf("the confirmation page:\n%s", b.text())
	}
	b.shots("07-key-remove")
	if status, _ := curl(vmURL, token); status != 200 {
		t.Fatalf("the confirmation page removed the token already: %d", status)
	}
	if resp := b.step("remove", chromedp.Click(chromedp.CSS("button.danger"))); resp.Status != 200 || b.location() != mainOrigin+"/keys" || b.value(row) != "" {
		t.Fatalf("after remove: %d at %s", resp.Status, b.location())
	}
	if status, _ := curl(vmURL, token); status != 401 {
		t.Errorf("curl with the removed token: %d, want 401", status)
	}

	// 7. Another browser, logged in as alice too; its session ended from
	// this page logs it out.
	other := newTab(t, newBrowserContext(t, ctx), shotDir)
	other.step("the other's link", chromedp.Navigate(linkOf(t, alice.ok(t, "", "browser --json")).String()))
	other.step("its sessions", chromedp.Navigate(mainOrigin+"/sessions"))
	otherID := other.eval(`document.querySelector("tr:has(.badge) [data-label=Session] code").innerText`)
	if !strings.HasPrefix(otherID, "ses") {
		t.Fatalf("the other browser's session id: %q", otherID)
	}
	b.step("sessions", chromedp.Navigate(mainOrigin+"/sessions"))
	b.shots("08-sessions")
	if resp := b.step("end the other's", chromedp.Click(chromedp.CSS(`tr[data-session="`+otherID+`"] button`))); resp.Status != 200 ||
		b.location() != mainOrigin+"/sessions" || b.value(`tr[data-session="`+otherID+`"]`) != "" {
		t.Fatalf("after ending the other session: %d at %s", resp.Status, b.location())
	}
	if resp := other.step("the other reloads", chromedp.Reload()); resp.Status != 401 || !strings.Contains(other.text(), "Not logged in") {
		t.Errorf("the other browser after its session ended: %d\n%s", resp.Status, other.text())
	}

	// 8. Share web with bob, who then reaches it with a token of his own.
	bob.fails(t, "no VM named web", "ssh-key generate-api-key --vm web")
	b.step("VMs", chromedp.Navigate(mainOrigin+"/vms"))
	b.shots("09-vms")
	b.step("sharing", chromedp.Click(chromedp.CSS(`a[href="/vms/web"]`)))
	b.do("email", chromedp.Focus(chromedp.CSS("#email")), chromedp.KeyEvent("bob@example.com"))
	if resp := b.step("share", chromedp.KeyEvent("\r")); resp.Status != 200 || b.location() != mainOrigin+"/vms/web" ||
		!strings.Contains(b.value(`tr[data-email="bob@example.com"]`), "active") {
		t.Fatalf("after share: %d at %s:\n%s", resp.Status, b.location(), b.text())
	}
	var bobTok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(bob.ok(t, "", "ssh-key generate-api-key --vm web --json")), &bobTok); err != nil {
		t.Fatal(err)
	}
	if status, body := curl(vmURL, bobTok.Token); status != 200 {
		t.Errorf("bob's token on the shared VM: %d", status)
	} else if email, _ := identity(body); email != "bob@example.com" {
		t.Errorf("the shared VM saw %q, want bob", email)
	}
	b.step("a link", chromedp.Click(chromedp.CSS(`button[value="add-link"]`)))
	if !strings.Contains(b.value("#link"), "?share=") {
		t.Fatalf("the link page:\n%s", b.text())
	}
	b.shots("10-link-shown")
	b.step("back", chromedp.Navigate(mainOrigin+"/vms/web"))
	b.shots("11-vm")

	// 9. A refusal: the line the SSH command prints.
	line := alice.fails(t, "", "share add web alice@example.com")
	b.do("own email", chromedp.Focus(chromedp.CSS("#email")), chromedp.KeyEvent("alice@example.com"))
	if resp := b.step("share with myself", chromedp.KeyEvent("\r")); resp.Status != 422 || b.value(".alert") != strings.TrimSpace(line) {
		t.Errorf("refusal: %d, the page says %q, ssh says %q", resp.Status, b.value(".alert"), line)
	}
	b.shots("12-vm-refused")

	// 10. Another site's page posting to this one's forms, in the same
	// browser, logged in: refused (403), and the registry is unchanged.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/vms/web"><input type="hidden" name="action" value="set-public">`+
			`<button type="submit">win a prize</button></form>`, mainOrigin)
	}))
	t.Cleanup(evil.Close)
	_, evilPort := splitHostPort(t, strings.TrimPrefix(evil.URL, "http://"))
	before = dumpSQLite(t, s.data)
	b.step("another site", chromedp.Navigate("http://evil.test:"+evilPort+"/"))
	if resp := b.step("its form", chromedp.Click(chromedp.CSS("button"))); resp.Status != 403 {
		t.Errorf("a cross-site form post: %d, want 403", resp.Status)
	}
	if after := dumpSQLite(t, s.data); after != before {
		t.Errorf("a cross-site form post changed the registry:\n--- before\n%s\n--- after\n%s", before, after)
	}
	b.step("back", chromedp.Navigate(mainOrigin+"/vms/web"))
	if !strings.Contains(b.text(), "Private") {
		t.Errorf("web is no longer private after the cross-site post")
	}

	// 11. The log: what the page did, through the web.
	b.step("log", chromedp.Navigate(mainOrigin+"/log"))
	for _, action := range []string{"token.generate", "key.rename", "key.remove", "session.revoke", "share.add", "share.link.add"} {
		if !strings.Contains(b.eval(`Array.from(document.querySelectorAll("tbody tr")).filter(r => r.innerText.includes("web")).map(r => r.innerText).join("\n")`), action) {
			t.Errorf("the log shows no %s through the web:\n%s", action, b.text())
		}
	}
	b.shots("13-log")

	// 12. This browser's own session, ended from the page: logged out.
	b.step("sessions", chromedp.Navigate(mainOrigin+"/sessions"))
	if resp := b.step("end mine", chromedp.Click(chromedp.CSS(`tr:has(.badge) button`))); resp.Status != 200 || b.location() != mainOrigin+"/logged-out" {
		t.Fatalf("after ending this session: %d at %s", resp.Status, b.location())
	}
	b.shots("14-logged-out")
	if resp := b.step("keys, logged out", chromedp.Navigate(mainOrigin+"/keys")); resp.Status != 401 || !strings.Contains(b.text(), "Not logged in") {
		t.Errorf("the keys page after logging out: %d", resp.Status)
	}
	b.shots("15-not-logged-in")
	t.Logf("screenshots in %s", shotDir)
}
