package sshcmd

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// TestParsePath: Parse resolves a line to its canonical path, or refuses
// it as an unknown command, whatever its flags and arguments.
func TestParsePath(t *testing.T) {
	s := New(Env{})
	good := map[string]string{
		"":                                   "help",
		"help":                               "help",
		"help ssh-key add":                   "help",
		"--help":                             "help",
		"whoami --json":                      "whoami",
		"ls":                                 "ls",
		"ssh-key":                            "ssh-key",
		"ssh-key --help":                     "ssh-key",
		"ssh-key list --json":                "ssh-key list",
		"ssh-key add --name x ssh-ed25519 A": "ssh-key add",
		"ssh-key remove laptop":              "ssh-key remove",
		"ssh-key rename a b":                 "ssh-key rename",
		"ssh-key generate-api-key --vm=web":  "ssh-key generate-api-key",
		"ssh-key check-api-key exe0.x.y":     "ssh-key check-api-key",
		"exe0-to-exe1 exe0.a.b":              "exe0-to-exe1",
	}
	for line, want := range good {
		args, _ := Split(line)
		inv, err := s.Parse(args)
		if err != nil || inv.Path() != want {
			t.Errorf("Parse(%q) = %v; want path %q", line, err, want)
		}
	}
	bad := map[string]string{
		"rm -rf /":                 `unknown command "rm"`,
		"ssh-key frobnicate":       `unknown command "ssh-key frobnicate"`,
		"'ssh-key list'":           `unknown command`,
		"--json whoami":            `unknown command`,
		"exe0.AAAA.BBBB":           `unknown command (run`, // never echoed: could be a token
		"SSH-KEY list":             `unknown command (run`,
		"generate-api-key":         `unknown command "generate-api-key"`,
		"ssh-key generate_api_key": `unknown command`,
	}
	for line, want := range bad {
		args, _ := Split(line)
		inv, err := s.Parse(args)
		if !errors.Is(err, ErrUnknownCommand) || inv != nil {
			t.Errorf("Parse(%q) = %v, %v; want ErrUnknownCommand", line, inv, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Parse(%q) error %q, want prefix %q", line, err, want)
		}
	}
}

// isHelp reports whether line parses (against s) as only asking for help,
// the question /exec asks.
func isHelp(s *Suite, line string) bool {
	args, _ := Split(line)
	inv, err := s.Parse(args)
	return err == nil && inv.IsHelp()
}

// TestParseFlagError: a line whose flags do not parse still names its
// command (so /exec checks the grant for it first), is not help, and Run
// of it returns the flag error before anything else, as Suite.Run does.
func TestParseFlagError(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	for line, want := range map[string]string{
		"whoami --bogus": "whoami: unknown flag: --bogus (see whoami --help)",
		"ssh-key generate-api-key --bogus --help": "ssh-key generate-api-key: unknown flag: --bogus",
		"ssh-key list --json=maybe":               `ssh-key list: invalid argument "maybe" for "--json" flag`,
	} {
		args, _ := Split(line)
		inv, err := e.suite.Parse(args)
		if err != nil {
			t.Fatalf("Parse(%q): %v, want an Invocation", line, err)
		}
		path, _, _ := strings.Cut(want, ":")
		if inv.Path() != path || inv.IsHelp() {
			t.Errorf("Parse(%q): path %q, help %v; want %q, not help", line, inv.Path(), inv.IsHelp(), path)
		}
		var out bytes.Buffer
		err = inv.Run(e.ctx, callerOf(alice), IO{Stdout: &out}, false)
		if err == nil || !strings.HasPrefix(err.Error(), want) || out.Len() != 0 {
			t.Errorf("Run(%q) = %v, stdout %q; want %q", line, err, out.String(), want)
		}
		if _, runErr := e.run(callerOf(alice), line, ""); runErr == nil || runErr.Error() != err.Error() {
			t.Errorf("Suite.Run(%q) = %v, Invocation.Run = %v; want the same", line, runErr, err)
		}
	}
}

func TestIsHelp(t *testing.T) {
	s := New(Env{})
	help := []string{
		"", "help", "help ssh-key add", "--help", "-h", "ssh-key", "ssh-key --help",
		"whoami --help", "ssh-key list -h", "ssh-key generate-api-key --vm web --help",
		"ssh-key generate-api-key --json --help", "ls --help --bogus",
	}
	for _, line := range help {
		if !isHelp(s, line) {
			t.Errorf("IsHelp(%q) = false, want true", line)
		}
	}
	notHelp := []string{
		"whoami", "ssh-key list", "ssh-key generate-api-key",
		// A flag's value is not a request for help: these run the command.
		"ssh-key generate-api-key --label --help",
		"ssh-key generate-api-key --label=--help",
		"ssh-key check-api-key -- --help",
		"ssh-key add --name -h",
		// A flag error comes first: not help, so /exec checks the grant.
		"ssh-key generate-api-key --bogus --help",
		"nosuchcommand --help",
	}
	for _, line := range notHelp {
		if isHelp(s, line) {
			t.Errorf("IsHelp(%q) = true, want false", line)
		}
	}
}

// TestIsHelpMatchesRun pins the rule /exec relies on: when IsHelp says a
// line is help, Run only prints usage and changes nothing.
func TestIsHelpMatchesRun(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	for _, line := range []string{
		"ssh-key generate-api-key --help",
		"ssh-key generate-api-key --label x --help",
		"ssh-key remove alice-laptop --help",
	} {
		if !isHelp(e.suite, line) {
			t.Fatalf("IsHelp(%q) = false", line)
		}
		out := e.mustRun(callerOf(alice), line, "")
		if !strings.HasPrefix(out, "Usage: ") {
			t.Errorf("%q printed %q, want usage", line, out)
		}
	}
	ks, err := e.Store.Keys(e.ctx, alice.User.ID)
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys after help = %v, %v; want only the login key", ks, err)
	}
	// And the value "--help" is a label, not help: the command runs (and
	// refuses that label).
	if _, err := e.run(callerOf(alice), "ssh-key generate-api-key --label=--help", ""); err == nil || !strings.HasPrefix(err.Error(), `--label "--help" is not a valid label`) {
		t.Errorf("--label=--help: %v", err)
	}
}

