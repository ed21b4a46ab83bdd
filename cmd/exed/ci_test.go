package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// Issue 9: tokens issued from CI with a restricted deploy key and a pinned
// host key. The recipe in docs/ci.md is extracted and run as it stands with
// bash, the stock ssh, curl, jq and git against the real binary.

// ciDoc and ciSection are the file and section the recipe lives in.
const (
	ciDoc     = "docs/ci.md"
	ciSection = "# Issuing tokens from CI"
)

// ciDeployAdd is the recipe's command that registers the deploy key; the
// test runs it as written (and checks that the docs still say it).
const ciDeployAdd = `ssh-key add --name ci-deploy --vm web --cmds 'ssh-key generate-api-key,ssh-key remove' --exp 90d`

// ciDocText returns the text of the CI recipe.
func ciDocText(t *testing.T) string {
	t.Helper()
	return docSection(t, ciDoc, ciSection)
}

// ciBlock returns the one fenced block with info string lang in the CI
// recipe.
func ciBlock(t *testing.T, lang string) string {
	t.Helper()
	blocks := docBlocks(t, ciDoc, ciSection, lang)
	if len(blocks) != 1 {
		t.Fatalf("%s has %d ```%s blocks, want 1", ciDoc, len(blocks), lang)
	}
	return blocks[0]
}

// ciWorld is a server with alice, her VMs web (a real git http-backend
// plus the echo upstream) and blog, and the recipe's deploy key.
type ciWorld struct {
	dir        string
	srv        *server
	alice      *sshClient
	aliceID    string
	deployKey  string // the deploy key's private key file
	knownHosts string // the pinned known_hosts, from exed host-key
	httpPort   string

	mu   sync.Mutex
	hold chan struct{} // when set, the echo upstream announces a request here and waits for it to close
}

func newCIWorld(t *testing.T) *ciWorld {
	t.Helper()
	testkit.RequireTools(t, "jq")
	gitPath := testkit.RequireTools(t, "git")
	w := &ciWorld{dir: t.TempDir()}
	data := filepath.Join(w.dir, "data")
	env := []string{"EXED_DATA=" + data}
	aliceKey := testkit.SSHKeygen(t, w.dir, "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", aliceKey+".pub")

	// The VM: git smart HTTP for /repo.git/, the echo upstream elsewhere.
	root := t.TempDir()
	ciGitRepo(t, root)
	mux := http.NewServeMux()
	mux.Handle("/repo.git/", &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + root},
	})
	echo := proxy.Echo()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		hold := w.hold
		w.hold = nil
		w.mu.Unlock()
		if hold != nil {
			hold <- struct{}{}
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		echo.ServeHTTP(rw, r)
	})
	upstream := httptest.NewServer(mux)
	t.Cleanup(upstream.Close)

	w.srv = startServer(t, data)
	mustRun(t, env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)
	mustRun(t, env, "vm", "add", "--name", "blog", "--owner", "alice@example.com", "--upstream", upstream.URL)
	_, w.httpPort = splitHostPort(t, w.srv.httpAddr)
	w.alice = w.srv.client(t, aliceKey)
	w.aliceID = decode[struct {
		UserID string `json:"user_id"`
	}](t, w.alice.ok(t, "", "whoami", "--json")).UserID

	// The deploy key, registered as the docs say.
	if !strings.Contains(ciDocText(t), `"`+ciDeployAdd+`"`) {
		t.Fatalf("%s no longer registers the deploy key with %q", ciDoc, ciDeployAdd)
	}
	w.deployKey = testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
	pub, _ := os.ReadFile(w.deployKey + ".pub")
	w.alice.ok(t, string(pub), ciDeployAdd)

	// The pinned host key, as the recipe says: exed host-key on the server.
	host, port := splitHostPort(t, w.srv.sshAddr)
	w.knownHosts = filepath.Join(w.dir, "known_hosts")
	os.WriteFile(w.knownHosts, []byte(mustRun(t, env, "host-key", "--data", data, "--host", host, "--port", port)), 0o600)
	return w
}

