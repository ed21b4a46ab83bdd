package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/store/sqlstore"
)

// Issue 19: signed identity assertions, checked as a VM would check them:
// with go-jose and with PyJWT, each fetching the JWKS over HTTP from the
// real `exed serve`.

// python is Debian's interpreter, which has python3-jwt (PyJWT) and
// python3-cryptography; the python3 first on PATH may be another.
const python = "/usr/bin/python3"

// requirePyJWT makes PyJWT a need of the test (testkit.Unavailable
// without it: CI installs it, .ci/run).
func requirePyJWT(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := os.Stat(python); err != nil {
		why = python + " not installed"
	} else if out, err := exec.Command(python, "-c", "import jwt, cryptography").CombinedOutput(); err != nil {
		why = "PyJWT (python3-jwt, python3-cryptography) not installed: " + strings.TrimSpace(string(out))
	}
	if why != "" {
		testkit.Unavailable(t, "%s", why)
	}
}

// proxyEnv makes a program's HTTP client reach exed's API host through s:
// Go and Python both send http:// requests to HTTP_PROXY in absolute form,
// with the real Host, which is how exed routes (the test's host names do
// not resolve).
func proxyEnv(s *server) []string {
	return []string{"HTTP_PROXY=http://" + s.httpAddr, "http_proxy=http://" + s.httpAddr, "NO_PROXY=", "no_proxy="}
}

func port(t *testing.T, s *server) string {
	_, p := splitHostPort(t, s.httpAddr)
	return p
}

// jwksURL is the JWKS on s's API host, as a VM fetches it.
func jwksURL(t *testing.T, s *server) string {
	return "http://exe.dev:" + port(t, s) + "/.well-known/jwks.json"
}

