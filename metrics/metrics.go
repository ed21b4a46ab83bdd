// Package metrics is what operators watch exed by: the Prometheus
// collectors for token verification, the HTTP front, the SSH server, the
// store and the last-used writer, and the admin HTTP handler that serves
// them with /healthz and /readyz on a listener of its own (never the public
// one).
//
// Prometheus stays out of keys, tokens and store: they offer small hooks
// (tokens.Config.OnVerify, Verifier.CacheStats, LastUsedWriter.Backlog) and
// this package fills them; store latency is measured by a decorator around
// store.Store. Every method works on a nil *Metrics and does nothing, so
// the packages that report (proxy, sshserver) need no metrics to run.
//
// Label values come only from fixed sets: status codes and classes the
// server chose, canonical command paths from sshcmd's command table,
// tokens.Reason values, store method names. Never a token, an email or
// anything else a client typed.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/exed-dev/exed/tokens"
)

// namespace prefixes every exed series: exed_….
const namespace = "exed"

// Label values used where the real value is absent or unknown.
const (
	resultOK       = "ok"      // a verification that passed; a store call that worked
	resultError    = "error"   // a store call that failed (not a "not found")
	commandUnknown = "unknown" // /exec: no command resolved (unknown, or refused before)
)

// storeBuckets spans a store call: microseconds for an SQLite lookup in
// the page cache, to seconds for a PostgreSQL round trip under load.
var storeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// proxyBuckets spans a proxied request, from a cached 401 to a slow
// upstream; longer streams (downloads, git) land in +Inf.
var proxyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// reasons are every tokens.Reason, so each result series exists (at 0)
// from the start and rate() sees the first failure.
var reasons = []tokens.Reason{
	tokens.ReasonMalformed, tokens.ReasonNamespace, tokens.ReasonUnknownKey,
	tokens.ReasonBadSignature, tokens.ReasonExpired, tokens.ReasonNotYetValid,
	tokens.ReasonRestricted, tokens.ReasonVM, tokens.ReasonNotGranted, tokens.ReasonInternal,
	tokens.ReasonThrottled,
}

// Metrics holds exed's collectors in a registry of its own (never the
// process-wide default one). Build it with New; it is safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry

	verifications *prometheus.CounterVec               // result
	byResult      map[tokens.Reason]prometheus.Counter // every result, resolved once ("" is ok); read-only

	proxyRequests *prometheus.CounterVec   // class
	proxyDuration *prometheus.HistogramVec // class
	byClass       [len(classes)]struct {   // resolved once, indexed like classes
		requests prometheus.Counter
		duration prometheus.Observer
	}
	faRequests *prometheus.CounterVec   // class
	faDuration *prometheus.HistogramVec // class
	faByClass  [len(classes)]struct {   // resolved once, indexed like classes
		requests prometheus.Counter
		duration prometheus.Observer
	}
	execRequests *prometheus.CounterVec // command, code

	sshConns        prometheus.Counter
	sshOpen         prometheus.Gauge
	sshSessions     prometheus.Counter
	sshAuthFailures prometheus.Counter
	sshCommands     *prometheus.CounterVec // command, exit

	storeDuration *prometheus.HistogramVec // method, result
}