// ciGitRepo makes root/repo.git, a bare repository with one commit.
func ciGitRepo(t *testing.T, root string) {
	t.Helper()
	env := []string{"HOME=" + root, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}
	work := t.TempDir()
	git := func(dir string, args ...string) {
		t.Helper()
		r := runCmd(t, env, "", "git", append([]string{"-C", dir}, args...)...)
		if r.code != 0 {
			t.Fatalf("git %v: %s", args, r.stderr)
		}
	}
	git(root, "init", "-q", "--bare", "-b", "main", "repo.git")
	git(work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "README"), []byte("deployed by CI\n"), 0o644)
	git(work, "add", "README")
	git(work, "commit", "-q", "-m", "first")
	git(work, "push", "-q", filepath.Join(root, "repo.git"), "main")
}

// vmURL is VM name's URL as a job reaches it: the real name on the
// server's port. The job's curl and git get there through http_proxy
// (the server's HTTP listener), so the Host header names the VM.
func (w *ciWorld) vmURL(name string) string {
	return "http://" + name + ".exe.xyz:" + w.httpPort
}

// jobEnv is everything a job gets: nothing from the test's own
// environment but PATH, so no proxy, git or ssh configuration leaks in.
func (w *ciWorld) jobEnv(t *testing.T, runID string, extra ...string) []string {
	host, port := splitHostPort(t, w.srv.sshAddr)
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"http_proxy=http://" + w.srv.httpAddr,
		"EXED_HOST=" + host,
		"EXED_PORT=" + port,
		"DEPLOY_KEY=" + w.deployKey,
		"KNOWN_HOSTS=" + w.knownHosts,
		"RUN_ID=" + runID,
		"VM_URL=" + w.vmURL("web"),
		"GITHUB_ACTIONS=true", // so the job prints ::add-mask::TOKEN, which tells the test the token
	}, extra...)
}

// job is one run of bash in its own working directory (holding the given
// files) and process group (a CI runner cancels a job by signalling its
// group).
type job struct {
	cmd            *exec.Cmd
	dir            string
	stdout, stderr bytes.Buffer
}

func startJob(t *testing.T, env []string, files map[string]string, args ...string) *job {
	t.Helper()
	j := &job{dir: t.TempDir()}
	for name, content := range files {
		path := filepath.Join(j.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j.cmd = exec.Command("bash", args...)
	j.cmd.Dir, j.cmd.Env = j.dir, env
	j.cmd.Stdout, j.cmd.Stderr = &j.stdout, &j.stderr
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if j.cmd.ProcessState == nil {
			syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
			j.cmd.Wait()
		}
	})
	return j
}

// startRecipe starts the recipe's job script.
func startRecipe(t *testing.T, script string, env []string) *job {
	t.Helper()
	return startJob(t, env, map[string]string{"job.sh": script}, "job.sh")
}

// wait waits for the job and returns its exit status.
func (j *job) wait(t *testing.T) int {
	t.Helper()
	err := j.cmd.Wait()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return j.cmd.ProcessState.ExitCode()
}

func (j *job) String() string {
	return "stdout:\n" + j.stdout.String() + "\nstderr:\n" + j.stderr.String()
}

var maskLine = regexp.MustCompile(`(?m)^::add-mask::(\S+)$`)

// token is the token the job masked, or "" if it got none.
func (j *job) token() string {
	if m := maskLine.FindStringSubmatch(j.stdout.String()); m != nil {
		return m[1]
	}
	return ""
}

