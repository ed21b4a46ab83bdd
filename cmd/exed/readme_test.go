package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
)

// The README's Quickstart blocks (and, in the same shell, docs/exec-api.md's)
// are run as written, so that they cannot rot. The substitutions are few and
// named where they happen:
//
//   - `go run ./cmd/exed serve --demo` is the binary the tests built, run
//     in a fresh working directory with the default data dir `exed-data`,
//     on free ports instead of the defaults 2222 and 8080;
//   - in the commands, the numbers 2222 and 8080 become those ports;
//   - `exed` is that binary, first on PATH.

// readmeScriptTimeout bounds one README script: a few SSH round trips and
// curls, each well under a second on a quiet machine.
const readmeScriptTimeout = 2 * time.Minute

// commands splits shell blocks into commands: one a line, lines ending in
// a backslash joined to the next, comments and blank lines dropped.
func commands(blocks ...string) []string {
	var cmds []string
	var cont string
	for _, b := range blocks {
		for _, line := range strings.Split(b, "\n") {
			line = strings.TrimSpace(line)
			if cont == "" && (line == "" || strings.HasPrefix(line, "#")) {
				continue
			}
			if l, ok := strings.CutSuffix(line, `\`); ok {
				cont += l
				continue
			}
			cmds = append(cmds, cont+line)
			cont = ""
		}
	}
	return cmds
}

// step is one command of a README script and what it printed.
type step struct {
	cmd, out string
}

var stepMark = regexp.MustCompile(`\n@@readme-step-(\d+)@@\n`)

// runSteps runs cmds in order in one bash (so that functions and variables
// carry over, as in the terminal the README is pasted into), stopping at
// the first failure, and returns each command's standard output. The shell
// has no controlling terminal, so ssh can never stop to prompt.
func runSteps(t *testing.T, dir string, env []string, cmds []string) []step {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, c := range cmds {
		fmt.Fprintf(&script, "printf '\\n@@readme-step-%d@@\\n'\n%s\n", i, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readmeScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()

	out := stdout.String()
	idx := stepMark.FindAllStringSubmatchIndex(out, -1)
	steps := make([]step, len(idx))
	for i, m := range idx {
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		n, _ := strconv.Atoi(out[m[2]:m[3]])
		steps[i] = step{cmd: cmds[n], out: out[m[1]:end]}
	}
	if err != nil {
		last := "(none)"
		if len(steps) > 0 {
			last = steps[len(steps)-1].cmd
		}
		t.Fatalf("README script failed at %q: %v\nstdout:\n%s\nstderr:\n%s", last, err, out, stderr.String())
	}
	if len(steps) != len(cmds) {
		t.Fatalf("ran %d of %d commands", len(steps), len(cmds))
	}
	return steps
}

// withPorts puts the test server's ports in place of the README's
// defaults.
func withPorts(s, sshPort, httpPort string) string {
	return regexp.MustCompile(`\b(2222|8080)\b`).ReplaceAllStringFunc(s, func(p string) string {
		if p == "2222" {
			return sshPort
		}
		return httpPort
	})
}

// TestReadmeWalkthrough runs the README Quickstart's walkthrough, then
// docs/exec-api.md's block against the demo, against `exed serve --demo`,
// and checks what the docs say they show; and that the demo prints the very
// same commands as the Quickstart.
func TestReadmeWalkthrough(t *testing.T) {
	testkit.RequireTools(t, "bash", "ssh", "curl", "jq")
	quick := docBlocks(t, "README.md", "## Quickstart", "sh")
	if got := strings.TrimSpace(quick[0]); got != "go run ./cmd/exed serve --demo" {
		t.Fatalf("the Quickstart starts with %q, want the demo server", got)
	}
	walk := quick[1:]
	execBlocks := docBlocks(t, "docs/exec-api.md", "## Against the demo", "sh")
	// The default names are .localhost ones, which curl resolves to
	// loopback itself: the walkthrough needs no --connect-to (nor any other
	// way of pointing a name at the server).
	for _, b := range append(append([]string{}, walk...), execBlocks...) {
		if strings.Contains(b, "--connect-to") || strings.Contains(b, "--resolve") {
			t.Errorf("the walkthrough points curl at the server by hand:\n%s", b)
		}
	}

	dir := t.TempDir()
	t.Chdir(dir) // the server and the commands share it, as two terminals in one checkout do
	srv := startServer(t, "exed-data", "--demo")
	_, sshPort := splitHostPort(t, srv.sshAddr)
	_, httpPort := splitHostPort(t, srv.httpAddr)
	for i := range walk {
		walk[i] = withPorts(walk[i], sshPort, httpPort)
	}
	for i := range execBlocks {
		execBlocks[i] = withPorts(execBlocks[i], sshPort, httpPort)
	}

	users := decode[userList](t, mustRun(t, srv.env, "user", "list", "--json"))
	if len(users.Users) != 1 || users.Users[0].Email != "demo@localhost" {
		t.Fatalf("demo users: %+v", users.Users)
	}
	demoID := users.Users[0].UserID

	// No HTTP proxy from the environment: curl talks to the test server.
	noProxy := []string{"NO_PROXY=*", "no_proxy=*"}
	steps := runSteps(t, dir, noProxy, commands(append(append([]string{}, walk...), execBlocks...)...))

	var carriers []string
	var sawList, saw401, sawExecWhoami, sawExecList, saw403, sawBrowser bool
	for _, s := range steps {
		out := strings.TrimSpace(s.out)
		switch {
		case strings.HasPrefix(s.cmd, "curl") && strings.Contains(s.cmd, "demo.vm.localhost") && !strings.Contains(s.cmd, " -i "):
			got := decode[echoed](t, out)
			h := got.Headers
			if len(h["X-Exedev-Userid"]) != 1 || h["X-Exedev-Userid"][0] != demoID ||
				len(h["X-Exedev-Email"]) != 1 || h["X-Exedev-Email"][0] != "demo@localhost" {
				t.Errorf("%s: the VM got %v, want the demo user's identity", s.cmd, h)
			}
			if _, ok := h["Authorization"]; ok {
				t.Errorf("%s: the credential reached the VM", s.cmd)
			}
			if _, ok := h["X-Exedev-Authorization"]; ok {
				t.Errorf("%s: the credential reached the VM", s.cmd)
			}
			carriers = append(carriers, s.cmd)
		case strings.HasPrefix(s.cmd, "curl") && strings.Contains(s.cmd, "demo.vm.localhost"):
			if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, " 401") {
				t.Errorf("%s after removing the token: %q, want 401", s.cmd, first)
			}
			saw401 = true
		case s.cmd == "exe ssh-key list":
			found := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) >= 3 && f[0] == "try" && f[1] == "token" && f[2] == "demo" {
					found = true
				}
			}
			if !found {
				t.Errorf("ssh-key list does not show the token try:\n%s", out)
			}
			sawList = true
		case s.cmd == "exe browser --vm demo":
			// A browser is not run here (TestBrowserLogin drives one): the
			// link's shape, for this server's main host and port.
			want := regexp.MustCompile(`(?m)^  http://exe\.localhost:` + httpPort + `/auth/verify\?token=[A-Z2-7]{26}$`)
			if !want.MatchString(out) || !strings.Contains(out, "It then opens http://demo.vm.localhost:"+httpPort+"/.") {
				t.Errorf("exe browser --vm demo printed:\n%s", out)
			}
			sawBrowser = true
		case strings.Contains(s.cmd, "-d whoami"):
			w := decode[struct {
				UserID string `json:"user_id"`
				Email  string `json:"email"`
			}](t, out)
			if w.UserID != demoID || w.Email != "demo@localhost" {
				t.Errorf("/exec whoami: %+v", w)
			}
			sawExecWhoami = true
		case strings.Contains(s.cmd, "-d 'ssh-key list'"):
			if !strings.Contains(out, `"name":"api"`) {
				t.Errorf("/exec ssh-key list does not show the api token: %s", out)
			}
			sawExecList = true
		case strings.Contains(s.cmd, "-d 'ssh-key generate-api-key'"):
			if !strings.HasSuffix(out, "\n403") {
				t.Errorf("/exec generate-api-key with a default token: %q, want 403", out)
			}
			saw403 = true
		}
	}
	if len(carriers) != 3 ||
		!strings.Contains(carriers[0], `-H "X-Exedev-Authorization: Bearer $TOKEN"`) ||
		!strings.Contains(carriers[1], `-H "Authorization: Bearer $TOKEN"`) ||
		!strings.Contains(carriers[2], `-u "x:$TOKEN"`) {
		t.Errorf("want the VM called three ways (X-Exedev-Authorization, Bearer, Basic), got %q", carriers)
	}
	if !sawList || !saw401 || !sawExecWhoami || !sawExecList || !saw403 || !sawBrowser {
		t.Errorf("README commands missing: list %v, 401 %v, /exec whoami %v, /exec ssh-key list %v, 403 %v, browser %v",
			sawList, saw401, sawExecWhoami, sawExecList, saw403, sawBrowser)
	}

	// The demo prints the walkthrough: the same lines, comments included.
	srv.stop()
	srv.mu.Lock()
	printed := srv.stdout.String()
	srv.mu.Unlock()
	want := nonBlankLines(strings.Join(walk, "\n"))
	got := nonBlankLines(printed)
	if i := slices.Index(got, want[0]); i >= 0 {
		got = got[i:]
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("serve --demo prints other commands than the README's walkthrough\nprinted:\n%s\nREADME:\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func nonBlankLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestDemoAddsOnlyWhatIsMissing: `serve --demo` on a data dir that is not
// empty keeps what is there (other users, the demo user and its key file)
// and adds only what is missing.
func TestDemoAddsOnlyWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	env := []string{"EXED_DATA=" + data}
	alice := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", alice+".pub")
	keyFile := filepath.Join(data, demoKeyFile)

	usersByEmail := func() map[string]string { // email → "id keys"
		t.Helper()
		m := map[string]string{}
		for _, u := range decode[userList](t, mustRun(t, env, "user", "list", "--json")).Users {
			if _, dup := m[u.Email]; dup {
				t.Fatalf("user %s listed twice", u.Email)
			}
			m[u.Email] = fmt.Sprintf("%s %d", u.UserID, u.SSHKeys)
		}
		return m
	}
	demoVMs := func() int {
		t.Helper()
		n := 0
		for _, vm := range decode[vmList](t, mustRun(t, env, "vm", "list", "--json")).VMs {
			if vm.Name == "demo" && vm.Owner == "demo@localhost" {
				n++
			}
		}
		return n
	}
	readKey := func() string {
		t.Helper()
		b, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	startServer(t, data, "--demo").stop()
	first := usersByEmail()
	if len(first) != 2 || first["alice@example.com"] == "" || !strings.HasSuffix(first["demo@localhost"], " 1") {
		t.Fatalf("after the first demo start: %v, want alice and demo with one key", first)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("demo key file: %v, %v (want mode 0600)", fi, err)
	}
	key := readKey()

	// Again on the same data: nothing new, the key file untouched.
	startServer(t, data, "--demo").stop()
	if got := usersByEmail(); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Errorf("a second demo start changed the users: %v, was %v", got, first)
	}
	if readKey() != key {
		t.Error("a second demo start rewrote the demo key file")
	}
	if n := demoVMs(); n != 1 {
		t.Errorf("%d demo VMs, want 1", n)
	}

	// The key file lost: a fresh key, added to the same demo user, works.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, data, "--demo")
	if readKey() == key {
		t.Fatal("no new demo key file")
	}
	demoID, _, _ := strings.Cut(first["demo@localhost"], " ")
	if got := usersByEmail(); got["demo@localhost"] != demoID+" 2" || got["alice@example.com"] != first["alice@example.com"] || len(got) != 2 {
		t.Errorf("after losing the key file: %v, want demo %s with 2 keys and alice unchanged", got, demoID)
	}
	r := srv.client(t, keyFile).ssh(t, "", "whoami", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"user_id":"`+demoID+`"`) {
		t.Errorf("whoami with the new demo key: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if n := demoVMs(); n != 1 {
		t.Errorf("%d demo VMs, want 1", n)
	}
}
