package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/exed-dev/exed/internal/testkit"
)

// postExec sends body to /exec on the API host.
func (w *world) postExec(body string, hdr map[string]string) (*http.Response, map[string]any) {
	w.t.Helper()
	resp, _, m := w.execReply(http.MethodPost, body, hdr)
	return resp, m
}

// execReply sends body to /exec on the API host with method and returns
// the reply, its body as sent, and that body decoded.
func (w *world) execReply(method, body string, hdr map[string]string) (*http.Response, []byte, map[string]any) {
	w.t.Helper()
	resp, raw := w.do(w.request(method, testDomain, "/exec", strings.NewReader(body), hdr))
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		w.t.Errorf("Content-Type %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		w.t.Fatalf("reply is not a JSON object: %q: %v", raw, err)
	}
	return resp, raw, m
}

// TestExecStatuses: each kind of request gets its status, and every refusal
// is {"error":MSG}. The refusals' exact bodies are public API too: they are
// compared with testdata/golden/exec-errors.txt (go test -update rewrites
// it), so that a change to one shows as a diff.
func TestExecStatuses(t *testing.T) {
	w := newWorld(t, nil)
	var (
		refusals strings.Builder // "# case", then "STATUS BODY"
		ran      int             // cases run: fewer under a -run filter
	)
	api := w.mint(w.alice.Signer, apiNamespace, `{}`)
	auth := map[string]string{"Authorization": bearerHdr(api)}
	onlyWhoami := map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{"cmds":["whoami"]}`))}
	nothing := map[string]string{"X-Exedev-Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{"cmds":[]}`))}
	exe1 := map[string]string{"Authorization": bearerHdr(w.exe1(w.alice, "", api))}

	cases := []struct {
		name string
		body string
		hdr  map[string]string
		want int
	}{
		{"whoami", "whoami", auth, 200},
		{"whoami via X-Exedev-Authorization", "whoami", map[string]string{"X-Exedev-Authorization": bearerHdr(api)}, 200},
		{"whoami via exe1", "whoami", exe1, 200},
		{"trailing newline", "whoami\n", auth, 200},
		{"quoted", `'ssh-key' "list"`, auth, 200},
		{"granted", "whoami", onlyWhoami, 200},
		{"help always allowed", "ssh-key generate-api-key --help", auth, 200},
		{"help with cmds []", "ls --help", nothing, 200},

		{"empty body", "", auth, 400},
		{"blank body", "  \n", auth, 400},
		{"NUL byte", "whoami\x00", auth, 400},
		{"bad quoting", "whoami 'oops", auth, 400},
		{"two commands", "whoami; ls", auth, 400},
		{"expansion", "whoami $HOME", auth, 400},
		{"conflicting tokens", "whoami", map[string]string{"Authorization": bearerHdr(api), "X-Exedev-Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{"ctx":1}`))}, 400},

		{"no token", "whoami", nil, 401},
		{"basic not accepted", "whoami", map[string]string{"Authorization": basicHdr("x", api)}, 401},
		{"VM token at /exec", "whoami", map[string]string{"Authorization": bearerHdr(w.vmToken("web", `{}`))}, 401},
		{"expired", "whoami", map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, fmt.Sprintf(`{"exp":%d}`, past())))}, 401},
		{"unknown key", "whoami", map[string]string{"Authorization": bearerHdr(w.mint(testkit.NewSigner(t), apiNamespace, `{}`))}, 401},
		{"not a token", "whoami", map[string]string{"Authorization": "Bearer hello"}, 401},

		{"not granted", "ls", onlyWhoami, 403},
		{"cmds [] grants nothing", "whoami", nothing, 403},
		{"generate-api-key never by default", "ssh-key generate-api-key", auth, 403},
		{"parent does not grant child", "ssh-key rename a b", map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{"cmds":["ssh-key"]}`))}, 403},

		{"unknown command", "nosuchcommand", auth, 404},
		{"unknown subcommand", "ssh-key frobnicate", auth, 404},

		{"command fails", "exe0-to-exe1 not-a-token", auth, 422},
		{"flag error", "whoami --no-such-flag", auth, 422},
		// The line is parsed once: a flag error still names its command,
		// whose grant is checked before the flags are reported.
		{"flag error, not granted", "ls --no-such-flag", onlyWhoami, 403},
		{"flag error before --help is not help", "ls --no-such-flag --help", onlyWhoami, 403},
		{"flag error, invalid token", "whoami --no-such-flag", map[string]string{"Authorization": "Bearer hello"}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran++
			resp, raw, m := w.execReply(http.MethodPost, tc.body, tc.hdr)
			if tc.want != 200 {
				fmt.Fprintf(&refusals, "# %s\n%d %s", tc.name, resp.StatusCode, raw)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (reply %v)", resp.StatusCode, tc.want, m)
			}
			if tc.want != 200 {
				if msg, _ := m["error"].(string); msg == "" {
					t.Errorf("reply %v has no error", m)
				}
			}
			switch tc.want {
			case 200:
				if tc.body == "whoami" && m["user_id"] != w.alice.User.ID {
					t.Errorf("whoami = %v, want alice", m)
				}
			case 401:
				if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate = %q, want Bearer", got)
				}
			}
		})
	}
	for _, tc := range []struct{ name, method, body string }{
		{"GET", http.MethodGet, ""},
		{"body over 64 KiB", http.MethodPost, strings.Repeat(" ", maxExecBody+1)},
	} {
		resp, raw, _ := w.execReply(tc.method, tc.body, auth)
		fmt.Fprintf(&refusals, "# %s\n%d %s", tc.name, resp.StatusCode, raw)
	}
	if ran == len(cases) {
		testkit.Golden(t, "exec-errors.txt", testkit.Mask(refusals.String()), *update)
	}
}

func TestExecMethodAndPath(t *testing.T) {
	w := newWorld(t, nil)
	api := w.mint(w.alice.Signer, apiNamespace, `{}`)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
		resp, _ := w.do(w.request(m, testDomain, "/exec", nil, map[string]string{"Authorization": bearerHdr(api)}))
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: status %d Allow %q, want 405 POST", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	resp, body := w.do(w.request(http.MethodPost, testDomain, "/other", strings.NewReader("whoami"), nil))
	if resp.StatusCode != http.StatusNotFound || !json.Valid(body) {
		t.Errorf("/other: status %d body %q, want 404 JSON", resp.StatusCode, body)
	}
	// The API host is not a VM host, and no VM host serves /exec.
	resp, _ = w.do(w.request(http.MethodPost, "pub.exe.xyz", "/exec", strings.NewReader("whoami"), map[string]string{"Authorization": bearerHdr(api)}))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/exec on a VM host with an API token: status %d, want 401", resp.StatusCode)
	}
}

func TestExecBodyLimit(t *testing.T) {
	w := newWorld(t, nil)
	auth := map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{}`))}
	atLimit := "whoami" + strings.Repeat(" ", maxExecBody-len("whoami"))
	if resp, m := w.postExec(atLimit, auth); resp.StatusCode != 200 {
		t.Errorf("body of exactly 64 KiB: status %d %v, want 200", resp.StatusCode, m)
	}
	over := atLimit + " "
	if resp, _ := w.postExec(over, auth); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("64 KiB + 1 with Content-Length: status %d, want 413", resp.StatusCode)
	}
	// Chunked: no Content-Length to go by.
	req := w.request(http.MethodPost, testDomain, "/exec", io.MultiReader(strings.NewReader(over)), auth)
	req.ContentLength = -1
	if resp, _ := w.do(req); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("64 KiB + 1 chunked: status %d, want 413", resp.StatusCode)
	}
}