// httpGet sends GET url to s with the given headers and returns the
// response and its body.
func httpGet(t *testing.T, s *server, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	c := clientTo(s)
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// forwardedAssertion is what the echo VM at url received as
// X-ExeDev-Jwt-Assertion for a request with token: its one value, or ""
// when there was none.
func forwardedAssertion(t *testing.T, s *server, url, token string, hdr ...string) string {
	t.Helper()
	if token != "" {
		hdr = append(hdr, "X-Exedev-Authorization", "Bearer "+token)
	}
	resp, body := httpGet(t, s, url, hdr...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	got := decode[echoed](t, string(body)).Headers["X-Exedev-Jwt-Assertion"]
	switch len(got) {
	case 0:
		return ""
	case 1:
		return got[0]
	}
	t.Fatalf("GET %s: the VM got %d assertions", url, len(got))
	return ""
}

// goVerify checks token with go-jose as a VM would, fetching the JWKS from
// url through s, at time at (zero: now), for the audience aud.
func goVerify(t *testing.T, s *server, url, token, aud string, at time.Time) (*assertion.Claims, error) {
	t.Helper()
	resp, body := httpGet(t, s, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, fmt.Errorf("kid %q is not in the JWKS", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var c assertion.Claims
	if err := tok.Claims(keys[0].Key, &std, &c); err != nil {
		return nil, err
	}
	if std.Expiry == nil || std.NotBefore == nil || std.IssuedAt == nil {
		return nil, errors.New("a time claim is missing")
	}
	if at.IsZero() {
		at = time.Now()
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://exe.dev", AnyAudience: jwt.Audience{aud}, Time: at}, 0); err != nil {
		return nil, err
	}
	return &c, nil
}

// pyCase is one assertion for PyJWT to check.
type pyCase struct {
	Name     string `json:"name"`
	Token    string `json:"token"`
	Audience string `json:"audience"`
	At       int64  `json:"at,omitempty"` // unix seconds; 0: now
}

// pyResult is PyJWT's verdict on one pyCase.
type pyResult struct {
	OK     bool           `json:"ok"`
	KID    string         `json:"kid"`
	Claims map[string]any `json:"claims"`
	Error  string         `json:"error"`
}

// pyVerify checks the cases with PyJWT (testdata/verify_assertions.py),
// which fetches the JWKS from url over HTTP.
func pyVerify(t *testing.T, s *server, url string, cases []pyCase) map[string]pyResult {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"jwks_url": url, "issuer": "https://exe.dev", "cases": cases})
	r := runCmd(t, proxyEnv(s), string(in), python, "testdata/verify_assertions.py")
	if r.code != 0 {
		t.Fatalf("verify_assertions.py: exit %d: %s", r.code, r.stderr)
	}
	out := map[string]pyResult{}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != len(cases) {
		t.Fatalf("verify_assertions.py printed %q: %v", r.stdout, err)
	}
	return out
}

// TestAssertions: through the real exed serve, a request with a token
// reaches the VM with an assertion that go-jose and PyJWT both accept for
// that VM's origin, and refuse for another origin, once expired, tampered
// with, or forged with what a copy of the database holds; anonymous
// requests carry none; a database copy without the secret starts nothing.
func TestAssertions(t *testing.T) {
	requirePyJWT(t)
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	f := newFixture(t)
	s := f.srv
	mustRun(t, s.env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL)
	mustRun(t, s.env, "vm", "add", "--name", "pub", "--owner", "alice@example.com", "--upstream", upstream.URL, "--public")
	p := port(t, s)
	appURL, aud := "http://app.exe.xyz:"+p+"/", "http://app.exe.xyz:"+p
	gen := decode[generated](t, f.alice.ok(t, "", `ssh-key generate-api-key --vm=app --label=ci --ctx='{"role":"deploy","n":[1, 2]}' --json`))

	// The JWKS, on the API host and on every VM host, and offline.
	resp, jwks := httpGet(t, s, jwksURL(t, s))
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, resp.Header)
	}
	for _, url := range []string{"http://app.exe.xyz:" + p + "/__exe.dev/jwks.json", "http://pub.exe.xyz:" + p + "/__exe.dev/jwks.json"} {
		if resp, body := httpGet(t, s, url); resp.StatusCode != 200 || !bytes.Equal(body, jwks) || resp.Header.Get("Cache-Control") != "public, max-age=3600" {
			t.Errorf("GET %s: %d %s, want the API host's set", url, resp.StatusCode, body)
		}
	}
	if out := mustRun(t, s.env, "assertion", "jwks"); strings.TrimSpace(out) != string(jwks) {
		t.Errorf("exed assertion jwks printed %s, the server serves %s", out, jwks)
	}

	tok := forwardedAssertion(t, s, appURL, gen.Token, "X-ExeDev-Jwt-Assertion", "forged")
	if tok == "" || tok == "forged" {
		t.Fatalf("the VM got assertion %q", tok)
	}
	c, err := goVerify(t, s, jwksURL(t, s), tok, aud, time.Time{})
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	if !strings.HasPrefix(c.Subject, "usr") || c.Email != "alice@example.com" || c.VM != "app" || c.Audience != aud ||
		c.AuthMethod != "token" || c.Access != "owner" || c.KeyFingerprint != gen.Fingerprint ||
		c.TokenCtx != `{"role":"deploy","n":[1, 2]}` || c.Expiry-c.IssuedAt != 300 || c.NotBefore != c.IssuedAt || c.ID == "" {
		t.Errorf("claims %+v", c)
	}
	keys := decode[struct {
		Keys []struct {
			KID, State string
		} `json:"keys"`
	}](t, mustRun(t, s.env, "assertion", "keys", "--json"))
	if len(keys.Keys) != 1 || keys.Keys[0].State != "signing" || keys.Keys[0].KID != kidOf(tok) {
		t.Errorf("exed assertion keys: %+v; the assertion's kid %s", keys, kidOf(tok))
	}
	// Anonymous: no assertion, whatever the client sends.
	if got := forwardedAssertion(t, s, "http://pub.exe.xyz:"+p+"/", "", "X-ExeDev-Jwt-Assertion", "forged", "x-exedev-jwt-assertion", tok); got != "" {
		t.Errorf("an anonymous request reached the VM with assertion %q", got)
	}

	// What a thief with a copy of the database (every file) can make of it.
	copyDir := filepath.Join(f.dir, "copy")
	if err := os.Mkdir(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(s.data, "exed.db*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(copyDir, filepath.Base(name)), b, 0o600)
	}
	forged := forgeFromCopy(t, copyDir, tok)
	// Nor does the copy start an instance that signs: without the secret,
	// the fresh one it would make does not open the keys.
	r := runCmd(t, nil, "", exedBin, "serve", "--data", copyDir, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "does not open with the server secret") || !strings.Contains(r.stderr, "--secret-key-file") {
		t.Errorf("serve on a database copy without the secret: exit %d, %s", r.code, r.stderr)
	}
	r = run(t, nil, "", "assertion", "rotate", "--now", "--data", copyDir)
	if r.code == 0 || !strings.Contains(r.stderr, "does not open with the server secret") {
		t.Errorf("rotate on a database copy without the secret: exit %d, %s", r.code, r.stderr)
	}

	exp := time.Unix(c.Expiry, 0)
	refused := map[string]pyCase{
		"wrong audience":     {Token: tok, Audience: "http://pub.exe.xyz:" + p},
		"wrong port":         {Token: tok, Audience: "http://app.exe.xyz:1" + p},
		"https":              {Token: tok, Audience: "https://app.exe.xyz:" + p},
		"expired":            {Token: tok, Audience: aud, At: exp.Unix() + 1},
		"tampered payload":   {Token: tamperPayload(t, tok), Audience: aud},
		"tampered signature": {Token: tamperSignature(tok), Audience: aud},
	}
	for name, f := range forged {
		refused[name] = pyCase{Token: f, Audience: aud}
	}
	for name, c := range refused {
		at := time.Time{}
		if c.At != 0 {
			at = time.Unix(c.At, 0)
		}
		if _, err := goVerify(t, s, jwksURL(t, s), c.Token, c.Audience, at); err == nil {
			t.Errorf("go-jose accepts the %s", name)
		}
	}
	cases := []pyCase{{Name: "right audience", Token: tok, Audience: aud}, {Name: "right audience, at exp", Token: tok, Audience: aud, At: exp.Unix() - 1}}
	for name, c := range refused {
		c.Name = name
		cases = append(cases, c)
	}
	// PyJWT, with the JWKS from a VM host this time.
	got := pyVerify(t, s, "http://app.exe.xyz:"+p+"/__exe.dev/jwks.json", cases)
	for _, c := range cases {
		res := got[c.Name]
		want := strings.HasPrefix(c.Name, "right audience")
		if res.OK != want {
			t.Errorf("PyJWT, %s: ok=%v (%s), want %v", c.Name, res.OK, res.Error, want)
		}
		if want && (res.Claims["email"] != "alice@example.com" || res.Claims["token_ctx"] != `{"role":"deploy","n":[1, 2]}` || res.KID != kidOf(tok)) {
			t.Errorf("PyJWT, %s: claims %v", c.Name, res.Claims)
		}
		if !want {
			t.Logf("PyJWT refuses the %s: %s", c.Name, res.Error)
		}
	}
	if strings.Contains(s.logs(), tok) {
		t.Error("an assertion appears in the server log")
	}
}

// forgeFromCopy makes assertions from what the database in dir holds, as
// a thief without the server secret could: signed under the real kid with
// a key of the thief's own, with the sealed bytes taken as the private
// key, and with the tricks JOSE libraries have fallen for (alg none, HMAC
// keyed with the public key). They copy the claims of the real assertion
// tok, with a later exp.
func forgeFromCopy(t *testing.T, dir, tok string) map[string]string {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.AssertionKeys(context.Background())
	st.Close()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the copy's assertion keys: %v, %v", keys, err)
	}
	k := keys[len(keys)-1]
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	json.Unmarshal(payload, &claims)
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	payload, _ = json.Marshal(claims)

	sign := func(priv *ecdsa.PrivateKey) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: k.ID}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := obj.CompactSerialize()
		return out
	}
	enc := base64.RawURLEncoding.EncodeToString
	out := map[string]string{}
	own, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	out["forgery with the thief's key under the real kid"] = sign(own)
	for _, off := range []int{0, 12, len(k.Sealed) - 32} { // the whole blob, past the nonce, the tail
		if priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), k.Sealed[off:off+32]); err == nil {
			out[fmt.Sprintf("forgery with sealed bytes %d..%d as the key", off, off+32)] = sign(priv)
		}
	}
	head := func(alg string) string {
		return enc([]byte(`{"alg":"` + alg + `","kid":"` + k.ID + `","typ":"JWT"}`))
	}
	out["forgery with alg none"] = head("none") + "." + enc(payload) + "."
	mac := hmac.New(sha256.New, k.PublicKey)
	mac.Write([]byte(head("HS256") + "." + enc(payload)))
	out["forgery with HS256 keyed by the public key"] = head("HS256") + "." + enc(payload) + "." + enc(mac.Sum(nil))
	return out
}

