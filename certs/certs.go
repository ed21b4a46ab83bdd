// Package certs obtains and renews exed's own TLS certificates over ACME
// (`exed serve --acme`): one for the main host <domain> and one
// for each VM host NAME.<vm-domain> whose VM exists in the registry, never
// for any other name.
//
// The ACME client is certmagic's. What this package adds around it:
//
//   - the host policy, checked before certmagic sees a name: an unknown or
//     removed VM gets no certificate, costs no ACME order and writes
//     nothing to the store (Manager.GetCertificate);
//   - storage in the registry (store.CertStore): certificates, their keys
//     (sealed when there is a Sealer), the ACME account and challenges in
//     progress are shared by every instance, so a restart or a second
//     instance orders nothing; the store's leased locks make one instance
//     at a time order or renew a given name, and a holder that died lets
//     go when its lease ends;
//   - a limit on new names, counted in the store across instances
//     (Config.Rate an hour; renewals do not count);
//   - the plain-HTTP listener's handler: HTTP-01 challenges, and a 308 to
//     HTTPS for everything else (Manager.HTTPHandler);
//   - Status and Warnings, for the metrics and /readyz.
//
// A VM host's certificate is obtained on the first TLS handshake that
// names it (the handshake waits for the order); the main host's at Start.
// From then on certmagic's maintenance loop renews each certificate in its
// renewal window (a third of its lifetime left, or the CA's ARI window),
// without a restart and without a visit.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"golang.org/x/sync/singleflight"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// LetsEncrypt is the default ACME directory: Let's Encrypt's production CA.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Defaults for the zero values of Config.
const (
	// DefaultRate is --acme-rate's default: new names per hour. Let's
	// Encrypt allows 50 new certificates a week per registered domain (all
	// VM hosts share the vm-domain's), refilled about one every 3.4 hours;
	// 10 an hour absorbs a burst of new VMs without spending a week's
	// budget on a runaway script in less than five hours.
	DefaultRate = 10
	// DefaultRenewCheckInterval is how often the maintenance loop looks for
	// certificates due for renewal (certmagic's default).
	DefaultRenewCheckInterval = certmagic.DefaultRenewCheckInterval
	// DefaultSweepInterval is how often the registry is listed to drop
	// certificates of VMs removed through another instance (this
	// instance's own removals are dropped at once, by Forget), and the
	// main host's certificate is tried again if it is still missing.
	DefaultSweepInterval = 5 * time.Minute
	// DefaultLockLease is how long a lock outlives a holder that stopped
	// renewing it (it died): the longest another instance waits to take
	// over an order. A live holder renews it every third of it.
	DefaultLockLease = 30 * time.Second
	// DefaultLockPoll is how often a held lock is tried again.
	DefaultLockPoll = time.Second
	// DefaultExpiryWarning: a certificate closer than this to its expiry
	// is reported (Status.Expiring, Warnings). Renewal begins with a third
	// of the lifetime left (30 days of Let's Encrypt's 90), so a
	// certificate this close has missed several renewal attempts.
	DefaultExpiryWarning = 7 * 24 * time.Hour

	// manageTimeout bounds loading or obtaining one certificate during a
	// handshake (an ACME order with its validation takes seconds).
	manageTimeout = 2 * time.Minute
	// maxWarnings caps the lines Warnings returns.
	maxWarnings = 20
)

// ErrNotOurs: the name is neither the main host nor the host of a VM that
// exists. No certificate is obtained for it.
var ErrNotOurs = errors.New("certs: not one of this server's names")

// Registry is what the host policy reads: the VMs. store.Store satisfies
// it.
type Registry interface {
	VM(ctx context.Context, name string) (store.VM, error)
	// VMs lists VMs; ownerID "" lists all of them.
	VMs(ctx context.Context, ownerID string) ([]store.VM, error)
}