// checkUsed asserts that the job reached the VM with alice's identity
// (the echo upstream's reply is on its stdout) and cloned the repository.
func (j *job) checkUsed(t *testing.T, tok string) {
	t.Helper()
	out := j.stdout.String()
	i := strings.Index(out, "{")
	if i < 0 {
		t.Fatalf("no reply from the VM in the job's output:\n%s", j)
	}
	got := decode[echoed](t, out[i:])
	if e := got.Headers["X-Exedev-Email"]; len(e) != 1 || e[0] != "alice@example.com" {
		t.Errorf("the VM saw X-Exedev-Email %q", e)
	}
	if strings.Contains(out[i:], tok) {
		t.Error("the token reached the VM")
	}
	readme, err := os.ReadFile(filepath.Join(j.dir, "repo", "README"))
	if err != nil || string(readme) != "deployed by CI\n" {
		t.Errorf("git clone: README = %q, %v", readme, err)
	}
}

// refused asserts that the proxy refuses tok for VM web.
func (w *ciWorld) refused(t *testing.T, tok string) {
	t.Helper()
	if code, _ := w.srv.curl(t, w.vmURL("web")+"/", "-H", "X-Exedev-Authorization: Bearer "+tok); code != "401" {
		t.Errorf("token after the job: status %s, want 401", code)
	}
}

// keys is alice's ssh-key list --json.
func (w *ciWorld) keys(t *testing.T) []keyJSON {
	t.Helper()
	return decode[struct {
		SSHKeys []keyJSON `json:"ssh_keys"`
	}](t, w.alice.ok(t, "", "ssh-key", "list", "--json")).SSHKeys
}

// noTokensLeft asserts that alice has no token keys left.
func (w *ciWorld) noTokensLeft(t *testing.T) {
	t.Helper()
	for _, k := range w.keys(t) {
		if k.Generated {
			t.Errorf("token %s (%s) left behind", k.Name, k.Fingerprint)
		}
	}
}

