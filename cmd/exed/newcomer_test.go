package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/tokens"
)

// The traps a newcomer met in their first hour (issue 13), each pinned.

// TestHostKeyRefusesMissingKey: `exed host-key` pointed at a data dir
// without a host key (a wrong --data) says where it looked and how the key
// gets made, exits 1, prints no pin and creates nothing; with --create it
// makes the key (0600), and then prints the same pin as the server that
// uses it.
func TestHostKeyRefusesMissingKey(t *testing.T) {
	data := filepath.Join(t.TempDir(), "wrong-data")
	r := run(t, nil, "", "host-key", "--data", data)
	path := filepath.Join(data, hostKeyFile)
	if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "no host key at "+path) ||
		!strings.Contains(r.stderr, "exed serve creates it on its first start") ||
		!strings.Contains(r.stderr, "exed host-key --create --host-key "+path) {
		t.Errorf("host-key on a data dir without one: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Lstat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("host-key created %s: %v", data, err)
	}

	created := mustRun(t, nil, "host-key", "--create", "--data", data, "--host", "127.0.0.1", "--port", "2222")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--create: %v, %v (want mode 0600)", fi, err)
	}
	if again := mustRun(t, nil, "host-key", "--data", data, "--host", "127.0.0.1", "--port", "2222"); again != created {
		t.Errorf("host-key after --create printed another key:\n%s\nthen\n%s", created, again)
	}
	srv := startServer(t, data)
	fp := strings.TrimPrefix(strings.Split(strings.TrimSpace(created), "\n")[1], "# ")
	if !strings.Contains(srv.logs(), "host_key="+fp) {
		t.Errorf("the server does not use the key created (%s):\n%s", fp, srv.logs())
	}
}