// Config holds a Manager's dependencies and settings.
type Config struct {
	Store    store.CertStore // blobs and locks, shared by every instance
	Registry Registry        // the host policy's VMs
	Domain   string          // the main host
	VMDomain string          // VM hosts are NAME.VMDomain
	Email    string          // the ACME account's contact (required)
	// Directory is the ACME directory URL; "" is LetsEncrypt. The
	// operator who sets it (or leaves it) agrees to that CA's terms.
	Directory string
	// Rate is the number of new names ordered per hour, at most, across
	// every instance sharing Store; 0 is DefaultRate. Renewals do not
	// count.
	Rate int
	// TLSAddr is the HTTPS listener's address: TLS-ALPN-01 challenges
	// arrive there and are answered by GetCertificate.
	TLSAddr string
	// HTTPAddr is the plain-HTTP listener's address (HTTPHandler serves
	// it), where HTTP-01 challenges arrive; "" offers no HTTP-01.
	HTTPAddr string
	// HTTPOnly answers HTTP-01 only, not TLS-ALPN-01 (tests that pin the
	// challenge type).
	HTTPOnly bool
	// Sealer seals private keys in the store; nil stores them as they are.
	Sealer Sealer
	// TrustedRoots verify the ACME server's HTTPS; nil is the system's.
	TrustedRoots *x509.CertPool
	Log          *slog.Logger // nil → discard

	RenewCheckInterval time.Duration // 0 → DefaultRenewCheckInterval
	SweepInterval      time.Duration // 0 → DefaultSweepInterval
	LockLease          time.Duration // 0 → DefaultLockLease
	LockPoll           time.Duration // 0 → DefaultLockPoll
	ExpiryWarning      time.Duration // 0 → DefaultExpiryWarning
}

// Manager obtains, serves and renews the certificates. Build it with New,
// then Start it; it is safe for concurrent use.
type Manager struct {
	c        Config
	log      *slog.Logger
	domain   string // canonical
	vmSuffix string // "." + canonical VMDomain
	tlsPort  int    // the HTTPS listener's, for redirects

	storage *storage
	rate    *rateLimit
	cache   *certmagic.Cache
	magic   *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	flight  singleflight.Group // one load-or-obtain per name at a time

	ctx    context.Context // canceled by Stop
	cancel context.CancelFunc
	done   chan struct{} // closed when the sweep loop returns
	start  sync.Once

	mu      sync.Mutex
	managed map[string]bool   // hosts this instance serves and renews
	failing map[string]string // host → why its last renewal failed

	obtained, renewed, orderFailures, renewalFailures, rateLimited atomic.Uint64
}

// New returns a Manager for c. It contacts no one: Start does.
func New(c Config) (*Manager, error) {
	switch {
	case c.Store == nil || c.Registry == nil:
		return nil, errors.New("certs: a store and a registry are required")
	case c.Domain == "" || c.VMDomain == "":
		return nil, errors.New("certs: the domain and the VM domain are required")
	case c.Email == "":
		return nil, errors.New("certs: an ACME account email is required")
	case c.Rate < 0:
		return nil, errors.New("certs: the new-name rate must not be negative")
	}
	if c.Directory == "" {
		c.Directory = LetsEncrypt
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.RenewCheckInterval = orDefault(c.RenewCheckInterval, DefaultRenewCheckInterval)
	c.SweepInterval = orDefault(c.SweepInterval, DefaultSweepInterval)
	c.LockLease = orDefault(c.LockLease, DefaultLockLease)
	c.LockPoll = orDefault(c.LockPoll, DefaultLockPoll)
	c.ExpiryWarning = orDefault(c.ExpiryWarning, DefaultExpiryWarning)
	tlsHost, tlsPort, err := splitAddr(c.TLSAddr)
	if err != nil {
		return nil, fmt.Errorf("certs: HTTPS address: %w", err)
	}
	httpPort := 0
	if c.HTTPAddr != "" {
		if _, httpPort, err = splitAddr(c.HTTPAddr); err != nil {
			return nil, fmt.Errorf("certs: HTTP address: %w", err)
		}
	} else if c.HTTPOnly {
		return nil, errors.New("certs: HTTP-01 only, but no HTTP address")
	}

	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		c: c, log: c.Log,
		domain:   tokens.CanonicalHost(c.Domain),
		vmSuffix: "." + tokens.CanonicalHost(c.VMDomain),
		tlsPort:  tlsPort,
		ctx:      ctx, cancel: cancel,
		done:    make(chan struct{}),
		managed: map[string]bool{},
		failing: map[string]string{},
	}
	m.storage = newStorage(c.Store, c.Sealer, time.Now, c.LockLease, c.LockPoll, c.Log)
	m.rate = &rateLimit{s: m.storage, n: c.Rate, now: time.Now}
	zl := zapLogger(c.Log.Handler())
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: c.RenewCheckInterval,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: m.storage,
		// The store is a database: a write that returned was written.
		// certmagic's check would write and delete 10 KiB per order.
		DisableStorageCheck: true,
		OnEvent:             m.onEvent,
		ShouldEmitFunc: func(event string) bool {
			return event == "cert_obtaining" || event == "cert_obtained" || event == "cert_failed"
		},
		Logger: zl,
	})
	// certmagic binds a challenge port itself when nothing listens on it:
	// pointed at exed's own listeners, it finds them busy and leaves the
	// answering to them (GetCertificate for TLS-ALPN-01, HTTPHandler for
	// HTTP-01).
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      c.Directory,
		Email:                   c.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    c.HTTPAddr == "",
		DisableTLSALPNChallenge: c.HTTPOnly,
		ListenHost:              tlsHost,
		AltTLSALPNPort:          tlsPort,
		AltHTTPPort:             httpPort,
		TrustedRoots:            c.TrustedRoots,
		Logger:                  zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, p, nil
}