// events reads the audit log after id, a second reader beside the
// running server.
func (w *ciWorld) events(t *testing.T, after int64) []store.Event {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), "", w.srv.data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev, err := st.Events(context.Background(), after, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (w *ciWorld) lastEvent(t *testing.T) int64 {
	ev := w.events(t, 0)
	if len(ev) == 0 {
		return 0
	}
	return ev[len(ev)-1].ID
}

// issuedAndRevoked checks the audit log after id: n tokens generated by
// alice and the very same n removed by her, nothing else.
func (w *ciWorld) issuedAndRevoked(t *testing.T, after int64, n int) {
	t.Helper()
	var gen, rm []string
	for _, e := range w.events(t, after) {
		if e.ActorID != w.aliceID || e.RemoteAddr == "" || e.Time.IsZero() {
			t.Errorf("audit event %+v: want alice's, with a time and remote address", e)
		}
		switch e.Action {
		case "token.generate":
			gen = append(gen, e.Subject)
		case "key.remove":
			rm = append(rm, e.Subject)
		default:
			t.Errorf("unexpected audit event %+v", e)
		}
	}
	slices.Sort(gen)
	slices.Sort(rm)
	if len(gen) != n || len(slices.Compact(slices.Clone(gen))) != n || !slices.Equal(gen, rm) {
		t.Errorf("audit log: %d token.generate %v, %d key.remove %v; want the same %d of each", len(gen), gen, len(rm), rm, n)
	}
}

// TestCIRecipe runs the recipe's job: it issues a token, uses it with curl
// and git, and revokes it at the end, also when the job fails or is
// cancelled midway; then the token is refused. The GitHub Actions step
// runs it the same way.
func TestCIRecipe(t *testing.T) {
	w := newCIWorld(t)
	script := ciBlock(t, "sh")

	t.Run("success", func(t *testing.T) {
		mark := w.lastEvent(t)
		// A runner whose git stores credentials: the job must not leave
		// its token there.
		home := t.TempDir()
		os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[credential]\n\thelper = store\n"), 0o600)
		j := startRecipe(t, script, w.jobEnv(t, "1001", "HOME="+home))
		if code := j.wait(t); code != 0 {
			t.Fatalf("job exited %d\n%s", code, j)
		}
		tok := j.token()
		if !strings.HasPrefix(tok, "exe1.") {
			t.Fatalf("job masked no token\n%s", j)
		}
		j.checkUsed(t, tok)
		if b, err := os.ReadFile(filepath.Join(home, ".git-credentials")); err == nil || len(b) > 0 {
			t.Errorf("git stored the token: %q", b)
		}
		w.refused(t, tok)
		w.noTokensLeft(t)
		w.issuedAndRevoked(t, mark, 1)
		if strings.Contains(w.srv.logs(), tok) {
			t.Error("the token appears in the server log")
		}
	})

	t.Run("use fails", func(t *testing.T) {
		// The job uses the token on a VM it is not for: curl -f exits 22
		// on the 401, and the trap still revokes the token.
		mark := w.lastEvent(t)
		j := startRecipe(t, script, w.jobEnv(t, "1002", "VM_URL="+w.vmURL("blog")))
		if code := j.wait(t); code != 22 || !strings.Contains(j.stderr.String(), "401") {
			t.Fatalf("job exited %d, want 22 (curl's, for the 401)\n%s", code, j)
		}
		tok := j.token()
		if tok == "" {
			t.Fatalf("job masked no token\n%s", j)
		}
		w.refused(t, tok)
		w.noTokensLeft(t)
		w.issuedAndRevoked(t, mark, 1)
	})

	t.Run("cancelled", func(t *testing.T) {
		// The runner signals the job's process group while curl waits on
		// the VM: the job exits 143 and the trap still revokes the token.
		mark := w.lastEvent(t)
		hold := make(chan struct{})
		w.mu.Lock()
		w.hold = hold
		w.mu.Unlock()
		j := startRecipe(t, script, w.jobEnv(t, "1003"))
		select {
		case <-hold:
		case <-time.After(30 * time.Second):
			t.Fatalf("the job never reached the VM\n%s", j)
		}
		syscall.Kill(-j.cmd.Process.Pid, syscall.SIGTERM)
		code := j.wait(t)
		close(hold)
		if code != 143 {
			t.Fatalf("cancelled job exited %d, want 143\n%s", code, j)
		}
		tok := j.token()
		if tok == "" {
			t.Fatalf("job masked no token\n%s", j)
		}
		w.refused(t, tok)
		w.noTokensLeft(t)
		w.issuedAndRevoked(t, mark, 1)
	})

	t.Run("host key not the pinned one", func(t *testing.T) {
		// Another server's key pinned for this address: ssh refuses to go
		// on (255) and nothing is issued.
		mark := w.lastEvent(t)
		host, port := splitHostPort(t, w.srv.sshAddr)
		other := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(other, []byte(mustRun(t, nil, "host-key", "--data", t.TempDir(), "--host", host, "--port", port)), 0o600)
		j := startRecipe(t, script, w.jobEnv(t, "1004", "KNOWN_HOSTS="+other))
		if code := j.wait(t); code != 255 || !strings.Contains(j.stderr.String(), "Host key verification failed") {
			t.Fatalf("job exited %d, want 255 with ssh's host key error\n%s", code, j)
		}
		if ev := w.events(t, mark); len(ev) != 0 {
			t.Errorf("a job that could not verify the host changed the store: %+v", ev)
		}
	})

	t.Run("no pinned key", func(t *testing.T) {
		// Nothing pinned: ssh does not trust the key on first use.
		mark := w.lastEvent(t)
		empty := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(empty, nil, 0o600)
		j := startRecipe(t, script, w.jobEnv(t, "1005", "KNOWN_HOSTS="+empty))
		if code := j.wait(t); code != 255 || !strings.Contains(j.stderr.String(), "Host key verification failed") {
			t.Fatalf("job exited %d, want 255 with ssh's host key error\n%s", code, j)
		}
		if b, _ := os.ReadFile(empty); len(b) != 0 {
			t.Errorf("ssh added the host key to the pinned file: %q", b)
		}
		if ev := w.events(t, mark); len(ev) != 0 {
			t.Errorf("a job that could not verify the host changed the store: %+v", ev)
		}
	})

	t.Run("GitHub Actions step", func(t *testing.T) {
		// The workflow's env block and run script, as GitHub would run them:
		// bash -e, the secrets as variables, RUNNER_TEMP, the repository
		// checked out with the recipe's script at the path the step names.
		env, run := ciWorkflowStep(t, ciBlock(t, "yaml"))
		key, _ := os.ReadFile(w.deployKey)
		kh, _ := os.ReadFile(w.knownHosts)
		host, port := splitHostPort(t, w.srv.sshAddr)
		values := map[string]string{
			"EXED_HOST": host, "EXED_PORT": port, "VM_URL": w.vmURL("web"), "RUN_ID": "1006-1-0",
			// GitHub secrets are pasted text: no trailing newline.
			"EXED_DEPLOY_KEY":  strings.TrimSpace(string(key)),
			"EXED_KNOWN_HOSTS": strings.TrimSpace(string(kh)),
		}
		if !slices.Equal(env, slices.Sorted(maps.Keys(values))) {
			t.Fatalf("the step's env block sets %v, want %v", env, slices.Sorted(maps.Keys(values)))
		}
		jobEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
			"http_proxy=http://" + w.srv.httpAddr, "GITHUB_ACTIONS=true", "RUNNER_TEMP=" + t.TempDir()}
		for k, v := range values {
			jobEnv = append(jobEnv, k+"="+v)
		}
		mark := w.lastEvent(t)
		// GitHub runs the step as bash --noprofile --norc -eo pipefail
		// FILE, in the checkout (which holds the recipe's script).
		j := startJob(t, jobEnv, map[string]string{"step.sh": run, "ci/exed-job.sh": script},
			"--noprofile", "--norc", "-eo", "pipefail", "step.sh")
		if code := j.wait(t); code != 0 {
			t.Fatalf("step exited %d\n%s", code, j)
		}
		tok := j.token()
		if tok == "" {
			t.Fatalf("step masked no token\n%s", j)
		}
		j.checkUsed(t, tok)
		w.refused(t, tok)
		w.noTokensLeft(t)
		w.issuedAndRevoked(t, mark, 1)
	})
}