// TestAssertionFlags: --assertion=false forwards no assertion and serves no
// JWKS; a lifetime over 10 minutes is refused at start.
func TestAssertionFlags(t *testing.T) {
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	env := []string{"EXED_DATA=" + data}
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", key+".pub")
	mustRun(t, env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL)

	r := run(t, nil, "", "serve", "--data", data, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--assertion-ttl", "11m")
	if r.code == 0 || !strings.Contains(r.stderr, "at most 10m0s") {
		t.Errorf("--assertion-ttl 11m: exit %d, %s", r.code, r.stderr)
	}
	s := startServer(t, data, "--assertion=false")
	tok := strings.TrimSpace(mustRun(t, nil, "token", "mint", "--key", key, "--vm", "app"))
	if got := forwardedAssertion(t, s, "http://app.exe.xyz:"+port(t, s)+"/", tok, "X-ExeDev-Jwt-Assertion", "forged"); got != "" {
		t.Errorf("--assertion=false: the VM got %q", got)
	}
	if resp, _ := httpGet(t, s, jwksURL(t, s)); resp.StatusCode != 404 {
		t.Errorf("--assertion=false: JWKS %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(data, "secret.key")); err == nil {
		t.Error("--assertion=false created a server secret")
	}
	s.stop()

	// On, with a short lifetime: exp is iat + 30 s.
	s = startServer(t, data, "--assertion-ttl", "30s")
	a := forwardedAssertion(t, s, "http://app.exe.xyz:"+port(t, s)+"/", tok)
	c, err := goVerify(t, s, jwksURL(t, s), a, "http://app.exe.xyz:"+port(t, s), time.Time{})
	if err != nil || c.Expiry-c.IssuedAt != 30 {
		t.Fatalf("--assertion-ttl 30s: %+v, %v", c, err)
	}
	fi, err := os.Stat(filepath.Join(data, "secret.key"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != assertion.SecretSize {
		t.Fatalf("the server secret: %v, %v", fi, err)
	}
}

// TestClusterAssertions: two instances on one PostgreSQL registry with one
// server secret sign with the same key and publish the same set; after
// `exed assertion rotate --now` through A's settings, B signs with the new
// key within its next refresh, and what the old key signed still verifies
// against B's JWKS (the old key is published until it retires, 7 days on:
// TestRotationByTime in package assertion walks that far with a clock). An
// instance with another secret does not start.
func TestClusterAssertions(t *testing.T) {
	requirePyJWT(t)
	dbURL := clusterDB(t).String()
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster_secret.key") // not there yet: A and B race to create it
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	const refresh = "200ms"

	srvs := make([]*server, 2)
	done := make(chan int, 2)
	for i := range srvs {
		go func() {
			defer func() { done <- i }()
			data := filepath.Join(dir, fmt.Sprintf("data%c", 'A'+i))
			srvs[i] = startServer(t, data, "--db", dbURL, "--secret-key-file", secret, "--assertion-refresh", refresh)
		}()
	}
	<-done
	<-done
	if t.Failed() {
		t.FailNow()
	}
	a, b := srvs[0], srvs[1]
	for _, s := range srvs {
		s.env = append(s.env, "EXED_DB="+dbURL, "EXED_SECRET_KEY_FILE="+secret)
	}
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, a.env, "user", "add", "--email", "alice@example.com", "--key-file", key+".pub")
	mustRun(t, a.env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)
	tok := strings.TrimSpace(mustRun(t, nil, "token", "mint", "--key", key, "--vm", "web"))
	vmURL := func(s *server) string { return "http://web.exe.xyz:" + port(t, s) + "/" }
	aud := func(s *server) string { return "http://web.exe.xyz:" + port(t, s) }

	_, jwksA := httpGet(t, a, jwksURL(t, a))
	_, jwksB := httpGet(t, b, jwksURL(t, b))
	if !bytes.Equal(jwksA, jwksB) || strings.Count(string(jwksA), `"kid"`) != 1 {
		t.Fatalf("two instances started at once publish %s and %s, want one same key", jwksA, jwksB)
	}
	old := forwardedAssertion(t, a, vmURL(a), tok)
	if _, err := goVerify(t, b, jwksURL(t, b), old, aud(a), time.Time{}); err != nil {
		t.Fatalf("A's assertion against B's JWKS (go-jose): %v", err)
	}
	oldKID := kidOf(old)
	if kidOf(forwardedAssertion(t, b, vmURL(b), tok)) != oldKID {
		t.Fatal("A and B sign with different keys")
	}

	out := mustRun(t, a.env, "assertion", "rotate", "--now")
	rotated := time.Now()
	var newKID string
	if _, err := fmt.Sscanf(out, "added assertion key %s", &newKID); err != nil || newKID == oldKID {
		t.Fatalf("rotate printed %q", out)
	}
	for _, s := range srvs {
		testkit.WaitWithin(t, "signing with the new key", 10*time.Second, func() bool {
			return kidOf(forwardedAssertion(t, s, vmURL(s), tok)) == newKID
		})
	}
	t.Logf("both instances sign with the new key %v after rotate returned (refresh every %s)", time.Since(rotated).Round(time.Millisecond), refresh)
	fresh := forwardedAssertion(t, b, vmURL(b), tok)
	cases := []pyCase{
		{Name: "A's assertion by the old key", Token: old, Audience: aud(a)},
		{Name: "B's assertion by the new key", Token: fresh, Audience: aud(b)},
		{Name: "wrong audience", Token: fresh, Audience: aud(a) + "0"},
	}
	res := pyVerify(t, b, jwksURL(t, b), cases)
	if !res[cases[0].Name].OK || !res[cases[1].Name].OK || res[cases[2].Name].OK {
		t.Errorf("PyJWT with B's JWKS after the rotation: %+v", res)
	}
	for _, c := range cases[:2] {
		if _, err := goVerify(t, b, jwksURL(t, b), c.Token, c.Audience, time.Time{}); err != nil {
			t.Errorf("go-jose with B's JWKS, %s: %v", c.Name, err)
		}
	}
	keys := decode[struct {
		Keys []struct {
			KID, State string
			RetiresAt  string `json:"retires_at"`
		} `json:"keys"`
	}](t, mustRun(t, b.env, "assertion", "keys", "--json"))
	if len(keys.Keys) != 2 || keys.Keys[0].KID != oldKID || keys.Keys[0].State != "published" || keys.Keys[1].State != "signing" {
		t.Fatalf("keys after the rotation: %+v", keys)
	}
	if ret, err := time.Parse(time.RFC3339, keys.Keys[0].RetiresAt); err != nil || ret.Sub(rotated).Round(time.Hour) != 7*24*time.Hour {
		t.Errorf("the old key retires at %s, want 7 days after the rotation", keys.Keys[0].RetiresAt)
	}

	// A third instance with another secret refuses to start.
	other := filepath.Join(dir, "other_secret.key")
	r := runCmd(t, nil, "", exedBin, "serve", "--data", filepath.Join(dir, "dataC"), "--db", dbURL, "--secret-key-file", other,
		"--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "does not open with the server secret "+other) {
		t.Errorf("an instance with another secret: exit %d, %s", r.code, r.stderr)
	}
}

// TestDocsVerifying runs docs/verifying.md's examples against a real exed:
// the Go one as the web server of two VMs behind it (it answers its own
// VM's requests and refuses the other's, whose assertions name another
// origin), the Python one on the assertions exed forwards.
func TestDocsVerifying(t *testing.T) {
	requirePyJWT(t)
	goSrc := docBlocks(t, "docs/verifying.md", "## Verifying in Go", "go")[0]
	pySrc := docBlocks(t, "docs/verifying.md", "## Verifying in Python", "python")[0]
	f := newFixture(t)
	s := f.srv
	p := port(t, s)

	// The examples' names become the test server's. JWKS first: its URL
	// starts with the issuer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vmAddr := ln.Addr().String()
	ln.Close()
	subst := strings.NewReplacer(
		"https://exe.example.com/.well-known/jwks.json", jwksURL(t, s),
		"https://exe.example.com", "https://exe.dev",
		"https://web.vm.example.com", "http://app.exe.xyz:"+p,
		`":8000"`, `"`+vmAddr+`"`,
	)
	for _, src := range []string{goSrc, pySrc} {
		for _, example := range []string{"https://exe.example.com/.well-known/jwks.json", "https://exe.example.com", "https://web.vm.example.com"} {
			if !strings.Contains(src, example) {
				t.Fatalf("an example lacks %s, which the test replaces", example)
			}
		}
	}
	if !strings.Contains(goSrc, `":8000"`) {
		t.Fatal(`the Go example does not listen on ":8000", which the test replaces`)
	}

	// The Go example, built in a module of its own with this module's
	// go-jose, offline.
	mod := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(repoRoot, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	var joseSum strings.Builder
	for _, line := range strings.Split(string(sum), "\n") {
		if strings.HasPrefix(line, "github.com/go-jose/go-jose/v4 ") {
			joseSum.WriteString(line + "\n")
		}
	}
	version := strings.Fields(joseSum.String())[1]
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/vm\n\ngo 1.26\n\nrequire github.com/go-jose/go-jose/v4 "+version+"\n"), 0o600)
	os.WriteFile(filepath.Join(mod, "go.sum"), []byte(joseSum.String()), 0o600)
	os.WriteFile(filepath.Join(mod, "main.go"), []byte(subst.Replace(goSrc)), 0o600)
	bin := filepath.Join(mod, "vm")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the Go example: %v\n%s", err, out)
	}
	vm := exec.Command(bin)
	vm.Env = append(os.Environ(), proxyEnv(s)...)
	var vmLog bytes.Buffer
	vm.Stdout, vm.Stderr = &vmLog, &vmLog
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Process.Kill(); vm.Wait() })
	testkit.WaitWithin(t, "the Go example listening", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", vmAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// Between exed and the example, a tee notes the assertion each VM got.
	exampleURL, _ := url.Parse("http://" + vmAddr)
	toExample := httputil.NewSingleHostReverseProxy(exampleURL)
	var (
		mu   sync.Mutex
		seen = map[string]string{} // VM host → the last assertion it got
	)
	tee := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Forwarded-Host")] = r.Header.Get("X-Exedev-Jwt-Assertion")
		mu.Unlock()
		toExample.ServeHTTP(w, r)
	}))
	defer tee.Close()
	assertionFor := func(vm string) string {
		mu.Lock()
		defer mu.Unlock()
		a := seen[vm+".exe.xyz:"+p]
		if a == "" {
			t.Fatalf("%s got no assertion", vm)
		}
		return a
	}
	for _, name := range []string{"app", "other"} {
		mustRun(t, s.env, "vm", "add", "--name", name, "--owner", "alice@example.com", "--upstream", tee.URL)
	}
	appTok := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=app --label=app --json")).Token
	otherTok := decode[generated](t, f.alice.ok(t, "", "ssh-key generate-api-key --vm=other --label=other --json")).Token

	resp, body := httpGet(t, s, "http://app.exe.xyz:"+p+"/", "X-Exedev-Authorization", "Bearer "+appTok)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello alice@example.com (usr") || !strings.Contains(string(body), "owner by token") {
		t.Fatalf("through exed to the Go example: %d %q\n%s", resp.StatusCode, body, vmLog.String())
	}
	if resp, body := httpGet(t, s, "http://other.exe.xyz:"+p+"/", "X-Exedev-Authorization", "Bearer "+otherTok); resp.StatusCode != 401 {
		t.Errorf("another VM's assertion: %d %q", resp.StatusCode, body)
	}
	// Around exed, straight to the VM: nothing, or a tampered assertion.
	direct := &http.Client{Timeout: 10 * time.Second}
	for name, hdr := range map[string]string{
		"no assertion": "",
		"tampered":     tamperPayload(t, assertionFor("app")),
		"forged":       "forged.forged.forged",
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+vmAddr+"/", nil)
		if hdr != "" {
			req.Header.Set("X-ExeDev-Jwt-Assertion", hdr)
		}
		req.Header.Set("X-ExeDev-Email", "alice@example.com")
		resp, err := direct.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("straight to the Go example, %s: %d", name, resp.StatusCode)
		}
	}

	// The Python example, on assertions exed made for app and for other.
	appA, otherA := assertionFor("app"), assertionFor("other")
	driver := subst.Replace(pySrc) + `
import json, sys
for token in json.load(sys.stdin):
    try:
        print(json.dumps(exed_identity({"X-ExeDev-Jwt-Assertion": token})["email"]))
    except jwt.PyJWTError as e:
        print(json.dumps("refused: %s" % type(e).__name__))
`
	script := filepath.Join(t.TempDir(), "verify.py")
	os.WriteFile(script, []byte(driver), 0o600)
	in, _ := json.Marshal([]string{appA, otherA, tamperSignature(appA)})
	r := runCmd(t, proxyEnv(s), string(in), python, script)
	want := "\"alice@example.com\"\n\"refused: InvalidAudienceError\"\n\"refused: InvalidSignatureError\"\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("the Python example: exit %d\n%s\nwant\n%s%s", r.code, r.stdout, want, r.stderr)
	}
}

// kidOf is the kid in a JWT's header (unverified).
func kidOf(token string) string {
	parsed, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return ""
	}
	return parsed.Signatures[0].Protected.KeyID
}

// tamperPayload changes the email in the payload, keeping the signature.
func tamperPayload(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(p), "alice@example.com", "admin@example.com", 1)
	if changed == string(p) {
		t.Fatalf("no email to change in %s", p)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(changed))
	return strings.Join(parts, ".")
}

// tamperSignature flips one bit of the signature.
func tamperSignature(token string) string {
	i := strings.LastIndex(token, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(token[i+1:])
	sig[10] ^= 1
	return token[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}