// Start gets the main host's certificate (from the store, or ordered) in
// the background, and starts the sweep that drops removed VMs'
// certificates. Renewals run from New on.
func (m *Manager) Start() {
	m.start.Do(func() { go m.run() })
}

func (m *Manager) run() {
	{
		defer close(m.done)
		m.manageMain()
		tick := time.NewTicker(m.c.SweepInterval)
		defer tick.Stop()
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-tick.C:
			}
			m.sweep()
			m.manageMain()
		}
	}
}

// manageMain gets the main host's certificate if this instance does not
// serve one yet.
func (m *Manager) manageMain() {
	if m.isManaged(m.domain) {
		return
	}
	if _, err, _ := m.flight.Do(m.domain, func() (any, error) { return nil, m.manage(m.domain) }); err != nil {
		m.log.Warn("tls: no certificate for the main host yet", "host", m.domain, "err", err)
	}
}

// Stop ends the background work and lets go of the locks this instance
// holds. A renewal in progress is given a few seconds to end.
func (m *Manager) Stop() {
	m.cancel()
	m.start.Do(func() { close(m.done) }) // never started: nothing to wait for
	<-m.done
	stopped := make(chan struct{})
	go func() { m.cache.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		m.log.Warn("tls: certificate maintenance still busy at shutdown; leaving it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.storage.releaseAll(ctx)
}

// TLSConfig is the HTTPS listener's configuration: certificates from
// GetCertificate, and the ALPN protocol of TLS-ALPN-01 besides HTTP's.
func (m *Manager) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if !m.c.HTTPOnly {
		protos = append(protos, acmez.ACMETLS1Protocol)
	}
	return &tls.Config{GetCertificate: m.GetCertificate, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// GetCertificate is tls.Config.GetCertificate. A hello without a server
// name gets the main host's certificate. A name that is not exed's gets
// none, at no cost: no order, no store write, no store read beyond one
// VM lookup. A VM host seen for the first time is loaded from the store,
// or ordered (within the rate), while the handshake waits.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := tokens.CanonicalHost(hello.ServerName)
	if name == "" {
		name = m.domain
		h := *hello
		h.ServerName = name
		hello = &h
	}
	if name != m.domain {
		if _, ok := m.vmName(name); !ok {
			return nil, fmt.Errorf("%w: %q", ErrNotOurs, name)
		}
	}
	if isALPNChallenge(hello) {
		// The ACME server validating an order (this instance's or
		// another's): the challenge certificate, from memory or the store.
		return m.magic.GetCertificate(hello)
	}
	if !m.isManaged(name) {
		_, err, _ := m.flight.Do(name, func() (any, error) { return nil, m.manage(name) })
		if err != nil {
			return nil, err
		}
	}
	return m.magic.GetCertificate(hello)
}

// isALPNChallenge reports whether hello is a TLS-ALPN-01 validation
// (RFC 8737: the one protocol acme-tls/1).
func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol
}

// manage checks the host policy for name, then loads its certificate from
// the store or orders one, and from then on serves and renews it. It runs
// under the Manager's context, not a handshake's: a client that gives up
// does not waste an order half made.
func (m *Manager) manage(name string) error {
	ctx, cancel := context.WithTimeout(m.ctx, manageTimeout)
	defer cancel()
	if err := m.allowed(ctx, name); err != nil {
		return err
	}
	if err := m.magic.ManageSync(ctx, []string{name}); err != nil {
		return fmt.Errorf("certs: %s: %w", name, err)
	}
	m.mu.Lock()
	m.managed[name] = true
	m.mu.Unlock()
	return nil
}

// allowed is the host policy: the main host, or the host of a VM that
// exists now.
func (m *Manager) allowed(ctx context.Context, name string) error {
	if name == m.domain {
		return nil
	}
	vm, ok := m.vmName(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotOurs, name)
	}
	if _, err := m.c.Registry.VM(ctx, vm); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no VM %s", ErrNotOurs, vm)
		}
		return fmt.Errorf("certs: look up VM %s: %w", vm, err)
	}
	return nil
}