// ciWorkflowStep returns the names the workflow step's env block sets
// (sorted) and its run script, dedented.
func ciWorkflowStep(t *testing.T, yaml string) ([]string, string) {
	t.Helper()
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	lines := strings.Split(yaml, "\n")
	var env []string
	var run strings.Builder
	for i := 0; i < len(lines); i++ {
		key := strings.TrimSpace(lines[i])
		if key != "env:" && key != "run: |" {
			continue
		}
		base := indent(lines[i])
		inner := -1
		for i++; i < len(lines) && (strings.TrimSpace(lines[i]) == "" || indent(lines[i]) > base); i++ {
			if inner < 0 {
				inner = indent(lines[i])
			}
			if key == "env:" {
				name, _, _ := strings.Cut(strings.TrimSpace(lines[i]), ":")
				env = append(env, name)
			} else if len(lines[i]) >= inner {
				run.WriteString(lines[i][inner:] + "\n")
			} else {
				run.WriteString("\n")
			}
		}
		i--
	}
	if len(env) == 0 || run.Len() == 0 {
		t.Fatalf("no env block or run script in the workflow:\n%s", yaml)
	}
	slices.Sort(env)
	return env, run.String()
}

// TestCIConcurrentJobs runs twenty copies of the recipe's job at once
// against one server, each with its own label: all succeed, every token is
// refused afterwards, none is left behind, and the audit log has every
// issue and every revocation.
func TestCIConcurrentJobs(t *testing.T) {
	const jobs = 20
	w := newCIWorld(t)
	script := ciBlock(t, "sh")
	mark := w.lastEvent(t)
	js := make([]*job, jobs)
	for i := range js {
		js[i] = startRecipe(t, script, w.jobEnv(t, fmt.Sprintf("par-%d", i)))
	}
	var toks []string
	for i, j := range js {
		if code := j.wait(t); code != 0 {
			t.Errorf("job %d exited %d\n%s", i, code, j)
			continue
		}
		tok := j.token()
		if tok == "" || slices.Contains(toks, tok) {
			t.Errorf("job %d: token %q missing or not its own", i, tok)
			continue
		}
		toks = append(toks, tok)
		j.checkUsed(t, tok)
	}
	for _, tok := range toks {
		w.refused(t, tok)
	}
	w.noTokensLeft(t)
	w.issuedAndRevoked(t, mark, jobs)
	logs := w.srv.logs()
	for _, tok := range toks {
		if strings.Contains(logs, tok) {
			t.Fatal("a token appears in the server log")
		}
	}
}

