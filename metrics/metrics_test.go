package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/promtest"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// scrape fetches /metrics from h in the text format, parses it with the
// Prometheus text parser and flattens it to "name{k=v,…}" → value (a
// histogram gives name_count and name_sum).
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Accept", promtest.Accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	return promtest.Series(t, rec.Body)
}

// want checks one series' value.
func want(t *testing.T, got map[string]float64, series string, v float64) {
	t.Helper()
	if g, ok := got[series]; !ok || g != v {
		t.Errorf("%s = %v (present: %v), want %v", series, g, ok, v)
	}
}

func notReady(context.Context) error { return errors.New("starting") }

// testRegistry is a real SQLite registry with one user and one key.
func testRegistry(t *testing.T, m *Metrics) (store.Store, ssh.Signer) {
	t.Helper()
	ctx := context.Background()
	raw, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	signer := testkit.NewSigner(t)
	u := store.User{ID: "usrmetrics1", Email: "alice@example.com", CreatedAt: time.Now()}
	k := store.Key{
		UserID: u.ID, Name: "laptop", Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey: keys.MarshalAuthorized(signer.PublicKey()), AddedAt: time.Now(),
	}
	st := m.Store(raw)
	if err := st.AddUser(ctx, u, k, store.Event{Time: time.Now(), ActorID: "admin", Action: "user.add", Subject: u.Email}); err != nil {
		t.Fatal(err)
	}
	return st, signer
}

// TestVerificationResults runs a real Verifier over a real registry, with
// tokens of each outcome, and reads the counters back through /metrics.
func TestVerificationResults(t *testing.T) {
	m := New()
	st, signer := testRegistry(t, m)
	// No key cache: every verification below that reaches the registry is timed.
	v := tokens.NewVerifier(tokens.Config{Registry: st, OnVerify: m.TokenVerified, KeyCacheSize: -1})
	m.WatchVerifierCache(v.CacheStats)
	ctx := context.Background()
	const ns = "v0@exe.dev"
	mint := func(ns, payload string) string {
		t.Helper()
		tok, err := tokens.MintExe0(signer, ns, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	stranger := testkit.NewSigner(t)
	unknown, err := tokens.MintExe0(stranger, ns, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	good := mint(ns, `{}`)
	other := mint(ns, `{"ctx":1}`)
	forged := good[:strings.LastIndex(good, ".")] + other[strings.LastIndex(other, "."):] // P of one, signature of the other

	cases := []struct {
		token  string
		result string
	}{
		{good, "ok"},
		{good, "ok"}, // a cache hit
		{"exe0.nonsense", "malformed"},
		{mint("v0@web.exe.xyz", `{}`), "namespace"},
		{unknown, "unknown_key"},
		{forged, "bad_signature"},
		{mint(ns, `{"exp":1000000000}`), "expired"},
		{mint(ns, `{"nbf":4102444800}`), "not_yet_valid"}, // the last second P allows: never reached while tokens are valid
	}
	counts := map[string]float64{}
	for _, c := range cases {
		_, err := v.Verify(ctx, c.token, tokens.Target{Namespace: ns})
		if (err == nil) != (c.result == "ok") {
			t.Fatalf("Verify(%s case) = %v", c.result, err)
		}
		counts[c.result]++
	}
	// Explain (check-api-key) is a diagnosis, not a use: not counted.
	v.Explain(ctx, good, tokens.Target{Namespace: ns})

	got := scrape(t, m.Handler(notReady, nil))
	for _, r := range append([]string{"ok"}, stringsOf(reasons)...) {
		want(t, got, "exed_token_verifications_total{result="+r+"}", counts[r])
	}
	want(t, got, "exed_token_cache_hits_total{}", 1)
	if got["exed_token_cache_misses_total{}"] < 1 || got["exed_token_cache_entries{}"] != 1 {
		t.Errorf("cache misses %v, entries %v", got["exed_token_cache_misses_total{}"], got["exed_token_cache_entries{}"])
	}
	// The registry calls were timed through the decorator.
	if got["exed_store_query_duration_seconds_count{method=key_and_user,result=ok}"] < 5 ||
		got["exed_store_query_duration_seconds_count{method=add_user,result=ok}"] != 1 {
		t.Errorf("store timings missing: %v", filter(got, "exed_store_"))
	}
	// The Go runtime and process collectors are there too.
	if _, ok := got["go_goroutines{}"]; !ok {
		t.Error("no go_goroutines")
	}
}

func stringsOf(rs []tokens.Reason) []string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r))
	}
	return s
}

