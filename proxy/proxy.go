// Package proxy is exed's HTTP front: the auth proxy in front of each VM's
// web server (NAME.<vm-domain>) and the /exec API on <domain> that runs the
// SSH command suite from a POST body, and the routes by which a browser
// logs in to reach a private VM (login.go).
//
// A request's path through the package: host → route → carrier → verify →
// rewrite headers → upstream, each step one function (canonicalHost, route,
// findToken, Verifier.Verify, rewrite, the ReverseProxy), with the signed
// identity assertion made in one place (assertion.go).
package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/metrics"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// Defaults for the zero values of Config.
const (
	// DefaultExecTimeout bounds one /exec command: past it, 504.
	DefaultExecTimeout = 30 * time.Second
	// DefaultExecRate and DefaultExecBurst limit /exec per signing key:
	// one command a second, in bursts of up to 60; past them, 429.
	DefaultExecRate  rate.Limit = 1
	DefaultExecBurst            = 60
	// DefaultExecBodyTimeout bounds reading a /exec body, one command
	// line, which a real client sends right behind its headers.
	DefaultExecBodyTimeout = 10 * time.Second
)

// Registry is what the handler reads and writes in the store itself: VMs
// by name, with their shares, through a short-lived cache (see
// Handler.ForgetVM), share links redeemed (see redeemShareLink), and the
// key a browser session was logged in with (the web page's caller, see
// web.go). Tokens are checked by the Verifier, and /exec and web page
// commands run by the Suite, over their own views of the store.
// store.Store satisfies it.
type Registry interface {
	VM(ctx context.Context, name string) (store.VM, error)
	UseShareLink(ctx context.Context, vm string, id []byte, userID string, at time.Time, e store.Event) (store.ShareLink, error)
	Key(ctx context.Context, fingerprint string) (store.Key, error)
}

// Config holds the handler's dependencies, passed in explicitly.
type Config struct {
	Store    Registry
	Verifier *tokens.Verifier
	Suite    *sshcmd.Suite         // /exec runs commands through it
	LastUsed *store.LastUsedWriter // Touch(fp) on each successful verification; may be nil
	Domain   string                // "exe.dev": API host, namespace v0@Domain
	VMDomain string                // "exe.xyz": VM hosts NAME.VMDomain, namespace v0@NAME.VMDomain
	Log      *slog.Logger          // nil → discard
	Now      func() time.Time      // nil → time.Now
	Metrics  *metrics.Metrics      // VM requests by status class, /exec calls; nil → none
	// AccessLog, when set, is the writer under Log's handler: the proxy
	// then writes its access lines (one per request for a VM host) to it
	// directly, byte for byte as slog.NewTextHandler (with AccessLogJSON,
	// slog.NewJSONHandler) with no options, attributes or groups writes
	// them, for a fraction of slog's cost (accesslog.go); Log still
	// decides whether a level is logged. nil → the lines go through Log.
	// Each line is one Write, so it must be safe for concurrent use, as
	// Log's writer is.
	AccessLog     io.Writer
	AccessLogJSON bool
	// HSTS sends Strict-Transport-Security (HSTSValue) on every answer from
	// the API host: set it when the front serves TLS. VM hosts answer
	// with what their upstream sends.
	HSTS bool
	// Assertions signs X-ExeDev-Jwt-Assertion for every request forwarded
	// with an identity and serves the JWKS; nil → neither (--assertion=false).
	Assertions *assertion.Issuer

	ExecTimeout time.Duration // 0 → DefaultExecTimeout
	ExecRate    rate.Limit    // per signing key; 0 → DefaultExecRate
	ExecBurst   int           // 0 → DefaultExecBurst
	// ExecBodyTimeout bounds reading a /exec body; 0 → DefaultExecBodyTimeout.
	ExecBodyTimeout time.Duration

	Transport http.RoundTripper // to the VMs' upstreams; nil → NewTransport()

	// Browser sessions (see login.go). Sessions nil turns them off: every
	// browser then gets the 401 challenge, as every other client does.
	Sessions        store.SessionStore
	SessionLastUsed *store.LastUsedWriter // Touch on each use of a session; may be nil
	// SSHHost and SSHPort are the SSH address users reach this server at,
	// for the `ssh … browser` line the login pages show ("" → Domain; 0 or
	// 22 → no -p).
	SSHHost string
	SSHPort int
}