// TestCIDeployKeyRefusals: a restricted key tries each thing it must not
// do — another VM, a command outside its cmds, adding a key, removing
// another, lifting its own restrictions, logging in after its expiry — and
// each is refused with the exit status and message the recipe promises,
// naming the restriction, with nothing stored. What its restrictions do
// allow works, and inherits them.
func TestCIDeployKeyRefusals(t *testing.T) {
	w := newCIWorld(t)
	deploy := w.srv.client(t, w.deployKey)
	newPub := func() string {
		k := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
		b, _ := os.ReadFile(k + ".pub")
		return strings.TrimSpace(string(b))
	}
	addKey := func(name, flags string) (*sshClient, string) {
		k := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
		pub, _ := os.ReadFile(k + ".pub")
		w.alice.ok(t, string(pub), "ssh-key add --name "+name+" "+flags)
		return w.srv.client(t, k), strings.TrimSpace(string(pub))
	}
	vmOnly, _ := addKey("ci-vmonly", "--vm web")
	adder, adderPub := addKey("ci-adder", "--vm web --cmds 'ssh-key add,ssh-key list' --exp 1d")

	// ssh-key list shows the restrictions: VM and expiry in the table,
	// cmds too in JSON.
	byName := map[string]keyJSON{}
	for _, k := range w.keys(t) {
		byName[k.Name] = k
	}
	d := byName["ci-deploy"]
	if d.VM != "web" || d.Cmds == nil || !slices.Equal(*d.Cmds, []string{"ssh-key generate-api-key", "ssh-key remove"}) || d.ExpiresAt == "" || d.Generated {
		t.Fatalf("ci-deploy in ssh-key list --json = %+v", d)
	}
	exp, err := time.Parse(time.RFC3339, d.ExpiresAt)
	if err != nil || exp.Sub(time.Now()) < 89*24*time.Hour || exp.Sub(time.Now()) > 90*24*time.Hour {
		t.Errorf("ci-deploy expires at %s, want in 90 days", d.ExpiresAt)
	}
	table := w.alice.ok(t, "", "ssh-key", "list")
	if !regexp.MustCompile(`(?m)^ci-deploy\s+login\s+web\s+ssh-key generate-api-key, ssh-key remove\s+\S+\s+` + regexp.QuoteMeta(exp.UTC().Format("2006-01-02 15:04"))).MatchString(table) {
		t.Errorf("ssh-key list does not show ci-deploy's VM, cmds and expiry:\n%s", table)
	}

	keysBefore := w.keys(t)
	mark := w.lastEvent(t)
	expAt := exp.UTC().Format(time.RFC3339)
	refusals := []struct {
		who  *sshClient
		line string
		want string
	}{
		// Another VM (blog is alice's too).
		{deploy, "ssh-key generate-api-key --vm=blog --label=x", `key "ci-deploy" is restricted to VM web: --vm blog is outside it`},
		// Commands outside its cmds, over SSH and in a token it would mint.
		{deploy, "whoami", `key "ci-deploy" may only run ssh-key generate-api-key, ssh-key remove: "whoami" is not among them`},
		{deploy, "ssh-key list", `"ssh-key list" is not among them`},
		{deploy, "ssh-key generate-api-key --label=x --cmds=whoami", `key "ci-deploy" is restricted to cmds ssh-key generate-api-key, ssh-key remove: "whoami" is outside them`},
		// Past its own expiry.
		{deploy, "ssh-key generate-api-key --label=x --exp=1y", `key "ci-deploy" expires at ` + expAt + `: --exp cannot be later`},
		// Adding a key.
		{deploy, "ssh-key add --name x " + newPub(), `"ssh-key add" is not among them`},
		{vmOnly, "ssh-key add --name x " + newPub(), `key "ci-vmonly" is restricted (vm web): it cannot run "ssh-key add" unless its cmds name it`},
		// Removing or renaming other keys, or itself.
		{vmOnly, "ssh-key remove ci-deploy", `key "ci-vmonly" is restricted (vm web): it cannot run "ssh-key remove" unless its cmds name it`},
		{vmOnly, "ssh-key remove ci-vmonly", `it cannot run "ssh-key remove"`},
		{deploy, "ssh-key rename ci-deploy free", `"ssh-key rename" is not among them`},
		// Lifting its own restrictions through a key it may add.
		{adder, "ssh-key add --name x --cmds whoami " + newPub(), `key "ci-adder" is restricted to cmds ssh-key add, ssh-key list: "whoami" is outside them`},
		{adder, "ssh-key add --name x --vm blog " + newPub(), `key "ci-adder" is restricted to VM web: --vm blog is outside it`},
		{adder, "ssh-key add --name x --exp 1y " + newPub(), `key "ci-adder" expires at`},
		{adder, "ssh-key add --name x " + adderPub, "is already registered"},
	}
	for _, r := range refusals {
		r.who.fails(t, r.want, r.line)
	}
	if ev := w.events(t, mark); len(ev) != 0 {
		t.Errorf("refusals wrote audit events: %+v", ev)
	}
	if after := w.keys(t); !slices.EqualFunc(after, keysBefore, func(a, b keyJSON) bool { return a.Fingerprint == b.Fingerprint && a.Name == b.Name }) {
		t.Errorf("refusals changed the keys:\nbefore %+v\nafter  %+v", keysBefore, after)
	}

	// Within its restrictions it works, and what it makes inherits them.
	gen := decode[struct {
		generated
		Cmds []string `json:"cmds"`
	}](t, deploy.ok(t, "", "ssh-key generate-api-key --label=ci-inherit --json"))
	if gen.VM != "web" || gen.Namespace != "v0@web.exe.xyz" || gen.ExpiresAt != expAt ||
		!slices.Equal(gen.Cmds, []string{"ssh-key generate-api-key", "ssh-key remove"}) {
		t.Errorf("token minted by ci-deploy without flags = %+v; want VM web, its cmds, its expiry", gen)
	}
	if code, _ := w.srv.curl(t, w.vmURL("web")+"/", "-H", "X-Exedev-Authorization: Bearer "+gen.Token); code != "200" {
		t.Errorf("inherited token on VM web: %s", code)
	}
	deploy.ok(t, "", "ssh-key remove ci-inherit")
	w.refused(t, gen.Token)
	adder.ok(t, newPub(), "ssh-key add --name ci-added")
	for _, k := range w.keys(t) {
		if k.Name == "ci-added" && (k.VM != "web" || k.Cmds == nil || !slices.Equal(*k.Cmds, []string{"ssh-key add", "ssh-key list"}) || k.ExpiresAt != byName["ci-adder"].ExpiresAt) {
			t.Errorf("key added by ci-adder = %+v; want its restrictions", k)
		}
	}

	// After its expiry: ssh cannot log in (255), and says why.
	expiring := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
	expiringPub, _ := os.ReadFile(expiring + ".pub")
	pub, _, _, _, err := ssh.ParseAuthorizedKey(expiringPub)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(2 * time.Second).Truncate(time.Second)
	st, err := sqlstore.Open(context.Background(), "", w.srv.data)
	if err != nil {
		t.Fatal(err)
	}
	// Added straight to the registry: --exp counts in hours at least.
	err = st.AddKey(context.Background(), store.Key{
		UserID: w.aliceID, Name: "ci-expiring", Fingerprint: keys.Fingerprint(pub),
		PublicKey: strings.TrimSpace(string(expiringPub)), AddedAt: time.Now().UTC().Truncate(time.Second),
		VM: "web", ExpiresAt: until,
	}, store.Event{Time: time.Now().UTC(), ActorID: w.aliceID, Action: "key.add", Subject: keys.Fingerprint(pub)})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	expired := w.srv.client(t, expiring)
	expired.ok(t, "", "ssh-key generate-api-key --label=ci-before-expiry")
	mark = w.lastEvent(t)
	keysBefore = w.keys(t)
	testkit.WaitWithin(t, "ci-expiring to expire", 10*time.Second, func() bool { return time.Now().After(until) })
	r := expired.ssh(t, "", "ssh-key generate-api-key --label=ci-after-expiry")
	want := `exed: key "ci-expiring" expired at ` + until.UTC().Format(time.RFC3339)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("expired key: exit %d, stdout %q, stderr %q; want 255 and %q", r.code, r.stdout, r.stderr, want)
	}
	if ev := w.events(t, mark); len(ev) != 0 {
		t.Errorf("the expired key changed the store: %+v", ev)
	}
	if after := w.keys(t); len(after) != len(keysBefore) {
		t.Errorf("the expired key changed the keys: %d → %d", len(keysBefore), len(after))
	}
}