func TestDispatcherErrors(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	tests := []struct {
		line, want string
	}{
		{"nosuch", `unknown command "nosuch" (run "help" for the list)`},
		{"whoami --bogus", "whoami: unknown flag: --bogus (see whoami --help)"},
		{"ssh-key list --json=maybe", `ssh-key list: invalid argument "maybe" for "--json" flag`},
		{"ssh-key generate-api-key --exp", "ssh-key generate-api-key: flag needs an argument: --exp"},
		{"ssh-key generate-api-key --exp 3x", `--exp: invalid expiry "3x": use never, or a positive whole number followed by h, d, w, m (30 days) or y (365 days), e.g. 90d`},
		{"whoami extra", `unexpected argument "extra" (this command takes none; over ssh, a value with spaces or quotes needs a second layer of quotes)`},
		{"whoami exe0.abc.def", "unexpected argument (this command takes none;"},  // token-shaped: not repeated
		{"whoami --lable=x", "whoami: unknown flag: --lable (see whoami --help)"}, // no flag near it
		{"ssh-key generate-api-key --lable=x", "ssh-key generate-api-key: unknown flag: --lable; did you mean --label? (see ssh-key generate-api-key --help)"},
		{"ssh-key list --jsno", "ssh-key list: unknown flag: --jsno; did you mean --json? (see ssh-key list --help)"},
		{"ssh-key rename one", "usage: ssh-key rename <old> <new>"},
		{"ssh-key remove", "usage: ssh-key remove <name|fingerprint|pubkey>"},
		{"ssh-key check-api-key", "usage: ssh-key check-api-key [--vm V] <token>"},
		{"exe0-to-exe1", "usage: exe0-to-exe1 [--vm V] <exe0>"},
		{"help nosuch", `unknown command "nosuch" (run "help" for the list)`},
	}
	for _, tt := range tests {
		out, err := e.run(callerOf(alice), tt.line, "")
		if err == nil {
			t.Errorf("%q succeeded with %q, want error %q", tt.line, out, tt.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: error %q, want prefix %q", tt.line, err, tt.want)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: error is not one line: %q", tt.line, err)
		}
	}
}

// TestHelpForEveryCommand: every command answers --help (usage on stdout,
// success) and --help --json.
func TestHelpForEveryCommand(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	for _, c := range e.suite.commands {
		out := e.mustRun(callerOf(alice), c.path+" --help", "")
		if !strings.HasPrefix(out, "Usage: "+c.path) {
			t.Errorf("%s --help = %q", c.path, out)
		}
		if !c.group && c.path != "help" && !strings.Contains(out, "--json") {
			t.Errorf("%s --help does not list --json:\n%s", c.path, out)
		}
		out = e.mustRun(callerOf(alice), c.path+" --help --json", "")
		var h struct {
			Commands []commandJSON `json:"commands"`
		}
		if err := json.Unmarshal([]byte(out), &h); err != nil || len(h.Commands) != 1 || h.Commands[0].Name != c.path || h.Commands[0].Description == "" {
			t.Errorf("%s --help --json = %q (%v)", c.path, out, err)
		}
	}
}

func TestHelpJSON(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	out := e.mustRun(callerOf(alice), "help --json", "")
	var h struct {
		Commands []map[string]any `json:"commands"`
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range h.Commands {
		names = append(names, c["name"].(string))
		keys := slices.Sorted(maps.Keys(c))
		groups := map[string][]string{
			"ssh-key": {"ssh-key list", "ssh-key add", "ssh-key remove", "ssh-key rename", "ssh-key generate-api-key", "ssh-key check-api-key"},
			"share":   {"share show", "share add", "share remove", "share set-public", "share set-private", "share add-link", "share remove-link"},
		}
		if want, ok := groups[c["name"].(string)]; ok {
			if !slices.Equal(keys, []string{"description", "name", "subcommands"}) {
				t.Errorf("%v entry has fields %v", c["name"], keys)
			}
			var subs []string
			for _, s := range c["subcommands"].([]any) {
				subs = append(subs, s.(map[string]any)["name"].(string))
			}
			if !slices.Equal(subs, want) {
				t.Errorf("%v subcommands = %v, want %v", c["name"], subs, want)
			}
		} else if c["name"] == "sessions" {
			subs := c["subcommands"].([]any)
			if len(subs) != 1 || subs[0].(map[string]any)["name"] != "sessions revoke" {
				t.Errorf("sessions subcommands = %v, want [sessions revoke]", subs)
			}
		} else if !slices.Equal(keys, []string{"description", "name"}) {
			t.Errorf("%v entry has fields %v", c["name"], keys)
		}
	}
	if want := []string{"help", "whoami", "ls", "ssh-key", "exe0-to-exe1", "share", "log", "browser", "sessions"}; !slices.Equal(names, want) {
		t.Errorf("commands = %v, want %v", names, want)
	}
}

// TestJSONShapes runs every command with --json and checks its documented
// fields and their values.
func TestJSONShapes(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	e.AddVM("blog", alice, true)
	c := callerOf(alice)

	m, fields := testkit.JSONObject(t, e.mustRun(c, "whoami --json", ""))
	if !slices.Equal(fields, []string{"email", "ssh_keys", "user_id"}) || m["user_id"] != alice.User.ID || m["email"] != "alice@example.com" {
		t.Errorf("whoami --json = %v", m)
	}
	key := m["ssh_keys"].([]any)[0].(map[string]any)
	if got := slices.Sorted(maps.Keys(key)); !slices.Equal(got, []string{"added_at", "current", "fingerprint", "generated", "name", "public_key"}) {
		t.Errorf("KEY fields = %v", got)
	}
	if key["current"] != true || key["generated"] != false || key["added_at"] != "2025-06-01T12:00:00Z" || key["public_key"] != testkit.PubLine(alice.Signer) {
		t.Errorf("KEY = %v", key)
	}

	m, fields = testkit.JSONObject(t, e.mustRun(c, "ls --json", ""))
	vms := m["vms"].([]any)
	if !slices.Equal(fields, []string{"shared_vms", "vms"}) || len(vms) != 2 || len(m["shared_vms"].([]any)) != 0 {
		t.Fatalf("ls --json = %v", m)
	}
	blog := vms[0].(map[string]any)
	if got := slices.Sorted(maps.Keys(blog)); !slices.Equal(got, []string{"https_url", "public", "vm_name"}) ||
		blog["vm_name"] != "blog" || blog["https_url"] != "https://blog.exe.xyz" || blog["public"] != true {
		t.Errorf("ls entry = %v", blog)
	}

	other := testkit.SeededSigner(t, 50)
	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key add --json --name ci --vm web --cmds ls,whoami --exp 30d "+testkit.PubLine(other), ""))
	if !slices.Equal(fields, []string{"fingerprint", "name", "public_key", "status"}) || m["status"] != "added" || m["name"] != "ci" ||
		m["fingerprint"] != keys.Fingerprint(other.PublicKey()) || m["public_key"] != testkit.PubLine(other) {
		t.Errorf("ssh-key add --json = %v", m)
	}

	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key list --json", ""))
	list := m["ssh_keys"].([]any)
	ci := list[1].(map[string]any)
	if ci["vm"] != "web" || ci["expires_at"] != "2025-07-01T12:00:00Z" || ci["current"] != false ||
		!slices.Equal(anyStrings(ci["cmds"]), []string{"ls", "whoami"}) {
		t.Errorf("restricted KEY = %v", ci)
	}

	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key rename --json ci deploy", ""))
	if !slices.Equal(fields, []string{"fingerprint", "new_name", "old_name", "status"}) || m["status"] != "renamed" || m["old_name"] != "ci" || m["new_name"] != "deploy" {
		t.Errorf("rename --json = %v", m)
	}

	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --vm web --cmds ls --exp 1d --ctx '{\"role\":\"deploy\"}' --label tok", ""))
	if !slices.Equal(fields, []string{"cmds", "expires_at", "fingerprint", "label", "namespace", "token", "vm"}) ||
		m["namespace"] != "v0@web.exe.xyz" || m["vm"] != "web" || m["label"] != "tok" || m["expires_at"] != "2025-06-02T12:00:00Z" ||
		!strings.HasPrefix(m["token"].(string), "exe1.") {
		t.Errorf("generate-api-key --json = %v", m)
	}
	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --exe0", ""))
	if !slices.Equal(fields, []string{"fingerprint", "label", "namespace", "token"}) || m["namespace"] != "v0@exe.dev" || m["label"] != "api-key" ||
		!strings.HasPrefix(m["token"].(string), "exe0.") {
		t.Errorf("generate-api-key --json --exe0 = %v", m)
	}
	exe0 := m["token"].(string)

	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key check-api-key --json "+exe0, ""))
	if !slices.Equal(fields, []string{"checks", "valid"}) || m["valid"] != true {
		t.Errorf("check-api-key --json = %v", m)
	}
	check := m["checks"].([]any)[0].(map[string]any)
	if got := slices.Sorted(maps.Keys(check)); !slices.Equal(got, []string{"detail", "name", "ok"}) {
		t.Errorf("check fields = %v", got)
	}

	m, fields = testkit.JSONObject(t, e.mustRun(c, "exe0-to-exe1 --json "+exe0, ""))
	if !slices.Equal(fields, []string{"token"}) || !strings.HasPrefix(m["token"].(string), "exe1.") {
		t.Errorf("exe0-to-exe1 --json = %v", m)
	}

	m, fields = testkit.JSONObject(t, e.mustRun(c, "ssh-key remove --json deploy", ""))
	if !slices.Equal(fields, []string{"fingerprint", "name", "status"}) || m["status"] != "deleted" || m["name"] != "deploy" {
		t.Errorf("remove --json = %v", m)
	}
}

func anyStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		out = append(out, s.(string))
	}
	return out
}

