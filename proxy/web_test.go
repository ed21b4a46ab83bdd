package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	xhtml "golang.org/x/net/html"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The account web page at the HTTP level: each page's HTML (golden, and
// checked for what keyboards and phones need), each form's effect through
// the command table, its refusals (the SSH command's own line, nothing
// changed), and cross-site posts (403, nothing changed).

// webBrowser is one logged-in browser on the main host: its cookie.
type webBrowser struct {
	w      *world
	cookie string // exe-auth=…
}

// browserFor logs a browser in on the main host as a, through `browser`
// run with args (its key's restrictions come along), and the link.
func (w *world) browserFor(a testreg.Account, args string) *webBrowser {
	w.t.Helper()
	resp, _ := w.get(w.mainHost(), "/auth/verify?token="+w.linkToken(a, args), htmlNav)
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("/auth/verify: %d", resp.StatusCode)
	}
	c, _ := setCookie(w.t, resp, tokens.MainCookie)
	return &webBrowser{w: w, cookie: c.Name + "=" + c.Value}
}

// get opens path on the main host.
func (b *webBrowser) get(path string) (*http.Response, string) {
	b.w.t.Helper()
	resp, body := b.w.get(b.w.mainHost(), path, merge(htmlNav, cookieHdr(b.cookie)))
	return resp, string(body)
}

// post submits a form to path from the page itself (Sec-Fetch-Site:
// same-origin, as Chromium sends it), with more headers in hdr.
func (b *webBrowser) post(path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.w.t.Helper()
	h := merge(map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + b.w.mainHost()}, cookieHdr(b.cookie), hdr)
	req := b.w.request(http.MethodPost, b.w.mainHost(), path, strings.NewReader(form.Encode()), h)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := b.w.do(req)
	return resp, string(body)
}

