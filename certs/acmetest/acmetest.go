// Package acmetest runs a real ACME CA in the test process, without the
// internet: Let's Encrypt's pebble (its ca, db, va and wfe packages, wired
// as its cmd/pebble does), with challtestsrv's DNS server answering
// 127.0.0.1 for every name, so that pebble's validation authority reaches
// the server under test on loopback ports the test chooses.
//
// The CA counts what it was asked for (orders per name, renewals,
// validated challenges), read from its HTTP front and its database, so
// that a test can say "no order was made for that name".
//
// It is a test helper: it sets pebble's environment knobs (no validation
// sleeps, no bad-nonce chaos, no authorization reuse) around pebble's
// constructors, which read nothing else.
package acmetest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options configure the CA's validation authority and its certificates.
type Options struct {
	// TLSPort is where TLS-ALPN-01 is validated, HTTPPort where HTTP-01
	// is, on 127.0.0.1 (every name resolves there). A port where nothing
	// listens makes that challenge type fail.
	TLSPort, HTTPPort int
	// Validity is the certificates' lifetime; 0 is pebble's (90 days).
	// Whole seconds.
	Validity time.Duration
}

// startWait bounds how long an ACME request waits for Start.
const startWait = time.Minute

// Server is an in-process ACME CA. Its directory answers from New on; the
// requests it gets before Start wait for it (the server under test may
// ask before its own ports, which the validation authority needs, are
// known).
type Server struct {
	// URL is the ACME directory.
	URL string
	// Roots trusts the directory's own HTTPS (for the ACME client).
	Roots *x509.CertPool
	// TLSCertPEM is the directory's HTTPS certificate, PEM: a file of it
	// as SSL_CERT_FILE makes a Go subprocess trust the directory.
	TLSCertPEM []byte

	t     testing.TB
	https *httptest.Server
	dns   *challtestsrv.ChallSrv
	dnsAt string
	ready chan struct{}

	// Set by Start, before ready is closed.
	db  *db.MemoryStore
	ca  *ca.CAImpl
	wfe http.Handler

	refuse atomic.Bool // repeat orders refused (RefuseRepeatOrders)

	mu       sync.Mutex
	orders   map[string]int // identifier → new orders accepted (201)
	renewals map[string]int // of those, orders that replace a certificate (ARI)
	chals    map[string]*core.Challenge
}

// New starts the CA's HTTPS front and DNS server; Start completes it.
// Everything stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		ready:    make(chan struct{}),
		orders:   map[string]int{},
		renewals: map[string]int{},
		chals:    map[string]*core.Challenge{},
	}
	s.startDNS(t)
	s.https = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.https.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.https.StartTLS()
	t.Cleanup(s.https.Close)
	s.URL = s.https.URL + wfe.DirectoryPath
	s.Roots = x509.NewCertPool()
	s.Roots.AddCert(s.https.Certificate())
	s.TLSCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.https.Certificate().Raw})
	return s
}

// Run is New then Start.
func Run(t testing.TB, o Options) *Server {
	t.Helper()
	s := New(t)
	s.Start(o)
	return s
}

// envMu serialises the CA constructors' reading of the environment.
var envMu sync.Mutex

// pebbleEnv: validations at full speed, every nonce honoured, every order
// validated afresh (no reuse of an earlier authorization), so that counts
// and challenge types are exact.
var pebbleEnv = map[string]string{
	"PEBBLE_VA_NOSLEEP":      "1",
	"PEBBLE_WFE_NONCEREJECT": "0",
	"PEBBLE_AUTHZREUSE":      "0",
}

// Start builds the CA with o and lets the waiting requests through. Call
// it once.
func (s *Server) Start(o Options) {
	logger := log.New(io.Discard, "", 0)
	if os.Getenv("EXED_TEST_PEBBLE_LOG") != "" {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(o.Validity / time.Second)}}
	envMu.Lock()
	saved := map[string]*string{}
	for k, v := range pebbleEnv {
		if old, ok := os.LookupEnv(k); ok {
			saved[k] = &old
		} else {
			saved[k] = nil
		}
		os.Setenv(k, v)
	}
	s.db = db.NewMemoryStore()
	s.ca = ca.New(logger, s.db, "", "ecdsa", 0, 1, profiles)
	v := va.New(logger, o.HTTPPort, o.TLSPort, false, s.dnsAt, s.db)
	front := wfe.New(logger, s.db, v, s.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	for k, old := range saved {
		if old == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *old)
		}
	}
	envMu.Unlock()
	s.wfe = front.Handler()
	close(s.ready)
}

// serve waits for Start, then counts and passes the request to pebble.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
	case <-r.Context().Done():
		return
	case <-time.After(startWait):
		http.Error(w, "acmetest: not started", http.StatusServiceUnavailable)
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if r.URL.Path == "/order-plz" && s.refuse.Load() && s.orderedBefore(body) {
		// Not retryable (a 4xx other than badNonce): the client's attempt
		// ends at once.
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:unauthorized","detail":"acmetest: refusing repeat orders","status":403}`)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.wfe.ServeHTTP(rec, r)
	switch {
	case r.URL.Path == "/order-plz" && rec.status == http.StatusCreated:
		s.countOrder(body)
	case strings.HasPrefix(r.URL.Path, "/chalZ/"):
		if chal := s.db.GetChallengeByID(strings.TrimPrefix(r.URL.Path, "/chalZ/")); chal != nil {
			s.mu.Lock()
			s.chals[chal.ID] = chal
			s.mu.Unlock()
		}
	}
}

