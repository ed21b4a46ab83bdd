package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/certs/acmetest"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/store/sqlstore"
)

// Issue 21: exed serve --acme obtains and renews its own
// certificates. These tests run the real binary against pebble, in the
// test process (certs/acmetest), whose validation authority reaches the
// binary on its loopback ports; every name resolves to 127.0.0.1. The
// finer points (renewal, the rate limit under a burst, locks) are tested
// on the certs package itself.

const (
	acmeDomain   = "exe.test"
	acmeVMDomain = "vm.test"
)

// acmeServer starts exed serve --acme against ca on data (and db, when
// not ""), trusting ca's directory through SSL_CERT_FILE. The CA is
// started, pointed at the server's ports, by the caller (startCA): until
// then the server's ACME requests wait.
func acmeServer(t *testing.T, ca *acmetest.Server, data string, args ...string) *server {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "acme-directory.pem")
	if err := os.WriteFile(bundle, ca.TLSCertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{
		"--acme", "--acme-email", "ops@example.com", "--acme-directory", ca.URL,
		"--domain", acmeDomain, "--vm-domain", acmeVMDomain, "--admin-addr", "127.0.0.1:0",
	}, args...)
	return startServerEnv(t, []string{"SSL_CERT_FILE=" + bundle}, data, all...)
}

// port is the port of a listener address "host:port".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p := splitHostPort(t, addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return n
}

var redirectLine = regexp.MustCompile(`http_redirect=(\S+)`)

// redirectAddr is the --http-redirect-addr listener's address, from the
// "exed serving" line.
func (s *server) redirectAddr(t *testing.T) string {
	t.Helper()
	m := redirectLine.FindStringSubmatch(s.logs())
	if m == nil {
		t.Fatalf("no http_redirect= in the serving line:\n%s", s.logs())
	}
	return m[1]
}

// deadPort is a loopback port where nothing listens.
func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// curlTLS runs curl against the server's HTTPS listener for url, trusting
// only pebble's root; it returns curl's exit status, the HTTP status and
// the response headers.
func (s *server) curlTLS(t *testing.T, root, url string, args ...string) (int, string, string) {
	t.Helper()
	host, port := splitHostPort(t, s.httpAddr)
	all := append([]string{"-sS", "--max-time", "30", "--cacert", root, "--connect-to", "::" + host + ":" + port,
		"-D", "-", "-o", "/dev/null", "-w", "%{http_code}", url}, args...)
	r := runCmd(t, nil, "", "curl", all...)
	if r.code != 0 {
		return r.code, "", r.stderr
	}
	return 0, r.stdout[len(r.stdout)-3:], r.stdout[:len(r.stdout)-3]
}

