package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/exed-dev/exed/tokens"
)

// Forward auth (exed serve --forward-auth-addr): a front proxy of the
// operator's own (nginx auth_request, Caddy forward_auth, Traefik
// forwardAuth) asks exed about each request to a VM host, and forwards it
// to the VM itself when exed says yes.
//
//	GET /auth   X-Forwarded-Host | X-Original-Host     the VM host the client asked for
//	            X-Forwarded-Uri  | X-Original-URI      its path and query
//	            X-Forwarded-Method | X-Original-Method its method
//	            X-Forwarded-Proto, X-Forwarded-Port    the scheme and port the client used
//	            and the client's own headers: the token carriers, Cookie, Accept…
//	→ 200  X-ExeDev-UserID, X-ExeDev-Email, X-ExeDev-Token-Ctx, X-ExeDev-Jwt-Assertion,
//	       X-ExeDev-Upstream-Cookie, X-ExeDev-Upstream-Authorization (always all six;
//	       empty when there is nothing to send): the headers to set on the request to the VM
//	→ 401  WWW-Authenticate: Basic; a browser navigation also X-ExeDev-Login-URL
//	→ 403, 400, 404 (no such VM), 503: as the reverse proxy would answer
//
// The decision is authenticateVM's, the reverse proxy's own, on the
// request rebuilt from those headers (forwardedRequest): the same
// carriers, cookie, Verifier, Reach, assertion, metrics and log line
// (route "forward_auth"). The same listener serves, with the origin the
// front proxy says the browser used, everything else the front proxy must
// send exed: the main host (login, /exec, the web page, the JWKS) and the
// reserved /__exe.dev/ paths of the VM hosts. It never forwards anything
// to a VM. The front proxy is trusted to tell the truth about the host,
// path, scheme and port: the listener belongs on loopback or a private
// network that only the front proxy reaches.

// forwardAuthPath is the one route of the forward-auth question.
const forwardAuthPath = "/auth"

// The answer's headers beside the identity headers, spelled as
// http.CanonicalHeaderKey spells them.
const (
	// headerUpstreamCookie is the client's Cookie header less exed's
	// cookies, and headerUpstreamAuthorization its Authorization header
	// unless that carries an exe token: what the front proxy sends the VM
	// instead, so that no credential of exed's reaches it.
	headerUpstreamCookie        = "X-Exedev-Upstream-Cookie"
	headerUpstreamAuthorization = "X-Exedev-Upstream-Authorization"
	// headerLoginURL, on a 401, is where the front proxy sends a browser:
	// the VM host's login route, or the same page without a share link.
	headerLoginURL = "X-Exedev-Login-Url"
)

// originKey is the context key of the origin a front proxy says the
// browser used (see forwardedOrigin).
type originKey struct{}

// forwardedOrigin is the origin a front proxy says the browser used, for a
// request that came through the forward-auth listener; ok is false for a
// request from the client itself.
func forwardedOrigin(r *http.Request) (origin, bool) {
	o, ok := r.Context().Value(originKey{}).(origin)
	return o, ok
}

// ForwardAuth returns the handler of the forward-auth listener: GET /auth
// (serveForwardAuth), and the main host and the VM hosts' reserved paths as
// the front proxy forwards them.
func (h *Handler) ForwardAuth() http.Handler { return http.HandlerFunc(h.serveForwarded) }

// forwarded is what a front proxy says of the request it forwards.
type forwarded struct {
	host   string // canonical host ("" when not said)
	uri    string // path and query ("" when not said)
	method string // "" when not said
	origin origin // scheme and port the client used
}

// Limits of the forwarded values.
const (
	// maxForwardedMethod bounds X-Forwarded-Method: the longest method
	// in use (PROPPATCH, MKCALENDAR…) is ten letters.
	maxForwardedMethod = 20
)

