package sshcmd

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// linkToken returns the token of a `browser --json` output, checking the
// link's shape: the main host's /auth/verify, one query parameter.
func linkToken(t *testing.T, out, wantPrefix string) string {
	t.Helper()
	var j struct {
		MagicLink string `json:"magic_link"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("browser --json: %v: %q", err, out)
	}
	u, err := url.Parse(j.MagicLink)
	if err != nil || !strings.HasPrefix(j.MagicLink, wantPrefix+"/auth/verify?token=") || len(u.Query()) != 1 {
		t.Fatalf("magic_link %q, want %s/auth/verify?token=…", j.MagicLink, wantPrefix)
	}
	tok := u.Query().Get("token")
	if !tokens.ValidSecret(tok) {
		t.Fatalf("link token %q: not 26 characters of [A-Z2-7]", tok)
	}
	return tok
}

// redeem logs a browser in with the link token, as /auth/verify does.
func (e *testEnv) redeem(tok string) (store.LoginLink, store.Session) {
	e.t.Helper()
	h := tokens.SecretHash(tok)
	cookie := tokens.SecretHash(tokens.NewCookieValue())
	l, s, err := e.Store.RedeemLoginLink(e.ctx, h[:], e.clock.Now(), store.Session{
		ID: store.NewSessionID(), Hash: cookie[:], Host: "exe.dev:443", CookieName: tokens.MainCookie,
		CreatedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(tokens.SessionTTL), UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chromium/140",
	}, store.Event{Time: e.clock.Now(), Action: "session.start"})
	if err != nil {
		e.t.Fatalf("redeem link: %v", err)
	}
	return l, s
}

func TestBrowserGolden(t *testing.T) {
	e, alice, _ := newGoldenEnv(t)
	c := callerOf(alice)
	golden(t, "usage-browser.txt", e.mustRun(c, "browser --help", ""))
	golden(t, "browser.txt", testkit.Mask(e.mustRun(c, "browser --vm web --path /admin", "")))
	golden(t, "sessions-empty.txt", e.mustRun(c, "sessions", ""))
	out := e.mustRun(c, "browser --json --vm web --path /admin", "")
	goldenJSON(t, "browser.json", out)
	l, s := e.redeem(linkToken(t, out, "https://exe.dev"))
	if l.TargetVM != "web" || l.Path != "/admin" || l.OnlyVM != "" || s.Fingerprint != alice.Key.Fingerprint {
		t.Fatalf("link %+v, session %+v", l, s)
	}
	if want := testNow.Add(tokens.SessionTTL); !s.ExpiresAt.Equal(want) {
		t.Fatalf("session expires %v, want %v (30 days)", s.ExpiresAt, want)
	}
	e.clock.Set(testNow.Add(time.Hour))
	golden(t, "sessions.txt", testkit.Mask(e.mustRun(c, "sessions", "")))
	goldenJSON(t, "sessions.json", e.mustRun(c, "sessions --json", ""))
	golden(t, "sessions-revoke.txt", e.mustRun(c, "sessions revoke "+s.ID, ""))
	e.redeem(linkToken(t, e.mustRun(c, "browser --json", ""), "https://exe.dev"))
	e.redeem(linkToken(t, e.mustRun(c, "browser --json", ""), "https://exe.dev"))
	goldenJSON(t, "sessions-revoke-all.json", e.mustRun(c, "sessions revoke --all --json", ""))
	goldenJSON(t, "sessions-empty.json", e.mustRun(c, "sessions --json", ""))
}

func TestBrowserRefusals(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	c := callerOf(alice)
	for line, want := range map[string]string{
		"browser --vm nope":             "you have no VM named nope (see ls)",
		"browser --vm Bad_Name":         "--vm: VM name",
		"browser --path admin":          "--path: give a path on the site",
		"browser --path //evil.example": "--path: give a path on the site",
		`browser --path '/a\b'`:         "--path: give a path on the site",
		"browser --path /%2F/evil":      "--path: give a path on the site",
		"browser extra":                 "unexpected argument",
		"sessions revoke":               "usage: sessions revoke <id>|--all",
		"sessions revoke --all x":       "usage: sessions revoke <id>|--all",
		"sessions revoke sesnope":       "you have no such session (see sessions)",
		"sessions extra":                "unexpected argument",
	} {
		if _, err := e.run(c, line, ""); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", line, err, want)
		}
	}
	// Bob cannot make a link for alice's VM, nor end alice's sessions.
	if _, err := e.run(callerOf(bob), "browser --vm web", ""); err == nil || !strings.Contains(err.Error(), "no VM named web") {
		t.Errorf("bob browser --vm web: %v", err)
	}
	_, s := e.redeem(linkToken(t, e.mustRun(c, "browser --json", ""), "https://exe.dev"))
	if _, err := e.run(callerOf(bob), "sessions revoke "+s.ID, ""); err == nil {
		t.Error("bob revoked alice's session")
	}
	if out := e.mustRun(callerOf(bob), "sessions revoke --all --json", ""); out != "{\"revoked\":0}\n" {
		t.Errorf("bob revoke --all = %q", out)
	}
	if got, _ := e.Store.Sessions(e.ctx, alice.User.ID); len(got) != 1 {
		t.Errorf("alice has %d sessions after bob's attempts, want 1", len(got))
	}
}

// TestBrowserLinkAttenuated: a link minted by a restricted key does not
// widen it. The link, and the session it starts, record the key, carry
// its VM restriction, and end no later than the key; a VM-restricted key
// cannot aim the link at another VM.
func TestBrowserLinkAttenuated(t *testing.T) {
	e, alice, _ := newGoldenEnv(t)
	exp := testNow.Add(48 * time.Hour)
	ci := testkit.SeededSigner(t, 7)
	k := e.AddPublicKey(alice, "ci", ci.PublicKey(), func(k *store.Key) {
		k.VM, k.ExpiresAt = "web", exp
	})
	c := Caller{User: alice.User, Key: k, RemoteAddr: "192.0.2.1:5555"}
	if _, err := e.run(c, "browser --vm blog", ""); err == nil || !strings.Contains(err.Error(), "restricted to VM web") {
		t.Fatalf("a web-only key made a link for blog: %v", err)
	}
	l, s := e.redeem(linkToken(t, e.mustRun(c, "browser --json", ""), "https://exe.dev"))
	if l.TargetVM != "web" || l.OnlyVM != "web" || s.OnlyVM != "web" {
		t.Fatalf("link %+v / session %+v: want target and restriction web", l, s)
	}
	if s.Fingerprint != k.Fingerprint || !s.ExpiresAt.Equal(exp) {
		t.Fatalf("session key %s, expires %v; want %s, %v (the key's expiry)", s.Fingerprint, s.ExpiresAt, k.Fingerprint, exp)
	}
	out := e.mustRun(c, "browser --vm web", "")
	if !strings.Contains(out, "until "+exp.Format(time.RFC3339)) {
		t.Fatalf("text output does not say when the browser is logged out: %q", out)
	}
	// An unrestricted key's session is not cut short, nor limited to a VM.
	_, s = e.redeem(linkToken(t, e.mustRun(callerOf(alice), "browser --json", ""), "https://exe.dev"))
	if s.OnlyVM != "" || !s.ExpiresAt.Equal(testNow.Add(tokens.SessionTTL)) {
		t.Fatalf("unrestricted session %+v", s)
	}
}
