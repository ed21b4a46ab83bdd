package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

// TestDocsGitAgainstDemo runs docs/git.md's "Against the demo" as written,
// in the Quickstart's second terminal, against `exed serve --demo`: the
// credential helper scoped to the VM's URL with its port, a clone of the
// demo-git VM's repository, a commit pushed through the proxy, and a second
// clone that has it; then the cleanup, after which git is refused.
func TestDocsGitAgainstDemo(t *testing.T) {
	testkit.RequireTools(t, "bash", "ssh", "jq", "git")
	quick := docBlocks(t, "README.md", "## Quickstart", "sh")
	blocks := docBlocks(t, "docs/git.md", "## Against the demo", "sh")
	if len(blocks) != 2 {
		t.Fatalf("docs/git.md's demo section has %d sh blocks, want 2 (try it, undo it)", len(blocks))
	}

	dir := t.TempDir()
	t.Chdir(dir)
	home := t.TempDir() // the --global git config and the token file land here
	srv := startServer(t, "exed-data", "--demo")
	_, sshPort := splitHostPort(t, srv.sshAddr)
	_, httpPort := splitHostPort(t, srv.httpAddr)
	for i := range blocks {
		blocks[i] = withPorts(blocks[i], sshPort, httpPort)
	}
	// The Quickstart's exe(), as defined in its second terminal.
	var exeDef string
	for _, c := range commands(quick...) {
		if strings.HasPrefix(c, "exe() {") {
			exeDef = withPorts(c, sshPort, httpPort)
		}
	}
	if exeDef == "" {
		t.Fatal("the Quickstart defines no exe()")
	}

	env := []string{
		"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"NO_PROXY=*", "no_proxy=*",
	}
	tryIt := commands(exeDef, blocks[0])
	steps := runSteps(t, dir, env, tryIt)
	last := strings.TrimSpace(steps[len(steps)-1].out)
	if !strings.HasPrefix(steps[len(steps)-1].cmd, "git -C demo-repo-again log") ||
		!strings.Contains(last, "hello from the demo") || !strings.Contains(last, "exed demo: first commit") {
		t.Errorf("the second clone's log:\n%s\nwant the pushed commit on the demo's first one", last)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "demo-repo-again", "hello.txt")); err != nil || string(got) != "hello through exed\n" {
		t.Errorf("the second clone's hello.txt: %q, %v", got, err)
	}
	// The push reached the repository the demo serves, through the proxy
	// with the token's identity.
	out, err := exec.Command("git", "--git-dir", filepath.Join(dir, "exed-data", demoGitDir, demoGitRepo), "log", "--format=%s", "main").Output()
	if err != nil || !strings.HasPrefix(string(out), "hello from the demo\n") {
		t.Errorf("the demo's repository: %q, %v", out, err)
	}
	if logs := srv.logs(); !strings.Contains(logs, "vm=demo-git method=POST status=200") || !strings.Contains(logs, "carrier=authorization-basic") {
		t.Errorf("no authorised push through the proxy in the log:\n%s", logs)
	}
	if b, _ := os.ReadFile(filepath.Join(home, ".gitconfig")); !strings.Contains(string(b), `[credential "http://demo-git.vm.localhost:`+httpPort+`"]`) {
		t.Errorf("the helper is not scoped to the VM's URL with its port:\n%s", b)
	}

	tok, err := os.ReadFile(filepath.Join(home, ".exed-demo-token"))
	if err != nil || !strings.HasPrefix(string(tok), "exe1.") {
		t.Fatalf("the token file: %q, %v", tok, err)
	}

	// Undo it: the token is revoked (git is refused), helper and file gone.
	runSteps(t, dir, env, commands(exeDef, blocks[1]))
	if b, _ := os.ReadFile(filepath.Join(home, ".gitconfig")); strings.Contains(string(b), "demo-git") {
		t.Errorf("the helper is still configured:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(home, ".exed-demo-token")); !os.IsNotExist(err) {
		t.Errorf("the token file is still there: %v", err)
	}
	cmd := exec.Command("git", "-c", "credential.helper=!f() { echo username=x; echo password="+strings.TrimSpace(string(tok))+"; }; f",
		"ls-remote", "http://demo-git.vm.localhost:"+httpPort+"/repo.git")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Authentication failed") {
		t.Errorf("git with the revoked token: %v\n%s", err, out)
	}
}
