package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

type keyJSON struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	PublicKey   string    `json:"public_key"`
	AddedAt     string    `json:"added_at"`
	Current     bool      `json:"current"`
	Generated   bool      `json:"generated"`
	VM          string    `json:"vm"`
	Cmds        *[]string `json:"cmds"`
	ExpiresAt   string    `json:"expires_at"`
}

type generated struct {
	Label       string `json:"label"`
	Token       string `json:"token"`
	Namespace   string `json:"namespace"`
	Fingerprint string `json:"fingerprint"`
	VM          string `json:"vm"`
	ExpiresAt   string `json:"expires_at"`
}

// fixture is a fresh data dir with alice (VM web) and bob, and a server.
type fixture struct {
	dir              string
	srv              *server
	alice            *sshClient
	bob              *sshClient
	aliceKey, bobKey string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	data := filepath.Join(f.dir, "data")
	env := []string{"EXED_DATA=" + data}
	f.aliceKey = testkit.SSHKeygen(t, f.dir, "ed25519", 0)
	f.bobKey = testkit.SSHKeygen(t, f.dir, "ecdsa", 256)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", f.aliceKey+".pub")
	f.srv = startServer(t, data)
	// Added while the server runs: seen at once.
	mustRun(t, env, "user", "add", "--email", "bob@example.com", "--key-file", f.bobKey+".pub")
	mustRun(t, env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", "http://127.0.0.1:9")
	f.alice = f.srv.client(t, f.aliceKey)
	f.bob = f.srv.client(t, f.bobKey)
	return f
}

// ok runs a command that must succeed and returns its stdout.
func (c *sshClient) ok(t *testing.T, stdin string, command ...string) string {
	t.Helper()
	r := c.ssh(t, stdin, command...)
	if r.code != 0 {
		t.Fatalf("ssh %s: exit %d: %s", strings.Join(command, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with exit 1 and one line on stderr
// containing want; it returns that line.
func (c *sshClient) fails(t *testing.T, want string, command ...string) string {
	t.Helper()
	r := c.ssh(t, "", command...)
	line := strings.TrimSpace(r.stderr)
	if r.code != 1 || r.stdout != "" || strings.Contains(line, "\n") || !strings.Contains(line, want) {
		t.Fatalf("ssh %s: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q",
			strings.Join(command, " "), r.code, r.stdout, r.stderr, want)
	}
	return line
}

func TestSSHCommands(t *testing.T) {
	f := newFixture(t)

	who := decode[struct {
		UserID  string    `json:"user_id"`
		Email   string    `json:"email"`
		SSHKeys []keyJSON `json:"ssh_keys"`
	}](t, f.alice.ok(t, "", "whoami", "--json"))
	if who.Email != "alice@example.com" || !strings.HasPrefix(who.UserID, "usr") || len(who.SSHKeys) != 1 || !who.SSHKeys[0].Current {
		t.Fatalf("whoami = %+v", who)
	}
	if got := decode[struct {
		Email string `json:"email"`
	}](t, f.bob.ok(t, "", "whoami", "--json")); got.Email != "bob@example.com" {
		t.Fatalf("bob's whoami = %+v", got)
	}

	ls := decode[struct {
		VMs []struct {
			Name   string `json:"vm_name"`
			URL    string `json:"https_url"`
			Public bool   `json:"public"`
		} `json:"vms"`
	}](t, f.alice.ok(t, "", "ls", "--json"))
	if len(ls.VMs) != 1 || ls.VMs[0].Name != "web" || !strings.Contains(ls.VMs[0].URL, "web.exe.xyz") {
		t.Fatalf("ls = %+v", ls)
	}
	if !strings.Contains(f.alice.ok(t, "", "help"), "generate-api-key") {
		t.Errorf("help does not list generate-api-key")
	}
	help := decode[struct {
		Commands []struct {
			Name string `json:"name"`
		} `json:"commands"`
	}](t, f.alice.ok(t, "", "help", "--json"))
	if len(help.Commands) < 5 {
		t.Errorf("help --json = %+v", help)
	}
	for _, cmd := range [][]string{{"whoami", "--help"}, {"ssh-key", "list", "--help"}, {"ssh-key", "generate-api-key", "--help"}} {
		if out := f.alice.ok(t, "", cmd...); !strings.Contains(strings.ToLower(out), "usage") {
			t.Errorf("%v: %q", cmd, out)
		}
	}

	// ssh-key add from standard input, and as an argument.
	k2 := testkit.SSHKeygen(t, f.dir, "ecdsa", 384)
	pub2, _ := os.ReadFile(k2 + ".pub")
	added := decode[struct {
		Name, Fingerprint, Status string
	}](t, f.alice.ok(t, string(pub2), "ssh-key", "add", "--name", "laptop", "--json"))
	if added.Name != "laptop" || added.Status != "added" || added.Fingerprint != fingerprintOf(t, k2+".pub") {
		t.Fatalf("add = %+v", added)
	}
	k3 := testkit.SSHKeygen(t, f.dir, "rsa", 3072)
	pub3, _ := os.ReadFile(k3 + ".pub")
	f.alice.ok(t, "", "ssh-key", "add", "--name", "desk", strings.TrimSpace(string(pub3)))
	f.alice.fails(t, "already", "ssh-key", "add", "--name", "desk2", strings.TrimSpace(string(pub3)))
	f.bob.fails(t, "already", "ssh-key", "add", strings.TrimSpace(string(pub3)))
	priv, _ := os.ReadFile(k3)
	if r := f.alice.ssh(t, string(priv), "ssh-key", "add"); r.code != 1 || !strings.Contains(r.stderr, "private key") {
		t.Errorf("private key on stdin: exit %d, %q", r.code, r.stderr)
	}
	// The new key logs in as alice.
	if got := decode[struct{ Email string }](t, f.srv.client(t, k2).ok(t, "", "whoami", "--json")); got.Email != "alice@example.com" {
		t.Errorf("laptop key logs in as %q", got.Email)
	}

	// Quoting survives the trip: --ctx arrives intact and is signed verbatim.
	gen := decode[generated](t, f.alice.ok(t, "",
		`ssh-key generate-api-key --vm=web --label=deploy --exe0 --exp=1d --ctx='{"role":"deploy","n":[1,2]}' --json`))
	if gen.Label != "deploy" || gen.VM != "web" || gen.Namespace != "v0@web.exe.xyz" || gen.ExpiresAt == "" || !strings.HasPrefix(gen.Token, "exe0.") {
		t.Fatalf("generate-api-key = %+v", gen)
	}
	insp := decode[inspected](t, mustRun(t, nil, "token", "inspect", gen.Token))
	var perms struct {
		Ctx json.RawMessage `json:"ctx"`
	}
	json.Unmarshal(insp.Permissions, &perms)
	if string(perms.Ctx) != `{"role":"deploy","n":[1,2]}` || insp.Fingerprint != gen.Fingerprint {
		t.Errorf("token carries ctx %s, fingerprint %s", perms.Ctx, insp.Fingerprint)
	}

	// The token verifies with ssh-keygen against the key ssh-key list shows.
	list := decode[struct {
		SSHKeys []keyJSON `json:"ssh_keys"`
	}](t, f.alice.ok(t, "", "ssh-key", "list", "--json"))
	var deploy *keyJSON
	for i, k := range list.SSHKeys {
		if k.Name == "deploy" {
			deploy = &list.SSHKeys[i]
		}
	}
	if deploy == nil || !deploy.Generated || deploy.VM != "web" || deploy.Fingerprint != gen.Fingerprint || deploy.ExpiresAt == "" {
		t.Fatalf("deploy key in list = %+v", deploy)
	}
	pubPath := filepath.Join(f.dir, "deploy.pub")
	os.WriteFile(pubPath, []byte(deploy.PublicKey+"\n"), 0o600)
	sshKeygenVerify(t, pubPath, gen.Token, "v0@web.exe.xyz", string(insp.Permissions))

	// The default is an exe1 handle; check-api-key explains tokens.
	exe1 := decode[generated](t, f.alice.ok(t, "", "ssh-key", "generate-api-key", "--label", "api", "--json"))
	if !strings.HasPrefix(exe1.Token, "exe1.") || len(exe1.Token) != 31 || exe1.Namespace != "v0@exe.dev" {
		t.Fatalf("exe1 = %+v", exe1)
	}
	check := decode[struct {
		Valid  bool `json:"valid"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}](t, f.alice.ok(t, "", "ssh-key", "check-api-key", "--json", exe1.Token))
	if !check.Valid || len(check.Checks) == 0 {
		t.Errorf("check-api-key = %+v", check)
	}
	conv := decode[struct{ Token string }](t, f.alice.ok(t, "", "exe0-to-exe1", "--vm", "web", "--json", gen.Token))
	if !strings.HasPrefix(conv.Token, "exe1.") {
		t.Errorf("exe0-to-exe1 = %+v", conv)
	}

	// Errors: exit 1, one line, nothing on stdout.
	f.alice.fails(t, "unknown command", "frobnicate")
	f.alice.fails(t, "already exists", "ssh-key", "generate-api-key", "--label", "deploy")
	f.bob.fails(t, "no VM", "ssh-key", "generate-api-key", "--vm", "web")
	f.alice.fails(t, "--exp", "ssh-key", "generate-api-key", "--exp", "5x")
	f.alice.fails(t, "no such key", "ssh-key", "remove", "nothing")
	f.alice.fails(t, "no such key", "ssh-key", "remove", who.SSHKeys[0].Fingerprint+"x")
	f.bob.fails(t, "no such key", "ssh-key", "remove", "deploy")

	// Rename, then remove revokes: the check now fails.
	f.alice.ok(t, "", "ssh-key", "rename", "deploy", "deploy-old")
	f.alice.ok(t, "", "ssh-key", "remove", "deploy-old")
	if r := f.alice.ssh(t, "", "ssh-key", "check-api-key", "--vm", "web", "--json", gen.Token); !strings.Contains(r.stdout, `"valid":false`) {
		t.Errorf("after remove, check-api-key: %s %s", r.stdout, r.stderr)
	}

	// Bob's last login key cannot be removed.
	f.bob.fails(t, "last login key", "ssh-key", "remove", fingerprintOf(t, f.bobKey+".pub"))

	// An unknown key is refused by ssh itself (exit 255).
	stranger := testkit.SSHKeygen(t, f.dir, "ed25519", 0)
	if r := f.srv.client(t, stranger).ssh(t, "", "whoami"); r.code != 255 {
		t.Errorf("unknown key: exit %d, %s", r.code, r.stderr)
	}
}

// TestSSHRestart: keys and the host key survive a restart on the same
// data dir, so clients' pinned known_hosts stay valid.
func TestSSHRestart(t *testing.T) {
	f := newFixture(t)
	f.alice.ok(t, "", "ssh-key", "generate-api-key", "--label", "keep")
	hostKeyBefore, _ := os.ReadFile(filepath.Join(f.srv.data, hostKeyFile))
	f.srv.stop()
	if f.srv.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("serve exited %d on SIGTERM:\n%s", f.srv.cmd.ProcessState.ExitCode(), f.srv.logs())
	}
	// Same port, so the known_hosts file written before the restart applies as is.
	srv2 := startServer(t, f.srv.data, "--ssh-addr", f.srv.sshAddr)
	info, err := os.Stat(filepath.Join(f.srv.data, hostKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v %v", info, err)
	}
	hostKeyAfter, _ := os.ReadFile(filepath.Join(f.srv.data, hostKeyFile))
	if string(hostKeyAfter) != string(hostKeyBefore) {
		t.Fatal("host key changed across restart")
	}
	// The known_hosts pinned before the restart (StrictHostKeyChecking=yes) still matches.
	c := &sshClient{s: srv2, key: f.aliceKey, knownHosts: f.alice.knownHosts}
	if out := c.ok(t, "", "ssh-key", "list"); !strings.Contains(out, "keep") {
		t.Errorf("after restart, ssh-key list = %s", out)
	}
}
