package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
)

// Issue 20: forward auth behind the real front proxies from Debian's
// packages, nginx and Caddy, each started on a loopback port with the
// config of docs/forward-auth.md as written there (only the ports, the
// addresses of exed and the VM, and the cache directory replaced), in
// front of a real `exed serve` and a VM that echoes what it receives.

const faDoc = "docs/forward-auth.md"

// The names the docs use.
const (
	faDomain   = "exe.example.com"
	faVMDomain = "vm.example.com"
	faVMHost   = "web." + faVMDomain
)

// faSetup is exed with forward auth on, alice, and her VM web, whose web
// server is an echo that counts its requests. The front proxy's port is
// chosen first, since exed's --public-url names it.
type faSetup struct {
	srv       *server
	faAddr    string // exed's forward-auth listener
	upstream  *httptest.Server
	hits      atomic.Int64
	alice     *sshClient
	aliceID   string
	frontPort string
}

var forwardAuthLine = regexp.MustCompile(`forward_auth=(\S+)`)

func newFASetup(t *testing.T) *faSetup {
	t.Helper()
	f := &faSetup{frontPort: freePort(t)}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		proxy.Echo().ServeHTTP(w, r)
	}))
	t.Cleanup(f.upstream.Close)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	env := []string{"EXED_DATA=" + data}
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", key+".pub")
	mustRun(t, env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", f.upstream.URL)
	f.srv = startServer(t, data, "--domain", faDomain, "--vm-domain", faVMDomain,
		"--forward-auth-addr", "127.0.0.1:0", "--public-url", "http://"+faDomain+":"+f.frontPort)
	m := forwardAuthLine.FindStringSubmatch(f.srv.logs())
	if m == nil {
		t.Fatalf("no forward_auth address in the log:\n%s", f.srv.logs())
	}
	f.faAddr = m[1]
	f.alice = f.srv.client(t, key)
	users := decode[struct {
		Users []struct {
			UserID string `json:"user_id"`
		} `json:"users"`
	}](t, mustRun(t, env, "user", "list", "--json"))
	f.aliceID = users.Users[0].UserID
	return f
}

// freePort is a loopback port free a moment ago, for a server that picks
// none itself (nginx, Caddy).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// replaceAll replaces each old with its new in s, failing the test when
// one is not there: the docs' configs must still have what the test
// replaces.
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the config in %s no longer has %q", faDoc, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// nginxPath finds nginx, which Debian installs in /usr/sbin (not on every
// user's PATH).
func nginxPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	testkit.Unavailable(t, "nginx not installed (Debian: nginx-light)")
	return ""
}

// frontProc is a front proxy the test started.
type frontProc struct {
	cmd    *exec.Cmd
	output *testkit.SyncBuffer
	done   chan struct{}
}