func TestExecRateLimit(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	w := newWorld(t, nil, func(c *Config) {
		c.Now = clock.Now
		c.ExecRate = rate.Every(time.Minute)
		c.ExecBurst = 3
	})
	a := map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{}`))}
	// Another token of the same key shares the bucket; another key does not.
	a2 := map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{"ctx":2}`))}
	b := map[string]string{"Authorization": bearerHdr(w.mint(w.bob.Signer, apiNamespace, `{}`))}
	for i := range 3 {
		if resp, m := w.postExec("whoami", a); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d %v", i, resp.StatusCode, m)
		}
	}
	for _, hdr := range []map[string]string{a, a2} {
		resp, _ := w.postExec("whoami", hdr)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("over the burst: status %d, want 429", resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") != "60" {
			t.Errorf("Retry-After = %q, want 60", resp.Header.Get("Retry-After"))
		}
	}
	if resp, _ := w.postExec("whoami", b); resp.StatusCode != 200 {
		t.Errorf("another key: status %d, want 200", resp.StatusCode)
	}
	clock.Advance(time.Minute)
	if resp, _ := w.postExec("whoami", a); resp.StatusCode != 200 {
		t.Errorf("after refill: status %d, want 200", resp.StatusCode)
	}
	// An invalid token never reaches (or drains) anyone's bucket.
	if resp, _ := w.postExec("whoami", map[string]string{"Authorization": "Bearer exe0.x.y"}); resp.StatusCode != 401 {
		t.Errorf("invalid token: status %d, want 401", resp.StatusCode)
	}
}