// orderIdentifiers reads a new order's identifiers, and whether it
// replaces a certificate, from its JWS payload.
func orderIdentifiers(body []byte) (ids []string, replaces bool) {
	var jws struct {
		Payload string `json:"payload"`
	}
	var order struct {
		Identifiers []struct{ Value string } `json:"identifiers"`
		Replaces    string                   `json:"replaces"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil || json.Unmarshal(payload, &order) != nil {
		return nil, false
	}
	for _, id := range order.Identifiers {
		ids = append(ids, id.Value)
	}
	return ids, order.Replaces != ""
}

// countOrder records an accepted order.
func (s *Server) countOrder(body []byte) {
	ids, replaces := orderIdentifiers(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.orders[id]++
		if replaces {
			s.renewals[id]++
		}
	}
}

// orderedBefore reports whether an order names an identifier already
// ordered.
func (s *Server) orderedBefore(body []byte) bool {
	ids, _ := orderIdentifiers(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.orders[id] > 0 {
			return true
		}
	}
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// RefuseRepeatOrders makes the CA refuse (403 unauthorized) every order
// naming an identifier it accepted an order for before: renewals fail,
// first orders go through. False accepts them again.
func (s *Server) RefuseRepeatOrders(refuse bool) { s.refuse.Store(refuse) }

// Orders is the number of orders the CA accepted naming name (renewals
// included).
func (s *Server) Orders(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orders[name]
}

// Renewals is the number of those orders that replaced a certificate.
func (s *Server) Renewals(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewals[name]
}

// TotalOrders is the number of orders the CA accepted, for any name.
func (s *Server) TotalOrders() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.orders {
		n += c
	}
	return n
}

// Validated lists, for each challenge the client asked the CA to validate
// for name, its type and final status ("tls-alpn-01 valid",
// "http-01 invalid", …), in no particular order.
func (s *Server) Validated(name string) []string {
	s.mu.Lock()
	chals := make([]*core.Challenge, 0, len(s.chals))
	for _, c := range s.chals {
		chals = append(chals, c)
	}
	s.mu.Unlock()
	var out []string
	for _, c := range chals {
		c.RLock()
		authz, typ, status := c.Authz, c.Type, c.Status
		c.RUnlock()
		authz.RLock()
		id := authz.Identifier.Value
		authz.RUnlock()
		if id == name {
			out = append(out, typ+" "+status)
		}
	}
	return out
}

// RootPEM is the CA's root certificate, PEM (curl --cacert); after Start.
func (s *Server) RootPEM() []byte {
	<-s.ready
	return s.ca.GetRootCert(0).PEM()
}

// RootPool is the CA's root as a pool, for a Go client; after Start.
func (s *Server) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.RootPEM())
	return p
}

// startDNS runs challtestsrv's DNS server (UDP and TCP) on a free
// loopback port, answering A 127.0.0.1 for every name and no AAAA (the
// servers under test listen on 127.0.0.1 only). challtestsrv binds an
// address it is given, so a free port is found first and the server is
// probed until it answers; a port taken in between is given up for
// another.
func (s *Server) startDNS(t testing.TB) {
	t.Helper()
	for range 5 {
		addr, err := freeUDPAndTCPPort()
		if err != nil {
			t.Fatalf("acmetest: find a port for DNS: %v", err)
		}
		srv, err := challtestsrv.New(challtestsrv.Config{Log: log.New(io.Discard, "", 0), DNSAddrs: []string{addr}})
		if err != nil {
			t.Fatalf("acmetest: DNS server: %v", err)
		}
		srv.SetDefaultDNSIPv4("127.0.0.1")
		srv.SetDefaultDNSIPv6("")
		srv.Run()
		if answers(addr) {
			s.dns, s.dnsAt = srv, addr
			t.Cleanup(srv.Shutdown)
			return
		}
		srv.Shutdown()
	}
	t.Fatal("acmetest: the DNS server did not start")
}

// answers polls a DNS server over TCP (as pebble's VA asks) until it
// answers an A query with 127.0.0.1, for a few seconds.
func answers(addr string) bool {
	c := &dns.Client{Net: "tcp", Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion("probe.acmetest.", dns.TypeA)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if in, _, err := c.ExchangeContext(ctx, q, addr); err == nil && len(in.Answer) == 1 {
			if a, ok := in.Answer[0].(*dns.A); ok && a.A.String() == "127.0.0.1" {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// freeUDPAndTCPPort returns 127.0.0.1:PORT with PORT free for both.
func freeUDPAndTCPPort() (string, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no port free for both UDP and TCP")
}