// TestServeExitsOnSIGTERMFromAnotherProcess: `exed serve` in a session of
// its own stops on a SIGTERM sent by an unrelated process (kill(1), as an
// operator or a supervisor sends it): it exits 0 and its ports close.
func TestServeExitsOnSIGTERMFromAnotherProcess(t *testing.T) {
	kill := testkit.RequireTools(t, "kill")
	data := t.TempDir()
	cmd := exec.Command(exedBin, "serve", "--data", data, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not in the test's process group
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	var addrs []string
	testkit.WaitFor(t, "exed serving", func() bool {
		m := servingLine.FindStringSubmatch(stderr.String())
		if m != nil {
			addrs = m[1:]
		}
		return m != nil
	})

	if out, err := exec.Command(kill, "-TERM", strconv.Itoa(cmd.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("kill -TERM: %v %s", err, out)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exed serve after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(testkit.WaitTimeout):
		t.Fatalf("exed serve still running %v after SIGTERM:\n%s", testkit.WaitTimeout, stderr.String())
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
	for _, a := range addrs {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", a)
		}
	}
}

// TestFlagTyposSuggest: a mistyped flag of the exed binary, or of an SSH
// command, is answered with the flag meant, in one line.
func TestFlagTyposSuggest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--dmeo"}, "exed: serve: unknown flag: --dmeo; did you mean --demo? (see exed serve --help)\n"},
		{[]string{"token", "mint", "--vm-domian", "x"}, "exed: token mint: unknown flag: --vm-domian; did you mean --vm-domain? (see exed token mint --help)\n"},
		{[]string{"host-key", "--crate"}, "exed: host-key: unknown flag: --crate; did you mean --create? (see exed host-key --help)\n"},
		{[]string{"vm", "add", "--uptream", "http://x"}, "exed: vm add: unknown flag: --uptream; did you mean --upstream? (see exed vm add --help)\n"},
	} {
		if r := run(t, nil, "", tc.args...); r.code != 1 || r.stderr != tc.want {
			t.Errorf("exed %s: exit %d, stderr %q; want %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}

	f := newFixture(t)
	r := f.alice.ssh(t, "", "ssh-key", "generate-api-key", "--vm=web", "--lable=deploy")
	if want := "ssh-key generate-api-key: unknown flag: --lable; did you mean --label? (see ssh-key generate-api-key --help)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("--lable over ssh: exit %d, stderr %q; want %q", r.code, r.stderr, want)
	}
}

// TestSSHQuotingErrorsSayWhatToDo: --ctx and --label typed as a newcomer
// types them, through stock ssh and a shell, get one line saying what is
// wrong and how to quote; the quoting shown works.
func TestSSHQuotingErrorsSayWhatToDo(t *testing.T) {
	f := newFixture(t)
	// --ctx='{"role":"deploy"}' typed in a shell: ssh receives
	// --ctx={"role":"deploy"} and exed's split removes the inner quotes.
	r := f.alice.ssh(t, "", "ssh-key", "generate-api-key", "--vm=web", `--ctx={"role":"deploy"}`)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 ||
		!strings.HasPrefix(r.stderr, "--ctx is not valid JSON: invalid character 'r'") ||
		!strings.Contains(r.stderr, `ssh HOST "ssh-key generate-api-key --ctx='{\"role\":\"deploy\"}'"`) ||
		strings.Contains(r.stderr, "payload") || strings.Contains(r.stderr, "tokens:") {
		t.Errorf("unquoted --ctx: exit %d, stderr %q", r.code, r.stderr)
	}
	// The quoting it shows: one argument, JSON in single quotes.
	gen := decode[generated](t, f.alice.ok(t, "", `ssh-key generate-api-key --vm=web --label=ctx --exe0 --json --ctx='{"role":"deploy"}'`))
	insp := decode[struct {
		Permissions json.RawMessage `json:"permissions"`
	}](t, mustRun(t, nil, "token", "inspect", gen.Token))
	if !strings.Contains(string(insp.Permissions), `"ctx":{"role":"deploy"}`) {
		t.Errorf("the quoting shown did not make the ctx: %s", insp.Permissions)
	}

	// --label='bad label': quoted twice, the label is refused and the
	// rule given; quoted once, the stray word is named.
	r = f.alice.ssh(t, "", `ssh-key generate-api-key --label='bad label'`)
	if want := `--label "bad label" is not a valid label: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)` + "\n"; r.code != 1 || r.stderr != want {
		t.Errorf("--label='bad label': exit %d, stderr %q; want %q", r.code, r.stderr, want)
	}
	r = f.alice.ssh(t, "", "ssh-key", "generate-api-key", "--label=bad label")
	if r.code != 1 || !strings.HasPrefix(r.stderr, `unexpected argument "label" (this command takes none; over ssh, a value with spaces`) {
		t.Errorf("--label='bad label' through one shell: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestTokenInspectExe1: an exe1 handle is explained, not parsed as a
// malformed exe0: it is opaque and only the server can check it.
func TestTokenInspectExe1(t *testing.T) {
	r := run(t, nil, "", "token", "inspect", "exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "opaque handle") || !strings.Contains(r.stderr, "ssh-key check-api-key") {
		t.Errorf("inspect exe1: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestTokenMintDefaultNamespaces: with no --domain/--vm-domain, token mint
// signs in the .localhost namespaces exed serve uses by default.
func TestTokenMintDefaultNamespaces(t *testing.T) {
	testkit.RequireTools(t, "ssh-keygen")
	key := testkit.SSHKeygen(t, t.TempDir(), "ed25519", 0)
	for args, want := range map[string]string{"--vm web": "v0@web.vm.localhost", "": "v0@exe.localhost"} {
		tok := strings.TrimSpace(mustRun(t, nil, append([]string{"token", "mint", "--key", key}, strings.Fields(args)...)...))
		x, err := tokens.ParseExe0(tok)
		if err != nil || x.Sig.Namespace != want {
			t.Errorf("token mint %s: namespace %v, %v; want %s", args, x, err, want)
		}
	}
}

// TestUnknownHostsSayWhatIsServed: through the real server, with the
// default names and a stock curl that resolves them itself: a mistyped VM
// name and the bare address each get a 404 that says what to ask for.
func TestUnknownHostsSayWhatIsServed(t *testing.T) {
	testkit.RequireTools(t, "curl")
	srv := startServer(t, t.TempDir())
	_, port := splitHostPort(t, srv.httpAddr)
	get := func(url string) (string, string) {
		t.Helper()
		r := runCmd(t, []string{"NO_PROXY=*", "no_proxy=*"}, "", "curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", url)
		if r.code != 0 {
			t.Fatalf("curl %s: %s", url, r.stderr)
		}
		body, code, _ := strings.Cut(r.stdout, "\n")
		return strings.TrimSpace(code), body
	}
	if code, body := get("http://dmeo.vm.localhost:" + port + "/"); code != "404" || body != `no VM named "dmeo"` {
		t.Errorf("a mistyped VM: %s %q", code, body)
	}
	want := `exed serves exe.localhost (the API) and NAME.vm.localhost (the VMs); this request was for "127.0.0.1"`
	if code, body := get("http://" + srv.httpAddr + "/"); code != "404" || body != want {
		t.Errorf("the bare address: %s %q, want 404 %q", code, body, want)
	}
	testkit.WaitFor(t, "both in the log", func() bool {
		l := srv.logs()
		return strings.Contains(l, "vm=dmeo") && strings.Contains(l, "route=unknown_host host=127.0.0.1")
	})
}

// TestTokenInspectPast2027: token inspect's expired and not_yet_valid
// come from its clock, not a date in the test: with the clock set past
// 2027, a token an hour ahead is not expired and the fixtures' 2099 one
// neither; an hour and a second later the first is.
func TestTokenInspectPast2027(t *testing.T) {
	signer := testkit.SeededSigner(t, 1)
	for _, now := range []time.Time{time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2098, 12, 31, 0, 0, 0, 0, time.UTC)} {
		inspect := func(p string, at time.Time) (expired, notYet bool) {
			t.Helper()
			tok, err := tokens.MintExe0(signer, "v0@web.vm.localhost", []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			a := &app{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }, now: func() time.Time { return at }}
			if code := a.run(context.Background(), []string{"token", "inspect", tok}, func() {}); code != 0 {
				t.Fatalf("inspect %s: exit %d: %s", p, code, errOut.String())
			}
			var got inspection
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			return got.Expired, got.NotYetValid
		}
		hour := fmt.Sprintf(`{"exp":%d,"nbf":%d}`, now.Add(time.Hour).Unix(), now.Unix())
		if exp, nyv := inspect(hour, now); exp || nyv {
			t.Errorf("at %s, a token valid for the next hour: expired %v, not yet valid %v", now, exp, nyv)
		}
		if exp, _ := inspect(`{"exp":4070908800}`, now); exp {
			t.Errorf("at %s, the 2099 fixture is expired", now)
		}
		if exp, _ := inspect(hour, now.Add(time.Hour+time.Second)); !exp {
			t.Errorf("at %s plus an hour, the hour token is not expired", now)
		}
		if _, nyv := inspect(hour, now.Add(-time.Second)); !nyv {
			t.Errorf("a second before its nbf, the token is valid")
		}
	}
}

// dateThatWillPass is the end of the span in which an expiry literal in a
// test or a doc is a date that will come while this code is in use: a
// test comparing it with the real clock breaks that day (one did, on
// 2027-01-01). Tests use far-future expiries (2099) or an injected clock.
var dateThatWillPass = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC)

// unixSeconds finds integers of ten digits, the size of a Unix time in
// seconds from 2001 to 2286.
var unixSeconds = regexp.MustCompile(`(^|[^0-9.])([1-9][0-9]{9})([^0-9]|$)`)

// TestNoDateThatWillPass scans every test, every document and every
// testdata file for a Unix-seconds literal between today and 2090: a
// token expiry (or any timestamp) there will pass, and whatever compares
// it with the real clock will break that day. The README and docs cite no
// SPEC section either: users cannot see the spec.
func TestNoDateThatWillPass(t *testing.T) {
	now := time.Now()
	var scanned int
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "exed-data" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(repoRoot, path)
		inTestdata := strings.Contains(filepath.ToSlash(rel), "/testdata/")
		if !strings.HasSuffix(path, "_test.go") && !strings.HasSuffix(path, ".md") && !inTestdata {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range unixSeconds.FindAllStringSubmatch(line, -1) {
				n, _ := strconv.ParseInt(m[2], 10, 64)
				if at := time.Unix(n, 0); at.After(now) && at.Before(dateThatWillPass) {
					t.Errorf("%s:%d: %s is %s, a date that will pass: use 4070908800 (2099) or an injected clock", rel, i+1, m[2], at.UTC().Format(time.DateOnly))
				}
			}
			if strings.HasSuffix(path, ".md") && strings.Contains(line, "SPEC §") {
				t.Errorf("%s:%d cites the spec, which users of the repository cannot read: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 50 {
		t.Fatalf("scanned only %d files: is %s the repository?", scanned, repoRoot)
	}
}

// TestNoBuildOutputTracked: nothing git tracks is a build output: no
// executable or object (ELF, PE, Mach-O) and nothing over 2 MB. A 27 MB
// exed-bench binary was committed twice by a stray `go build`; .gitignore
// alone did not stop a `git add -A` in a directory it did not cover.
func TestNoBuildOutputTracked(t *testing.T) {
	testkit.RequireTools(t, "git")
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git ls-files: %v", err)
		}
		t.Skipf("not a git checkout: %v", err)
	}
	magics := [][]byte{[]byte("\x7fELF"), []byte("MZ"), {0xcf, 0xfa, 0xed, 0xfe}, {0xca, 0xfe, 0xba, 0xbe}}
	var n int
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		path := filepath.Join(repoRoot, name)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		n++
		if fi.Size() > 2<<20 {
			t.Errorf("%s: %d bytes tracked: a build output or data that belongs elsewhere?", name, fi.Size())
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		k, _ := f.Read(head)
		f.Close()
		for _, m := range magics {
			if bytes.HasPrefix(head[:k], m) {
				t.Errorf("%s is a binary (starts %q): git rm --cached it and .gitignore it", name, head[:k])
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d tracked files seen: is %s the repository?", n, repoRoot)
	}
}