// TestCIExitCodes: the exit statuses the recipe documents for a script.
// 0 success; 1 a command error, one line on stderr; 255 whenever ssh
// itself fails: host key not the pinned one, a key the server does not
// know (or no longer knows), no server.
func TestCIExitCodes(t *testing.T) {
	w := newCIWorld(t)
	deploy := w.srv.client(t, w.deployKey)
	r := deploy.ssh(t, "", "ssh-key generate-api-key --label=ci-ok --json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("success: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	tok := decode[generated](t, r.stdout).Token
	deploy.fails(t, "already exists", "ssh-key generate-api-key --label=ci-ok")
	deploy.fails(t, "unknown command", "frobnicate")

	sshFails := func(what string, c *sshClient, want string) {
		t.Helper()
		r := c.ssh(t, "", "ssh-key generate-api-key --label=ci-never")
		if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 255 and %q", what, r.code, r.stdout, r.stderr, want)
		}
	}
	host, port := splitHostPort(t, w.srv.sshAddr)
	other := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(other, []byte(mustRun(t, nil, "host-key", "--data", t.TempDir(), "--host", host, "--port", port)), 0o600)
	sshFails("host key not the pinned one", &sshClient{s: w.srv, key: w.deployKey, knownHosts: other}, "Host key verification failed")
	sshFails("unknown key", w.srv.client(t, testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)), "Permission denied")

	// No server at that address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := &server{sshAddr: ln.Addr().String()}
	ln.Close()
	sshFails("no server", &sshClient{s: gone, key: w.deployKey, knownHosts: deploy.knownHosts}, "refused")

	// A removed deploy key is a key the server does not know. A token it
	// minted is a key of its own, and works on until removed or expired
	// (as the recipe says).
	w.alice.ok(t, "", "ssh-key remove ci-deploy")
	sshFails("removed key", deploy, "Permission denied")
	if code, _ := w.srv.curl(t, w.vmURL("web")+"/", "-H", "X-Exedev-Authorization: Bearer "+tok); code != "200" {
		t.Errorf("token minted by the removed deploy key: %s, want 200", code)
	}
	if !strings.Contains(ciDocText(t), "| 255 |") {
		t.Errorf("%s does not document exit status 255", ciDoc)
	}
}