// wantPage fails the test unless the answer is status with an HTML page.
func wantPage(t *testing.T, what string, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: %d, want %d\n%s", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

// wantRedirect fails the test unless the answer is a 303 to loc.
func wantRedirect(t *testing.T, what string, resp *http.Response, body, loc string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != loc {
		t.Fatalf("%s: %d to %q, want 303 to %q\n%s", what, resp.StatusCode, resp.Header.Get("Location"), loc, body)
	}
}

// keyNamed is a's key called name, from the store.
func (w *world) keyNamed(a testreg.Account, name string) (store.Key, bool) {
	w.t.Helper()
	ks, err := w.Store.Keys(context.Background(), a.User.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	i := slices.IndexFunc(ks, func(k store.Key) bool { return k.Name == name })
	if i < 0 {
		return store.Key{}, false
	}
	return ks[i], true
}

// tokenOn reads the token a new-token page shows.
var tokenOn = regexp.MustCompile(`<pre id="token"[^>]*>(exe[01]\.[^<]+)</pre>`)

// newToken makes a token on the page and returns it and the page.
func (b *webBrowser) newToken(t *testing.T, form url.Values) (string, string) {
	t.Helper()
	resp, body := b.post(pathTokenNew, form, nil)
	wantPage(t, "POST /tokens/new", resp, body, http.StatusOK)
	m := tokenOn.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token on the page:\n%s", body)
	}
	return html.UnescapeString(m[1]), body
}

// alertOf is the text of a page's refusal line ("" for none).
func alertOf(page string) string {
	m := regexp.MustCompile(`<p class="alert" role="alert">([^<]*)</p>`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// errorMessageOf is the message of the error page.
func errorMessageOf(page string) string {
	m := regexp.MustCompile(`</h1>\n<p>([^<]*)</p>`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// latestEvent is the newest audit row.
func (w *world) latestEvent() store.Event {
	w.t.Helper()
	evs, err := w.Store.QueryEvents(context.Background(), store.EventQuery{NewestFirst: true, Limit: 1})
	if err != nil || len(evs) != 1 {
		w.t.Fatalf("latest event: %v %v", evs, err)
	}
	return evs[0]
}

// sessionID is the id of the session whose cookie is b's.
func (b *webBrowser) sessionID() string {
	b.w.t.Helper()
	_, v, _ := strings.Cut(b.cookie, "=")
	h := tokens.CookieHash(v)
	s, _, err := b.w.Store.SessionAndUser(context.Background(), h[:])
	if err != nil {
		b.w.t.Fatalf("b's session: %v", err)
	}
	return s.ID
}

// TestWebActionsGoThroughTheCommandTable: every form does what the SSH
// command does, as the session's user with the key that logged the
// browser in, recorded in the audit log as done over the web with the
// session as the credential; a successful form answers 303 to its page.
func TestWebActionsGoThroughTheCommandTable(t *testing.T) {
	w := newWorld(t, nil)
	t.Cleanup(w.Store.Subscribe(func(c store.Change) {
		if c.Kind == store.ShareChanged || c.Kind == store.VMChanged {
			w.h.ForgetVM(c.ID)
		}
	}))
	b := w.browserFor(w.alice, "")
	sid := b.sessionID()

	// A token for the VM web: shown once, in the POST's own answer.
	tok, page := b.newToken(t, url.Values{"label": {"deploy"}, "vm": {"web"}, "exp": {"7d"}})
	if !strings.Contains(page, `curl -H &#34;X-Exedev-Authorization: Bearer `+tok+`&#34; http://web.exe.xyz:`+w.port()+`/`) {
		t.Errorf("the token page has no curl line for it:\n%s", page)
	}
	wantIdentity(t, w.echo(w.vmHost("web"), map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}), w.alice, "")
	k, ok := w.keyNamed(w.alice, "deploy")
	if !ok || !k.Generated || k.VM != "web" || k.ExpiresAt.IsZero() {
		t.Fatalf("the token's key: %+v", k)
	}
	if ev := w.latestEvent(); ev.Action != "token.generate" || ev.Via != store.ViaWeb || ev.Credential != sid || ev.ActorID != w.alice.User.ID {
		t.Errorf("token.generate event %+v, want via web by session %s", ev, sid)
	}
	if strings.Contains(w.logs.String(), tok) {
		t.Errorf("the token is in the server log")
	}

	// Rename: 303 to the keys page, which shows the new name.
	resp, body := b.post(pathKeyRename, url.Values{"key": {k.Fingerprint}, "name": {"deploy-2"}}, nil)
	wantRedirect(t, "rename", resp, body, pathKeys)
	if _, ok := w.keyNamed(w.alice, "deploy-2"); !ok {
		t.Fatal("not renamed")
	}
	if _, body := b.get(pathKeys); !strings.Contains(body, "<strong>deploy-2</strong>") {
		t.Errorf("the keys page after rename:\n%s", body)
	}

	// Remove: a confirmation page first (a GET changes nothing), then
	// the POST; the token is refused from the next request.
	resp, body = b.get(pathKeyRemove + "?key=" + url.QueryEscape(k.Fingerprint))
	wantPage(t, "remove page", resp, body, http.StatusOK)
	if _, ok := w.keyNamed(w.alice, "deploy-2"); !ok || !strings.Contains(body, "Remove deploy-2?") {
		t.Fatalf("the confirmation page removed the key, or does not ask:\n%s", body)
	}
	resp, body = b.post(pathKeyRemove, url.Values{"key": {k.Fingerprint}}, nil)
	wantRedirect(t, "remove", resp, body, pathKeys)
	if resp, _ := w.get(w.vmHost("web"), "/", map[string]string{"X-Exedev-Authorization": bearerHdr(tok)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the removed token: %d, want 401", resp.StatusCode)
	}

	// An API token with cmds: it runs what it grants over /exec.
	api, _ := b.newToken(t, url.Values{"label": {"ci"}, "exp": {"never"}, "cmds": {"whoami, ls"}})
	req := w.request(http.MethodPost, w.mainHost(), "/exec", strings.NewReader("whoami"), map[string]string{"Authorization": bearerHdr(api)})
	if resp, body := w.do(req); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"email":"alice@example.com"`) {
		t.Errorf("/exec whoami with the API token: %d %s", resp.StatusCode, body)
	}
	if k, _ := w.keyNamed(w.alice, "ci"); !slices.Equal(k.Cmds, []string{"whoami", "ls"}) {
		t.Errorf("the API token's cmds: %q", k.Cmds)
	}

	// Sharing: add bob (he reaches web with his own token), make it
	// public and private again, add and remove a link, remove bob.
	vmPage := vmPagePrefix + "web"
	resp, body = b.post(vmPage, url.Values{"action": {"add"}, "email": {"bob@example.com"}}, nil)
	wantRedirect(t, "share add", resp, body, vmPage)
	bobToken := w.mint(w.bob.Signer, vmNamespace("web"), "{}")
	wantIdentity(t, w.echo(w.vmHost("web"), map[string]string{"X-Exedev-Authorization": bearerHdr(bobToken)}), w.bob, "")
	for _, action := range []string{"set-public", "set-private"} {
		resp, body = b.post(vmPage, url.Values{"action": {action}}, nil)
		wantRedirect(t, action, resp, body, vmPage)
		vm, _ := w.Store.VM(context.Background(), "web")
		if vm.Public != (action == "set-public") {
			t.Errorf("after %s: public %v", action, vm.Public)
		}
	}
	resp, body = b.post(vmPage, url.Values{"action": {"add-link"}}, nil)
	wantPage(t, "add-link", resp, body, http.StatusOK)
	links, _ := w.Store.ShareLinks(context.Background(), "web")
	if len(links) != 1 || !strings.Contains(body, "https://web.exe.xyz/?share="+strings.TrimSuffix(links[0].Name, "…")) {
		t.Fatalf("add-link: %d links; page:\n%s", len(links), body)
	}
	resp, body = b.post(vmPage, url.Values{"action": {"remove-link"}, "link": {links[0].Name}}, nil)
	wantRedirect(t, "remove-link", resp, body, vmPage)
	if links, _ := w.Store.ShareLinks(context.Background(), "web"); len(links) != 0 {
		t.Errorf("%d links left", len(links))
	}
	resp, body = b.post(vmPage, url.Values{"action": {"remove"}, "email": {"bob@example.com"}}, nil)
	wantRedirect(t, "share remove", resp, body, vmPage)
	if resp, _ := w.get(w.vmHost("web"), "/", map[string]string{"X-Exedev-Authorization": bearerHdr(bobToken)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's token after the share was removed: %d, want 401", resp.StatusCode)
	}
	if ev := w.latestEvent(); ev.Action != "share.remove" || ev.Via != store.ViaWeb || ev.Credential != sid {
		t.Errorf("share.remove event %+v", ev)
	}

	// Sessions: end another browser's (it is logged out, this one is
	// not), then this one's own (this browser is logged out).
	other := w.browserFor(w.alice, "")
	resp, body = b.post(pathSessions, url.Values{"action": {"end"}, "id": {other.sessionID()}}, nil)
	wantRedirect(t, "end the other session", resp, body, pathSessions)
	if resp, body := other.get(pathKeys); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Not logged in") {
		t.Errorf("the other browser after its session ended: %d", resp.StatusCode)
	}
	if resp, _ := b.get(pathKeys); resp.StatusCode != http.StatusOK {
		t.Errorf("this browser after ending the other's session: %d", resp.StatusCode)
	}
	resp, body = b.post(pathSessions, url.Values{"action": {"end"}, "id": {sid}}, nil)
	wantRedirect(t, "end this session", resp, body, "/logged-out")
	if c, _ := setCookie(t, resp, tokens.MainCookie); c.MaxAge != -1 {
		t.Errorf("exe-auth is not cleared: %+v", c)
	}
	if resp, body := b.get("/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Not logged in") {
		t.Errorf("/ after ending this session: %d\n%s", resp.StatusCode, body)
	}

	// End all: every session goes, this browser's too.
	b = w.browserFor(w.alice, "")
	w.browserFor(w.alice, "")
	resp, body = b.post(pathSessions, url.Values{"action": {"end-all"}}, nil)
	wantRedirect(t, "end all", resp, body, "/logged-out")
	if ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID); len(ss) != 0 {
		t.Errorf("%d sessions left after end all", len(ss))
	}
}

// TestWebRemovingThisBrowsersKeyLogsItOut: the key a browser logged in
// with, removed from the page, takes the browser's session with it: the
// answer logs it out, and the cookie is no session any more.
func TestWebRemovingThisBrowsersKeyLogsItOut(t *testing.T) {
	w := newWorld(t, nil)
	laptop := w.AddKey(w.alice, "laptop-2", 8, nil)
	b := w.browserFor(laptop, "")
	resp, body := b.get(pathKeyRemove + "?key=" + url.QueryEscape(laptop.Key.Fingerprint))
	if !strings.Contains(body, "removing it logs this browser out") {
		t.Errorf("the confirmation does not warn:\n%s", body)
	}
	resp, body = b.post(pathKeyRemove, url.Values{"key": {laptop.Key.Fingerprint}}, nil)
	wantRedirect(t, "remove this browser's key", resp, body, "/logged-out")
	if resp, _ := b.get(pathKeys); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the browser after its key was removed: %d, want 401", resp.StatusCode)
	}
}

// TestWebRefusalIsTheSSHLine: a form the command refuses shows the very
// line the SSH command prints (422), and changes nothing.
func TestWebRefusalIsTheSSHLine(t *testing.T) {
	w := newWorld(t, nil)
	b := w.browserFor(w.alice, "")
	fp := w.alice.Key.Fingerprint
	for _, c := range []struct {
		path string
		form url.Values
		line string // the same command over the suite
	}{
		// Someone else's VM: the page is the refusal (404), the line is the command's.
		{vmPagePrefix + "bobvm", url.Values{"action": {"set-public"}}, "share set-public bobvm"},
		{vmPagePrefix + "web", url.Values{"action": {"add"}, "email": {"alice@example.com"}}, "share add web alice@example.com"},
		{vmPagePrefix + "web", url.Values{"action": {"remove"}, "email": {"carol@example.com"}}, "share remove web carol@example.com"},
		{vmPagePrefix + "web", url.Values{"action": {"add"}, "email": {"not an email"}}, "share add web 'not an email'"},
		{pathKeyRename, url.Values{"key": {fp}, "name": {"a b"}}, "ssh-key rename " + fp + " 'a b'"},
		{pathKeyRemove, url.Values{"key": {fp}}, "ssh-key remove " + fp},
		{pathTokenNew, url.Values{"label": {"x"}, "vm": {"bobvm"}, "exp": {"never"}}, "ssh-key generate-api-key --label x --vm bobvm"},
		{pathTokenNew, url.Values{"label": {"x"}, "exp": {"2x"}}, "ssh-key generate-api-key --label x --exp 2x"},
		{pathTokenNew, url.Values{"label": {"x"}, "cmds": {"rm -rf"}}, "ssh-key generate-api-key --label x --cmds 'rm -rf'"},
		{pathSessions, url.Values{"action": {"end"}, "id": {"sesnosuchsession0000"}}, "sessions revoke sesnosuchsession0000"},
	} {
		_, err := w.run(w.alice, c.line)
		if err == nil {
			t.Fatalf("%s: the command succeeds over the suite", c.line)
		}
		before := w.Dump()
		resp, body := b.post(c.path, c.form, nil)
		got, status := alertOf(body), http.StatusUnprocessableEntity
		if strings.HasPrefix(c.path, vmPagePrefix+"bobvm") {
			got, status = errorMessageOf(body), http.StatusNotFound
		}
		wantPage(t, c.line, resp, body, status)
		if got != err.Error() {
			t.Errorf("%s: the page does not show %q:\n%s", c.line, err, body)
		}
		if after := w.Dump(); after != before {
			t.Errorf("%s: the refused form changed the store:\n%s", c.line, after)
		}
	}
}

// TestWebFormFieldsAreArgumentsNotSyntax: a form field is one argument
// of the command line, whatever it holds: flags, quotes, a second command
// are data, refused as such, never parsed as a line.
func TestWebFormFieldsAreArgumentsNotSyntax(t *testing.T) {
	w := newWorld(t, nil)
	b := w.browserFor(w.alice, "")
	fp := w.alice.Key.Fingerprint
	before := w.Dump()
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{pathKeyRename, url.Values{"key": {fp}, "name": {"--help"}}},
		{pathKeyRename, url.Values{"key": {fp}, "name": {"x'; ssh-key remove alice-laptop"}}},
		{pathKeyRename, url.Values{"key": {"--json"}, "name": {"x"}}},
		{pathTokenNew, url.Values{"label": {"x --vm=bobvm"}}},
		{pathTokenNew, url.Values{"label": {"--help"}}},
		{pathTokenNew, url.Values{"vm": {"web --exe0"}}},
		{vmPagePrefix + "web", url.Values{"action": {"add"}, "email": {"--help"}}},
		{vmPagePrefix + "web", url.Values{"action": {"remove-link"}, "link": {"--help"}}},
		{pathSessions, url.Values{"action": {"end"}, "id": {"--all"}}},
	} {
		resp, body := b.post(c.path, c.form, nil)
		if resp.StatusCode != http.StatusUnprocessableEntity && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %v: %d, want a refusal\n%s", c.path, c.form, resp.StatusCode, body)
		}
		if strings.Contains(body, "Usage:") || strings.Contains(body, "usage: ") && !strings.Contains(body, "usage: sessions revoke") {
			t.Errorf("%s %v: the field was read as a flag:\n%s", c.path, c.form, body)
		}
	}
	if after := w.Dump(); after != before {
		t.Errorf("the refused forms changed the store:\n%s", after)
	}
	if ss, _ := w.Store.Sessions(context.Background(), w.alice.User.ID); len(ss) != 1 {
		t.Errorf("id=--all ended sessions: %d left", len(ss))
	}
}

// TestWebFormsRefuseCrossSitePosts: a form posted from another site (its
// Origin, or Sec-Fetch-Site: cross-site) is refused 403 before anything
// runs, whatever it asks, and the store is byte for byte what it was; the
// same post from the page itself does its work.
func TestWebFormsRefuseCrossSitePosts(t *testing.T) {
	w := newWorld(t, nil)
	b := w.browserFor(w.alice, "")
	other := w.browserFor(w.alice, "")
	fp := w.alice.Key.Fingerprint
	w.Share("web", w.alice, "bob@example.com")
	spare := w.AddKey(w.alice, "spare", 9, nil)
	forms := []struct {
		path string
		form url.Values
		ok   int // from the page itself
	}{
		{pathTokenNew, url.Values{"label": {"evil"}, "vm": {"web"}}, http.StatusOK},
		{pathKeyRename, url.Values{"key": {fp}, "name": {"renamed"}}, http.StatusSeeOther},
		{vmPagePrefix + "web", url.Values{"action": {"set-public"}}, http.StatusSeeOther},
		{vmPagePrefix + "web", url.Values{"action": {"add"}, "email": {"mallory@example.com"}}, http.StatusSeeOther},
		{vmPagePrefix + "web", url.Values{"action": {"remove"}, "email": {"bob@example.com"}}, http.StatusSeeOther},
		{vmPagePrefix + "web", url.Values{"action": {"add-link"}}, http.StatusOK},
		{pathSessions, url.Values{"action": {"end"}, "id": {other.sessionID()}}, http.StatusSeeOther},
		{pathKeyRemove, url.Values{"key": {spare.Key.Fingerprint}}, http.StatusSeeOther},
		{pathSessions, url.Values{"action": {"end-all"}}, http.StatusSeeOther},
		{"/logout", nil, http.StatusSeeOther},
	}
	before := w.Dump()
	for _, f := range forms {
		for _, hdr := range []map[string]string{
			{"Origin": "https://evil.example", "Sec-Fetch-Site": ""},
			{"Sec-Fetch-Site": "cross-site"},
			{"Origin": "http://web.exe.xyz:" + w.port(), "Sec-Fetch-Site": ""}, // a VM's page is another site too
		} {
			h := map[string]string{}
			for k, v := range hdr {
				if v != "" {
					h[k] = v
				}
			}
			req := w.request(http.MethodPost, w.mainHost(), f.path, strings.NewReader(f.form.Encode()), merge(cookieHdr(b.cookie), h))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := w.do(req)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("cross-site POST %s %v (%v): %d, want 403\n%s", f.path, f.form, hdr, resp.StatusCode, body)
			}
		}
	}
	if after := w.Dump(); after != before {
		t.Fatalf("cross-site posts changed the store:\n--- before\n%s\n--- after\n%s", before, after)
	}
	// The same forms from the page itself work: the refusal above was the
	// origin's, not a broken form's.
	for _, f := range forms {
		if resp, body := b.post(f.path, f.form, nil); resp.StatusCode != f.ok {
			t.Errorf("same-origin POST %s %v: %d, want %d\n%s", f.path, f.form, resp.StatusCode, f.ok, body)
		}
	}
	if after := w.Dump(); after == before {
		t.Errorf("the same-origin posts changed nothing")
	}
}

// TestWebPagesNeedASession: without a session every page says how to log
// in (401; "/" 200), and a form does nothing.
func TestWebPagesNeedASession(t *testing.T) {
	w := newWorld(t, nil)
	anon := &webBrowser{w: w, cookie: tokens.MainCookie + "=" + strings.Repeat("A", 43)}
	for _, p := range []string{pathKeys, pathKeyRename + "?key=x", pathKeyRemove + "?key=x", pathTokenNew, pathSessions, pathVMs, vmPagePrefix + "web", pathLog} {
		resp, body := anon.get(p)
		wantPage(t, p, resp, body, http.StatusUnauthorized)
		if !strings.Contains(body, "ssh -p 2222 ssh.exe.dev browser") {
			t.Errorf("%s without a session does not say how to log in:\n%s", p, body)
		}
	}
	if resp, body := anon.get("/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Not logged in") {
		t.Errorf("/ without a session: %d", resp.StatusCode)
	}
	before := w.Dump()
	resp, body := anon.post(vmPagePrefix+"web", url.Values{"action": {"set-public"}}, nil)
	wantPage(t, "POST without a session", resp, body, http.StatusUnauthorized)
	if w.Dump() != before {
		t.Error("a POST without a session changed the store")
	}
	// Methods: pages without forms take GET and HEAD only.
	b := w.browserFor(w.alice, "")
	for _, p := range []string{"/", pathKeys, pathVMs, pathLog} {
		if resp, _ := b.post(p, nil, nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d, Allow %q", p, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if resp, _ := b.get(vmPagePrefix + "web/extra"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/vms/web/extra: %d, want 404", resp.StatusCode)
	}
}

// TestWebSessionKeepsItsKeysRestrictions: a browser logged in with a key
// restricted to one VM acts within that key's restrictions on the page,
// as the key does over SSH: the gate is the command table's.
func TestWebSessionKeepsItsKeysRestrictions(t *testing.T) {
	w := newWorld(t, nil)
	deploy := w.AddKey(w.alice, "web-only", 7, func(k *store.Key) { k.VM = "web" })
	b := w.browserFor(deploy, "--vm web")
	resp, body := b.get(pathVMs)
	wantPage(t, "VMs", resp, body, http.StatusOK)
	if strings.Contains(body, `data-vm="pub"`) || !strings.Contains(body, `data-vm="web"`) {
		t.Errorf("a web-only key's browser lists other VMs:\n%s", body)
	}
	_, err := w.run(deploy, "ssh-key generate-api-key --vm pub")
	resp, body = b.post(pathTokenNew, url.Values{"vm": {"pub"}}, nil)
	wantPage(t, "token for pub", resp, body, http.StatusUnprocessableEntity)
	if err == nil || alertOf(body) != err.Error() {
		t.Errorf("the page does not refuse as the key does (%v):\n%s", err, body)
	}
	// Restricted keys change access only when their cmds name it.
	_, err = w.run(deploy, "share set-public web")
	resp, body = b.post(vmPagePrefix+"web", url.Values{"action": {"set-public"}}, nil)
	if err == nil || resp.StatusCode != http.StatusUnprocessableEntity || alertOf(body) != err.Error() {
		t.Errorf("share set-public from a restricted browser: %d (%v)\n%s", resp.StatusCode, err, body)
	}
}

// browserOfToken logs a browser in as alice through /exec's `browser`
// with a token of her login key granting perms.
func (w *world) browserOfToken(t *testing.T, perms string) *webBrowser {
	t.Helper()
	tok := w.mint(w.alice.Signer, apiNamespace, perms)
	req := w.request(http.MethodPost, w.mainHost(), "/exec", strings.NewReader("browser"), map[string]string{"Authorization": bearerHdr(tok)})
	resp, body := w.do(req)
	var j struct {
		MagicLink string `json:"magic_link"`
	}
	if err := json.Unmarshal(body, &j); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("/exec browser: %d %s", resp.StatusCode, body)
	}
	u, _ := url.Parse(j.MagicLink)
	resp, _ = w.get(w.mainHost(), "/auth/verify?"+u.RawQuery, htmlNav)
	c, _ := setCookie(t, resp, tokens.MainCookie)
	return &webBrowser{w: w, cookie: c.Name + "=" + c.Value}
}

// TestWebSessionOfATokenCannotOutliveIt: a browser logged in through a
// token (one whose cmds grant `browser`) acts on the page within what the
// login carried: a token made there expires when that token does, never
// later (attenuation, as over /exec).
func TestWebSessionOfATokenCannotOutliveIt(t *testing.T) {
	w := newWorld(t, nil)
	exp := future()
	b := w.browserOfToken(t, fmt.Sprintf(`{"exp":%d,"cmds":["browser","ls","ssh-key generate-api-key"]}`, exp))
	b.newToken(t, url.Values{"label": {"made-by-token"}, "exp": {"never"}})
	k, _ := w.keyNamed(w.alice, "made-by-token")
	// The token is valid through the second exp: it ends at exp+1.
	if end := time.Unix(exp+1, 0); !k.ExpiresAt.Equal(end) {
		t.Errorf("a token made from a token's browser session expires at %v, want the token's end %v", k.ExpiresAt, end.UTC())
	}
	resp, page := b.post(pathTokenNew, url.Values{"label": {"later"}, "exp": {"1y"}}, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(alertOf(page), "--exp cannot be later") {
		t.Errorf("a later expiry from the token's session: %d %q", resp.StatusCode, alertOf(page))
	}
}

// TestWebSessionOfATokenRunsOnlyItsCmds: a browser logged in through an
// /exec token whose cmds name only `browser` and `whoami` runs nothing else
// on the web page: the token's cmds travel with its login link into the
// session, as its VM and expiry do.
func TestWebSessionOfATokenRunsOnlyItsCmds(t *testing.T) {
	w := newWorld(t, nil)
	b := w.browserOfToken(t, `{"cmds":["browser","whoami"]}`)
	resp, page := b.post(pathTokenNew, url.Values{"label": {"wider"}}, nil)
	if resp.StatusCode == http.StatusOK || !strings.Contains(alertOf(page), "may only run browser, whoami") {
		t.Errorf("a token from a session limited to browser, whoami: %d %q", resp.StatusCode, alertOf(page))
	}
	if _, ok := w.keyNamed(w.alice, "wider"); ok {
		t.Errorf("the refused token's key is in the registry")
	}
	if _, page := b.get(pathKeys); !strings.Contains(html.UnescapeString(page), `"ssh-key list" is not among them`) {
		t.Errorf("the keys page of a session limited to browser, whoami lists the keys:\n%s", page)
	}
}

// TestWebTokenShownOnce: the page that shows a new token is the POST's
// answer: never cached, no Referer, the token in no URL and no log line,
// and a script allowed by its CSP only as that one file.
func TestWebTokenShownOnce(t *testing.T) {
	w := newWorld(t, nil)
	b := w.browserFor(w.alice, "")
	resp, page := b.post(pathTokenNew, url.Values{"label": {"once"}}, nil)
	wantPage(t, "new token", resp, page, http.StatusOK)
	tok := html.UnescapeString(tokenOn.FindStringSubmatch(page)[1])
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("new token page: Cache-Control %q, Referrer-Policy %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Referrer-Policy"))
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("the token page redirects (%q): the token would travel in a URL", loc)
	}
	script := "http://" + w.mainHost() + pathCopyScript
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; script-src "+script) || strings.Count(csp, "script-src") != 1 {
		t.Errorf("new token page CSP %q: want exactly the copy script", csp)
	}
	for name, v := range resp.Header {
		if strings.Contains(strings.Join(v, " "), tok) {
			t.Errorf("the token is in the header %s", name)
		}
	}
	if strings.Contains(w.logs.String(), tok) || strings.Contains(w.logs.String(), strings.TrimPrefix(tok, "exe1.")) {
		t.Errorf("the token is in the log:\n%s", w.logs)
	}
	// The keys page that follows shows the token's key, never the token.
	if _, body := b.get(pathKeys); strings.Contains(body, tok) || !strings.Contains(body, "<strong>once</strong>") {
		t.Errorf("the keys page shows the token, or not its key")
	}
	// Other pages load no script at all.
	resp, _ = b.get(pathKeys)
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "script-src") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("keys page CSP %q", csp)
	}
	// The script itself.
	resp, body := b.get(pathCopyScript)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(body, "navigator.clipboard") {
		t.Errorf("GET %s: %d %q", pathCopyScript, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// webGoldenPort and webRemoteAddr mask what changes from run to run in a
// page beyond testkit.MaskHTML: the test server's port, and clients'.
var webRemoteAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// goldenPage checks a page's HTML against testdata/golden/web/NAME.html
// (masked) and its structure (checkPageStructure).
func (w *world) goldenPage(t *testing.T, name, body string) {
	t.Helper()
	checkPageStructure(t, name, body)
	body = strings.ReplaceAll(body, ":"+w.port(), ":PORT")
	body = webRemoteAddr.ReplaceAllString(body, "127.0.0.1:<port>")
	testkit.GoldenHTML(t, "web/"+name+".html", body, *update)
}

// TestWebPagesGolden renders every account page in a known state and
// compares it with its golden file (times, ids, tokens, fingerprints and
// ports masked), after checking its structure: labels, forms, one h1,
// tables that collapse on a phone.
func TestWebPagesGolden(t *testing.T) {
	w := newWorld(t, nil)
	t.Cleanup(w.Store.Subscribe(func(c store.Change) {
		if c.Kind == store.ShareChanged || c.Kind == store.VMChanged {
			w.h.ForgetVM(c.ID)
		}
	}))
	b := w.browserFor(w.alice, "")
	w.Share("bobvm", w.bob, "alice@example.com")
	w.Share("web", w.alice, "bob@example.com")
	w.Share("web", w.alice, "carol@example.com")
	if _, err := w.run(w.alice, "share add-link web"); err != nil {
		t.Fatal(err)
	}
	tok, page := b.newToken(t, url.Values{"label": {"deploy"}, "vm": {"web"}, "exp": {"30d"}})
	w.goldenPage(t, "tokenshown", strings.ReplaceAll(page, tok, "<the token>"))
	// Keys list by when they were added (to the second), then by name: the
	// second token's name sorts after the first's, so the order holds
	// whether or not a second ticks between them.
	_, page = b.newToken(t, url.Values{"label": {"release"}, "cmds": {"whoami,ls"}})
	fp := w.alice.Key.Fingerprint
	resp, body := b.post(vmPagePrefix+"web", url.Values{"action": {"add-link"}}, nil)
	wantPage(t, "add-link", resp, body, http.StatusOK)
	w.goldenPage(t, "linkshown", body)
	resp, body = b.post(vmPagePrefix+"web", url.Values{"action": {"add"}, "email": {"alice@example.com"}}, nil)
	wantPage(t, "refused share", resp, body, http.StatusUnprocessableEntity)
	w.goldenPage(t, "vm-refused", body)

	for _, p := range []struct{ name, path string }{
		{"account", "/"},
		{"keys", pathKeys},
		{"keyrename", pathKeyRename + "?key=" + url.QueryEscape(fp)},
		{"keyremove", pathKeyRemove + "?key=" + url.QueryEscape(fp)},
		{"tokennew", pathTokenNew},
		{"sessions", pathSessions},
		{"vms", pathVMs},
		{"vm", vmPagePrefix + "web"},
		{"log", pathLog},
	} {
		resp, body := b.get(p.path)
		wantPage(t, p.path, resp, body, http.StatusOK)
		w.goldenPage(t, p.name, body)
	}
	resp, body = b.get(vmPagePrefix + "bobvm")
	wantPage(t, "someone else's VM", resp, body, http.StatusNotFound)
	w.goldenPage(t, "vm-not-yours", body)
	anon := &webBrowser{w: w}
	resp, body = anon.get("/")
	wantPage(t, "not logged in", resp, body, http.StatusOK)
	w.goldenPage(t, "home", body)
}

// checkPageStructure fails the test for each of pageProblems.
func checkPageStructure(t *testing.T, name, page string) {
	t.Helper()
	for _, p := range pageProblems(page) {
		t.Errorf("%s: %s", name, p)
	}
}

// pageProblems is what a page lacks to be usable by keyboard and on a
// phone, as far as its HTML shows it: the viewport, a language, one h1,
// unique ids, a label for every field, POST forms to this host, buttons
// that say what they do, no inline script or style attribute (only the
// copy script, by URL), and tables that collapse into cards on a narrow
// screen.
func pageProblems(page string) []string {
	doc, err := xhtml.Parse(strings.NewReader(page))
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	attr := func(n *xhtml.Node, key string) (string, bool) {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val, true
			}
		}
		return "", false
	}
	var text func(*xhtml.Node) string
	text = func(n *xhtml.Node) string {
		if n.Type == xhtml.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	ids := map[string]bool{}
	labelFor := map[string]bool{}
	var fields []string
	h1s := 0
	viewport := false
	var walk func(*xhtml.Node)
	walk = func(n *xhtml.Node) {
		if n.Type == xhtml.ElementNode {
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "style" {
					bad("<%s %s=…>: no inline script or style", n.Data, a.Key)
				}
			}
			if id, ok := attr(n, "id"); ok {
				if ids[id] {
					bad("id %q twice", id)
				}
				ids[id] = true
			}
			switch n.Data {
			case "html":
				if lang, _ := attr(n, "lang"); lang != "en" {
					bad("<html lang=%q>", lang)
				}
			case "meta":
				if v, _ := attr(n, "name"); v == "viewport" {
					c, _ := attr(n, "content")
					viewport = c == "width=device-width, initial-scale=1"
				}
			case "h1":
				h1s++
			case "label":
				if f, ok := attr(n, "for"); ok {
					labelFor[f] = true
				}
			case "input", "select", "textarea":
				if typ, _ := attr(n, "type"); typ == "hidden" || typ == "submit" {
					break
				}
				id, _ := attr(n, "id")
				if _, ok := attr(n, "aria-label"); !ok {
					fields = append(fields, id)
				}
			case "form":
				m, _ := attr(n, "method")
				a, _ := attr(n, "action")
				if m != "post" || !strings.HasPrefix(a, "/") || strings.HasPrefix(a, "//") {
					bad("<form method=%q action=%q>: want POST to this host", m, a)
				}
			case "button":
				typ, _ := attr(n, "type")
				_, labelled := attr(n, "aria-label")
				if typ != "submit" && typ != "button" || strings.TrimSpace(text(n)) == "" && !labelled {
					bad("<button type=%q>%s</button>: a type, and a text or aria-label", typ, text(n))
				}
			case "script":
				if src, _ := attr(n, "src"); !strings.HasSuffix(src, pathCopyScript) || strings.TrimSpace(text(n)) != "" {
					bad("<script src=%q>: only the copy script, by URL", src)
				}
			case "table":
				if c, _ := attr(n, "class"); c != "cards" {
					bad("a table that does not collapse on a phone (class %q)", c)
				}
			case "td":
				if _, ok := attr(n, "data-label"); !ok {
					bad("<td> without the data-label it shows on a phone")
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !viewport {
		bad(`no <meta name="viewport" content="width=device-width, initial-scale=1">`)
	}
	if h1s != 1 {
		bad("%d <h1>, want one", h1s)
	}
	for _, id := range fields {
		if id == "" || !labelFor[id] {
			bad("a field (id %q) without a <label for>", id)
		}
	}
	return problems
}

// TestPageProblemsCatches: the structure check finds what it must (a
// field without a label, a GET form, an inline script, a table that does
// not collapse, a button without a type) and passes a page without them.
func TestPageProblemsCatches(t *testing.T) {
	const head = `<!doctype html><html lang="en"><head><meta name="viewport" content="width=device-width, initial-scale=1"></head><body><h1>x</h1>`
	if p := pageProblems(head + `<label for="x">X</label><input type="text" id="x"></body></html>`); len(p) != 0 {
		t.Errorf("a good page: %q", p)
	}
	for _, b := range []string{
		`<input type="text" id="x">`,
		`<form method="get" action="/x"></form>`,
		`<script>alert(1)</script>`,
		`<table><tr><td>x</td></tr></table>`,
		`<button>Go</button>`,
		`<h1>two</h1>`,
	} {
		if p := pageProblems(head + b + `</body></html>`); len(p) == 0 {
			t.Errorf("pageProblems passes %s", b)
		}
	}
}

// TestBrowserOf: the sessions page names browsers as people do, and shows
// what it does not know by its first word.
func TestBrowserOf(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36":              "Headless Chrome 156 on Linux",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0":  "Edge 120 on Windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15":         "Safari 17 on macOS",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148": "Safari 17 on iOS",
		"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0":                                                     "Firefox 121 on Linux",
		"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36":           "Chrome 120 on Android",
		"curl/8.5.0":         "curl/8.5.0",
		"Go-http-client/1.1": "Go-http-client/1.1",
	} {
		if got := browserOf(ua); got != want {
			t.Errorf("browserOf(%q) = %q, want %q", ua, got, want)
		}
	}
}

// TestWebPagesEscape renders every account page with hostile values in
// every field it shows: all of it is escaped, and only the pages that
// show a secret once load a script, the copy script.
func TestWebPagesEscape(t *testing.T) {
	w := newWorld(t, nil)
	const evil = `<b>"x"</b>`
	cmds := []string{evil}
	k := keyJSON{Name: evil, Fingerprint: evil, AddedAt: evil, LastUsedAt: evil, Current: true, VM: evil, Cmds: &cmds, ExpiresAt: evil}
	sh := &shareJSON{VMName: evil, Status: evil, URL: evil}
	sh.Users = append(sh.Users, struct {
		Email     string `json:"email"`
		Status    string `json:"status"`
		InvitedAt string `json:"invited_at"`
	}{evil, evil, evil})
	sh.Links = append(sh.Links, struct {
		Token      string `json:"token"`
		CreatedAt  string `json:"created_at"`
		UseCount   int    `json:"use_count"`
		LastUsedAt string `json:"last_used_at"`
	}{Token: evil, CreatedAt: evil, LastUsedAt: evil})
	d := webData{
		pageData: pageData{Title: evil, Email: evil, VM: evil, SSHLine: evil, Nav: "keys"},
		Error:    evil, UserID: evil, LoginKey: &k, Keys: []keyJSON{k}, Key: k, NewName: evil,
		VMChoices: []vmChoice{{evil, evil}}, Token: tokenForm{evil, evil, evil, evil},
		Made:     &generatedJSON{Label: evil, Token: evil, Namespace: evil, Fingerprint: evil, VM: evil, Cmds: &cmds, ExpiresAt: evil},
		CurlLine: evil, Sessions: []sessionJSON{{evil, evil, evil, evil, evil, evil}}, ThisOne: evil,
		VMs: []vmJSON{{evil, evil, false}}, SharedVMs: []sharedVMJSON{{vmJSON{evil, evil, true}, evil}},
		Share: sh, ShareWith: evil, NewLink: &addLinkJSON{evil, evil, evil}, Events: []eventJSON{{1, evil, evil, evil, evil, evil, evil}},
	}
	for _, name := range webPageNames {
		page := d
		if name == "tokenshown" || name == "linkshown" {
			page.Script = "http://" + testDomain + pathCopyScript
		}
		rec := httptest.NewRecorder()
		w.h.renderWeb(rec, http.StatusOK, name, &page)
		body := rec.Body.String()
		if rec.Code != http.StatusOK || strings.Contains(body, evil) || !strings.Contains(body, "&lt;b&gt;") {
			t.Errorf("%s: %d, a value unescaped or not shown:\n%s", name, rec.Code, body)
		}
		wantScript := page.Script != ""
		if strings.Contains(body, "<script") != wantScript || strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src") != wantScript {
			t.Errorf("%s: a script where none belongs, or none where it does (CSP %q)", name, rec.Header().Get("Content-Security-Policy"))
		}
	}
}
