package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/sshcmd"
)

// countingUpstream is the echo upstream, counting the requests that reach
// it.
func countingUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	echo := proxy.Echo()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		echo.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	return up, &hits
}

type lsJSON struct {
	VMs []struct {
		Name string `json:"vm_name"`
	} `json:"vms"`
	SharedVMs []struct {
		Name       string `json:"vm_name"`
		URL        string `json:"https_url"`
		Public     bool   `json:"public"`
		OwnerEmail string `json:"owner_email"`
	} `json:"shared_vms"`
}

// dumpSQLite is everything the data dir's registry holds (testkit.DumpText).
func dumpSQLite(t *testing.T, data string) string {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(data, "exed.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return testkit.DumpText(testkit.DumpDB(t, db, true))
}

// TestSharingEndToEnd drives the real binary with stock ssh and curl: bob
// is refused at alice's private VM (401, the upstream never called);
// alice shares it; bob's tokens — minted by him over SSH, and offline with
// ssh-keygen — reach it as bob; alice removes the share and the very next
// request is refused.
func TestSharingEndToEnd(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen", "curl", "bash")
	up, hits := countingUpstream(t)
	f := newFixture(t)
	mustRun(t, f.srv.env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", up.URL)
	_, port := splitHostPort(t, f.srv.httpAddr)
	url := "http://app.exe.xyz:" + port + "/"

	offline := testkit.RecipeToken(t, f.bobKey, "v0@app.exe.xyz", `{"ctx":{"who":"bob"}}`, "")
	refusedAll := func(when string, toks ...string) {
		t.Helper()
		before := hits.Load()
		for _, tok := range toks {
			if code, body := f.srv.curl(t, url, "-H", "X-Exedev-Authorization: Bearer "+tok); code != "401" {
				t.Errorf("%s: status %s, body %q; want 401", when, code, body)
			}
		}
		if n := hits.Load() - before; n != 0 {
			t.Errorf("%s: the upstream was called %d times", when, n)
		}
	}
	refusedAll("bob's offline token before the share", offline)
	f.bob.fails(t, "you have no VM named app", "ssh-key", "generate-api-key", "--vm=app")

	f.alice.ok(t, "", "share", "add", "app", "bob@example.com")
	gen := decode[generated](t, f.bob.ok(t, "", "ssh-key", "generate-api-key", "--vm=app", "--label=shared", "--json"))
	exe1 := decode[struct{ Token string }](t, f.bob.ok(t, "", "exe0-to-exe1", "--vm", "app", "--json", offline))
	for name, tok := range map[string]string{"generated over SSH": gen.Token, "minted offline": offline, "exe1 of the offline one": exe1.Token} {
		before := hits.Load()
		code, body := f.srv.curl(t, url, "-H", "X-Exedev-Authorization: Bearer "+tok)
		if code != "200" || hits.Load() != before+1 {
			t.Fatalf("bob's token %s: status %s: %s", name, code, body)
		}
		h := decode[echoed](t, body).Headers
		if len(h["X-Exedev-Email"]) != 1 || h["X-Exedev-Email"][0] != "bob@example.com" || strings.Contains(body, "alice") {
			t.Errorf("bob's token %s reached the VM as %v", name, h)
		}
	}
	ls := decode[lsJSON](t, f.bob.ok(t, "", "ls", "--json"))
	if len(ls.SharedVMs) != 1 || ls.SharedVMs[0].Name != "app" || ls.SharedVMs[0].OwnerEmail != "alice@example.com" ||
		ls.SharedVMs[0].URL != "http://app.exe.xyz:"+port || len(ls.VMs) != 0 {
		t.Errorf("bob's ls = %+v", ls)
	}

	f.alice.ok(t, "", "share", "remove", "app", "bob@example.com")
	refusedAll("bob's tokens after the share was removed", gen.Token, offline, exe1.Token)
	if strings.Contains(f.srv.logs(), offline) || strings.Contains(f.srv.logs(), gen.Token) {
		t.Error("a token is in the server log")
	}
}

// TestShareRefusalsEndToEnd: over stock ssh, each bad share command exits
// 1 with one line on stderr, and the registry file holds exactly what it
// held before.
func TestShareRefusalsEndToEnd(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen")
	f := newFixture(t)
	f.alice.ok(t, "", "share", "add", "web", "bob@example.com")
	link := decode[struct{ Token string }](t, f.alice.ok(t, "", "share", "add-link", "--json", "web"))
	before := dumpSQLite(t, f.srv.data)
	for _, tt := range []struct {
		c    *sshClient
		want string
		cmd  []string
	}{
		{f.alice, `VM "nosuch" not found or access denied`, []string{"share", "add", "nosuch", "carol@example.com"}},
		{f.bob, `VM "web" not found or access denied`, []string{"share", "add", "web", "carol@example.com"}},
		{f.bob, `VM "web" not found or access denied`, []string{"share", "remove-link", "web", link.Token}},
		{f.alice, `email "not-an-email": not a bare address`, []string{"share", "add", "web", "not-an-email"}},
		{f.alice, "you own web: there is no need to share it with yourself", []string{"share", "add", "web", "alice@example.com"}},
		{f.alice, "BOB@example.com is already shared with web", []string{"share", "add", "web", "BOB@example.com"}},
		{f.alice, "web is not shared with carol@example.com", []string{"share", "remove", "web", "carol@example.com"}},
		{f.alice, "web has no such share link", []string{"share", "remove-link", "web", "NOTALINKTOKENATALL2222222A"}},
	} {
		line := tt.c.fails(t, tt.want, tt.cmd...)
		if strings.Contains(line, link.Token) {
			t.Errorf("%v: the error repeats the link token", tt.cmd)
		}
	}
	if after := dumpSQLite(t, f.srv.data); after != before {
		t.Errorf("refused commands changed the registry:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestShareLinkEndToEnd: the VM owner's share link, opened with a token,
// is answered by exed with a redirect to the same URL without the token
// and no Referer; the VM never sees it; share show counts the use.
func TestShareLinkEndToEnd(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen", "curl")
	up, hits := countingUpstream(t)
	f := newFixture(t)
	mustRun(t, f.srv.env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", up.URL)
	_, port := splitHostPort(t, f.srv.httpAddr)
	link := decode[struct{ Token, URL string }](t, f.alice.ok(t, "", "share", "add-link", "--json", "app"))
	if want := "http://app.exe.xyz:" + port + "/?share=" + link.Token; link.URL != want {
		t.Fatalf("add-link url %q, want %q", link.URL, want)
	}
	tok := decode[generated](t, f.alice.ok(t, "", "ssh-key", "generate-api-key", "--vm=app", "--json")).Token
	code, out := f.srv.curl(t, link.URL+"&x=1", "-D", "-", "-H", "X-Exedev-Authorization: Bearer "+tok)
	if code != "302" || !strings.Contains(out, "\r\nLocation: /?x=1\r\n") || !strings.Contains(out, "\r\nReferrer-Policy: no-referrer\r\n") {
		t.Errorf("share link: %s\n%s", code, out)
	}
	if hits.Load() != 0 {
		t.Errorf("the VM was called %d times", hits.Load())
	}
	show := decode[struct {
		Links []struct {
			Token    string `json:"token"`
			UseCount int    `json:"use_count"`
		} `json:"links"`
	}](t, f.alice.ok(t, "", "share", "show", "--json", "app"))
	if len(show.Links) != 1 || show.Links[0].UseCount != 1 || strings.Contains(show.Links[0].Token, link.Token) {
		t.Errorf("share show links = %+v", show.Links)
	}
	if strings.Contains(f.srv.logs(), link.Token) {
		t.Error("the link token is in the server log")
	}
}

// TestAdminShareAndPending: exed vm share add|list|remove, and a pending
// share made active by exed user add, with the server running.
func TestAdminShareAndPending(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen")
	f := newFixture(t)
	env := f.srv.env
	if out := mustRun(t, env, "vm", "share", "add", "web", "carol@example.com"); !strings.Contains(out, "pending") {
		t.Errorf("vm share add for no account: %q", out)
	}
	if out := mustRun(t, env, "vm", "share", "add", "web", "bob@example.com"); out != "shared vm web with bob@example.com (active)\n" {
		t.Errorf("vm share add: %q", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "share", "add", "web", "bob@example.com"}, "exed: vm share add: bob@example.com is already shared with web\n"},
		{[]string{"vm", "share", "add", "web", "alice@example.com"}, "exed: vm share add: alice@example.com owns web\n"},
		{[]string{"vm", "share", "add", "nosuch", "bob@example.com"}, "exed: vm share add: no VM named nosuch\n"},
		{[]string{"vm", "share", "add", "web", "nope"}, "exed: vm share add: email \"nope\": not a bare address like name@example.com\n"},
		{[]string{"vm", "share", "remove", "web", "dan@example.com"}, "exed: vm share remove: web is not shared with dan@example.com\n"},
		{[]string{"vm", "share", "list"}, "exed: vm share list: want exactly one VM name\n"},
	} {
		if r := run(t, env, "", tt.args...); r.code != 1 || r.stderr != tt.want || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
		}
	}
	list := decode[struct {
		VMName string `json:"vm_name"`
		Status string `json:"status"`
		Users  []struct {
			Email, Status string
		} `json:"users"`
	}](t, mustRun(t, env, "vm", "share", "list", "--json", "web"))
	statuses := map[string]string{}
	for _, u := range list.Users {
		statuses[u.Email] = u.Status
	}
	if list.VMName != "web" || list.Status != "private" || len(list.Users) != 2 ||
		statuses["carol@example.com"] != "pending" || statuses["bob@example.com"] != "active" {
		t.Errorf("vm share list = %+v", list)
	}
	// carol's account: the pending share is hers at once.
	carolKey := testkit.SSHKeygen(t, f.dir, "ed25519", 0)
	if out := mustRun(t, env, "user", "add", "--email", "Carol@Example.com", "--key-file", carolKey+".pub"); !strings.Contains(out, "pending shares now active: web\n") {
		t.Errorf("user add: %q", out)
	}
	carol := f.srv.client(t, carolKey)
	if ls := decode[lsJSON](t, carol.ok(t, "", "ls", "--json")); len(ls.SharedVMs) != 1 || ls.SharedVMs[0].Name != "web" {
		t.Errorf("carol's ls = %+v", ls)
	}
	carol.ok(t, "", "ssh-key", "generate-api-key", "--vm=web")
	mustRun(t, env, "vm", "share", "remove", "web", "carol@example.com")
	carol.fails(t, "you have no VM named web", "ssh-key", "generate-api-key", "--vm=web", "--label=again")
}

// TestLogEndToEnd: after a scripted session over stock ssh (and one
// command over /exec with curl), log --json lists exactly the events that
// session caused, newest first, each with its door and address; exed
// audit shows them too, and --user narrows to one user.
func TestLogEndToEnd(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen", "curl")
	f := newFixture(t)
	_, port := splitHostPort(t, f.srv.httpAddr)
	k2 := testkit.SSHKeygen(t, f.dir, "ed25519", 0)
	type want struct{ action, via string }
	var wants []want
	ssh := func(action string, cmd ...string) string {
		t.Helper()
		out := f.alice.ok(t, "", cmd...)
		wants = append(wants, want{action, "ssh"})
		return out
	}
	ssh("key.add", "ssh-key", "add", "--name", "second", readPub(t, k2))
	ssh("key.rename", "ssh-key", "rename", "second", "two")
	api := decode[generated](t, ssh("token.generate", "ssh-key generate-api-key --label api --cmds='share add,log' --json"))
	ssh("share.add", "share", "add", "web", "bob@example.com")
	ssh("share.link.add", "share", "add-link", "web")
	ssh("vm.public", "share", "set-public", "web")
	ssh("vm.private", "share", "set-private", "web")
	code, body := f.srv.curl(t, "http://exe.dev:"+port+"/exec", "-X", "POST", "-H", "Authorization: Bearer "+api.Token, "--data-binary", "share add web dan@example.com")
	if code != "200" {
		t.Fatalf("/exec share add: %s %s", code, body)
	}
	wants = append(wants, want{"share.add", "exec"})
	ssh("share.remove", "share", "remove", "web", "bob@example.com")
	ssh("key.remove", "ssh-key", "remove", "two")
	f.alice.fails(t, "already shared", "share", "add", "web", "dan@example.com") // refused: no event
	f.bob.ok(t, "", "ssh-key", "generate-api-key")                               // bob's: not in alice's log

	log := decode[struct{ Events []sshcmd.EventJSON }](t, f.alice.ok(t, "", "log", "--json"))
	if len(log.Events) != len(wants) {
		t.Fatalf("log lists %d events, want %d: %+v", len(log.Events), len(wants), log.Events)
	}
	for i, ev := range log.Events {
		w := wants[len(wants)-1-i]
		if ev.Action != w.action || ev.Via != w.via || ev.ActorEmail != "alice@example.com" || !strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:") {
			t.Errorf("event %d = %+v, want %s via %s from 127.0.0.1", i, ev, w.action, w.via)
		}
	}
	// And through /exec, granted.
	code, body = f.srv.curl(t, "http://exe.dev:"+port+"/exec", "-X", "POST", "-H", "Authorization: Bearer "+api.Token, "--data-binary", "log --limit 1")
	if code != "200" || !strings.Contains(body, `"action":"key.remove"`) {
		t.Errorf("/exec log: %s %s", code, body)
	}

	// exed audit: everything, oldest first; --user: one user's.
	var all, mine []sshcmd.EventJSON
	for _, line := range strings.Split(strings.TrimSpace(mustRun(t, f.srv.env, "audit", "--json")), "\n") {
		all = append(all, decode[sshcmd.EventJSON](t, line))
	}
	for _, line := range strings.Split(strings.TrimSpace(mustRun(t, f.srv.env, "audit", "--json", "--user", "alice@example.com")), "\n") {
		mine = append(mine, decode[sshcmd.EventJSON](t, line))
	}
	if len(mine) != len(wants) || mine[0].Action != "key.add" || len(all) <= len(mine) || all[0].Action != "user.add" || all[0].Via != "admin" {
		t.Errorf("audit: %d rows, %d of alice's; first %+v", len(all), len(mine), all[0])
	}
	if r := run(t, f.srv.env, "", "audit", "--since", "soon"); r.code != 1 || !strings.Contains(r.stderr, `invalid --since "soon"`) {
		t.Errorf("audit --since soon: %d %q", r.code, r.stderr)
	}
}

// readPub is the public half of an ssh-keygen key pair, one line.
func readPub(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAuditFollowSQLite: exed audit --follow prints a row written through
// the running server within a second.
func TestAuditFollowSQLite(t *testing.T) {
	testkit.RequireTools(t, "ssh", "ssh-keygen")
	f := newFixture(t)
	a := startAudit(t, f.srv.env)
	gen := decode[generated](t, f.alice.ok(t, "", "ssh-key", "generate-api-key", "--label", "followed", "--json"))
	took := a.waitFor(t, "token.generate", gen.Fingerprint, time.Now())
	if took > time.Second {
		t.Errorf("audit --follow printed the row %v after the command returned, want within 1s", took)
	}
	t.Logf("audit --follow (SQLite): the row printed %v after the command returned", took.Round(time.Millisecond))
	a.stop(t)
}

// auditFollower is a running `exed audit --follow --json`, and the rows it
// printed, with when each line came.
type auditFollower struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	rows []followedRow
}

type followedRow struct {
	ev sshcmd.EventJSON
	at time.Time
}

func startAudit(t *testing.T, env []string) *auditFollower {
	t.Helper()
	a := &auditFollower{done: make(chan struct{})}
	a.cmd = exec.Command(exedBin, "audit", "--follow", "--json")
	a.cmd.Env = append(a.cmd.Environ(), env...)
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	a.cmd.Stderr = &stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			at := time.Now()
			var r followedRow
			r.at = at
			if err := json.Unmarshal(sc.Bytes(), &r.ev); err != nil {
				t.Errorf("audit printed %q: %v", sc.Text(), err)
				continue
			}
			a.mu.Lock()
			a.rows = append(a.rows, r)
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		a.cmd.Wait()
	})
	// It has printed the log so far (there is always user.add) before the
	// test writes anything new.
	testkit.WaitWithin(t, "exed audit --follow printing the existing rows", 20*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.rows) > 0
	})
	return a
}