// servedCert is the certificate the server presents for host, verified
// against roots.
func (s *server) servedCert(t *testing.T, roots *x509.CertPool, host string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", s.httpAddr,
		&tls.Config{ServerName: host, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS to %s as %s: %v", s.httpAddr, host, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func writeRoot(t *testing.T, ca *acmetest.Server) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(root, ca.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestACMETLSALPN: exed serve --acme (no plain-HTTP listener: TLS-ALPN-01
// only) gets the main host's certificate at start and a VM's, added while
// it runs, on the first visit; curl trusting pebble's root reaches both
// over HTTPS, the main host with HSTS. A name that is no VM gets no
// certificate and costs no order. The metrics and /readyz report the
// certificates.
func TestACMETLSALPN(t *testing.T) {
	testkit.RequireTools(t, "curl")
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ca := acmetest.New(t)
	s := acmeServer(t, ca, data)
	ca.Start(acmetest.Options{TLSPort: portOf(t, s.httpAddr), HTTPPort: deadPort(t)})
	root := writeRoot(t, ca)
	_, port := splitHostPort(t, s.httpAddr)

	// The main host's certificate, ordered at start.
	testkit.WaitWithin(t, "the main host's certificate", 30*time.Second, func() bool {
		return strings.Contains(s.logs(), "tls certificate obtained") && ca.Orders(acmeDomain) == 1
	})
	code, status, headers := s.curlTLS(t, root, "https://"+acmeDomain+":"+port+"/exec")
	if code != 0 || status != "405" {
		t.Fatalf("curl https://%s/exec: exit %d, status %q: %s", acmeDomain, code, status, headers)
	}
	// HTTP/2 (curl and exed agree on it by ALPN) spells header names in
	// lower case.
	if !strings.Contains(strings.ToLower(headers), "strict-transport-security: max-age=31536000\r\n") {
		t.Errorf("the main host's answer has no HSTS:\n%s", headers)
	}

	// A VM added while exed runs: its certificate on the first visit.
	k := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, s.env, "user", "add", "--email", "alice@example.com", "--key-file", k+".pub")
	mustRun(t, s.env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL, "--public")
	web := "web." + acmeVMDomain
	code, status, headers = s.curlTLS(t, root, "https://"+web+":"+port+"/hello")
	if code != 0 || status != "200" {
		t.Fatalf("curl https://%s/hello: exit %d, status %q: %s", web, code, status, headers)
	}
	if strings.Contains(strings.ToLower(headers), "strict-transport-security") {
		t.Errorf("a VM host's answer carries exed's HSTS:\n%s", headers)
	}
	if got := ca.Validated(web); !slices.Equal(got, []string{"tls-alpn-01 valid"}) {
		t.Errorf("challenges validated for %s: %q, want one tls-alpn-01", web, got)
	}
	if n := ca.Orders(web); n != 1 {
		t.Errorf("%d orders for %s, want 1", n, web)
	}

	// Names that are not exed's: no certificate, no order. A VM removed
	// (by the admin command, another process) before its first visit is
	// one of them.
	mustRun(t, s.env, "vm", "add", "--name", "gone", "--owner", "alice@example.com", "--upstream", upstream.URL, "--public")
	mustRun(t, s.env, "vm", "rm", "gone")
	orders := ca.TotalOrders()
	for _, host := range []string{"nope." + acmeVMDomain, "gone." + acmeVMDomain, "evil.example"} {
		if code, _, stderr := s.curlTLS(t, root, "https://"+host+":"+port+"/"); code == 0 {
			t.Errorf("curl https://%s succeeded, want a TLS failure", host)
		} else if code != 35 { // curl's "SSL connect error": the handshake was refused
			t.Errorf("curl https://%s: exit %d, want 35: %s", host, code, stderr)
		}
	}
	if n := ca.TotalOrders() - orders; n != 0 {
		t.Errorf("%d orders for names that are not exed's", n)
	}

	admin := s.adminAddr(t)
	m := scrapeMetrics(t, admin)
	for series, want := range map[string]float64{
		"exed_tls_certificates_managed{}":             2,
		"exed_tls_certificates_expiring{}":            0,
		"exed_tls_certificates_renewal_failing{}":     0,
		"exed_acme_orders_total{result=obtained}":     2,
		"exed_acme_orders_total{result=failed}":       0,
		"exed_acme_orders_total{result=renewed}":      0,
		"exed_acme_orders_total{result=rate_limited}": 0,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	if exp := m["exed_tls_certificate_soonest_expiry_timestamp_seconds{}"]; exp < float64(time.Now().Add(7*24*time.Hour).Unix()) {
		t.Errorf("soonest expiry %v: want pebble's 90 days away", exp)
	}
	if code, body := getURL(t, "http://"+admin+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}

	// The private keys in the registry are sealed under the server
	// secret: the database holds certificates but no key in the clear.
	noClearPrivateKeys(t, data)
}

// noClearPrivateKeys reads every ACME blob in the SQLite registry in data
// and fails on one that holds a PEM private key, after checking there
// are certificates (so that it reads the right store).
func noClearPrivateKeys(t *testing.T, data string) {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), "", data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	infos, err := st.CertBlobInfos(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var certsSeen, keysSeen int
	for _, in := range infos {
		b, err := st.CertBlob(context.Background(), in.Key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case bytes.Contains(b.Value, []byte("PRIVATE KEY")):
			t.Errorf("blob %s holds a private key in the clear", in.Key)
		case bytes.Contains(b.Value, []byte("BEGIN CERTIFICATE")):
			certsSeen++
		case strings.HasSuffix(in.Key, ".key"):
			keysSeen++
		}
	}
	if certsSeen == 0 || keysSeen == 0 {
		t.Errorf("%d certificates and %d sealed keys among %d blobs: the wrong store?", certsSeen, keysSeen, len(infos))
	}
}

// TestACMEHTTP01: with --http-redirect-addr, a VM's certificate is
// validated by HTTP-01 on the plain-HTTP listener (pebble's TLS-ALPN-01
// port leads nowhere, so that challenge cannot succeed), and plain HTTP
// to any host is sent to HTTPS with a 308.
func TestACMEHTTP01(t *testing.T) {
	testkit.RequireTools(t, "curl")
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	k := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, []string{"EXED_DATA=" + data}, "user", "add", "--email", "alice@example.com", "--key-file", k+".pub")
	ca := acmetest.New(t)
	s := acmeServer(t, ca, data, "--http-redirect-addr", "127.0.0.1:0")
	redirect := s.redirectAddr(t)
	ca.Start(acmetest.Options{TLSPort: deadPort(t), HTTPPort: portOf(t, redirect)})
	root := writeRoot(t, ca)
	_, port := splitHostPort(t, s.httpAddr)

	mustRun(t, s.env, "vm", "add", "--name", "blog", "--owner", "alice@example.com", "--upstream", upstream.URL, "--public")
	blog := "blog." + acmeVMDomain
	code, status, headers := s.curlTLS(t, root, "https://"+blog+":"+port+"/")
	if code != 0 || status != "200" {
		t.Fatalf("curl https://%s/: exit %d, status %q: %s", blog, code, status, headers)
	}
	got := ca.Validated(blog)
	if !slices.Contains(got, "http-01 valid") || slices.Contains(got, "tls-alpn-01 valid") {
		t.Errorf("challenges validated for %s: %q, want http-01 valid", blog, got)
	}

	// Plain HTTP: a 308 to the same URL over HTTPS.
	rhost, rport := splitHostPort(t, redirect)
	for _, c := range []struct{ url, want string }{
		{"http://" + blog + ":" + rport + "/a/b?c=d", "https://" + blog + ":" + port + "/a/b?c=d"},
		{"http://" + acmeDomain + ":" + rport + "/exec", "https://" + acmeDomain + ":" + port + "/exec"},
	} {
		r := runCmd(t, nil, "", "curl", "-sS", "--max-time", "20", "--connect-to", "::"+rhost+":"+rport,
			"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", c.url)
		if r.code != 0 || r.stdout != "308 "+c.want {
			t.Errorf("curl %s: exit %d, %q; want 308 to %s (%s)", c.url, r.code, r.stdout, c.want, r.stderr)
		}
	}
}

// TestACMESecondInstancePostgres: a second exed on the same PostgreSQL
// registry serves the certificates the first obtained (the same ones),
// without ordering anything: certificates and the ACME account are in the
// registry.
func TestACMESecondInstancePostgres(t *testing.T) {
	testkit.RequireTools(t, "curl")
	dsn := clusterDB(t).String()
	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	dir := t.TempDir()
	ca := acmetest.New(t)
	// Instances sharing a registry share the server secret, which seals
	// the ACME keys (and the assertion keys) in it.
	secret := filepath.Join(dir, "secret.key")
	a := acmeServer(t, ca, filepath.Join(dir, "dataA"), "--db", dsn, "--secret-key-file", secret)
	ca.Start(acmetest.Options{TLSPort: portOf(t, a.httpAddr), HTTPPort: deadPort(t)})
	roots := ca.RootPool()
	root := writeRoot(t, ca)
	env := append(a.env, "EXED_DB="+dsn)
	k := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, env, "user", "add", "--email", "alice@example.com", "--key-file", k+".pub")
	mustRun(t, env, "vm", "add", "--name", "app", "--owner", "alice@example.com", "--upstream", upstream.URL, "--public")
	app := "app." + acmeVMDomain
	fromA := a.servedCert(t, roots, app)
	mainA := a.servedCert(t, roots, acmeDomain)
	orders := ca.TotalOrders()
	if orders != 2 {
		t.Errorf("%d orders after A's start and first visit, want 2", orders)
	}

	b := acmeServer(t, ca, filepath.Join(dir, "dataB"), "--db", dsn, "--secret-key-file", secret)
	_, portB := splitHostPort(t, b.httpAddr)
	if code, status, headers := b.curlTLS(t, root, "https://"+app+":"+portB+"/"); code != 0 || status != "200" {
		t.Fatalf("curl https://%s via B: exit %d, status %q: %s", app, code, status, headers)
	}
	fromB := b.servedCert(t, roots, app)
	mainB := b.servedCert(t, roots, acmeDomain)
	if !fromA.Equal(fromB) || !mainA.Equal(mainB) {
		t.Errorf("B serves other certificates than A (serials %v, %v vs %v, %v)", fromB.SerialNumber, mainB.SerialNumber, fromA.SerialNumber, mainA.SerialNumber)
	}
	if n := ca.TotalOrders() - orders; n != 0 {
		t.Errorf("the second instance made %d orders, want 0", n)
	}
	if m := scrapeMetrics(t, b.adminAddr(t)); m["exed_acme_orders_total{result=obtained}"] != 0 || m["exed_tls_certificates_managed{}"] != 2 {
		t.Errorf("B's metrics: obtained %v, managed %v; want 0 and 2", m["exed_acme_orders_total{result=obtained}"], m["exed_tls_certificates_managed{}"])
	}
}

// TestACMEFlags: what serve refuses, with a clear message.
func TestACMEFlags(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme", "--acme-email", "a@b.c", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "--acme and --tls-cert/--tls-key are exclusive"},
		{[]string{"--acme"}, "--acme needs --acme-email"},
		{[]string{"--acme", "--acme-email", "a@b.c", "--acme-rate", "0"}, "--acme-rate must be at least 1"},
		{[]string{"--acme-email", "a@b.c"}, "--acme-email is only for --acme"},
		{[]string{"--http-redirect-addr", "127.0.0.1:0"}, "--http-redirect-addr sends plain HTTP to HTTPS: it needs --acme or --tls-cert"},
	} {
		r := run(t, nil, "", append([]string{"serve", "--data", data, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