// New returns Metrics with every exed collector, plus the Go runtime and
// process collectors, registered in a fresh registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "token_verifications_total",
		Help: "Token verifications (proxy, /exec, exe0-to-exe1) by result: ok or the tokens.Reason of the refusal. A removed (revoked) key counts as unknown_key.",
	}, []string{"result"})
	m.proxyRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "proxy_requests_total",
		Help: "Requests to VM hosts through the auth proxy, by status class (2xx, 4xx…).",
	}, []string{"class"})
	m.proxyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "proxy_request_duration_seconds",
		Help:    "Time from a VM request's arrival to the end of its response, by status class.",
		Buckets: proxyBuckets,
	}, []string{"class"})
	m.faRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "forward_auth_requests_total",
		Help: "Questions a front proxy asked the forward-auth listener (GET /auth), by status class of the answer (2xx: let through, 4xx: refused).",
	}, []string{"class"})
	m.faDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "forward_auth_request_duration_seconds",
		Help:    "Time to answer a forward-auth question, by status class.",
		Buckets: proxyBuckets,
	}, []string{"class"})
	m.execRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "exec_requests_total",
		Help: "POST /exec calls by canonical command path (unknown when none resolved) and status code.",
	}, []string{"command", "code"})
	m.sshConns = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "ssh_connections_total",
		Help: "SSH connections accepted.",
	})
	m.sshOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ssh_connections_open",
		Help: "SSH connections open now.",
	})
	m.sshSessions = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "ssh_sessions_total",
		Help: "SSH sessions started (one per command or REPL).",
	})
	m.sshAuthFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "ssh_auth_failures_total",
		Help: "SSH authentication attempts refused (one per key offered and refused, or per other method tried).",
	})
	m.sshCommands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "ssh_commands_total",
		Help: "Commands run over SSH by canonical command path (unknown when none resolved) and exit status.",
	}, []string{"command", "exit"})
	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "store_query_duration_seconds",
		Help:    "Registry calls by store method and result (ok includes a not-found answer; error is a failed call).",
		Buckets: storeBuckets,
	}, []string{"method", "result"})

	m.reg.MustRegister(
		m.verifications, m.proxyRequests, m.proxyDuration, m.faRequests, m.faDuration, m.execRequests,
		m.sshConns, m.sshOpen, m.sshSessions, m.sshAuthFailures, m.sshCommands,
		m.storeDuration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Resolving the fixed label sets once keeps the request path to one
	// atomic add, and makes every series exist (at 0) from the start.
	m.byResult = map[tokens.Reason]prometheus.Counter{"": m.verifications.WithLabelValues(resultOK)}
	for _, r := range reasons {
		m.byResult[r] = m.verifications.WithLabelValues(string(r))
	}
	for i, class := range classes {
		m.byClass[i].requests = m.proxyRequests.WithLabelValues(class)
		m.byClass[i].duration = m.proxyDuration.WithLabelValues(class)
		m.faByClass[i].requests = m.faRequests.WithLabelValues(class)
		m.faByClass[i].duration = m.faDuration.WithLabelValues(class)
	}
	return m
}

// Registry is the registry the collectors live in, for the admin handler
// and for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WatchVerifierCache exports the token cache's counters, read at scrape
// time from stats (tokens.Verifier.CacheStats).
func (m *Metrics) WatchVerifierCache(stats func() (hits, misses uint64, size int)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_cache_hits_total",
			Help: "Verifications answered from the verified-token cache.",
		}, func() float64 { h, _, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_cache_misses_total",
			Help: "Verifications that had to ask the registry and check the signature.",
		}, func() float64 { _, mi, _ := stats(); return float64(mi) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "token_cache_entries",
			Help: "Verified tokens held in the cache now.",
		}, func() float64 { _, _, n := stats(); return float64(n) }),
	)
}

// WatchLastUsedBacklog exports the number of key uses noted but not yet
// written, read at scrape time from backlog (store.LastUsedWriter.Backlog).
// It grows while the registry refuses writes.
func (m *Metrics) WatchLastUsedBacklog(backlog func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "last_used_backlog",
		Help: "Keys whose last use is noted but not yet written to the registry.",
	}, func() float64 { return float64(backlog()) }))
}

// CertStatus is the state of the TLS certificates exed obtains itself
// (--acme): certs.Status, field for field, so that a certs.Status
// converts to it (metrics does not link the ACME client). See certs.Status
// for what each field counts.
type CertStatus struct {
	Managed, Expiring, Failing int
	SoonestExpiry              time.Time

	Obtained, Renewed, OrderFailures, RenewalFailures, RateLimited uint64
}

