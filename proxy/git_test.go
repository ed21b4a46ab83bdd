package proxy

import (
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

// gitEnv runs git as a user would: an empty HOME, no system config, no
// prompts, no proxy from the environment (the test names its own).
type gitEnv struct {
	t     *testing.T
	home  string
	proxy string // http://127.0.0.1:PORT, the front server
}

func (g gitEnv) run(dir string, args ...string) (string, error) {
	g.t.Helper()
	args = append([]string{"-c", "http.proxy=" + g.proxy, "-c", "protocol.version=2"}, args...)
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"HOME=" + g.home,
		"PATH=" + os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g gitEnv) mustRun(dir string, args ...string) string {
	g.t.Helper()
	out, err := g.run(dir, args...)
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestGitThroughProxy runs a real git http-backend (CGI) as the VM's
// upstream and git clone/push through the proxy with the token handed over
// by a credential helper, reached as http://web.exe.xyz/ via git's
// http.proxy so the Host header names the VM.
func TestGitThroughProxy(t *testing.T) {
	gitPath := testkit.RequireTools(t, "git")
	root := t.TempDir()
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + root},
	}
	w := newWorld(t, backend)
	g := gitEnv{t: t, home: t.TempDir(), proxy: w.front.URL}

	g.mustRun(root, "init", "-q", "--bare", "-b", "main", "repo.git")
	g.mustRun(filepath.Join(root, "repo.git"), "config", "http.receivepack", "true")

	tok := w.vmToken("web", `{"ctx":{"role":"ci"}}`)
	tokFile := filepath.Join(g.home, "exe_dev_token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seedHelper := `!f() { echo "password=$(cat ` + tokFile + `)"; }; f`
	userHelper := `!f() { echo username=x; echo "password=$(cat ` + tokFile + `)"; }; f`
	url := "http://web.exe.xyz/repo.git"
	urlWithUser := "http://x@web.exe.xyz/repo.git"

	// Push a commit with the helper that prints a username too.
	work := t.TempDir()
	g.mustRun(work, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("hello through exed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustRun(work, "add", "README")
	g.mustRun(work, "commit", "-q", "-m", "first")
	g.mustRun(work, "-c", "credential.helper=", "-c", "credential.helper="+userHelper, "push", "-q", url, "main")

	clone := func(url string, cfg ...string) (string, string, error) {
		dest := filepath.Join(t.TempDir(), "clone")
		args := append(append([]string{}, cfg...), "clone", "-q", url, dest)
		out, err := g.run(t.TempDir(), args...)
		return dest, out, err
	}
	wantClone := func(what, url string, cfg ...string) {
		t.Helper()
		dest, out, err := clone(url, cfg...)
		if err != nil {
			t.Errorf("%s: clone failed: %v\n%s", what, err, out)
			return
		}
		got, err := os.ReadFile(filepath.Join(dest, "README"))
		if err != nil || string(got) != "hello through exed\n" {
			t.Errorf("%s: cloned README = %q, %v", what, got, err)
		}
	}
	wantFail := func(what, url string, cfg ...string) string {
		t.Helper()
		_, out, err := clone(url, cfg...)
		if err == nil {
			t.Errorf("%s: clone succeeded, want failure", what)
		}
		return out
	}

	wantClone("helper with username and password", url, "-c", "credential.helper=", "-c", "credential.helper="+userHelper)
	wantClone("user in the URL, seed's password-only helper", urlWithUser, "-c", "credential.helper=", "-c", "credential.helper="+seedHelper)
	wantClone("http.extraHeader X-Exedev-Authorization", url, "-c", "http.extraHeader=X-Exedev-Authorization: Bearer "+tok)

	out := wantFail("no credentials", url, "-c", "credential.helper=")
	if !strings.Contains(out, "401") && !strings.Contains(out, "Authentication failed") && !strings.Contains(out, "could not read Username") {
		t.Errorf("no credentials: unexpected failure output:\n%s", out)
	}
	// The seed's helper prints only a password; git then still wants a
	// username and, without a terminal, gives up. Documented, not fixed here.
	out = wantFail("seed's password-only helper, no user in URL", url, "-c", "credential.helper=", "-c", "credential.helper="+seedHelper)
	t.Logf("seed helper without a user in the URL fails as expected: %s", strings.TrimSpace(out))
	wantFail("wrong token", url, "-c", "credential.helper=", "-c", `credential.helper=!f() { echo username=x; echo password=exe0.e30.AAAA; }; f`)
	wantFail("another VM's token", url, "-c", "credential.helper=", "-c", "credential.helper=!f() { echo username=x; echo password="+w.vmToken("pub", `{}`)+"; }; f")

	// A push of a second commit through the user-in-URL form, then the
	// clone sees it.
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustRun(work, "commit", "-q", "-am", "second")
	g.mustRun(work, "-c", "credential.helper=", "-c", "credential.helper="+seedHelper, "push", "-q", urlWithUser, "main")
	dest, out, err := clone(url, "-c", "credential.helper=", "-c", "credential.helper="+userHelper)
	if err != nil {
		t.Fatalf("clone after second push: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "README")); string(got) != "second\n" {
		t.Errorf("README after second push = %q", got)
	}
	if w.hits.Load() == 0 {
		t.Error("git never reached the upstream")
	}
}