// waitFor waits for the row with action and subject and returns how long
// after since it was printed.
func (a *auditFollower) waitFor(t *testing.T, action, subject string, since time.Time) time.Duration {
	t.Helper()
	var at time.Time
	testkit.WaitWithin(t, "exed audit --follow printing "+action+" "+subject, 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, r := range a.rows {
			if r.ev.Action == action && r.ev.Subject == subject {
				at = r.at
				return true
			}
		}
		return false
	})
	return at.Sub(since)
}

// stop interrupts it, as an operator's Ctrl-C would: it exits 0.
func (a *auditFollower) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGINT)
	<-a.done
	if err := a.cmd.Wait(); err != nil {
		t.Errorf("exed audit --follow on SIGINT: %v", err)
	}
}

// TestSharingDocWalkthrough runs docs/sharing.md's block against
// `exed serve --demo`, after the Quickstart's first block (which defines
// exe), and checks what the doc says it shows. The substitutions are the
// README test's: the test's ports for 2222 and 8080, and the built exed
// first on PATH.
func TestSharingDocWalkthrough(t *testing.T) {
	testkit.RequireTools(t, "bash", "ssh", "ssh-keygen", "curl", "jq")
	quick := docBlocks(t, "README.md", "## Quickstart", "sh")
	blocks := docBlocks(t, "docs/sharing.md", "## Against the demo", "sh")
	if len(quick) < 2 || len(blocks) != 1 {
		t.Fatalf("found %d Quickstart blocks and %d sharing blocks", len(quick), len(blocks))
	}
	dir := t.TempDir()
	t.Chdir(dir)
	srv := startServer(t, "exed-data", "--demo")
	_, sshPort := splitHostPort(t, srv.sshAddr)
	_, httpPort := splitHostPort(t, srv.httpAddr)
	env := []string{"NO_PROXY=*", "no_proxy=*", "PATH=" + filepath.Dir(exedBin) + string(os.PathListSeparator) + os.Getenv("PATH")}
	steps := runSteps(t, dir, env, commands(withPorts(quick[1], sshPort, httpPort), withPorts(blocks[0], sshPort, httpPort)))

	var sawBob, sawShow, saw401, sawLog bool
	for _, s := range steps {
		out := strings.TrimSpace(s.out)
		switch {
		case strings.HasPrefix(s.cmd, "curl") && strings.Contains(s.cmd, "BOB_TOKEN") && !strings.Contains(s.cmd, " -i "):
			h := decode[echoed](t, out).Headers
			if len(h["X-Exedev-Email"]) != 1 || h["X-Exedev-Email"][0] != "bob@example.com" {
				t.Errorf("the demo VM got %v, want bob's identity", h)
			}
			sawBob = true
		case strings.HasPrefix(s.cmd, "curl") && strings.Contains(s.cmd, "BOB_TOKEN"):
			if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, " 401") {
				t.Errorf("bob's token after the share was removed: %q, want 401", first)
			}
			saw401 = true
		case s.cmd == "exe share show demo":
			if !regexp.MustCompile(`bob@example\.com\s+active`).MatchString(out) {
				t.Errorf("share show does not list bob as active:\n%s", out)
			}
			sawShow = true
		case s.cmd == "exe log":
			if !strings.Contains(out, "share.remove") || !strings.Contains(out, "share.add") {
				t.Errorf("log does not show the share and its removal:\n%s", out)
			}
			sawLog = true
		}
	}
	if !sawBob || !sawShow || !saw401 || !sawLog {
		t.Errorf("doc commands missing: bob's call %v, share show %v, 401 %v, log %v", sawBob, sawShow, saw401, sawLog)
	}
}
