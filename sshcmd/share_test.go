package sshcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// shareScript is one session of share commands, run once for the text
// golden files and once, on a fresh registry, for the JSON ones (each
// changes the registry, so they cannot share one). step runs a line as a
// caller and compares its output with the golden file name.
func shareScript(t *testing.T, e *testEnv, alice, bob testreg.Account, step func(name string, c Caller, line string) string) {
	a, b := callerOf(alice), callerOf(bob)
	step("help-share", a, "share")
	step("usage-share-add", a, "share add --help")
	step("share-show-empty", a, "share show web")
	step("share-add", a, "share add web bob@example.com")
	step("share-add-pending", a, "share add --message 'welcome aboard' web Dan@Example.com")
	step("share-add-link", a, "share add-link web")
	links, err := e.Store.ShareLinks(e.ctx, "web")
	if err != nil || len(links) != 1 {
		t.Fatalf("links after add-link: %v, %v", links, err)
	}
	// bob opens it an hour later (the browser half; here, the store's).
	e.clock.Set(testNow.Add(time.Hour))
	if _, err := e.Store.UseShareLink(e.ctx, "web", links[0].ID, bob.User.ID, e.Now(), store.Event{Time: e.Now(), ActorID: bob.User.ID, Action: "share.link.use"}); err != nil {
		t.Fatal(err)
	}
	step("share-set-public", a, "share set-public web")
	step("share-set-public-again", a, "share set-public web")
	step("share-set-private", a, "share set-private web")
	step("share-show", a, "share show web")
	step("ls-shared", b, "ls")
	step("share-remove-link", a, "share remove-link web "+links[0].Name)
	step("share-remove", a, "share remove web bob@example.com")
	step("log", a, "log")
	step("log-empty", b, "log --since 2025-07-01T00:00:00Z")
}

// TestShareGolden: what share, and the ls and log that show its effects,
// print, as text and as JSON, compared with checked-in files (tokens,
// link names, ids and times masked).
func TestShareGolden(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	shareScript(t, e, alice, bob, func(name string, c Caller, line string) string {
		t.Helper()
		out := e.mustRun(c, line, "")
		golden(t, name+".txt", testkit.Mask(out))
		return out
	})
	e, alice, bob = newGoldenEnv(t)
	shareScript(t, e, alice, bob, func(name string, c Caller, line string) string {
		t.Helper()
		out := e.mustRun(c, line+" --json", "")
		goldenJSON(t, name+".json", out)
		return out
	})
}

// TestShareJSONShapes checks share's documented fields and their values.
func TestShareJSONShapes(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	a := callerOf(alice)
	m, fields := testkit.JSONObject(t, e.mustRun(a, "share add --json web BOB@example.com", ""))
	if !slices.Equal(fields, []string{"message", "shared_with", "status", "vm_name"}) || m["status"] != "success" ||
		m["vm_name"] != "web" || m["shared_with"] != "bob@example.com" {
		t.Errorf("share add --json = %v", m)
	}
	m, fields = testkit.JSONObject(t, e.mustRun(a, "share add-link --json web", ""))
	tok, _ := m["token"].(string)
	if !slices.Equal(fields, []string{"status", "token", "url", "vm_name"}) || m["status"] != "success" ||
		tokens.ParseShareLink(tok) != nil || m["url"] != "https://web.exe.xyz/?share="+tok {
		t.Errorf("share add-link --json = %v", m)
	}
	e.mustRun(a, "share add web dan@example.com", "")
	m, fields = testkit.JSONObject(t, e.mustRun(a, "share show --json web", ""))
	if !slices.Equal(fields, []string{"links", "status", "url", "users", "vm_name"}) || m["status"] != "private" || m["url"] != "https://web.exe.xyz" {
		t.Fatalf("share show --json = %v", m)
	}
	users := m["users"].([]any)
	if len(users) != 2 || fmt.Sprint(users[0]) != "map[email:bob@example.com invited_at:2025-06-01T12:00:00Z status:active]" ||
		fmt.Sprint(users[1]) != "map[email:dan@example.com invited_at:2025-06-01T12:00:00Z status:pending]" {
		t.Errorf("users = %v", users)
	}
	link := m["links"].([]any)[0].(map[string]any)
	if link["token"] != tokens.ShareLinkName(tok) || link["use_count"] != 0.0 || link["created_at"] != "2025-06-01T12:00:00Z" || link["last_used_at"] != nil {
		t.Errorf("link = %v", link)
	}
	if strings.Contains(e.mustRun(a, "share show --json web", ""), tok) {
		t.Error("share show shows the link's token")
	}
	m, fields = testkit.JSONObject(t, e.mustRun(a, "share set-public --json web", ""))
	if !slices.Equal(fields, []string{"status", "vm_name"}) || m["status"] != "public" || m["vm_name"] != "web" {
		t.Errorf("set-public --json = %v", m)
	}
	m, _ = testkit.JSONObject(t, e.mustRun(callerOf(bob), "ls --json", ""))
	shared := m["shared_vms"].([]any)
	if len(shared) != 1 || fmt.Sprint(shared[0]) != "map[https_url:https://web.exe.xyz owner_email:alice@example.com public:true vm_name:web]" {
		t.Errorf("bob's shared_vms = %v", shared)
	}
	m, fields = testkit.JSONObject(t, e.mustRun(a, "share remove --json web bob@example.com", ""))
	if !slices.Equal(fields, []string{"message", "status", "vm_name"}) || m["status"] != "success" {
		t.Errorf("share remove --json = %v", m)
	}
	// The link goes by its token as well as by its name.
	e.mustRun(a, "share remove-link web "+tok, "")
	if ls, _ := e.Store.ShareLinks(e.ctx, "web"); len(ls) != 0 {
		t.Errorf("links after remove-link by token: %v", ls)
	}
}