// startFront runs cmd and waits until port accepts connections; the
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func startFront(t *testing.T, cmd *exec.Cmd, port string) *frontProc {
	t.Helper()
	p := &frontProc{cmd: cmd, output: &testkit.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	testkit.WaitFor(t, cmd.Path+" listening on "+port, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s", cmd.Path, p.output.String())
		default:
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// startNginx runs nginx with the docs' config (cached: with the auth
// cache lines uncommented) inside a minimal nginx.conf standing in for
// Debian's, everything in a temp dir: non-root safe.
func startNginx(t *testing.T, f *faSetup, cached bool) *frontProc {
	t.Helper()
	bin := nginxPath(t)
	dir := t.TempDir()
	conf := replaceAll(t, docBlocks(t, faDoc, "## nginx", "nginx")[0],
		"listen 80;", "listen 127.0.0.1:"+f.frontPort+";",
		"127.0.0.1:9091", f.faAddr,
		"127.0.0.1:8000", strings.TrimPrefix(f.upstream.URL, "http://"),
		"/var/cache/nginx/exed-auth", filepath.Join(dir, "cache"),
	)
	if cached {
		conf = regexp.MustCompile(`(?m)^(\s*)#(proxy_cache)`).ReplaceAllString(conf, "$1$2")
		if strings.Count(conf, "proxy_cache") < 4 {
			t.Fatalf("the nginx config has lost its auth cache lines:\n%s", conf)
		}
	}
	for _, d := range []string{"conf.d", "tmp", "cache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "exed.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // the workers must reach the temp dir, 0700
	}
	main := fmt.Sprintf(`%serror_log %[2]s/error.log;
pid %[2]s/nginx.pid;
events {}
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    include %[2]s/conf.d/*.conf;
}
`, user, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	p := startFront(t, cmd, f.frontPort)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	return p
}

// startCaddy runs Caddy with the docs' Caddyfile, its sites on plain HTTP
// at the front port and the admin endpoint off, HOME and the XDG dirs in
// a temp dir (it writes its autosave there).
func startCaddy(t *testing.T, f *faSetup) *frontProc {
	t.Helper()
	bin := testkit.RequireTools(t, "caddy")
	dir := t.TempDir()
	conf := "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n\n" + replaceAll(t, docBlocks(t, faDoc, "## Caddy", "caddyfile")[0],
		faDomain+" {", "http://"+faDomain+":"+f.frontPort+" {",
		faVMHost+" {", "http://"+faVMHost+":"+f.frontPort+" {",
		"127.0.0.1:9091", f.faAddr,
		"127.0.0.1:8000", strings.TrimPrefix(f.upstream.URL, "http://"),
	)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	return startFront(t, cmd, f.frontPort)
}

// frontReply is one answer through the front proxy, as curl got it.
type frontReply struct {
	code   int
	header http.Header
	body   string
	url    string // the last URL, after -L
}

// curlFront runs the stock curl against url on the front proxy's port,
// whatever its host (--connect-to), with args.
func (f *faSetup) curlFront(t *testing.T, rawURL string, args ...string) frontReply {
	t.Helper()
	hdrFile := filepath.Join(t.TempDir(), "headers")
	all := append([]string{"-sS", "--max-time", "20", "--connect-to", "::127.0.0.1:" + f.frontPort,
		"-D", hdrFile, "-o", "-", "-w", "\n%{http_code} %{url_effective}"}, args...)
	r := runCmd(t, nil, "", "curl", append(all, rawURL)...)
	if r.code != 0 {
		t.Fatalf("curl %s: exit %d: %s", rawURL, r.code, r.stderr)
	}
	i := strings.LastIndex(r.stdout, "\n")
	var rep frontReply
	fmt.Sscanf(r.stdout[i+1:], "%d %s", &rep.code, &rep.url)
	rep.body = r.stdout[:i]
	rep.header = http.Header{}
	raw, _ := os.ReadFile(hdrFile)
	// With -L the file holds every response's headers: keep the last.
	blocks := strings.Split(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n\n")
	for j := len(blocks) - 1; j >= 0; j-- {
		if strings.HasPrefix(blocks[j], "HTTP/") {
			for _, line := range strings.Split(blocks[j], "\n")[1:] {
				if k, v, ok := strings.Cut(line, ":"); ok {
					rep.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
				}
			}
			break
		}
	}
	return rep
}

// vmURL is path on VM web through the front proxy.
func (f *faSetup) vmURL(path string) string { return "http://" + faVMHost + ":" + f.frontPort + path }

// seen decodes what the VM's echo received.
func seen(t *testing.T, rep frontReply) echoed {
	t.Helper()
	if rep.code != 200 {
		t.Fatalf("status %d, want 200: %s", rep.code, rep.body)
	}
	return decode[echoed](t, rep.body)
}

// exedevSeen are the headers the VM received whose name, lowercased
// without '-', '_' and '.', starts with "xexedev": every spelling a
// framework could read as one of exed's.
func exedevSeen(e echoed) map[string][]string {
	out := map[string][]string{}
	for k, v := range e.Headers {
		n := strings.NewReplacer("-", "", "_", "", ".", "").Replace(strings.ToLower(k))
		if strings.HasPrefix(n, "xexedev") {
			out[k] = v
		}
	}
	return out
}

// spoofs are client-sent copies of exed's headers, in several spellings.
var spoofs = []string{
	"-H", "X-ExeDev-Email: forged@example.com",
	"-H", "x_exedev_email: forged@example.com",
	"-H", "X-EXEDEV-USERID: usrforged",
	"-H", "X-Exedev-Token_Ctx: forged",
	"-H", "X-ExeDev-Jwt-Assertion: forged",
}

// verifyThroughFront checks an assertion with go-jose against the JWKS
// fetched from the main host through the front proxy.
func (f *faSetup) verifyThroughFront(t *testing.T, tok string) *assertion.Claims {
	t.Helper()
	rep := f.curlFront(t, "http://"+faDomain+":"+f.frontPort+"/.well-known/jwks.json")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(rep.body), &set); rep.code != 200 || err != nil {
		t.Fatalf("JWKS through the front: %d %s (%v)", rep.code, rep.body, err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q: %v", tok, err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %s is not in the JWKS", parsed.Headers[0].KeyID)
	}
	var std jwt.Claims
	var c assertion.Claims
	if err := parsed.Claims(keys[0].Key, &std, &c); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	want := jwt.Expected{Issuer: "https://" + faDomain, AnyAudience: jwt.Audience{"http://" + faVMHost + ":" + f.frontPort}, Time: time.Now()}
	if err := std.ValidateWithLeeway(want, 0); err != nil {
		t.Fatalf("assertion claims: %v", err)
	}
	return &c
}

// checkFront is what every documented front proxy must show, at the port
// it listens on.
func checkFront(t *testing.T, f *faSetup) {
	gen := decode[generated](t, f.alice.ok(t, "", `ssh-key generate-api-key --vm=web --label=ci --ctx='{"role":"deploy"}' --json`))
	tok := gen.Token
	cookieName := "login-with-exe-" + f.frontPort

	t.Run("valid token", func(t *testing.T) {
		args := append([]string{"-H", "X-Exedev-Authorization: Bearer " + tok,
			"-H", "Cookie: theme=dark; " + cookieName + "=" + strings.Repeat("A", 43)}, spoofs...)
		e := seen(t, f.curlFront(t, f.vmURL("/hello?a=1"), args...))
		want := map[string][]string{
			"X-Exedev-Userid":    {f.aliceID},
			"X-Exedev-Email":     {"alice@example.com"},
			"X-Exedev-Token-Ctx": {`{"role":"deploy"}`},
		}
		got := exedevSeen(e)
		jwtVals := got["X-Exedev-Jwt-Assertion"]
		delete(got, "X-Exedev-Jwt-Assertion")
		if fmt.Sprint(got) != fmt.Sprint(want) || len(jwtVals) != 1 {
			t.Errorf("the VM got exed's headers %v and %d assertions; want %v and one", got, len(jwtVals), want)
		}
		if e.Path != "/hello" {
			t.Errorf("the VM got path %q", e.Path)
		}
		c := f.verifyThroughFront(t, jwtVals[0])
		if c.Email != "alice@example.com" || c.Subject != f.aliceID || c.AuthMethod != "token" || c.Access != "owner" ||
			c.KeyFingerprint != gen.Fingerprint || c.TokenCtx != `{"role":"deploy"}` || c.VM != "web" {
			t.Errorf("claims %+v", c)
		}
		if got := e.Headers["Cookie"]; len(got) != 1 || got[0] != "theme=dark" {
			t.Errorf("the VM got Cookie %q, want theme=dark alone", got)
		}
		if _, ok := e.Headers["Authorization"]; ok || strings.Contains(fmt.Sprint(e.Headers), tok) {
			t.Errorf("a credential reached the VM: %v", e.Headers)
		}
	})
	t.Run("other carriers", func(t *testing.T) {
		for name, args := range map[string][]string{
			"bearer": {"-H", "Authorization: Bearer " + tok},
			"basic":  {"-u", "git:" + tok},
		} {
			e := seen(t, f.curlFront(t, f.vmURL("/"), args...))
			if got := e.Headers["X-Exedev-Email"]; len(got) != 1 || got[0] != "alice@example.com" {
				t.Errorf("%s: the VM got X-ExeDev-Email %q", name, got)
			}
			if v, ok := e.Headers["Authorization"]; ok && v[0] != "" {
				t.Errorf("%s: the VM got Authorization %q", name, v)
			}
		}
		// No ctx: nothing of X-ExeDev-Token-Ctx but emptiness, never a
		// placeholder's text (Caddy 2.6 copies a missing header so).
		plain := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=web --label=noctx --json")).Token
		e := seen(t, f.curlFront(t, f.vmURL("/"), "-H", "X-Exedev-Authorization: Bearer "+plain, "-H", "X-Exedev-Token-Ctx: forged"))
		if v := e.Headers["X-Exedev-Token-Ctx"]; len(v) > 1 || len(v) == 1 && v[0] != "" {
			t.Errorf("a token without ctx: the VM got X-ExeDev-Token-Ctx %q", v)
		}
		// The VM's own Basic auth is the VM's: it passes.
		e = seen(t, f.curlFront(t, f.vmURL("/"), "-H", "X-Exedev-Authorization: Bearer "+tok, "-u", "admin:hunter2"))
		if got := e.Headers["Authorization"]; len(got) != 1 || got[0] != "Basic YWRtaW46aHVudGVyMg==" {
			t.Errorf("the VM's own Authorization became %q", got)
		}
		if _, ok := e.Headers["X-Exedev-Authorization"]; ok {
			t.Error("X-Exedev-Authorization reached the VM")
		}
	})
	t.Run("no token", func(t *testing.T) {
		before := f.hits.Load()
		rep := f.curlFront(t, f.vmURL("/hello"), spoofs...)
		if rep.code != 401 || rep.header.Get("Www-Authenticate") != `Basic realm="exed"` {
			t.Errorf("no token: %d %v", rep.code, rep.header)
		}
		rep = f.curlFront(t, f.vmURL("/hello"), "-H", "X-Exedev-Authorization: Bearer "+tok+"x")
		if rep.code != 401 {
			t.Errorf("a tampered token: %d", rep.code)
		}
		if f.hits.Load() != before {
			t.Error("a refused request reached the VM")
		}
	})
	t.Run("browser", func(t *testing.T) {
		nav := []string{"-H", "Accept: text/html,application/xhtml+xml", "-H", "Sec-Fetch-Mode: navigate"}
		rep := f.curlFront(t, f.vmURL("/hello?a=1"), nav...)
		want := f.vmURL("/__exe.dev/login?redirect=" + url.QueryEscape("/hello?a=1"))
		if rep.code != 302 || rep.header.Get("Location") != want || rep.header.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("browser: %d, Location %q (want %q), %v", rep.code, rep.header.Get("Location"), want, rep.header)
		}
		// The whole login, through the front proxy alone: the link
		// `browser` prints (on --public-url), then every redirect, to the
		// page with the session.
		link := decode[struct {
			MagicLink string `json:"magic_link"`
		}](t, f.alice.ok(t, "", "browser --vm web --path /hello --json"))
		if !strings.HasPrefix(link.MagicLink, "http://"+faDomain+":"+f.frontPort+"/auth/verify?token=") {
			t.Fatalf("browser printed %s, not on --public-url", link.MagicLink)
		}
		jar := filepath.Join(t.TempDir(), "cookies")
		rep = f.curlFront(t, link.MagicLink, append(append(nav, "-L", "-c", jar, "-b", jar), spoofs...)...)
		e := seen(t, rep)
		for k, v := range exedevSeen(e) {
			switch {
			case k == "X-Exedev-Userid" && fmt.Sprint(v) == "["+f.aliceID+"]",
				k == "X-Exedev-Email" && fmt.Sprint(v) == "[alice@example.com]",
				k == "X-Exedev-Jwt-Assertion" && len(v) == 1 && strings.Count(v[0], ".") == 2,
				k == "X-Exedev-Token-Ctx" && fmt.Sprint(v) == "[]":
			default:
				t.Errorf("with a session, the VM got %s: %q", k, v)
			}
		}
		if a := e.Headers["X-Exedev-Jwt-Assertion"]; len(a) != 1 {
			t.Errorf("with a session, the VM got %d assertions", len(a))
		} else if c := f.verifyThroughFront(t, a[0]); c.AuthMethod != "cookie" || c.Email != "alice@example.com" {
			t.Errorf("the session's assertion: %+v", c)
		}
		if rep.url != f.vmURL("/hello") {
			t.Errorf("the login ended at %s", rep.url)
		}
		if got := e.Headers["X-Exedev-Email"]; len(got) != 1 || got[0] != "alice@example.com" {
			t.Errorf("the session reached the VM as %q", got)
		}
		if strings.Contains(rep.body, "{http.") {
			t.Errorf("a front proxy's placeholder text reached the VM: %v", e.Headers)
		}
		if strings.Contains(fmt.Sprint(e.Headers["Cookie"]), "login-with-exe") || strings.Contains(fmt.Sprint(e.Headers["Cookie"]), "exe-auth") {
			t.Errorf("exed's cookie reached the VM: %q", e.Headers["Cookie"])
		}
		jarText, _ := os.ReadFile(jar)
		if !strings.Contains(string(jarText), cookieName) {
			t.Errorf("no %s in the cookie jar:\n%s", cookieName, jarText)
		}
	})
}

// removedKeyRefused lets a fresh key's token through once, removes the key
// and reports how long after that last answer (which an auth cache keeps)
// and after the removal returned the front proxy first refused it (polled,
// never slept), and whether a request right after the removal was still
// let through.
func removedKeyRefused(t *testing.T, f *faSetup, label string) (sinceAnswer, sinceRemoval time.Duration, acceptedAfter bool) {
	t.Helper()
	tok := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=web --label="+label+" --json")).Token
	ask := func() int {
		return f.curlFront(t, f.vmURL("/"), "-H", "X-Exedev-Authorization: Bearer "+tok).code
	}
	answered := time.Now()
	if c := ask(); c != 200 {
		t.Fatalf("before the removal: %d", c)
	}
	f.alice.ok(t, "", "ssh-key", "remove", label)
	removed := time.Now()
	acceptedAfter = ask() == 200
	testkit.WaitWithin(t, "the removed key refused", 30*time.Second, func() bool { return ask() == 401 })
	return time.Since(answered), time.Since(removed), acceptedAfter
}

// TestForwardAuthNginx: docs/forward-auth.md's nginx config, with exed
// answering auth_request; then the same with its auth cache, where a
// removed key is let through until the cache time and not longer.
func TestForwardAuthNginx(t *testing.T) {
	testkit.RequireTools(t, "curl")
	nginxPath(t)
	t.Run("uncached", func(t *testing.T) {
		f := newFASetup(t)
		startNginx(t, f, false)
		checkFront(t, f)
		_, after, accepted := removedKeyRefused(t, f, "gone")
		if accepted {
			t.Errorf("the first request after the removal was let through (uncached)")
		}
		t.Logf("uncached: refused %v after ssh-key remove returned", after)
		if strings.Contains(f.srv.logs(), "route=forward_auth") == false {
			t.Error("no route=forward_auth line in exed's log")
		}
	})
	t.Run("cached", func(t *testing.T) {
		f := newFASetup(t)
		startNginx(t, f, true)
		checkFront(t, f)
		const cacheTime = 5 * time.Second // proxy_cache_valid 200 5s, as the docs say
		if !strings.Contains(docBlocks(t, faDoc, "## nginx", "nginx")[0], "proxy_cache_valid 200 5s;") {
			t.Fatal("the docs' cache time is no longer 5s: update the test and the docs' warning together")
		}
		sinceAnswer, after, accepted := removedKeyRefused(t, f, "gone")
		t.Logf("cached: a request right after the removal let through: %v; refused %v after ssh-key remove returned, %v after the answer nginx cached", accepted, after, sinceAnswer)
		if !accepted {
			t.Errorf("the first request after the removal was refused: the auth cache did not answer it")
		}
		// nginx's clock ticks in whole seconds (up to one more), and a
		// poll takes a curl's round trip.
		if bound := cacheTime + 1500*time.Millisecond; sinceAnswer > bound {
			t.Errorf("refused only %v after the cached answer, past the cache time %v (bound %v)", sinceAnswer, cacheTime, bound)
		}
	})
}

// TestForwardAuthCaddy: docs/forward-auth.md's Caddyfile, with exed
// answering forward_auth. Debian's Caddy is 2.6, whose copy_headers sends
// a header the answer lacks as its placeholder's text: the spoofed headers
// and the empty ones show the Caddyfile holds for it.
func TestForwardAuthCaddy(t *testing.T) {
	testkit.RequireTools(t, "curl")
	f := newFASetup(t)
	p := startCaddy(t, f)
	checkFront(t, f)
	_, after, accepted := removedKeyRefused(t, f, "gone")
	if accepted {
		t.Errorf("the first request after the removal was let through")
	}
	t.Logf("refused %v after ssh-key remove returned", after)
	if v, _ := exec.Command(p.cmd.Path, "version").Output(); len(v) > 0 {
		t.Logf("caddy %s", bytes.TrimSpace(v))
	}
}

// TestPublicURLs: --public-url gives the printed URLs the front proxy's
// scheme and port, on --domain and the VM hosts, and refuses anything
// else than scheme://DOMAIN[:port].
func TestPublicURLs(t *testing.T) {
	for raw, want := range map[string][2]string{
		"https://exe.example.com":       {"https://exe.example.com", "https://web.vm.example.com"},
		"https://EXE.example.com:443/":  {"https://exe.example.com", "https://web.vm.example.com"},
		"http://exe.example.com:8080":   {"http://exe.example.com:8080", "http://web.vm.example.com:8080"},
		"https://exe.example.com:8443":  {"https://exe.example.com:8443", "https://web.vm.example.com:8443"},
		"ftp://exe.example.com":         {},
		"https://other.example.com":     {},
		"https://exe.example.com/path":  {},
		"https://exe.example.com:99999": {},
		"https://u@exe.example.com":     {},
		"exe.example.com":               {},
	} {
		api, vm, err := publicURLs(raw, faDomain, faVMDomain)
		if want[0] == "" {
			if err == nil {
				t.Errorf("%s: accepted (%s)", raw, api)
			}
			continue
		}
		if err != nil || api != want[0] {
			t.Errorf("%s: %q, %v; want %q", raw, api, err, want[0])
		} else if vm("web") != want[1] {
			t.Errorf("%s: VM web at %q, want %q", raw, vm("web"), want[1])
		}
	}
}