// readForwarded reads the forwarded headers: at most one value for each
// name, and where two names say the same thing (X-Forwarded-Host and
// X-Original-Host), the same value in both — otherwise a client that adds
// one of its own, which the front proxy passes on unchanged, could choose
// the host or path exed decides about. The port is the one in the host,
// else X-Forwarded-Port, else the scheme's default.
func readForwarded(hdr http.Header) (forwarded, error) {
	var f forwarded
	host, err := onlyValue(hdr, "X-Forwarded-Host", "X-Original-Host")
	if err != nil {
		return f, err
	}
	if f.uri, err = onlyValue(hdr, "X-Forwarded-Uri", "X-Original-Uri"); err != nil {
		return f, err
	}
	if f.method, err = onlyValue(hdr, "X-Forwarded-Method", "X-Original-Method"); err != nil {
		return f, err
	}
	proto, err := onlyValue(hdr, "X-Forwarded-Proto")
	if err != nil {
		return f, err
	}
	port, err := onlyValue(hdr, "X-Forwarded-Port")
	if err != nil {
		return f, err
	}

	switch {
	case proto == "" || strings.EqualFold(proto, "http"):
		f.origin = origin{scheme: "http", port: "80"}
	case strings.EqualFold(proto, "https"):
		f.origin = origin{scheme: "https", port: "443"}
	default:
		return f, fmt.Errorf("X-Forwarded-Proto %q is neither http nor https", clip(proto))
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || !allDigits(port) || n < 1 || n > 65535 {
			return f, fmt.Errorf("X-Forwarded-Port %q is not a port", clip(port))
		}
		f.origin.port = strconv.Itoa(n)
	}
	if host != "" {
		h, p, ok := canonicalHostPort(host)
		if !ok || h == "" {
			return f, fmt.Errorf("forwarded host %q is not a host", clip(host))
		}
		f.host = h
		if p != "" {
			f.origin.port = p
		}
	}
	if f.uri != "" && f.uri[0] != '/' {
		return f, fmt.Errorf("forwarded URI %q is not a path", clip(f.uri))
	}
	if len(f.method) > maxForwardedMethod || !isToken(f.method) {
		return f, fmt.Errorf("forwarded method %q is not a method", clip(f.method))
	}
	return f, nil
}

// onlyValue is the one value the headers called names hold between them
// ("" for none; an empty value counts as none): an error when one name
// has two values, or two names differ.
func onlyValue(hdr http.Header, names ...string) (string, error) {
	var v, from string
	for _, name := range names {
		vals := hdr[name]
		if len(vals) > 1 {
			return "", fmt.Errorf("more than one %s", name)
		}
		if len(vals) == 0 || vals[0] == "" {
			continue
		}
		if from != "" && vals[0] != v {
			return "", fmt.Errorf("%s and %s disagree", from, name)
		}
		v, from = vals[0], name
	}
	return v, nil
}

// isToken reports whether s is an HTTP token (RFC 9110): what a method is.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// clip is a forwarded value as an error may repeat it: at most
// maxEchoedHost bytes (%q quotes the rest).
func clip(s string) string { return s[:min(len(s), maxEchoedHost)] }

// hostPort is host as the client wrote it in its Host header: with the
// origin's port unless it is the scheme's default.
func (f *forwarded) hostPort() string {
	return strings.TrimPrefix(f.origin.url(f.host), f.origin.scheme+"://")
}

// serveForwarded is the forward-auth listener: the question, or whatever
// else the front proxy forwards, seen with the origin it says the client
// used.
func (h *Handler) serveForwarded(w http.ResponseWriter, r *http.Request) {
	f, err := readForwarded(r.Header)
	host := f.host
	if host == "" {
		host = tokens.CanonicalHost(r.Host) // a front proxy that passes the Host header on
	}
	if r.URL.Path == forwardAuthPath && host != h.domain {
		h.serveForwardAuth(w, r, &f, err)
		return
	}
	if err != nil {
		http.Error(w, "forward auth: "+err.Error(), http.StatusBadRequest)
		return
	}
	if f.host == "" {
		if hp, port, ok := canonicalHostPort(r.Host); ok {
			f.host = hp
			if port != "" {
				f.origin.port = port
			}
		}
	}
	if _, isVM := h.vmName(f.host); isVM && !isReserved(r.URL.Path) {
		http.Error(w, "exed's forward-auth listener serves a VM host's "+reservedPrefix+" paths only: the front proxy forwards the rest to the VM, after asking GET "+forwardAuthPath, http.StatusNotFound)
		return
	}
	fr := r.WithContext(context.WithValue(r.Context(), originKey{}, f.origin))
	fr.Host = f.hostPort()
	h.ServeHTTP(w, fr)
}

// serveForwardAuth answers the front proxy's question about one request to
// a VM host, which readForwarded read (err: it could not).
func (h *Handler) serveForwardAuth(w http.ResponseWriter, r *http.Request, f *forwarded, err error) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	var a access
	orig, name := r, ""
	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		h.c.Metrics.ForwardAuthRequest(status, d)
		h.logVM(orig, routeForwardAuth, name, status, start.Add(d), d, sw.bytes, &a)
	}()
	refuse := func(status int, msg string, reason error) {
		a.reason = reason
		sw.Header().Set("Cache-Control", "no-store")
		http.Error(sw, msg, status)
	}
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		sw.Header().Set("Allow", "GET, HEAD")
		refuse(http.StatusMethodNotAllowed, "method not allowed", nil)
		return
	case err != nil:
		refuse(http.StatusBadRequest, "forward auth: "+err.Error(), err)
		return
	case f.host == "" || f.uri == "":
		err := errors.New("the front proxy sent no X-Forwarded-Host or X-Original-Host, or no X-Forwarded-Uri or X-Original-URI")
		refuse(http.StatusBadRequest, "forward auth: "+err.Error(), err)
		return
	}
	if orig, err = forwardedRequest(r, f); err != nil {
		orig = r
		refuse(http.StatusBadRequest, "forward auth: "+err.Error(), err)
		return
	}
	var ok bool
	if name, ok = h.vmName(f.host); !ok {
		refuse(http.StatusNotFound, "exed serves no VM at "+echoableHost(f.host), errors.New("not a VM host"))
		return
	}
	vm := h.authenticateVM(orig, name, &a)
	if a.status != 0 {
		refuseForward(sw, &a)
		return
	}
	if token, rest, ok := shareLinkIn(orig.URL.RawQuery); ok {
		// Never on to the VM with the link: the front proxy sends the
		// browser to the same URL without it, as it sends one to log in.
		if h.redeemShareLink(sw, orig, vm, token, &a) {
			sendBrowser(sw, f.origin.url(h.ns.VMHost(name))+sameURLWithout(orig, rest))
		}
		return
	}
	setForwardedIdentity(sw.Header(), orig.Header, &a)
	sw.WriteHeader(http.StatusOK)
}

