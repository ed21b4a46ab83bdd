package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

type userList struct {
	Users []struct {
		UserID  string `json:"user_id"`
		Email   string `json:"email"`
		SSHKeys int    `json:"ssh_keys"`
	} `json:"users"`
}

type vmList struct {
	VMs []struct {
		Name     string `json:"vm_name"`
		Owner    string `json:"owner"`
		Upstream string `json:"upstream"`
		Public   bool   `json:"public"`
	} `json:"vms"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return v
}

// mustRun runs exed and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := run(t, env, "", args...)
	if r.code != 0 {
		t.Fatalf("exed %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// TestAdminCommands drives `exed user` and `exed vm` on a fresh data dir:
// what succeeds is listed, and every refusal is one line on stderr, a
// non-zero exit and an unchanged store.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	env := []string{"EXED_DATA=" + filepath.Join(dir, "data")}
	alice := testkit.SSHKeygen(t, dir, "ed25519", 0)
	bob := testkit.SSHKeygen(t, dir, "ecdsa", 256)
	bobPub, _ := os.ReadFile(bob + ".pub")

	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", alice+".pub")
	mustRun(t, env, "user", "add", "--email", "bob@example.com", "--key", string(bobPub))
	mustRun(t, env, "vm", "add", "--name", "web", "--owner", "ALICE@example.com", "--upstream", "http://127.0.0.1:9")
	mustRun(t, env, "vm", "add", "--name", "blog", "--owner", "bob@example.com", "--upstream", "https://blog.internal:8443", "--public")

	users := decode[userList](t, mustRun(t, env, "user", "list", "--json"))
	if len(users.Users) != 2 || users.Users[0].SSHKeys != 1 || !strings.HasPrefix(users.Users[0].UserID, "usr") {
		t.Fatalf("user list = %+v", users)
	}
	vms := decode[vmList](t, mustRun(t, env, "vm", "list", "--json"))
	if len(vms.VMs) != 2 {
		t.Fatalf("vm list = %+v", vms)
	}
	byName := map[string]int{}
	for i, vm := range vms.VMs {
		byName[vm.Name] = i
	}
	if vm := vms.VMs[byName["web"]]; vm.Owner != "alice@example.com" || vm.Upstream != "http://127.0.0.1:9" || vm.Public {
		t.Errorf("web = %+v", vm)
	}
	if vm := vms.VMs[byName["blog"]]; vm.Owner != "bob@example.com" || !vm.Public {
		t.Errorf("blog = %+v", vm)
	}

	priv, _ := os.ReadFile(alice)
	refusals := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"email taken, other case", []string{"user", "add", "--email", "Alice@Example.COM", "--key-file", testkit.SSHKeygen(t, dir, "ecdsa", 384) + ".pub"}, "already exists"},
		{"key taken", []string{"user", "add", "--email", "carol@example.com", "--key-file", alice + ".pub"}, "already exists"},
		{"bad email", []string{"user", "add", "--email", "not-an-email", "--key-file", alice + ".pub"}, "email"},
		{"private key", []string{"user", "add", "--email", "carol@example.com", "--key", string(priv)}, "private key"},
		{"no key", []string{"user", "add", "--email", "carol@example.com"}, "--key"},
		{"vm name", []string{"vm", "add", "--name", "Web_1", "--owner", "alice@example.com", "--upstream", "http://127.0.0.1:9"}, "name"},
		{"vm name dash", []string{"vm", "add", "--name", "web-", "--owner", "alice@example.com", "--upstream", "http://127.0.0.1:9"}, "name"},
		{"vm taken", []string{"vm", "add", "--name", "web", "--owner", "bob@example.com", "--upstream", "http://127.0.0.1:9"}, "already exists"},
		{"upstream scheme", []string{"vm", "add", "--name", "ftp", "--owner", "alice@example.com", "--upstream", "ftp://127.0.0.1"}, "upstream"},
		{"upstream host", []string{"vm", "add", "--name", "nohost", "--owner", "alice@example.com", "--upstream", "http://"}, "upstream"},
		{"unknown owner", []string{"vm", "add", "--name", "ghost", "--owner", "ghost@example.com", "--upstream", "http://127.0.0.1:9"}, "no user"},
		{"rm unknown", []string{"vm", "rm", "ghost"}, "no VM"},
		{"unknown flag", []string{"vm", "list", "--bogus"}, "bogus"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, env, "", c.args...)
			if r.code == 0 {
				t.Fatalf("accepted: %s", r.stdout)
			}
			line := strings.TrimSpace(r.stderr)
			if strings.Contains(line, "\n") || !strings.Contains(strings.ToLower(line), strings.ToLower(c.want)) {
				t.Errorf("stderr = %q, want one line mentioning %q", r.stderr, c.want)
			}
		})
	}
	// Nothing the refusals tried was stored.
	if got := decode[userList](t, mustRun(t, env, "user", "list", "--json")); len(got.Users) != 2 {
		t.Errorf("after refusals, users = %+v", got)
	}
	if got := decode[vmList](t, mustRun(t, env, "vm", "list", "--json")); len(got.VMs) != 2 {
		t.Errorf("after refusals, vms = %+v", got)
	}

	mustRun(t, env, "vm", "rm", "blog")
	if got := decode[vmList](t, mustRun(t, env, "vm", "list", "--json")); len(got.VMs) != 1 || got.VMs[0].Name != "web" {
		t.Errorf("after rm, vms = %+v", got)
	}
}

// TestUserAddKeyNameFromUnvalidatedComment: `exed user add` names the key
// by the one key-name rule: a .pub comment with a terminal escape or a
// newline gives the default name, never reaching the admin's terminal or
// `ssh-key list`; an invalid --name is refused.
func TestUserAddKeyNameFromUnvalidatedComment(t *testing.T) {
	dir := t.TempDir()
	env := []string{"EXED_DATA=" + filepath.Join(dir, "data")}
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	pub, _ := os.ReadFile(key + ".pub")
	fields := strings.Fields(string(pub))
	evil := fields[0] + " " + fields[1] + " \x1b]0;owned\x07\x1b[31mroot"
	if err := os.WriteFile(key+".evil.pub", []byte(evil+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", key+".evil.pub")
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, " with key login SHA256:") {
		t.Errorf("user add printed %q: want the default name login, no escapes", out)
	}
	for _, name := range []string{"a\nb", "\x1b[2J", "has space"} {
		key2 := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
		r := run(t, env, "", "user", "add", "--email", "bob@example.com", "--key-file", key2+".pub", "--name", name)
		if r.code == 0 || !strings.Contains(r.stderr, "invalid key name") || strings.ContainsAny(r.stderr, "\x1b") {
			t.Errorf("--name %q: exit %d, %q", name, r.code, r.stderr)
		}
	}
}