// vmName returns NAME for a canonical host NAME.<vm-domain> whose NAME is
// a valid VM name.
func (m *Manager) vmName(host string) (string, bool) {
	name, ok := strings.CutSuffix(host, m.vmSuffix)
	if !ok || store.ValidateVMName(name) != nil {
		return "", false
	}
	return name, true
}

func (m *Manager) isManaged(host string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.managed[host]
}

// Forget stops serving and renewing the certificate of the VM called
// name: call it when the VM was removed or changed (store.VMChanged). A
// VM that still exists is loaded again from the store on its next
// handshake, without an order. It is cheap and does not call the store.
func (m *Manager) Forget(name string) { m.forgetHost(name + m.vmSuffix) }

func (m *Manager) forgetHost(host string) {
	m.mu.Lock()
	was := m.managed[host]
	delete(m.managed, host)
	delete(m.failing, host)
	m.mu.Unlock()
	if was {
		m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: host}})
	}
}

// sweep drops the certificates of VMs no longer in the registry (removed
// through another instance or an admin command).
func (m *Manager) sweep() {
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	vms, err := m.c.Registry.VMs(ctx, "")
	if err != nil {
		m.log.Warn("tls: list VMs to drop removed ones' certificates", "err", err)
		return
	}
	exists := make(map[string]bool, len(vms))
	for _, vm := range vms {
		exists[vm.Name+m.vmSuffix] = true
	}
	m.mu.Lock()
	var gone []string
	for host := range m.managed {
		if host != m.domain && !exists[host] {
			gone = append(gone, host)
		}
	}
	m.mu.Unlock()
	for _, host := range gone {
		m.log.Info("tls: VM removed: no longer serving or renewing its certificate", "host", host)
		m.forgetHost(host)
	}
}

// onEvent is certmagic's event hook. Before an order (cert_obtaining) it
// checks the host policy again (a VM may have gone since, perhaps through
// another instance: neither a new order nor a renewal for it) and, for a
// new name, takes one from the rate limit. Refusals carry ErrNoRetry, so
// that certmagic does not try again by itself.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		if err := m.allowed(ctx, name); err != nil {
			if renewal && errors.Is(err, ErrNotOurs) {
				go m.forgetHost(name) // certmagic is in the middle of it: not from here
			}
			return certmagic.ErrNoRetry{Err: err}
		}
		if !renewal {
			if err := m.rate.take(ctx); err != nil {
				if errors.Is(err, ErrRateLimited) {
					m.rateLimited.Add(1)
					m.log.Warn("tls: new-name order refused: --acme-rate reached", "host", name, "per_hour", m.c.Rate)
				}
				return certmagic.ErrNoRetry{Err: err}
			}
		}
	case "cert_obtained":
		if renewal {
			m.renewed.Add(1)
			m.mu.Lock()
			delete(m.failing, name)
			m.mu.Unlock()
			m.log.Info("tls certificate renewed", "host", name)
		} else {
			m.obtained.Add(1)
			m.log.Info("tls certificate obtained", "host", name)
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		why := "unknown error"
		if err != nil {
			why = err.Error()
		}
		if renewal {
			m.renewalFailures.Add(1)
			m.mu.Lock()
			m.failing[name] = why
			m.mu.Unlock()
			m.log.Warn("tls: certificate renewal failed", "host", name, "err", why)
		} else {
			m.orderFailures.Add(1)
			m.log.Warn("tls: certificate order failed", "host", name, "err", why)
		}
	}
	return nil
}