// forwardedRequest is the request as the client made it to the VM host,
// rebuilt from what the front proxy says (f) and the client's own headers
// (shared with r, and only read): what authenticateVM decides about.
func forwardedRequest(r *http.Request, f *forwarded) (*http.Request, error) {
	u, err := url.ParseRequestURI(f.uri)
	if err != nil {
		return nil, fmt.Errorf("forwarded URI: %w", err)
	}
	o := r.WithContext(context.WithValue(r.Context(), originKey{}, f.origin))
	o.Method, o.URL, o.RequestURI, o.Host = f.method, u, f.uri, f.hostPort()
	o.Body, o.ContentLength = http.NoBody, 0
	return o, nil
}

// refuseForward answers what authenticateVM refused, for a front proxy:
// the reverse proxy's status and line, git's Basic challenge with a 401,
// and for a browser that should log in, the 401 with X-ExeDev-Login-URL
// (a front proxy cannot pass a redirect on from its auth request: nginx
// turns every status but 2xx, 401 and 403 into a 500).
func refuseForward(w http.ResponseWriter, a *access) {
	switch a.status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", authRealm)
	case http.StatusTooManyRequests: // a throttled token (verifyRefusal)
		w.Header().Set("Retry-After", retryAfterThrottled())
	}
	if a.loginURL != "" {
		sendBrowser(w, a.loginURL)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, a.msg, a.status)
}

// sendBrowser answers 401 with X-ExeDev-Login-URL loc: the front proxy
// sends the browser there (nginx's error_page 401, Caddy's handle_response).
func sendBrowser(w http.ResponseWriter, loc string) {
	hdr := w.Header()
	noStore(hdr)
	hdr.Set(headerLoginURL, loc)
	http.Error(w, "log in: "+loc, http.StatusUnauthorized)
}

// setForwardedIdentity sets the answer's headers for a request let through
// with a's identity (none: an anonymous visitor of a public VM): every one
// of them, empty when there is nothing to send, so that a front proxy that
// copies a header the answer lacks as the literal text of its placeholder
// (Caddy 2.6's copy_headers), or keeps the client's own copy then, never
// passes anything but exed's value to the VM. hdr is the client's, for the
// Cookie and Authorization the VM is to get instead of its own.
func setForwardedIdentity(out, hdr http.Header, a *access) {
	var vals [6]string
	if g := a.grant; g != nil {
		vals[0], vals[1] = g.User.ID, g.User.Email
		if g.Ctx != "" {
			vals[2] = g.Ctx
		}
	} else if e := a.session; e != nil {
		vals[0], vals[1] = e.u.ID, e.u.Email
	}
	vals[3] = a.assertion[0]
	vals[4] = upstreamCookie(hdr)
	vals[5] = upstreamAuthorization(hdr)
	out[headerUserID] = vals[0:1:1]
	out[headerEmail] = vals[1:2:2]
	out[headerCtx] = vals[2:3:3]
	out[headerAssertion] = vals[3:4:4]
	out[headerUpstreamCookie] = vals[4:5:5]
	out[headerUpstreamAuthorization] = vals[5:6:6]
}

// upstreamCookie is the Cookie header the VM gets: the client's, every
// line of it joined as one (as HTTP/2 asks, RFC 9113 §8.2.3), less exed's
// cookies (the rule of stripExedCookies).
func upstreamCookie(hdr http.Header) string {
	var kept []string
	for _, v := range hdr["Cookie"] {
		if v = withoutExedCookies(v); v != "" {
			kept = append(kept, v)
		}
	}
	return strings.Join(kept, "; ")
}

// upstreamAuthorization is the Authorization header the VM gets: the
// client's first one that carries no exe token (the rule of scrubHeaders),
// or "".
func upstreamAuthorization(hdr http.Header) string {
	for _, v := range hdr["Authorization"] {
		if !holdsToken(v) {
			return v
		}
	}
	return ""
}