// HSTSValue is the Strict-Transport-Security header of the API host: a
// year, and no includeSubDomains: <domain> is the operator's own name,
// whose other subdomains (a mail host, a status page) exed knows nothing
// of and must not force onto HTTPS; the VM hosts live under the separate
// <vm-domain>. No preload either: that is the operator's decision to
// submit, not a default.
const HSTSValue = "max-age=31536000"

// Handler is the HTTP front. It is an http.Handler; build it with New.
type Handler struct {
	c        Config
	ns       tokens.Namespaces // canonical Domain and VMDomain
	domain   string            // canonical Domain
	vmSuffix string            // "." + canonical VMDomain
	vms      *vmCache
	limits   *limiters
	rp       *httputil.ReverseProxy // to every VM; per-request data rides in the context
	sessions *sessionCache          // nil: no browser sessions
	cop      *http.CrossOriginProtection
	pages    pages
	lines    sync.Pool // *[]byte: buffers of access lines (accesslog.go)
}

// New returns the HTTP front for c.
func New(c Config) *Handler {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ExecTimeout <= 0 {
		c.ExecTimeout = DefaultExecTimeout
	}
	if c.ExecRate == 0 {
		c.ExecRate = DefaultExecRate
	}
	if c.ExecBurst <= 0 {
		c.ExecBurst = DefaultExecBurst
	}
	if c.ExecBodyTimeout <= 0 {
		c.ExecBodyTimeout = DefaultExecBodyTimeout
	}
	if c.Transport == nil {
		c.Transport = NewTransport()
	}
	errLog := slog.NewLogLogger(c.Log.Handler(), slog.LevelWarn) // ReverseProxy's own errors
	ns := tokens.Namespaces{Domain: tokens.CanonicalHost(c.Domain), VMDomain: tokens.CanonicalHost(c.VMDomain)}
	h := &Handler{
		c:        c,
		ns:       ns,
		domain:   ns.Domain,
		vmSuffix: "." + ns.VMDomain,
		vms:      newVMCache(c.Store, c.Now, ns),
		limits:   newLimiters(c.ExecRate, c.ExecBurst),
		rp:       newReverseProxy(c.Transport, &bufferPool{}, errLog),
		cop:      http.NewCrossOriginProtection(),
		pages:    parsePages(c.Now),
	}
	h.lines.New = func() any { b := make([]byte, 0, accessLineCap); return &b }
	if c.Sessions != nil {
		h.sessions = newSessionCache(c.Sessions, c.Now)
	}
	return h
}

// ForgetVM drops what the handler has cached about the VM called name, so
// that the next request to it reads the registry again: call it when the VM
// was added, removed or changed (store.VMChanged), or who it is shared
// with changed (store.ShareChanged). Without it a change is seen within the
// cache's one-second TTL.
func (h *Handler) ForgetVM(name string) { h.vms.forget(name) }

// ForgetAll drops everything the handler has cached about VMs and
// sessions: call it when changes may have gone unheard (store.AllChanged,
// announced when the store's notifications from other instances were
// interrupted).
func (h *Handler) ForgetAll() {
	h.vms.forgetAll()
	h.ForgetSessions(store.Change{Kind: store.AllChanged})
}

// ServeHTTP routes on the canonical host: <Domain> → API, NAME.<VMDomain>
// → that VM's proxy, anything else → 404 naming the hosts served.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := tokens.CanonicalHost(r.Host)
	// An absolute-form target ("GET http://a/ HTTP/1.1") naming another
	// host than Host must not be routed by one and authorised by the other.
	if r.URL.Host != "" && tokens.CanonicalHost(r.URL.Host) != host {
		http.Error(w, "request target and Host header disagree", http.StatusBadRequest)
		return
	}
	if host == h.domain {
		if h.c.HSTS {
			w.Header().Set("Strict-Transport-Security", HSTSValue)
		}
		h.serveAPI(w, r)
		return
	}
	if name, ok := h.vmName(host); ok {
		h.serveVM(w, r, name)
		return
	}
	h.serveUnknownHost(w, r, host)
}

// vmName returns NAME for a canonical host NAME.<VMDomain> with a valid VM name.
func (h *Handler) vmName(host string) (string, bool) {
	name, ok := strings.CutSuffix(host, h.vmSuffix)
	if !ok || store.ValidateVMName(name) != nil {
		return "", false
	}
	return name, true
}