func filter(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// TestStoreResults: a not-found answer is the store working; a failed call
// (here: a closed database) is an error.
func TestStoreResults(t *testing.T) {
	m := New()
	st, _ := testRegistry(t, m)
	ctx := context.Background()
	if _, err := st.Key(ctx, "SHA256:nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Key: %v", err)
	}
	if _, _, err := st.KeyAndUser(ctx, "SHA256:nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("KeyAndUser: %v", err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := st.VMs(ctx, ""); err == nil {
		t.Fatal("VMs on a closed store worked")
	}
	got := scrape(t, m.Handler(notReady, nil))
	want(t, got, "exed_store_query_duration_seconds_count{method=key,result=ok}", 1)
	want(t, got, "exed_store_query_duration_seconds_count{method=key_and_user,result=ok}", 1)
	want(t, got, "exed_store_query_duration_seconds_count{method=ping,result=ok}", 1)
	want(t, got, "exed_store_query_duration_seconds_count{method=vms,result=error}", 1)
}

// TestStoreChanges: the timed store passes the change feed through, so
// that the caches subscribed to it (as exed serve subscribes them) hear of
// the writes made through it.
func TestStoreChanges(t *testing.T) {
	m := New()
	st, _ := testRegistry(t, m)
	var heard []store.Change
	cancel := st.Subscribe(func(c store.Change) { heard = append(heard, c) })
	defer cancel()
	if err := st.AddVM(context.Background(), store.VM{Name: "web", OwnerID: "usrmetrics1", Upstream: "http://127.0.0.1:1", CreatedAt: time.Now()},
		store.Event{Time: time.Now(), ActorID: "admin", Action: "vm.add", Subject: "web"}); err != nil {
		t.Fatal(err)
	}
	if want := []store.Change{{Kind: store.VMChanged, ID: "web"}}; !slices.Equal(heard, want) {
		t.Errorf("heard %v, want %v", heard, want)
	}
}

// TestFrontCounters: the proxy, forward-auth, /exec and SSH hooks land on their series
// with labels from fixed sets.
func TestFrontCounters(t *testing.T) {
	m := New()
	m.ProxyRequest(200, 3*time.Millisecond)
	m.ProxyRequest(204, time.Millisecond)
	m.ProxyRequest(401, time.Millisecond)
	m.ProxyRequest(502, 2*time.Second)
	m.ProxyRequest(0, 0) // nothing sensible: "other", never a new label
	m.ForwardAuthRequest(200, time.Millisecond)
	m.ForwardAuthRequest(401, time.Millisecond)
	m.ForwardAuthRequest(404, time.Millisecond)
	m.ExecRequest("whoami", 200)
	m.ExecRequest("", 401)
	m.ExecRequest("ssh-key generate-api-key", 403)
	m.SSHConnOpened()
	m.SSHConnOpened()
	m.SSHConnClosed()
	m.SSHSession()
	m.SSHAuthFailure()
	m.SSHCommand("ssh-key list", 0)
	m.SSHCommand("", 1)
	backlog := 7
	m.WatchLastUsedBacklog(func() int { return backlog })

	got := scrape(t, m.Handler(notReady, nil))
	want(t, got, "exed_proxy_requests_total{class=2xx}", 2)
	want(t, got, "exed_proxy_requests_total{class=4xx}", 1)
	want(t, got, "exed_proxy_requests_total{class=5xx}", 1)
	want(t, got, "exed_proxy_requests_total{class=other}", 1)
	want(t, got, "exed_proxy_request_duration_seconds_count{class=2xx}", 2)
	want(t, got, "exed_proxy_request_duration_seconds_sum{class=5xx}", 2)
	want(t, got, "exed_forward_auth_requests_total{class=2xx}", 1)
	want(t, got, "exed_forward_auth_requests_total{class=4xx}", 2)
	want(t, got, "exed_forward_auth_requests_total{class=5xx}", 0)
	want(t, got, "exed_forward_auth_request_duration_seconds_count{class=4xx}", 2)
	want(t, got, "exed_exec_requests_total{code=200,command=whoami}", 1)
	want(t, got, "exed_exec_requests_total{code=401,command=unknown}", 1)
	want(t, got, "exed_exec_requests_total{code=403,command=ssh-key generate-api-key}", 1)
	want(t, got, "exed_ssh_connections_total{}", 2)
	want(t, got, "exed_ssh_connections_open{}", 1)
	want(t, got, "exed_ssh_sessions_total{}", 1)
	want(t, got, "exed_ssh_auth_failures_total{}", 1)
	want(t, got, "exed_ssh_commands_total{command=ssh-key list,exit=0}", 1)
	want(t, got, "exed_ssh_commands_total{command=unknown,exit=1}", 1)
	want(t, got, "exed_last_used_backlog{}", 7)
	backlog = 0 // read at scrape time
	want(t, scrape(t, m.Handler(notReady, nil)), "exed_last_used_backlog{}", 0)
}

