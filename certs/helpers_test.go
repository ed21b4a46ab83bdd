package certs_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exed-dev/exed/certs"
	"github.com/exed-dev/exed/certs/acmetest"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// countingStore counts the writes made to a CertStore.
type countingStore struct {
	store.CertStore
	writes atomic.Int64
}

func (c *countingStore) PutCertBlob(ctx context.Context, b store.CertBlob) error {
	c.writes.Add(1)
	return c.CertStore.PutCertBlob(ctx, b)
}

func (c *countingStore) DeleteCertBlobs(ctx context.Context, key string) error {
	c.writes.Add(1)
	return c.CertStore.DeleteCertBlobs(ctx, key)
}

func (c *countingStore) AcquireCertLock(ctx context.Context, name, holder string, now, expires time.Time) (bool, error) {
	c.writes.Add(1)
	return c.CertStore.AcquireCertLock(ctx, name, holder, now, expires)
}

func (c *countingStore) RenewCertLock(ctx context.Context, name, holder string, expires time.Time) error {
	c.writes.Add(1)
	return c.CertStore.RenewCertLock(ctx, name, holder, expires)
}

func (c *countingStore) ReleaseCertLock(ctx context.Context, name, holder string) error {
	c.writes.Add(1)
	return c.CertStore.ReleaseCertLock(ctx, name, holder)
}

// registry is a real SQLite registry (testkit/testreg) with one user who
// owns the VMs the tests add.
type registry struct {
	*sqlstore.Store
	reg   *testreg.Registry
	owner testreg.Account
}

func newRegistry(t *testing.T) *registry {
	t.Helper()
	r := testreg.Open(t, nil)
	return &registry{Store: r.Store, reg: r, owner: r.AddUser("ada@example.com", 1)}
}

func (r *registry) addVM(t *testing.T, name string) {
	t.Helper()
	r.reg.AddVM(name, r.owner, false)
}

func (r *registry) removeVM(t *testing.T, name string) {
	t.Helper()
	if err := r.RemoveVM(context.Background(), name, store.Event{Time: time.Now(), ActorID: "admin", Action: "vm.remove", Subject: name}); err != nil {
		t.Fatal(err)
	}
}

// instance is one exed-like server: a Manager on an HTTPS listener (and,
// with HTTP-01, a plain-HTTP one), sharing reg and its store with any
// other instance made on them.
type instance struct {
	mgr       *certs.Manager
	tlsAddr   string
	httpAddr  string
	store     *countingStore
	logs      *testkit.SyncBuffer
	roots     *x509.CertPool // pebble's root
	tlsLn     net.Listener
	httpLn    net.Listener
	vmDomain  string
	mainHost  string
	reg       *registry
	ca        *acmetest.Server
	configure func(*certs.Config)
}

// listeners opens the instance's loopback listeners; withHTTP adds the
// plain-HTTP one.
func listeners(t *testing.T, withHTTP bool) (tlsLn, httpLn net.Listener) {
	t.Helper()
	var err error
	if tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tlsLn.Close() })
	if withHTTP {
		if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { httpLn.Close() })
	}
	return tlsLn, httpLn
}

func port(ln net.Listener) int {
	if ln == nil {
		return 1 // nothing listens there
	}
	return ln.Addr().(*net.TCPAddr).Port
}

// testDomain is base made unique to this run ("renew-1a2b3c.test"):
// certmagic keeps some state per name for the whole process (a renewal's
// backoff after a failure), which a test run again with -count must not
// inherit.
func testDomain(base string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return base + "-" + hex.EncodeToString(b) + ".test"
}

// startInstance builds a Manager for the listeners, serves them, and
// stops it all when the test ends. domain names the test's hosts:
// DOMAIN is the main host, NAME.vm.DOMAIN the VMs'.
func startInstance(t *testing.T, reg *registry, ca *acmetest.Server, domain string, tlsLn, httpLn net.Listener, configure func(*certs.Config)) *instance {
	t.Helper()
	in := &instance{
		store: &countingStore{CertStore: reg.Store}, logs: &testkit.SyncBuffer{},
		tlsLn: tlsLn, httpLn: httpLn, tlsAddr: tlsLn.Addr().String(),
		mainHost: domain, vmDomain: "vm." + domain, reg: reg, ca: ca,
	}
	c := certs.Config{
		Store: in.store, Registry: reg,
		Domain: domain, VMDomain: in.vmDomain, Email: "ops@example.com",
		Directory: ca.URL, TrustedRoots: ca.Roots, TLSAddr: in.tlsAddr,
		Log:                testkit.Logger(in.logs),
		RenewCheckInterval: time.Minute, LockPoll: 20 * time.Millisecond, LockLease: 3 * time.Second,
	}
	if httpLn != nil {
		in.httpAddr = httpLn.Addr().String()
		c.HTTPAddr = in.httpAddr
	}
	if configure != nil {
		configure(&c)
	}
	mgr, err := certs.New(c)
	if err != nil {
		t.Fatal(err)
	}
	in.mgr = mgr
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) }),
		TLSConfig: mgr.TLSConfig(),
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(tlsLn, "", "")
	var plain *http.Server
	if httpLn != nil {
		plain = &http.Server{Handler: mgr.HTTPHandler(), ErrorLog: log.New(io.Discard, "", 0)}
		go plain.Serve(httpLn)
	}
	t.Cleanup(func() {
		srv.Close()
		if plain != nil {
			plain.Close()
		}
		mgr.Stop()
		if t.Failed() {
			t.Logf("instance %s logs:\n%s", in.tlsAddr, in.logs.String())
		}
	})
	return in
}

// handshake connects to the instance naming host, trusting only pebble's
// root, and returns the certificate it was served.
func (in *instance) handshake(host string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", in.tlsAddr, &tls.Config{ServerName: host, RootCAs: in.ca.RootPool()})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func (in *instance) mustHandshake(t *testing.T, host string) *x509.Certificate {
	t.Helper()
	c, err := in.handshake(host)
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", host, err)
	}
	if err := c.VerifyHostname(host); err != nil {
		t.Fatalf("certificate for %s: %v", host, err)
	}
	return c
}

func (in *instance) vmHost(name string) string { return name + "." + in.vmDomain }

// refusedHandshake says a handshake failed the way a refused name fails: the
// server sent an alert, it did not hang or hand out some certificate.
func refusedHandshake(err error) bool {
	var alert tls.AlertError
	return err != nil && (errors.As(err, &alert) || strings.Contains(err.Error(), "internal error"))
}