// WatchCertificates exports the state of the TLS certificates exed
// obtains itself (--acme), read at scrape time from status
// (certs.Manager.Status, converted). The gauges to alert on are
// exed_tls_certificates_expiring (closer to expiry than certs'
// ExpiryWarning, 7 days) and exed_tls_certificates_renewal_failing. No
// label names a host: VM names are users' input.
func (m *Metrics) WatchCertificates(status func() CertStatus) {
	if m == nil {
		return
	}
	gauge := func(name, help string, f func(CertStatus) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return f(status()) })
	}
	// One family, one collector per result: Prometheus accepts several
	// CounterFuncs of one name and help that differ in a constant label.
	orders := func(result string, f func(CertStatus) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "acme_orders_total",
			Help:        "ACME certificate orders by this instance, by result: obtained (a new name), renewed, failed (a new name or a renewal), rate_limited (a new name refused by --acme-rate: no order made).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(f(status())) })
	}
	m.reg.MustRegister(
		gauge("tls_certificates_managed", "TLS certificates this instance serves and renews (the main host and VM hosts visited).",
			func(s CertStatus) float64 { return float64(s.Managed) }),
		gauge("tls_certificates_expiring", "Of those, certificates closer than 7 days to expiry: several renewals have failed.",
			func(s CertStatus) float64 { return float64(s.Expiring) }),
		gauge("tls_certificates_renewal_failing", "Of those, certificates whose last renewal failed.",
			func(s CertStatus) float64 { return float64(s.Failing) }),
		gauge("tls_certificate_soonest_expiry_timestamp_seconds", "When the first of those certificates expires (unix time); 0 when there are none.",
			func(s CertStatus) float64 {
				if s.SoonestExpiry.IsZero() {
					return 0
				}
				return float64(s.SoonestExpiry.Unix())
			}),
	)
	m.reg.MustRegister(
		orders("obtained",
			func(s CertStatus) uint64 { return s.Obtained }),
		orders("renewed",
			func(s CertStatus) uint64 { return s.Renewed }),
		orders("failed",
			func(s CertStatus) uint64 { return s.OrderFailures + s.RenewalFailures }),
		orders("rate_limited",
			func(s CertStatus) uint64 { return s.RateLimited }),
	)
}

// TokenVerified counts one verification: reason is "" for a valid token.
// It has tokens.Config.OnVerify's signature.
func (m *Metrics) TokenVerified(reason tokens.Reason) {
	if m == nil {
		return
	}
	if c, ok := m.byResult[reason]; ok {
		c.Inc()
		return
	}
	m.verifications.WithLabelValues(string(reason)).Inc() // a Reason added to tokens since
}

// ProxyRequest counts one request to a VM host that ended with status
// after d.
func (m *Metrics) ProxyRequest(status int, d time.Duration) {
	if m == nil {
		return
	}
	c := &m.byClass[classIndex(status)]
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}

// ForwardAuthRequest counts one forward-auth question that was answered
// with status after d. They are not proxy requests: the front proxy, not
// exed, then forwards the request (or not), and their time ends with the
// answer, not with the VM's response.
func (m *Metrics) ForwardAuthRequest(status int, d time.Duration) {
	if m == nil {
		return
	}
	c := &m.faByClass[classIndex(status)]
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}

// ExecRequest counts one /exec call. command must be a canonical path
// from sshcmd's command table (Invocation.Path), or "" when none resolved.
func (m *Metrics) ExecRequest(command string, status int) {
	if m == nil {
		return
	}
	if command == "" {
		command = commandUnknown
	}
	m.execRequests.WithLabelValues(command, strconv.Itoa(status)).Inc()
}

// SSHConnOpened counts an accepted SSH connection; call SSHConnClosed
// when it ends.
func (m *Metrics) SSHConnOpened() {
	if m == nil {
		return
	}
	m.sshConns.Inc()
	m.sshOpen.Inc()
}

// SSHConnClosed notes the end of a connection counted by SSHConnOpened.
func (m *Metrics) SSHConnClosed() {
	if m == nil {
		return
	}
	m.sshOpen.Dec()
}

// SSHSession counts one SSH session.
func (m *Metrics) SSHSession() {
	if m == nil {
		return
	}
	m.sshSessions.Inc()
}

// SSHAuthFailure counts one refused authentication attempt.
func (m *Metrics) SSHAuthFailure() {
	if m == nil {
		return
	}
	m.sshAuthFailures.Inc()
}

// SSHCommand counts one command run over SSH. command must be a canonical
// path from sshcmd's command table, or "" when none resolved.
func (m *Metrics) SSHCommand(command string, exit int) {
	if m == nil {
		return
	}
	if command == "" {
		command = commandUnknown
	}
	m.sshCommands.WithLabelValues(command, strconv.Itoa(exit)).Inc()
}

// classes are the status class labels, indexed by status/100.
var classes = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// classIndex maps a status code to its index in classes: 1…5 for
// "1xx"…"5xx", 0 ("other") for a code outside 100–599.
func classIndex(status int) int {
	if c := status / 100; status >= 100 && c < len(classes) {
		return c
	}
	return 0
}

// statusClass is the class label of a status code.
func statusClass(status int) string { return classes[classIndex(status)] }