// TestNilMetrics: a nil *Metrics records nothing and hands the store back
// untouched, so proxy and sshserver run without metrics.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.TokenVerified(tokens.ReasonExpired)
	m.ProxyRequest(200, time.Second)
	m.ExecRequest("whoami", 200)
	m.SSHConnOpened()
	m.SSHConnClosed()
	m.SSHSession()
	m.SSHAuthFailure()
	m.SSHCommand("whoami", 0)
	m.WatchVerifierCache(func() (uint64, uint64, int) { return 0, 0, 0 })
	m.WatchLastUsedBacklog(func() int { return 0 })
	raw, err := sqlstore.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if m.Store(raw) != raw {
		t.Error("nil Metrics wrapped the store")
	}
}

// TestAdminEndpoints: /healthz always answers, /readyz follows ready and
// lists the warnings, and nothing else is served.
func TestAdminEndpoints(t *testing.T) {
	m := New()
	var storeUp atomic.Bool
	var warning atomic.Pointer[string]
	srv := httptest.NewServer(m.Handler(func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline on the readiness check")
		}
		if !storeUp.Load() {
			return errors.New("store unreachable")
		}
		return nil
	}, func() []string {
		if w := warning.Load(); w != nil {
			return []string{*w}
		}
		return nil
	}))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || body != "not ready: store unreachable\n" {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	storeUp.Store(true)
	if code, body := get("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	// A warning is shown, and the process stays ready (or unready).
	w := "tls: certificate for web.exe.xyz expires in 71h0m0s"
	warning.Store(&w)
	if code, body := get("/readyz"); code != 200 || body != "ok\nwarning: "+w+"\n" {
		t.Errorf("/readyz with a warning = %d %q", code, body)
	}
	storeUp.Store(false)
	if code, body := get("/readyz"); code != 503 || body != "not ready: store unreachable\nwarning: "+w+"\n" {
		t.Errorf("/readyz not ready, with a warning = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "exed_token_verifications_total") {
		t.Errorf("/metrics = %d", code)
	}
	if code, _ := get("/exec"); code != 404 {
		t.Errorf("/exec on the admin handler = %d", code)
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{
		0: "other", 99: "other", 100: "1xx", 101: "1xx", 200: "2xx", 299: "2xx", 304: "3xx",
		404: "4xx", 499: "4xx", 500: "5xx", 599: "5xx", 600: "other", -200: "other", 1000: "other",
	} {
		if got := statusClass(status); got != want {
			t.Errorf("statusClass(%d) = %q, want %q", status, got, want)
		}
	}
}

// BenchmarkRequestPath is what one proxied request with a token adds:
// a verification result and a status class with its latency.
func BenchmarkRequestPath(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.TokenVerified("")
		m.ProxyRequest(200, time.Millisecond)
	}
}

// TestCertificateMetrics: the certificates' state, read at scrape time,
// with no label naming a host.
func TestCertificateMetrics(t *testing.T) {
	m := New()
	expiry := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	st := CertStatus{Managed: 3, Expiring: 1, Failing: 1, SoonestExpiry: expiry, Obtained: 3, Renewed: 2, OrderFailures: 1, RenewalFailures: 4, RateLimited: 7}
	m.WatchCertificates(func() CertStatus { return st })
	got := scrape(t, m.Handler(notReady, nil))
	want(t, got, "exed_tls_certificates_managed{}", 3)
	want(t, got, "exed_tls_certificates_expiring{}", 1)
	want(t, got, "exed_tls_certificates_renewal_failing{}", 1)
	want(t, got, "exed_tls_certificate_soonest_expiry_timestamp_seconds{}", float64(expiry.Unix()))
	want(t, got, "exed_acme_orders_total{result=obtained}", 3)
	want(t, got, "exed_acme_orders_total{result=renewed}", 2)
	want(t, got, "exed_acme_orders_total{result=failed}", 5)
	want(t, got, "exed_acme_orders_total{result=rate_limited}", 7)
	st = CertStatus{}
	want(t, scrape(t, m.Handler(notReady, nil)), "exed_tls_certificate_soonest_expiry_timestamp_seconds{}", 0)
	var nilM *Metrics
	nilM.WatchCertificates(func() CertStatus { return st }) // a no-op
}