// TestShareBadInput: every refusal is one clear line, and the registry
// holds exactly what it held before (a dump of every table compared).
func TestShareBadInput(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	a, b := callerOf(alice), callerOf(bob)
	e.Share("web", alice, "bob@example.com")
	e.Share("web", alice, "dan@example.com") // pending
	webLink := e.mustRun(a, "share add-link --json web", "")
	var l struct{ Token string }
	json.Unmarshal([]byte(webLink), &l)
	blogOnly := e.AddKey(alice, "blog-only", 40, func(k *store.Key) { k.VM = "blog" })
	shareOnly := e.AddKey(alice, "share-only", 41, func(k *store.Key) { k.VM = "blog"; k.Cmds = []string{"share add"} })

	denied := func(vm string) string { return fmt.Sprintf("VM %q not found or access denied", vm) }
	noLink := "web has no such share link (give its token, or its name as share show web lists it)"
	before := e.Dump()
	for _, tt := range []struct {
		who  Caller
		line string
		want string
	}{
		{a, "share add nosuch carol@example.com", denied("nosuch")},
		{a, "share show nosuch", denied("nosuch")},
		{a, "share add Web carol@example.com", `VM name "Web": must start with a lowercase letter`},
		{a, "share add web- carol@example.com", `VM name "web-": must not end with '-'`},
		// Someone else's VM: the same answer as one that does not exist.
		{b, "share add web carol@example.com", denied("web")},
		{b, "share show web", denied("web")},
		{b, "share remove web dan@example.com", denied("web")},
		{b, "share set-public web", denied("web")},
		{b, "share set-private web", denied("web")},
		{b, "share add-link web", denied("web")},
		{b, "share remove-link web " + l.Token, denied("web")},
		{callerOf(blogOnly), "share show web", denied("web")}, // a key restricted to blog
		{callerOf(shareOnly), "share add web carol@example.com", denied("web")},
		{callerOf(blogOnly), "share add blog carol@example.com", `key "blog-only" is restricted (vm blog): it cannot run "share add" unless its cmds name it`},
		{a, "share add web not-an-email", `email "not-an-email": not a bare address like name@example.com`},
		{a, "share add web 'Carol <carol@example.com>'", `email "Carol <carol@example.com>": only printable ASCII without spaces`},
		{a, "share add web carol@example", `email "carol@example": domain has no dot`},
		{a, "share remove web not-an-email", `email "not-an-email": not a bare address like name@example.com`},
		{a, "share add web alice@example.com", "you own web: there is no need to share it with yourself"},
		{a, "share add web ALICE@Example.COM", "you own web: there is no need to share it with yourself"},
		{a, "share add web bob@example.com", "bob@example.com is already shared with web"},
		{a, "share add web Bob@Example.com", "Bob@Example.com is already shared with web"},
		{a, "share add web dan@example.com", "dan@example.com is already shared with web"}, // pending
		{a, "share remove web carol@example.com", "web is not shared with carol@example.com (see share show web)"},
		{a, "share remove blog bob@example.com", "blog is not shared with bob@example.com (see share show blog)"},
		{a, "share remove-link web BOGUS", noLink},
		{a, "share remove-link web " + strings.Repeat("A", 26), noLink},
		{a, "share remove-link web AAAAAAAA…", noLink},
		{a, "share remove-link web exe1." + strings.Repeat("A", 26), noLink},
		{a, "share remove-link blog " + l.Token, "blog has no such share link (give its token, or its name as share show blog lists it)"},
		{a, "share add web", "usage: share add <vm> <email> [--message M]"},
		{a, "share add web bob@example.com carol@example.com", "usage: share add <vm> <email> [--message M]"},
		{a, "share show", "usage: share show <vm>"},
		{a, "share show web blog", "usage: share show <vm>"},
		{a, "share remove-link web", "usage: share remove-link <vm> <token>"},
		{a, "share frobnicate web", `unknown command "share frobnicate" (run "help" for the list)`},
		{a, "share add --bogus web bob@example.com", "share add: unknown flag: --bogus (see share add --help)"},
		{a, "log --limit 0", "--limit: want 1 to 1000"},
		{a, "log --limit 1001", "--limit: want 1 to 1000"},
		{a, "log --since yesterday", `invalid --since "yesterday": use an RFC 3339 time`},
		{a, "log extra", "unexpected argument (this command takes none)"},
	} {
		out, err := e.run(tt.who, tt.line, "")
		switch {
		case err == nil:
			t.Errorf("%q succeeded: %q", tt.line, out)
		case !strings.HasPrefix(err.Error(), tt.want):
			t.Errorf("%q: %q, want %q", tt.line, err, tt.want)
		case strings.ContainsAny(err.Error(), "\r\n"):
			t.Errorf("%q: error of several lines: %q", tt.line, err)
		case strings.Contains(err.Error(), l.Token):
			t.Errorf("%q: the error repeats the link token", tt.line)
		}
	}
	if after := e.Dump(); after != before {
		t.Errorf("refused commands changed the registry:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestShareGivesAccess: a shared user mints tokens for the VM and reaches
// it with them, as themselves, until the share is removed; a pending share
// gives nothing until its account exists.
func TestShareGivesAccess(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	a, b := callerOf(alice), callerOf(bob)
	check := func(tok string) error {
		t.Helper()
		vm, err := e.Store.VM(e.ctx, "web") // as the proxy looks it up
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Verifier.Verify(e.ctx, tok, tokens.Target{Namespace: "v0@web.exe.xyz", VM: &vm})
		return err
	}
	mintedByBob, err := tokens.MintExe0(bob.Signer, "v0@web.exe.xyz", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var te *tokens.Error
	if err := check(mintedByBob); !errors.As(err, &te) || te.Reason != tokens.ReasonVM {
		t.Fatalf("bob's token before the share: %v, want refused (vm)", err)
	}
	if _, err := e.run(b, "ssh-key generate-api-key --vm web", ""); err == nil || err.Error() != "you have no VM named web (see ls)" {
		t.Fatalf("bob's generate-api-key --vm web before the share: %v", err)
	}

	e.mustRun(a, "share add web bob@example.com", "")
	gen := e.mustRun(b, "ssh-key generate-api-key --vm web --json", "")
	var g struct{ Token string }
	json.Unmarshal([]byte(gen), &g)
	exe1 := e.mustRun(b, "exe0-to-exe1 --vm web --json "+mintedByBob, "")
	var h struct{ Token string }
	json.Unmarshal([]byte(exe1), &h)
	for name, tok := range map[string]string{"generated": g.Token, "minted": mintedByBob, "exe1": h.Token} {
		if err := check(tok); err != nil {
			t.Errorf("bob's %s token with the share: %v", name, err)
		}
	}
	if out := e.mustRun(b, "ssh-key check-api-key --vm web "+mintedByBob, ""); !strings.HasPrefix(out, "valid: yes") {
		t.Errorf("check-api-key for a shared VM:\n%s", out)
	}
	// A share is not ownership.
	if _, err := e.run(b, "share show web", ""); err == nil {
		t.Error("bob ran share show on alice's VM")
	}

	e.mustRun(a, "share remove web bob@example.com", "")
	for name, tok := range map[string]string{"generated": g.Token, "minted": mintedByBob, "exe1": h.Token} {
		if err := check(tok); !errors.As(err, &te) || te.Reason != tokens.ReasonVM {
			t.Errorf("bob's %s token after the share was removed: %v, want refused (vm)", name, err)
		}
	}
	if _, err := e.run(b, "ssh-key generate-api-key --vm web --label again", ""); err == nil {
		t.Error("bob minted a token for web after the share was removed")
	}

	// Pending until the account exists; then active, with nothing else to do.
	e.mustRun(a, "share add web carol@example.com", "")
	carol := e.AddUser("carol@example.com", 3)
	if out := e.mustRun(callerOf(carol), "ls --json", ""); !strings.Contains(out, `"shared_vms":[{"vm_name":"web","https_url":"https://web.exe.xyz","public":false,"owner_email":"alice@example.com"}]`) {
		t.Errorf("carol's ls after her account was made: %s", out)
	}
	e.mustRun(callerOf(carol), "ssh-key generate-api-key --vm web", "")
}

// TestLogScriptedSession: after a session of changes, log --json lists
// exactly the events that session caused, newest first, with the door
// (via) and address each came through; nobody else's.
func TestLogScriptedSession(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	a := callerOf(alice)
	exec := a
	exec.Via, exec.RemoteAddr = store.ViaExec, "198.51.100.7:443"
	e.mustRun(callerOf(bob), "ssh-key generate-api-key", "") // bob's, not in alice's log
	desktop := testkit.SeededSigner(t, 3)
	fp := func(out string) string {
		t.Helper()
		m := regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`).FindString(out)
		if m == "" {
			t.Fatalf("no fingerprint in %q", out)
		}
		return m
	}
	type want struct{ action, subject, via string }
	var wants []want
	step := func(c Caller, line, action, subject string) string {
		t.Helper()
		e.clock.Advance(time.Second)
		out := e.mustRun(c, line, "")
		wants = append(wants, want{action, subject, c.Via})
		return out
	}
	out := step(a, "ssh-key add --name desktop "+testkit.PubLine(desktop), "key.add", "")
	wants[len(wants)-1].subject = fp(out)
	step(a, "ssh-key rename desktop desk", "key.rename", wants[0].subject)
	out = step(exec, "ssh-key generate-api-key --label tok", "token.generate", "")
	wants[len(wants)-1].subject = fp(out)
	exe0, _ := tokens.MintExe0(alice.Signer, "v0@exe.dev", []byte(`{}`))
	step(a, "exe0-to-exe1 "+exe0, "exe1.create", alice.Key.Fingerprint)
	step(a, "share add web bob@example.com", "share.add", "web bob@example.com")
	step(exec, "share add web dan@example.com", "share.add", "web dan@example.com")
	var link struct{ Token string }
	json.Unmarshal([]byte(step(a, "share add-link --json web", "share.link.add", "")), &link)
	wants[len(wants)-1].subject = "web " + tokens.ShareLinkName(link.Token)
	step(a, "share set-public web", "vm.public", "web")
	e.mustRun(a, "share set-public web", "") // no change: no event
	step(a, "share set-private web", "vm.private", "web")
	step(a, "share remove-link web "+link.Token, "share.link.remove", "web "+tokens.ShareLinkName(link.Token))
	step(a, "share remove web dan@example.com", "share.remove", "web dan@example.com")
	step(a, "ssh-key remove desk", "key.remove", wants[0].subject)
	// Refused changes leave nothing.
	e.run(a, "share add web bob@example.com", "")
	e.run(a, "ssh-key remove nosuch", "")

	var got struct{ Events []EventJSON }
	if err := json.Unmarshal([]byte(e.mustRun(a, "log --json", "")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != len(wants) {
		t.Fatalf("log lists %d events, want %d: %+v", len(got.Events), len(wants), got.Events)
	}
	for i, ev := range got.Events {
		w := wants[len(wants)-1-i] // newest first
		wantAddr := "192.0.2.1:5555"
		if w.via == store.ViaExec {
			wantAddr = "198.51.100.7:443"
		}
		wantAt := rfc3339(testNow.Add(time.Duration(len(wants)-i) * time.Second))
		if ev.Action != w.action || ev.Subject != w.subject || ev.Via != w.via || ev.ActorEmail != "alice@example.com" ||
			ev.RemoteAddr != wantAddr || ev.At != wantAt || (i > 0 && ev.ID >= got.Events[i-1].ID) {
			t.Errorf("event %d = %+v, want %+v at %s from %s", i, ev, w, wantAt, wantAddr)
		}
	}
	// --limit and --since cut it.
	json.Unmarshal([]byte(e.mustRun(a, "log --json --limit 2", "")), &got)
	if len(got.Events) != 2 || got.Events[0].Action != "key.remove" {
		t.Errorf("log --limit 2 = %+v", got.Events)
	}
	since := rfc3339(testNow.Add(time.Duration(len(wants)-2) * time.Second))
	json.Unmarshal([]byte(e.mustRun(a, "log --json --since "+since, "")), &got)
	if len(got.Events) != 3 {
		t.Errorf("log --since %s = %+v, want the last three", since, got.Events)
	}
	// The store recorded the key each change was made with.
	evs, err := e.Store.QueryEvents(context.Background(), store.EventQuery{ActorID: alice.User.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Credential != alice.Key.Fingerprint {
			t.Errorf("event %s recorded credential %q, want alice's key", ev.Action, ev.Credential)
		}
	}
}