// Status is what the metrics export. metrics.CertStatus has the same
// fields, in the same order, so that serve converts one to the other
// (metrics does not link this package): change both together.
type Status struct {
	Managed  int // certificates this instance serves and renews
	Expiring int // of those, closer to expiry than Config.ExpiryWarning
	Failing  int // of those, whose last renewal failed (and none succeeded since)
	// SoonestExpiry is the earliest NotAfter among them; zero when none.
	SoonestExpiry time.Time

	// Counted since start, by this instance.
	Obtained, Renewed, OrderFailures, RenewalFailures, RateLimited uint64
}

// certState is one managed host's certificate, as served now.
type certState struct {
	host     string
	notAfter time.Time // zero: not in the cache (being reloaded)
	failing  string
}

func (m *Manager) states() []certState {
	m.mu.Lock()
	hosts := make([]certState, 0, len(m.managed))
	for host := range m.managed {
		hosts = append(hosts, certState{host: host, failing: m.failing[host]})
	}
	m.mu.Unlock()
	for i := range hosts {
		for _, c := range m.cache.AllMatchingCertificates(hosts[i].host) {
			if c.Leaf != nil && c.Leaf.NotAfter.After(hosts[i].notAfter) {
				hosts[i].notAfter = c.Leaf.NotAfter
			}
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].host < hosts[j].host })
	return hosts
}

// Status reports the certificates this instance serves.
func (m *Manager) Status() Status {
	s := Status{
		Obtained: m.obtained.Load(), Renewed: m.renewed.Load(),
		OrderFailures: m.orderFailures.Load(), RenewalFailures: m.renewalFailures.Load(),
		RateLimited: m.rateLimited.Load(),
	}
	soon := time.Now().Add(m.c.ExpiryWarning)
	for _, st := range m.states() {
		s.Managed++
		if st.failing != "" {
			s.Failing++
		}
		if st.notAfter.IsZero() {
			continue
		}
		if st.notAfter.Before(soon) {
			s.Expiring++
		}
		if s.SoonestExpiry.IsZero() || st.notAfter.Before(s.SoonestExpiry) {
			s.SoonestExpiry = st.notAfter
		}
	}
	return s
}

// Warnings says, one line each, what needs an operator: a certificate
// close to expiry, a renewal that failed, no certificate yet for the main
// host. None of it makes the instance unready: it still serves, and
// instances sharing a store share their certificates, so failing
// readiness on them would take every instance out of a load balancer at
// once.
func (m *Manager) Warnings() []string {
	var w []string
	if !m.isManaged(m.domain) {
		w = append(w, fmt.Sprintf("tls: no certificate for the main host %s yet", m.domain))
	}
	now := time.Now()
	for _, st := range m.states() {
		if !st.notAfter.IsZero() && st.notAfter.Sub(now) < m.c.ExpiryWarning {
			left := st.notAfter.Sub(now)
			if left <= 0 {
				w = append(w, fmt.Sprintf("tls: certificate for %s expired at %s", st.host, st.notAfter.UTC().Format(time.RFC3339)))
			} else {
				w = append(w, fmt.Sprintf("tls: certificate for %s expires in %s", st.host, left.Round(time.Second)))
			}
		}
		if st.failing != "" {
			w = append(w, fmt.Sprintf("tls: renewal of the certificate for %s failed: %s", st.host, st.failing))
		}
	}
	if len(w) > maxWarnings {
		w = append(w[:maxWarnings], fmt.Sprintf("… and %d more", len(w)-maxWarnings))
	}
	return w
}

// HTTPHandler serves the plain-HTTP listener (--http-redirect-addr):
// HTTP-01 challenges (this instance's or another's, from the store), and
// RedirectHandler's 308 for every other request.
func (m *Manager) HTTPHandler() http.Handler {
	return m.issuer.HTTPChallengeHandler(RedirectHandler(m.tlsPort))
}

// RedirectHandler answers every request with a 308 to the same host, path
// and query over HTTPS on tlsPort (left out when 443). A request without
// a usable Host gets 400.
func RedirectHandler(tlsPort int) http.Handler {
	port := ""
	if tlsPort != 443 {
		port = ":" + strconv.Itoa(tlsPort)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := tokens.CanonicalHost(r.Host)
		if host == "" || strings.ContainsAny(host, "/?#@\\ ") {
			http.Error(w, "no usable Host header", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "https://"+host+port+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