func TestExecTimeout(t *testing.T) {
	// A deadline that has passed by the time the command reaches the
	// store stands in for a command running past 30 s.
	w := newWorld(t, nil, func(c *Config) { c.ExecTimeout = time.Nanosecond })
	resp, m := w.postExec("whoami", map[string]string{"Authorization": bearerHdr(w.mint(w.alice.Signer, apiNamespace, `{}`))})
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d %v, want 504", resp.StatusCode, m)
	}
}

func TestExecRemovedKey(t *testing.T) {
	w := newWorld(t, nil)
	deploy := w.addKey(w.alice, "deploy")
	hdr := map[string]string{"Authorization": bearerHdr(w.mint(deploy, apiNamespace, `{}`))}
	if resp, _ := w.postExec("whoami", hdr); resp.StatusCode != 200 {
		t.Fatalf("before removal: status %d", resp.StatusCode)
	}
	if _, err := w.run(w.alice, "ssh-key remove deploy"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.postExec("whoami", hdr); resp.StatusCode != 401 {
		t.Errorf("after removal: status %d, want 401", resp.StatusCode)
	}
}

// execRaw writes a raw /exec request on a fresh connection (headers, then
// part of a body that never completes) and returns the status the server
// answers with, or 0 if it answers nothing before the deadline.
func (w *world) execRaw(t *testing.T, auth, partialBody string, declared int) int {
	t.Helper()
	conn, err := net.Dial("tcp", w.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /exec HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s", testDomain, auth, declared, partialBody)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestExecReadsBodyBeforeToken: /exec read and parsed the body before the
// token was checked, holding a trickled body with no deadline. Now a
// client without a valid token is answered 401 with its body unread, and a
// trickled body gets ExecBodyTimeout.
func TestExecReadsBodyBeforeToken(t *testing.T) {
	w := newWorld(t, nil, func(c *Config) { c.ExecBodyTimeout = 300 * time.Millisecond })
	start := time.Now()
	if got := w.execRaw(t, "Bearer exe0.not.valid", "who", 1000); got != http.StatusUnauthorized {
		t.Errorf("invalid token, body pending: status %d, want 401 before the body", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the 401 took %v: the server waited for the body", d)
	}
	tok := w.mint(w.alice.Signer, apiNamespace, `{}`)
	if got := w.execRaw(t, "Bearer "+tok, "who", 1000); got != http.StatusBadRequest {
		t.Errorf("valid token, trickled body: status %d, want 400 after the body deadline", got)
	}
	// The deadline was the body's own: the next request is served.
	if resp, m := w.postExec("whoami", map[string]string{"Authorization": bearerHdr(tok)}); resp.StatusCode != http.StatusOK {
		t.Errorf("after a trickled body: %d %v", resp.StatusCode, m)
	}
}

// TestExecCachesBeforeRateLimit: /exec's rate limit ran after the
// Verifier had cached the token, so one user filled the cache with
// distinct tokens of one key. Now only requests the rate limit admits are
// cached.
func TestExecCachesBeforeRateLimit(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	w := newWorld(t, nil, func(c *Config) {
		c.Now = clock.Now
		c.ExecRate = rate.Every(time.Hour)
		c.ExecBurst = 2
	})
	_, _, before := w.Verifier.CacheStats()
	var limited int
	for i := range 20 {
		tok := w.mint(w.alice.Signer, apiNamespace, fmt.Sprintf(`{"ctx":%d}`, i))
		if resp, _ := w.postExec("whoami", map[string]string{"Authorization": bearerHdr(tok)}); resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	_, _, after := w.Verifier.CacheStats()
	if limited != 18 || after-before != 2 {
		t.Errorf("%d of 20 limited, cache grew by %d: want 18 and 2 (only admitted requests cached)", limited, after-before)
	}
}