// TestForceJSON: /exec's forceJSON gives JSON without --json.
func TestForceJSON(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	for _, line := range []string{"whoami", "ls", "ssh-key list", "help", "ssh-key list --help", "ssh-key"} {
		args, _ := Split(line)
		var out bytes.Buffer
		if err := e.suite.Run(e.ctx, callerOf(alice), args, IO{Stdout: &out}, true); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if !json.Valid(out.Bytes()) {
			t.Errorf("%q with forceJSON printed %q", line, out.String())
		}
	}
}

// newGoldenEnv is the account the golden files show: alice, with VMs web
// (private) and blog (public), and bob, with none.
func newGoldenEnv(t *testing.T) (e *testEnv, alice, bob testreg.Account) {
	e = newTestEnv(t)
	alice = e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	e.AddVM("blog", alice, true)
	return e, alice, e.AddUser("bob@example.com", 2)
}

// TestGolden compares what people read with checked-in files.
func TestGolden(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	c := callerOf(alice)

	golden(t, "help.txt", e.mustRun(c, "help", ""))
	golden(t, "help-ssh-key.txt", e.mustRun(c, "ssh-key", ""))
	golden(t, "usage-ssh-key-add.txt", e.mustRun(c, "help ssh-key add", ""))
	golden(t, "usage-generate-api-key.txt", e.mustRun(c, "ssh-key generate-api-key --help", ""))
	golden(t, "ls.txt", e.mustRun(c, "ls", ""))
	golden(t, "ls-empty.txt", e.mustRun(callerOf(bob), "ls", ""))
	golden(t, "ssh-key-add.txt", e.mustRun(c, "ssh-key add "+testkit.PubLine(testkit.SeededSigner(t, 3))+" alice@desktop", ""))
	golden(t, "ssh-key-add-restricted.txt", e.mustRun(c, "ssh-key add --name ci --vm web --cmds ls --exp 1w", testkit.PubLine(testkit.SeededSigner(t, 4))))
	e.clock.Set(testNow.Add(time.Hour))
	golden(t, "ssh-key-rename.txt", e.mustRun(c, "ssh-key rename alice@desktop desktop", ""))
	golden(t, "ssh-key-list.txt", e.mustRun(c, "ssh-key list", ""))
	golden(t, "whoami.txt", e.mustRun(c, "whoami", ""))
	golden(t, "ssh-key-remove.txt", e.mustRun(c, "ssh-key remove desktop", ""))
}

// TestGoldenJSON compares every command's --json output with checked-in
// files, beside the text ones: field names, their order and their values'
// shapes are public API (scripts read them), so any change shows as a
// diff. Tokens, fingerprints, public keys, user ids and times are masked
// (testkit.Mask); TestJSONShapes checks their values.
func TestGoldenJSON(t *testing.T) {
	e, alice, bob := newGoldenEnv(t)
	c := callerOf(alice)
	run := func(name string, c Caller, line, stdin string) map[string]any {
		t.Helper()
		out := e.mustRun(c, line, stdin)
		goldenJSON(t, name, out)
		m, _ := testkit.JSONObject(t, out)
		return m
	}

	run("help.json", c, "help --json", "")
	run("help-ssh-key.json", c, "ssh-key --json", "")
	run("usage-ssh-key-add.json", c, "ssh-key add --help --json", "")
	run("ls.json", c, "ls --json", "")
	run("ls-empty.json", callerOf(bob), "ls --json", "")
	desktop := testkit.SeededSigner(t, 3)
	run("ssh-key-add.json", c, "ssh-key add --json "+testkit.PubLine(desktop)+" alice@desktop", "")
	run("ssh-key-add-restricted.json", c, "ssh-key add --json --name ci --vm web --cmds ls,whoami --exp 1w", testkit.PubLine(testkit.SeededSigner(t, 4)))
	run("generate-api-key.json", c, "ssh-key generate-api-key --json --label deploy", "")
	webTok := run("generate-api-key-restricted.json", c, `ssh-key generate-api-key --json --vm web --cmds ls --exp 1d --ctx '{"role":"deploy"}' --label web-deploy`, "")["token"].(string)
	exe0 := run("generate-api-key-exe0.json", c, "ssh-key generate-api-key --json --exe0 --label raw", "")["token"].(string)
	run("exe0-to-exe1.json", c, "exe0-to-exe1 --json "+exe0, "")
	run("check-api-key.json", c, "ssh-key check-api-key --json "+exe0, "")
	run("check-api-key-vm.json", c, "ssh-key check-api-key --json --vm web "+webTok, "")
	// The refusals: check-api-key's answer is the JSON shape of every
	// reason a token is not valid.
	run("check-api-key-malformed.json", c, "ssh-key check-api-key --json exe0.x.y", "")
	run("check-api-key-namespace.json", c, "ssh-key check-api-key --json --vm web "+exe0, "")
	bobTok := e.mustRun(callerOf(bob), "ssh-key generate-api-key --json --exe0", "")
	bobExe0, _ := testkit.JSONObject(t, bobTok)
	run("check-api-key-not-yours.json", c, "ssh-key check-api-key --json "+bobExe0["token"].(string), "")

	if err := e.Store.TouchKeys(e.ctx, map[string]time.Time{keys.Fingerprint(desktop.PublicKey()): e.Now()}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(testNow.Add(time.Hour))
	run("ssh-key-rename.json", c, "ssh-key rename --json alice@desktop desktop", "")
	run("ssh-key-list.json", c, "ssh-key list --json", "")
	run("whoami.json", c, "whoami --json", "")
	run("ssh-key-remove.json", c, "ssh-key remove --json desktop", "")

	e.clock.Set(testNow.Add(48 * time.Hour))
	run("check-api-key-expired.json", c, "ssh-key check-api-key --json --vm web "+webTok, "")
	e.mustRun(c, "ssh-key remove raw", "")
	run("check-api-key-removed.json", c, "ssh-key check-api-key --json "+exe0, "")
}

// TestGenerateAPIKeyText: the token stands on a line of its own that a
// script can grep, with what it is and how to revoke it.
func TestGenerateAPIKeyText(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	out := e.mustRun(callerOf(alice), "ssh-key generate-api-key --vm=web --label=deploy --exp 90d", "")
	var token string
	for _, line := range strings.Split(out, "\n") {
		if t, ok := strings.CutPrefix(line, "token: "); ok {
			token = t
		}
	}
	if tokens.ParseExe1(token) != nil {
		t.Fatalf("no exe1 token line in:\n%s", out)
	}
	masked := strings.Replace(out, token, "exe1.XXXXXXXXXXXXXXXXXXXXXXXXXX", 1)
	k, err := e.Store.Key(e.ctx, fingerprintIn(t, out))
	if err != nil {
		t.Fatal(err)
	}
	masked = strings.Replace(masked, k.Fingerprint, "SHA256:FINGERPRINT", 1)
	golden(t, "generate-api-key.txt", masked)
}

func fingerprintIn(t *testing.T, out string) string {
	t.Helper()
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "SHA256:") {
			return f
		}
	}
	t.Fatalf("no fingerprint in %q", out)
	return ""
}

func TestSSHKeyAdd(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	bob := e.AddUser("bob@example.com", 2)
	c := callerOf(alice)

	// From stdin, with the key's comment as its name.
	k3 := testkit.SeededSigner(t, 3)
	e.mustRun(c, "ssh-key add", testkit.PubLine(k3)+" work@laptop\n")
	got, err := e.Store.Key(e.ctx, keys.Fingerprint(k3.PublicKey()))
	if err != nil || got.Name != "work@laptop" || got.UserID != alice.User.ID || got.Generated || got.PublicKey != testkit.PubLine(k3) {
		t.Errorf("added key = %+v, %v", got, err)
	}
	if ev := lastEvent(t, e); ev.Action != "key.add" || ev.Subject != got.Fingerprint || ev.ActorID != alice.User.ID || ev.RemoteAddr != "192.0.2.1:5555" || !ev.Time.Equal(testNow) {
		t.Errorf("add event = %+v", ev)
	}
	// A comment that is no valid name gives key-N.
	e.mustRun(c, "ssh-key add", testkit.PubLine(testkit.SeededSigner(t, 4))+" my laptop\n")
	if _, err := e.Store.Key(e.ctx, keys.Fingerprint(testkit.SeededSigner(t, 4).PublicKey())); err != nil {
		t.Fatal(err)
	}
	if k, _ := e.Store.Key(e.ctx, keys.Fingerprint(testkit.SeededSigner(t, 4).PublicKey())); k.Name != "key-3" {
		t.Errorf("default name = %q, want key-3", k.Name)
	}

	priv, err := keys.MarshalPrivateKey(testkit.SeededKey(9), "oops")
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct{ line, stdin, want string }{
		{"ssh-key add", "", "no public key: give it as an argument or on standard input"},
		{"ssh-key add", string(priv), "that is a private key: give the public key (the .pub file) instead"},
		{"ssh-key add", strings.Repeat("A", MaxStdin+1), "standard input is over 16 KiB"},
		{"ssh-key add", testkit.PubLine(testkit.SeededSigner(t, 5)) + "\n" + testkit.PubLine(testkit.SeededSigner(t, 6)), "give one public key, not several lines"},
		{"ssh-key add not-a-key", "", "invalid public key"},
		{"ssh-key add " + testkit.PubLine(k3), "", "key " + keys.Fingerprint(k3.PublicKey()) + " is already registered"},
		{"ssh-key add " + testkit.PubLine(bob.Signer), "", "is already registered"}, // bob's: same answer, no owner named
		{"ssh-key add --name alice-laptop " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", `a key named "alice-laptop" already exists`},
		{"ssh-key add --name 'a b' " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", "invalid key name"},
		{"ssh-key add --name SHA256:x " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", "invalid key name"},
		{"ssh-key add --vm nosuch " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", "you have no VM named nosuch (see ls)"},
		{"ssh-key add --vm Bad_Name " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", "--vm:"},
		{"ssh-key add --cmds ls,frob " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", `--cmds: unknown command "frob"`},
		{"ssh-key add --cmds ssh-key " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", `--cmds: unknown command "ssh-key"`},
		{"ssh-key add --exp 0d " + testkit.PubLine(testkit.SeededSigner(t, 7)), "", "--exp: invalid expiry"},
	}
	for _, tt := range refusals {
		out, err := e.run(c, tt.line, tt.stdin)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%.60q: got %q, %v; want error containing %q", tt.line, out, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error echoes the private key: %v", err)
		}
	}
	e.AddVM("bobvm", bob, false)
	if _, err := e.run(c, "ssh-key add --vm bobvm "+testkit.PubLine(testkit.SeededSigner(t, 7)), ""); err == nil || err.Error() != "you have no VM named bobvm (see ls)" {
		t.Errorf("--vm of another user's VM: %v", err)
	}
	if ks, _ := e.Store.Keys(e.ctx, alice.User.ID); len(ks) != 3 {
		t.Errorf("alice has %d keys after refusals, want 3", len(ks))
	}
}

func TestSSHKeyRemove(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	bob := e.AddUser("bob@example.com", 2)
	c := callerOf(alice)

	// The last login key stays, with a message that says why.
	_, err := e.run(c, "ssh-key remove alice-laptop", "")
	if err == nil || !strings.Contains(err.Error(), "last login key") || !strings.Contains(err.Error(), "lock you out") {
		t.Errorf("removing the last login key: %v", err)
	}
	// Generated keys do not count as login keys.
	e.mustRun(c, "ssh-key generate-api-key", "")
	if _, err := e.run(c, "ssh-key remove alice-laptop", ""); err == nil || !strings.Contains(err.Error(), "last login key") {
		t.Errorf("removing the last login key beside a token key: %v", err)
	}
	// Someone else's key: not found, nothing said about it.
	for _, ref := range []string{bob.Key.Name, bob.Key.Fingerprint, testkit.PubLine(bob.Signer)} {
		if _, err := e.run(c, "ssh-key remove "+ref, ""); err == nil || !strings.HasPrefix(err.Error(), "you have no such key") {
			t.Errorf("removing bob's key by %q: %v", ref, err)
		}
	}
	if _, err := e.Store.Key(e.ctx, bob.Key.Fingerprint); err != nil {
		t.Errorf("bob's key is gone: %v", err)
	}
	// By name, fingerprint, and public key (unquoted: several words).
	for i, ref := range []func(a testreg.Account) string{
		func(a testreg.Account) string { return a.Key.Name },
		func(a testreg.Account) string { return a.Key.Fingerprint },
		func(a testreg.Account) string { return testkit.PubLine(a.Signer) + " with a comment" },
	} {
		k := e.AddKey(alice, "extra", byte(10+i), nil)
		e.mustRun(c, "ssh-key remove "+ref(k), "")
		if _, err := e.Store.Key(e.ctx, k.Key.Fingerprint); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("case %d: key still there: %v", i, err)
		}
	}
	evs, err := e.Store.Events(e.ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var removes int
	for _, ev := range evs {
		if ev.Action == "key.remove" {
			removes++
			if ev.ActorID != alice.User.ID || ev.RemoteAddr != "192.0.2.1:5555" || !strings.HasPrefix(ev.Subject, "SHA256:") {
				t.Errorf("remove event = %+v", ev)
			}
		}
	}
	if removes != 3 {
		t.Errorf("%d key.remove events, want 3", removes)
	}
}

func TestSSHKeyRename(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddKey(alice, "second", 3, nil)
	c := callerOf(alice)
	for _, tt := range []struct{ line, want string }{
		{"ssh-key rename second alice-laptop", `a key named "alice-laptop" already exists`},
		{"ssh-key rename second second", "the key is already named second"},
		{"ssh-key rename nosuch x", "you have no such key"},
		{"ssh-key rename second 'bad name'", "invalid key name"},
	} {
		if _, err := e.run(c, tt.line, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.line, err, tt.want)
		}
	}
	e.mustRun(c, "ssh-key rename second third", "")
	ks, _ := e.Store.Keys(e.ctx, alice.User.ID)
	if ks[1].Name != "third" {
		t.Errorf("name after rename = %q", ks[1].Name)
	}
	if ev := lastEvent(t, e); ev.Action != "key.rename" || ev.Subject != ks[1].Fingerprint || ev.ActorID != alice.User.ID || ev.RemoteAddr != "192.0.2.1:5555" {
		t.Errorf("rename event = %+v", ev)
	}
}

func lastEvent(t *testing.T, e *testEnv) store.Event {
	t.Helper()
	evs, err := e.Store.Events(e.ctx, 0, 1000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %v, %v", evs, err)
	}
	return evs[len(evs)-1]
}

// TestGenerateAPIKey: the token verifies, its key is recorded with the
// restrictions, the private half is not kept, and everything is one write.
func TestGenerateAPIKey(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	vm := e.AddVM("web", alice, false)
	c := callerOf(alice)

	m, _ := testkit.JSONObject(t, e.mustRun(c, `ssh-key generate-api-key --json --vm web --cmds ls --exp 2d --ctx '{"role":"deploy"}'`, ""))
	token := m["token"].(string)
	g, err := e.Verifier.Verify(e.ctx, token, tokens.Target{Namespace: "v0@web.exe.xyz", VM: &vm})
	if err != nil {
		t.Fatalf("generated token does not verify: %v", err)
	}
	if g.User.ID != alice.User.ID || string(g.Perms.Ctx) != `{"role":"deploy"}` || g.Perms.Exp != testNow.Add(48*time.Hour).Unix() ||
		!slices.Equal(g.Perms.Cmds, []string{"ls"}) {
		t.Errorf("grant = %+v", g)
	}
	k := g.Key
	if k.Name != "api-key-web" || !k.Generated || k.VM != "web" || !slices.Equal(k.Cmds, []string{"ls"}) || !k.ExpiresAt.Equal(testNow.Add(48*time.Hour)) {
		t.Errorf("token key = %+v", k)
	}
	// Not a token for the API.
	if _, err := e.Verifier.Verify(e.ctx, token, tokens.Target{Namespace: "v0@exe.dev"}); err == nil {
		t.Error("VM token verified for the API")
	}
	// The stored exe1 row holds neither the handle nor the exe0.
	h, err := e.Store.Exe1(e.ctx, tokens.Exe1ID(token))
	if err != nil || h.Fingerprint != k.Fingerprint || bytes.Contains(h.Sealed, []byte("exe0.")) || bytes.Contains(h.Sealed, []byte(token)) {
		t.Errorf("exe1 row = %+v, %v", h, err)
	}

	// Default label taken → error, nothing stored.
	before, _ := e.Store.Keys(e.ctx, alice.User.ID)
	if _, err := e.run(c, "ssh-key generate-api-key --vm web", ""); err == nil || !strings.Contains(err.Error(), `a key named "api-key-web" already exists`) {
		t.Errorf("taken label: %v", err)
	}
	for _, tt := range []struct{ line, want string }{
		{"ssh-key generate-api-key --ctx '{\"a\":1,\"a\":2}'", `--ctx is not valid JSON: duplicate key "a"; over ssh`},
		{"ssh-key generate-api-key --ctx '{'", "--ctx is not valid JSON: the JSON ends too soon; over ssh"},
		{"ssh-key generate-api-key --ctx ''", "--ctx is not valid JSON: empty; over ssh"},
		{"ssh-key generate-api-key --ctx null", "--ctx is not valid JSON: null is no ctx at all"},
		// What ssh delivers for --ctx='{"role":"deploy"}' typed in a shell:
		// the quotes gone. The answer shows the quoting that works.
		{`ssh-key generate-api-key --ctx={"role":"deploy"}`, `--ctx is not valid JSON: invalid character 'r' at start of string (expecting '"') at offset 1; over ssh the JSON needs a second layer of quotes: ssh HOST "ssh-key generate-api-key --ctx='{\"role\":\"deploy\"}'"`},
		{"ssh-key generate-api-key --vm nosuch", "you have no VM named nosuch"},
		{"ssh-key generate-api-key --label 'a b'", `--label "a b" is not a valid label: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)`},
		{"ssh-key generate-api-key --label=a b", `unexpected argument "b" (this command takes none; over ssh, a value with spaces`},
		{"ssh-key generate-api-key --cmds frob", `--cmds: unknown command "frob"`},
		{"ssh-key generate-api-key --exp 80y", "cannot expire after 2100-01-01"},
		{"ssh-key generate-api-key extra", "unexpected argument"},
	} {
		if _, err := e.run(c, tt.line, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.line, err, tt.want)
		}
	}
	after, _ := e.Store.Keys(e.ctx, alice.User.ID)
	if len(after) != len(before) {
		t.Errorf("refused generate-api-key stored keys: %d → %d", len(before), len(after))
	}

	// --cmds= grants nothing; an API token with default cmds has none recorded.
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --label none --cmds=", ""))
	if cm, ok := m["cmds"].([]any); !ok || len(cm) != 0 {
		t.Errorf("--cmds= gave cmds %v", m["cmds"])
	}
	g, err = e.Verifier.Verify(e.ctx, m["token"].(string), tokens.Target{Namespace: "v0@exe.dev"})
	if err != nil || !g.Perms.HasCmds || len(g.Perms.Cmds) != 0 || g.Perms.Grants("whoami") {
		t.Errorf("--cmds= token: %+v, %v", g, err)
	}
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --label dflt", ""))
	g, err = e.Verifier.Verify(e.ctx, m["token"].(string), tokens.Target{Namespace: "v0@exe.dev", Command: "whoami"})
	if err != nil || g.Perms.HasCmds || g.Key.Cmds != nil || !g.Key.ExpiresAt.IsZero() {
		t.Errorf("default token: %+v, %v", g, err)
	}
	if _, err := e.Verifier.Verify(e.ctx, m["token"].(string), tokens.Target{Namespace: "v0@exe.dev", Command: "ssh-key generate-api-key"}); !errors.Is(err, tokens.ErrNotGranted) {
		t.Errorf("default token grants generate-api-key: %v", err)
	}

	var generates int
	evs, _ := e.Store.Events(e.ctx, 0, 100)
	for _, ev := range evs {
		if ev.Action == "token.generate" {
			generates++
		}
	}
	if generates != 3 {
		t.Errorf("%d token.generate events, want 3", generates)
	}
}

// TestRestrictedCaller: a key with restrictions mints and adds only within
// them, runs only its cmds, and refusals name the restriction and store
// nothing.
func TestRestrictedCaller(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	e.AddVM("db", alice, false)
	exp := testNow.Add(7 * 24 * time.Hour)
	ci := e.AddKey(alice, "ci", 3, func(k *store.Key) {
		k.VM = "web"
		k.Cmds = []string{"ssh-key generate-api-key", "ssh-key list", "ssh-key add"}
		k.ExpiresAt = exp
	})
	vmOnly := e.AddKey(alice, "vmonly", 4, func(k *store.Key) { k.VM = "web" })
	c := callerOf(ci)

	refusals := []struct {
		who        Caller
		line, want string
	}{
		{c, "whoami", `key "ci" may only run ssh-key generate-api-key, ssh-key list, ssh-key add: "whoami" is not among them`},
		{c, "ssh-key remove alice-laptop", `"ssh-key remove" is not among them`},
		{c, "ssh-key generate-api-key --vm db", `key "ci" is restricted to VM web: --vm db is outside it`},
		{c, "ssh-key generate-api-key --cmds ls", `key "ci" is restricted to cmds ssh-key generate-api-key, ssh-key list, ssh-key add: "ls" is outside them`},
		{c, "ssh-key generate-api-key --exp 30d", `key "ci" expires at 2025-06-08T12:00:00Z: --exp cannot be later`},
		{c, "ssh-key add --vm db " + testkit.PubLine(testkit.SeededSigner(t, 20)), "restricted to VM web"},
		{callerOf(vmOnly), "ssh-key add " + testkit.PubLine(testkit.SeededSigner(t, 21)), `key "vmonly" is restricted (vm web): it cannot run "ssh-key add" unless its cmds name it`},
		{callerOf(vmOnly), "ssh-key remove ci", `it cannot run "ssh-key remove"`},
		{callerOf(vmOnly), "ssh-key rename ci x", `it cannot run "ssh-key rename"`},
		{callerOf(vmOnly), "ssh-key generate-api-key --vm db", "restricted to VM web"},
	}
	before, _ := e.Store.Keys(e.ctx, alice.User.ID)
	for _, tt := range refusals {
		if _, err := e.run(tt.who, tt.line, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %q: %v, want %q", tt.who.Key.Name, tt.line, err, tt.want)
		}
	}
	if after, _ := e.Store.Keys(e.ctx, alice.User.ID); len(after) != len(before) {
		t.Errorf("refusals stored keys: %d → %d", len(before), len(after))
	}

	// ls shows a VM-restricted key only its VM.
	if out := e.mustRun(callerOf(vmOnly), "ls --json", ""); out != `{"vms":[{"vm_name":"web","https_url":"https://web.exe.xyz","public":false}],"shared_vms":[]}`+"\n" {
		t.Errorf("ls for a key restricted to web = %s", out)
	}
	// Help is always allowed.
	e.mustRun(c, "help", "")
	e.mustRun(c, "whoami --help", "")

	// Within limits: the caller's restrictions fill in what is left open.
	m, _ := testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --exp 1d", ""))
	if m["vm"] != "web" || m["namespace"] != "v0@web.exe.xyz" || m["expires_at"] != "2025-06-02T12:00:00Z" ||
		!slices.Equal(anyStrings(m["cmds"]), ci.Key.Cmds) {
		t.Errorf("restricted mint = %v", m)
	}
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --label second --cmds 'ssh-key list'", ""))
	if m["expires_at"] != "2025-06-08T12:00:00Z" || !slices.Equal(anyStrings(m["cmds"]), []string{"ssh-key list"}) {
		t.Errorf("restricted mint 2 = %v", m)
	}
	e.mustRun(c, "ssh-key add --name newci "+testkit.PubLine(testkit.SeededSigner(t, 22)), "")
	k, err := e.Store.Key(e.ctx, keys.Fingerprint(testkit.SeededSigner(t, 22).PublicKey()))
	if err != nil || k.VM != "web" || !slices.Equal(k.Cmds, ci.Key.Cmds) || !k.ExpiresAt.Equal(exp) {
		t.Errorf("key added by a restricted key = %+v, %v", k, err)
	}

	// An expired key is refused whatever it runs (but help).
	e.clock.Set(exp.Add(time.Second))
	if _, err := e.run(c, "ssh-key list", ""); err == nil || !strings.Contains(err.Error(), `key "ci" expired at 2025-06-08T12:00:00Z`) {
		t.Errorf("expired key: %v", err)
	}
}

func TestCheckAPIKey(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	bob := e.AddUser("bob@example.com", 2)
	e.AddVM("web", alice, false)
	c := callerOf(alice)

	m, _ := testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --vm web --exp 1h", ""))
	vmToken := m["token"].(string)
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key check-api-key --json --vm web "+vmToken, ""))
	if m["valid"] != true {
		t.Errorf("check of a good VM token = %v", m)
	}
	// Checked as an API token: invalid, and the namespace check says why.
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key check-api-key --json "+vmToken, ""))
	checks := m["checks"].([]any)
	last := checks[len(checks)-1].(map[string]any)
	if m["valid"] != false || last["name"] != tokens.CheckNamespace || last["ok"] != false {
		t.Errorf("check as API token = %v", m)
	}
	// Expired: explained.
	e.clock.Set(testNow.Add(2 * time.Hour))
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key check-api-key --json --vm web "+vmToken, ""))
	if m["valid"] != false {
		t.Errorf("check of an expired token = %v", m)
	}
	e.clock.Set(testNow)
	text := e.mustRun(c, "ssh-key check-api-key "+vmToken, "")
	if !strings.HasPrefix(text, "valid: no\n") || !strings.Contains(text, "FAIL") {
		t.Errorf("text check = %q", text)
	}

	// Bob's token: "not your key", nothing more.
	m, _ = testkit.JSONObject(t, e.mustRun(callerOf(bob), "ssh-key generate-api-key --json --exe0", ""))
	bobToken := m["token"].(string)
	out := e.mustRun(c, "ssh-key check-api-key --json "+bobToken, "")
	if out != `{"valid":false,"checks":[{"name":"key","ok":false,"detail":"not your key"}]}`+"\n" {
		t.Errorf("check of bob's token by alice = %s", out)
	}
	m, _ = testkit.JSONObject(t, e.mustRun(callerOf(bob), "ssh-key generate-api-key --json --label h", ""))
	out = e.mustRun(c, "ssh-key check-api-key --json "+m["token"].(string), "")
	if !strings.Contains(out, `"detail":"not your key"`) {
		t.Errorf("check of bob's exe1 by alice = %s", out)
	}
	// Garbage: the format check explains it.
	m, _ = testkit.JSONObject(t, e.mustRun(c, "ssh-key check-api-key --json exe0.garbage", ""))
	if m["valid"] != false || m["checks"].([]any)[0].(map[string]any)["name"] != tokens.CheckFormat {
		t.Errorf("check of garbage = %v", m)
	}
}

func TestExe0ToExe1(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	bob := e.AddUser("bob@example.com", 2)
	vm := e.AddVM("web", alice, false)
	c := callerOf(alice)

	// An exe0 minted offline with alice's login key.
	payload, _ := tokens.BuildPayload(0, 0, nil, false, []byte(`{"who":"ci"}`))
	exe0, err := tokens.MintExe0(alice.Signer, "v0@web.exe.xyz", payload)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := testkit.JSONObject(t, e.mustRun(c, "exe0-to-exe1 --json --vm web "+exe0, ""))
	exe1 := m["token"].(string)
	g, err := e.Verifier.Verify(e.ctx, exe1, tokens.Target{Namespace: "v0@web.exe.xyz", VM: &vm})
	if err != nil || string(g.Perms.Ctx) != `{"who":"ci"}` || g.Key.Fingerprint != alice.Key.Fingerprint {
		t.Fatalf("exe1 handle: %+v, %v", g, err)
	}

	for _, tt := range []struct {
		who        Caller
		line, want string
	}{
		{c, "exe0-to-exe1 " + exe0, `invalid token (run "ssh-key check-api-key" for the reason)`}, // wrong namespace
		{c, "exe0-to-exe1 " + exe1, "that is already an exe1 handle"},
		{c, "exe0-to-exe1 hello", "not an exe0 token"},
		{callerOf(bob), "exe0-to-exe1 --vm web " + exe0, "you have no VM named web"},
		{callerOf(bob), "exe0-to-exe1 " + exe0, "not your key"},
	} {
		if _, err := e.run(tt.who, tt.line, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.line, err, tt.want)
		}
	}
	var creates int
	evs, _ := e.Store.Events(e.ctx, 0, 100)
	for _, ev := range evs {
		if ev.Action == "exe1.create" {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d exe1.create events, want 1", creates)
	}
}

// TestRemoveRevokesImmediately: once ssh-key remove returns, the Verifier
// refuses the key's tokens, though it had them cached.
func TestRemoveRevokesImmediately(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	c := callerOf(alice)
	m, _ := testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --label ci", ""))
	token := m["token"].(string)
	api := tokens.Target{Namespace: "v0@exe.dev"}
	for range 3 { // warm the cache
		if _, err := e.Verifier.Verify(e.ctx, token, api); err != nil {
			t.Fatal(err)
		}
	}
	e.mustRun(c, "ssh-key remove ci", "")
	if _, err := e.Verifier.Verify(e.ctx, token, api); err == nil {
		t.Fatal("token still verifies after its key was removed")
	}
	if _, err := e.Store.Exe1(e.ctx, tokens.Exe1ID(token)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("exe1 row survives its key: %v", err)
	}
}

// TestNothingOnStdoutOnFailure: a failing command writes nothing to stdout.
func TestNothingOnStdoutOnFailure(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	for _, line := range []string{"ssh-key remove alice-laptop", "ssh-key add", "exe0-to-exe1 exe0.a.b", "nosuch", "ls --x"} {
		args, _ := Split(line)
		var out bytes.Buffer
		if err := e.suite.Run(e.ctx, callerOf(alice), args, IO{Stdin: strings.NewReader(""), Stdout: &out}, false); err == nil {
			t.Errorf("%q succeeded", line)
		}
		if out.Len() != 0 {
			t.Errorf("%q wrote %q to stdout", line, out.String())
		}
	}
}

// TestRestrictedKeyCannotRemoveWiderKeys pins the rule that a deploy key
// granted "ssh-key remove" (to revoke its own tokens) cannot use it to
// remove or rename its owner's other, less restricted keys.
func TestRestrictedKeyCannotRemoveWiderKeys(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	e.AddVM("web", alice, false)
	e.AddVM("db", alice, false)
	deploy := e.AddKey(alice, "deploy", 3, func(k *store.Key) {
		k.VM = "web"
		k.Cmds = []string{"ssh-key generate-api-key", "ssh-key remove", "ssh-key rename"}
	})
	other := e.AddKey(alice, "other", 4, func(k *store.Key) { k.VM = "db" })
	c := callerOf(deploy)

	for _, tt := range []struct{ line, want string }{
		{"ssh-key remove alice-laptop", `key "deploy" is restricted to VM web and that key is not, so it cannot act on key "alice-laptop"`},
		{"ssh-key remove other", `key "deploy" is restricted to VM web and that key is for VM db, so it cannot act on key "other"`},
		{"ssh-key rename alice-laptop x", `so it cannot act on key "alice-laptop"`},
	} {
		if _, err := e.run(c, tt.line, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.line, err, tt.want)
		}
	}
	for _, fp := range []string{alice.Key.Fingerprint, other.Key.Fingerprint} {
		if _, err := e.Store.Key(e.ctx, fp); err != nil {
			t.Errorf("key %s is gone: %v", fp, err)
		}
	}

	// What it minted, and itself, it may remove.
	m, _ := testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --label ci-1", ""))
	e.mustRun(c, "ssh-key remove ci-1", "")
	if _, err := e.Store.Key(e.ctx, m["fingerprint"].(string)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("minted key not removed: %v", err)
	}
	e.mustRun(c, "ssh-key remove deploy", "")
}

// TestCommandGateExpiryBoundary: a key whose --exp is exactly now runs
// nothing (expired from ExpiresAt on, as the Verifier has it), one second
// before it still runs.
func TestCommandGateExpiryBoundary(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	exp := e.Now().Add(time.Hour).Truncate(time.Second)
	ci := e.AddKey(alice, "ci", 2, func(k *store.Key) { k.ExpiresAt = exp })
	e.clock.Set(exp.Add(-time.Second))
	if _, err := e.run(callerOf(ci), "whoami", ""); err != nil {
		t.Fatalf("a second before its expiry: %v", err)
	}
	e.clock.Set(exp)
	if _, err := e.run(callerOf(ci), "whoami", ""); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("at its expiry: %v, want expired", err)
	}
}

// TestVMRestrictedKeyActsOnOtherVM: a key restricted to one VM acts only on
// that VM everywhere, exe0-to-exe1 --vm and check-api-key --vm included
// (they took any of the user's VMs); without --vm they default to its VM.
func TestVMRestrictedKeyActsOnOtherVM(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	web := e.AddVM("web", alice, false)
	e.AddVM("db", alice, false)
	vmOnly := e.AddKey(alice, "vmonly", 4, func(k *store.Key) {
		k.VM = "web"
		k.Cmds = []string{"exe0-to-exe1", "ssh-key check-api-key"}
	})
	mint := func(ns string) string {
		t.Helper()
		tok, err := tokens.MintExe0(alice.Signer, ns, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dbToken, webToken := mint("v0@db.exe.xyz"), mint("v0@web.exe.xyz")
	for _, line := range []string{
		"exe0-to-exe1 --vm db " + dbToken,
		"ssh-key check-api-key --vm db " + dbToken,
	} {
		if out, err := e.run(callerOf(vmOnly), line, ""); err == nil || !strings.Contains(err.Error(), `key "vmonly" is restricted to VM web: --vm db is outside it`) {
			t.Errorf("%.30q: %q, %v; want the VM restriction", line, out, err)
		}
	}
	// Without --vm, its own VM is the target.
	m, _ := testkit.JSONObject(t, e.mustRun(callerOf(vmOnly), "exe0-to-exe1 --json "+webToken, ""))
	if _, err := e.Verifier.Verify(e.ctx, m["token"].(string), tokens.Target{Namespace: "v0@web.exe.xyz", VM: &web}); err != nil {
		t.Errorf("exe1 for web: %v", err)
	}
	m, _ = testkit.JSONObject(t, e.mustRun(callerOf(vmOnly), "ssh-key check-api-key --json "+webToken, ""))
	if m["valid"] != true {
		t.Errorf("check-api-key without --vm by a web-only key = %v", m)
	}
}

// TestRemovedTokenKeyReAdded: ssh-key add of a removed generated key's
// public key brought its revoked tokens back to life. A revoked token key
// stays revoked (for anyone, --revive or not); a removed login key comes
// back only with --revive, by its own user, whose old tokens then work
// again (what --revive says).
func TestRemovedTokenKeyReAdded(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	bob := e.AddUser("bob@example.com", 2)
	c := callerOf(alice)
	m, _ := testkit.JSONObject(t, e.mustRun(c, "ssh-key generate-api-key --json --exe0 --label t", ""))
	token := m["token"].(string)
	k, err := e.Store.Key(e.ctx, m["fingerprint"].(string))
	if err != nil {
		t.Fatal(err)
	}
	api := tokens.Target{Namespace: "v0@exe.dev"}
	e.mustRun(c, "ssh-key remove t", "")
	if _, err := e.Verifier.Verify(e.ctx, token, api); err == nil {
		t.Fatal("token valid after its key was removed")
	}
	for _, tt := range []struct {
		who  Caller
		line string
	}{
		{c, "ssh-key add --name back " + k.PublicKey},
		{c, "ssh-key add --revive --name back " + k.PublicKey},
		{callerOf(bob), "ssh-key add --name back " + k.PublicKey},
	} {
		_, err := e.run(tt.who, tt.line, "")
		if err == nil || !strings.Contains(err.Error(), "was a token key and was removed: it stays revoked") {
			t.Errorf("%s: %q: %v, want the revoked refusal", tt.who.Key.Name, tt.line, err)
		}
	}
	if _, err := e.Verifier.Verify(e.ctx, token, api); err == nil {
		t.Fatal("the revoked token came back")
	}

	// A login key: refused without --revive, and for another user.
	second := e.AddKey(alice, "second", 3, nil)
	old, err := tokens.MintExe0(second.Signer, "v0@exe.dev", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun(c, "ssh-key remove second", "")
	pub := testkit.PubLine(second.Signer)
	if _, err := e.run(c, "ssh-key add "+pub, ""); err == nil || !strings.Contains(err.Error(), "tokens it signed before then would work again; to add it anyway, run ssh-key add --revive") {
		t.Errorf("re-add of a removed login key: %v", err)
	}
	if _, err := e.run(callerOf(bob), "ssh-key add --revive "+pub, ""); err == nil || !strings.Contains(err.Error(), "was removed before and cannot be registered again") {
		t.Errorf("bob reviving alice's removed key: %v", err)
	}
	e.mustRun(c, "ssh-key add --revive --name second "+pub, "")
	if _, err := e.Verifier.Verify(e.ctx, old, api); err != nil {
		t.Errorf("a revived login key's old token: %v (--revive says it works again)", err)
	}
}

// TestCtxThatCannotTravelInHeaderMinted: a ctx that no header can carry
// (a raw DEL in a JSON string, another control byte) was minted and then
// refused by every request; generate-api-key refuses it with one line and
// stores nothing.
func TestCtxThatCannotTravelInHeaderMinted(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	before, _ := e.Store.Keys(e.ctx, alice.User.ID)
	for _, ctx := range []string{"\"a\x7fb\"", "[\"\x7f\"]"} {
		err := e.suite.Run(e.ctx, callerOf(alice), []string{"ssh-key", "generate-api-key", "--ctx", ctx},
			IO{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}, false)
		if err == nil || !strings.HasPrefix(err.Error(), "--ctx: ") || !strings.Contains(err.Error(), "cannot travel in a header") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--ctx %q: %v, want one line refusing it", ctx, err)
		}
	}
	if after, _ := e.Store.Keys(e.ctx, alice.User.ID); len(after) != len(before) {
		t.Errorf("refused mints stored keys: %d → %d", len(before), len(after))
	}
	// A tab between values is a header's business too, and fine.
	e.mustRun(callerOf(alice), "ssh-key generate-api-key --ctx '[1,\t2]'", "")
}

// TestSmallOrderKeyAddedOverSSH: an ed25519 public key of small order
// (here the identity point, with which anyone can make a signature that
// verifies) is refused by ssh-key add with one line, and nothing is
// stored. keys.TestSmallOrderEd25519KeyForgesSignatures holds every such
// encoding; this is the path a user's key arrives by.
func TestSmallOrderKeyAddedOverSSH(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	c := callerOf(alice)
	identity := make([]byte, 32)
	identity[0] = 1
	var blob []byte
	for _, s := range [][]byte{[]byte("ssh-ed25519"), identity} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(s)))
		blob = append(blob, s...)
	}
	line := "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob)
	before := e.Dump()
	for _, cmd := range []struct{ line, stdin string }{
		{"ssh-key add --name weak " + line, ""},
		{"ssh-key add --name weak", line + "\n"},
	} {
		_, err := e.run(c, cmd.line, cmd.stdin)
		t.Logf("%q: %v", cmd.line, err)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "small order") {
			t.Errorf("%q: %v, want one line refusing a key of small order", cmd.line, err)
		}
	}
	if e.Dump() != before {
		t.Error("a refused key changed the store")
	}
}
