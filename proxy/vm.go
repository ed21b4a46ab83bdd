package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// Identity headers the proxy sets; clients can never send them (see
// isExedevHeader). X-ExeDev-UserID and so on, spelled as
// http.CanonicalHeaderKey spells them (and so as they go on the wire), to
// set them without canonicalising each time.
const (
	headerUserID = "X-Exedev-Userid"
	headerEmail  = "X-Exedev-Email"
	headerCtx    = "X-Exedev-Token-Ctx"
)

// reservedPrefix is never forwarded to a VM: it belongs to the proxy.
const reservedPrefix = "/__exe.dev/"

// authRealm is the Basic realm of a 401: git only sends credentials after a
// challenge it understands.
const authRealm = `Basic realm="exed"`

// serveVM is the auth proxy for VM name: the reserved routes, then the
// one authentication (authenticateVM), then the share link or the upstream.
func (h *Handler) serveVM(w http.ResponseWriter, r *http.Request, name string) {
	start := time.Now()
	rq := &vmRequest{w: statusWriter{ResponseWriter: w}}
	sw := &rq.w
	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		d := time.Since(start)
		h.c.Metrics.ProxyRequest(status, d)
		h.logVM(r, routeVM, name, status, start.Add(d), d, sw.bytes, &rq.access)
	}()

	if r.URL.Path == vmJWKSPath {
		h.serveJWKS(sw, r)
		return
	}
	if h.sessions != nil && isLoginPath(r.URL.Path) {
		h.serveVMLogin(sw, r, name)
		return
	}
	vm := h.authenticateVM(r, name, &rq.access)
	if rq.status != 0 {
		refuseVM(sw, &rq.access)
		return
	}
	if token, rest, ok := shareLinkIn(r.URL.RawQuery); ok {
		if h.redeemShareLink(sw, r, vm, token, &rq.access) {
			sw.Header().Set("Location", sameURLWithout(r, rest))
			sw.WriteHeader(http.StatusFound)
		}
		return
	}
	rq.vm = vm
	// The Handler's one ReverseProxy finds rq in the context (see
	// rewriteVM): rq is that context, which saves a context.WithValue.
	rq.Context = r.Context()
	h.rp.ServeHTTP(sw, r.WithContext(rq))
}

// authenticateVM is the one authentication of a request for the VM host of
// name, which the reverse proxy (serveVM) and forward auth
// (serveForwardAuth) both call: the request's shape (checkRequest), the VM
// (404 when there is none), its credential (authorize: the token carriers
// through the Verifier, else the VM host's session cookie, each through
// Reach), and for an identity its signed assertion. r is the request as
// the client made it: forward auth rebuilds it from the front proxy's
// headers (forwardedRequest). A refusal sets a.status and a.msg, and
// a.loginURL when a browser should be sent to log in instead; the VM is
// returned whenever it was found.
func (h *Handler) authenticateVM(r *http.Request, name string, a *access) *vmEntry {
	if status, msg := checkRequest(r); status != 0 {
		a.status, a.msg = status, msg
		return nil
	}
	vm, err := h.vms.get(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		a.status, a.msg, a.reason = http.StatusNotFound, noSuchVMText(name), err
		return nil
	}
	if err != nil {
		a.status, a.msg, a.reason = http.StatusServiceUnavailable, "service unavailable", err
		return nil
	}
	if h.authorize(r, vm, a); a.status != 0 {
		if a.login && h.sessions != nil && isBrowserNavigation(r) {
			a.loginURL = h.loginURL(r, name)
		}
		return vm
	}
	h.attachAssertion(r, vm, a)
	return vm
}

// refuseVM answers what authenticateVM refused: a browser is sent to log
// in (307), git gets the Basic challenge with its 401, and everyone the
// one line of a.msg.
func refuseVM(w http.ResponseWriter, a *access) {
	switch {
	case a.loginURL != "":
		redirect(w, a.loginURL, http.StatusTemporaryRedirect)
		return
	case a.status == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
	case a.status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", authRealm)
	case a.status == http.StatusTooManyRequests: // a throttled token (verifyRefusal)
		w.Header().Set("Retry-After", retryAfterThrottled())
	}
	http.Error(w, a.msg, a.status)
}

// vmRequest is one request to a VM on its way through the proxy: one
// allocation holds the writer that records status and size for the log,
// what authorize decided, the VM it is forwarded to, and the identity
// headers' values; and once authorized, it is the forwarded request's
// context, holding itself under vmRequestKey.
type vmRequest struct {
	context.Context // the client request's; nil until forwarded
	w               statusWriter
	vm              *vmEntry // set once authorized
	access
	hdrVals [3]string // backs the identity headers of the upstream request (rewrite)
}

// Value is the context's: rq itself under vmRequestKey.
func (rq *vmRequest) Value(key any) any {
	if key == (vmRequestKey{}) {
		return rq
	}
	return rq.Context.Value(key)
}

// vmRequestKey is the context key of a forwarded request's *vmRequest.
type vmRequestKey struct{}

// checkRequest refuses what is never forwarded, whoever asks: the reserved
// path (under any spelling an upstream would normalise to it: checkPath),
// CONNECT, and protocol upgrades other than WebSocket (Go's
// ReverseProxy would forward any, and h2c and the like take the
// connection out of the proxy's hands).
func checkRequest(r *http.Request) (status int, msg string) {
	if isReserved(r.URL.Path) {
		return http.StatusNotFound, "404 page not found"
	}
	switch checkPath(r.URL.EscapedPath()) {
	case pathReserved:
		return http.StatusNotFound, "404 page not found"
	case pathAmbiguous:
		// Some upstream would read it as a reserved path: refused rather
		// than guessed at.
		return http.StatusBadRequest, "ambiguous path"
	}
	if r.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "method not allowed"
	}
	if up := r.Header.Values("Upgrade"); len(up) > 1 || len(up) == 1 && !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") {
		return http.StatusBadRequest, "unsupported protocol upgrade"
	}
	return 0, ""
}

// access is what authenticateVM decided for one request to a VM.
type access struct {
	grant   *tokens.Grant // nil: no token (anonymous, or a session)
	session *sessionEntry // the browser session that let the user in, if no token did
	login   bool          // refused for want of any credential: a browser may log in
	carrier string        // where the token came from, for the log
	status  int           // non-zero: refused with this status and msg
	msg     string
	reason  error // why it was refused (or the upstream failed), for the log only
	// loginURL is where a browser refused for want of any credential is
	// sent to log in ("" for every other client and refusal).
	loginURL string
	// assertion is X-ExeDev-Jwt-Assertion's value once authorized; "" for
	// none (anonymous, or assertions off).
	assertion [1]string
}

// authorize finds the request's token and verifies it for vm; without a
// token, the VM host's session cookie is the fourth source of identity. A
// private VM needs a valid token or session; a public one is reached
// anonymously without either, but never with an invalid token.
func (h *Handler) authorize(r *http.Request, vm *vmEntry, a *access) {
	refuse := func(status int, msg string, reason error) {
		a.status, a.msg, a.reason = status, msg, reason
	}
	token, carrier, err := findToken(r.Header, true)
	a.carrier = carrier
	switch {
	case errors.Is(err, errConflict):
		refuse(http.StatusBadRequest, "conflicting tokens", err)
		return
	case err != nil:
		refuse(http.StatusUnauthorized, "invalid token", err)
		return
	case token == "":
		if a.session = h.vmSession(r, vm); a.session != nil {
			a.carrier = carrierCookie
			return
		}
		if tokens.Reach(&vm.vm, "") == tokens.AccessPublic {
			return // anonymous
		}
		a.login = true
		refuse(http.StatusUnauthorized, "authentication required", nil)
		return
	}
	// vm is immutable once cached, and Verify only reads Target.VM.
	grant, err := h.c.Verifier.Verify(r.Context(), token, tokens.Target{Namespace: vm.namespace, VM: &vm.vm})
	if err != nil {
		status, msg := verifyRefusal(err)
		refuse(status, msg, err)
		return
	}
	if h.c.LastUsed != nil {
		h.c.LastUsed.Touch(grant.Key.Fingerprint)
	}
	a.grant = grant
	if err := tokens.CheckCtxHeader(grant.Perms.Ctx); err != nil {
		refuse(http.StatusBadRequest, "token ctx cannot be sent as a header", err)
	}
}

// throttledText is the answer to a throttled token: it names no token and
// says what to do.
const throttledText = "too many failed attempts with this key: retry later"

// verifyRefusal is the one mapping of a failed token verification to the
// client's status and line, on every route that verifies tokens (the VM
// proxy and forward auth through authorize, /exec): a key the Verifier
// throttles after failed signatures gets 429 (and, from whoever writes
// the answer, Retry-After: retryAfterThrottled), never 401; anything else
// is 401 "invalid token". Neither echoes the token or says which check
// failed.
func verifyRefusal(err error) (status int, msg string) {
	if errors.Is(err, tokens.ErrThrottled) {
		return http.StatusTooManyRequests, throttledText
	}
	return http.StatusUnauthorized, "invalid token"
}

// retryAfterThrottled is the Retry-After of a throttled token's 429, in
// seconds (tokens.ThrottleRetryAfter).
func retryAfterThrottled() string {
	return strconv.Itoa(max(1, int(tokens.ThrottleRetryAfter/time.Second)))
}

// newReverseProxy returns the ReverseProxy every request to a VM goes
// through, streaming both ways. FlushInterval 0 still flushes at once the
// responses that stream (server-sent events, unknown length: git, chunked
// downloads); a flush after every write of the others only costs.
func newReverseProxy(transport http.RoundTripper, bufs httputil.BufferPool, errLog *log.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:       rewriteVM,
		Transport:     transport,
		FlushInterval: 0,
		BufferPool:    bufs,
		ErrorLog:      errLog,
		ErrorHandler:  upstreamError,
		// exed's cookies filtered out of Set-Cookie; a 101 tunnelled only
		// once it is a real WebSocket handshake.
		ModifyResponse: modifyResponse,
	}
}

// rewriteVM is the ReverseProxy's Rewrite: the request's VM and grant come
// from its context (see serveVM).
func rewriteVM(pr *httputil.ProxyRequest) {
	rq := pr.In.Context().Value(vmRequestKey{}).(*vmRequest)
	rewrite(pr, rq.vm, rq.grant, &rq.hdrVals)
	if rq.session != nil {
		setSessionIdentity(pr.Out.Header, rq.session, &rq.hdrVals)
	}
	stripExedCookies(pr.Out.Header)
	setAssertion(pr.Out.Header, rq)
}

// setSessionIdentity sets the identity headers of a browser session's
// user: no X-ExeDev-Token-Ctx (no token came along). vals backs the
// values.
func setSessionIdentity(hdr http.Header, e *sessionEntry, vals *[3]string) {
	vals[0], vals[1] = e.u.ID, e.u.Email
	hdr[headerUserID] = vals[0:1:1]
	hdr[headerEmail] = vals[1:2:2]
}

// upstreamError answers 502 when the VM cannot be reached, noting why for
// the log line.
func upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if rq, ok := r.Context().Value(vmRequestKey{}).(*vmRequest); ok && !errors.Is(err, context.Canceled) {
		rq.reason = fmt.Errorf("upstream: %w", err)
	}
	http.Error(w, "bad gateway", http.StatusBadGateway)
}

// rewrite builds the upstream request: the VM's URL, fresh X-Forwarded-*,
// no client-sent identity headers, no exe credential, and the identity
// headers of grant when a valid token came along. ReverseProxy calls it after
// removing hop-by-hop headers (including any that Connection names), so no
// client header can remove what is set here. vals backs the identity
// headers' values (one array for the three, held by the request).
func rewrite(pr *httputil.ProxyRequest, vm *vmEntry, grant *tokens.Grant, vals *[3]string) {
	pr.SetURL(vm.target)
	// Scrubbed first, so that no client spelling of what is set here
	// (X_Forwarded_For beside X-Forwarded-For) survives beside it.
	scrubHeaders(pr.Out.Header)
	scrubTrailers(pr.Out)
	pr.SetXForwarded()
	if grant == nil {
		return
	}
	// One array backs the three values (scrubHeaders removed any other).
	vals[0], vals[1] = grant.User.ID, grant.User.Email
	hdr := pr.Out.Header
	hdr[headerUserID] = vals[0:1:1]
	hdr[headerEmail] = vals[1:2:2]
	if grant.Ctx != "" {
		vals[2] = grant.Ctx
		hdr[headerCtx] = vals[2:3:3]
	}
}

// scrubHeaders drops every client-sent X-ExeDev-* header in any spelling
// (X-Exedev-Authorization among them), every forwarding header the proxy
// sets or an app would believe (X-Forwarded-*, Forwarded, X-Real-IP…) in any
// spelling, and every Authorization value that carries something shaped
// like an exe token.
func scrubHeaders(hdr http.Header) {
	for name, vals := range hdr {
		switch {
		case isExedevHeader(name), isForwardingHeader(name):
			delete(hdr, name)
		case http.CanonicalHeaderKey(name) == "Authorization":
			kept := vals[:0:0]
			for _, v := range vals {
				if !holdsToken(v) {
					kept = append(kept, v)
				}
			}
			if len(kept) == 0 {
				delete(hdr, name)
			} else if len(kept) != len(vals) {
				hdr[name] = kept
			}
		}
	}
}

// scrubTrailers applies scrubHeaders to the request's trailers, and drops
// any that its Trailer announcement names by a scrubbed name, explicitly
// rather than by trusting how ReverseProxy and the transport copy them: an
// identity header or a token sent as a trailer never reaches the VM.
func scrubTrailers(out *http.Request) {
	if len(out.Trailer) == 0 {
		return
	}
	scrubHeaders(out.Trailer)
	for name := range out.Trailer {
		if http.CanonicalHeaderKey(name) == "Authorization" {
			delete(out.Trailer, name) // even an empty announcement
		}
	}
	if len(out.Trailer) == 0 {
		out.Trailer = nil
	}
}

// isExedevHeader reports whether a header name, lowercased with '-', '_'
// and '.' removed, starts with "xexedev": X-ExeDev-UserID, x_exedev_userid,
// X.EXEDEV.Email… (CGI, WSGI and Rack map '_' and '-' alike, so a client
// must not reach an upstream's X-ExeDev-UserID by another spelling).
func isExedevHeader(name string) bool {
	const want = "xexedev"
	n := 0
	for i := 0; i < len(name) && n < len(want); i++ {
		c := name[i]
		switch c {
		case '-', '_', '.':
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[n] {
			return false
		}
		n++
	}
	return n == len(want)
}

// isReserved reports whether p lies under /__exe.dev/, as sent or once
// cleaned (so "/x/../__exe.dev/" and "//__exe.dev/" count too), in any case.
func isReserved(p string) bool {
	under := func(p string) bool {
		p = strings.ToLower(p)
		return p+"/" == reservedPrefix || strings.HasPrefix(p, reservedPrefix)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return under(p) || under(path.Clean(p)) // Clean allocates only when p is not clean
}

// The routes of logVM's lines.
const (
	routeVM          = "vm"           // the reverse proxy
	routeForwardAuth = "forward_auth" // a front proxy's question (forwardauth.go)
)

// logVM writes the one log line of a request for a VM host, proxied
// (routeVM) or asked about by a front proxy (routeForwardAuth): r is the
// request as the client made it, bytes the size of the response body sent
// back. Never the token.
func (h *Handler) logVM(r *http.Request, route, vm string, status int, at time.Time, d time.Duration, bytes int64, a *access) {
	level := slog.LevelInfo
	if a.reason != nil && status >= 500 {
		level = slog.LevelWarn
	}
	l, ok := h.startLine(at, level, "proxy", true)
	if !ok {
		return
	}
	l.str("route", route)
	l.str("vm", vm)
	l.str("method", r.Method)
	l.int("status", int64(status))
	l.duration("duration", d)
	l.int("bytes", bytes)
	l.str("remote_addr", r.RemoteAddr)
	if a.carrier != "" {
		l.str("carrier", a.carrier)
	}
	if g := a.grant; g != nil {
		l.str("user_id", g.User.ID)
		l.str("fingerprint", g.Key.Fingerprint)
	} else if e := a.session; e != nil {
		l.str("user_id", e.s.UserID)
		l.str("session", e.s.ID)
	}
	if a.reason != nil {
		appendReason(&l, a.reason)
	}
	h.writeLine(&l)
}

// appendReason describes a refusal for the log: a tokens.Error's reason
// and precise detail (which never holds the token), or the error text.
func appendReason(l *accessLine, err error) {
	var te *tokens.Error
	if errors.As(err, &te) {
		l.str("reason", string(te.Reason))
		l.str("detail", te.Error())
		return
	}
	l.str("detail", err.Error())
}

// statusWriter records the status and body size of the response for the
// log line. It unwraps for http.ResponseController, so Flush and Hijack
// still reach the server's writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64 // body bytes written (not counted after a Hijack)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is how ReverseProxy completes a WebSocket upgrade: the 101 goes out
// on the hijacked connection, so record it here.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Flush is here for code that asserts http.Flusher rather than using
// http.ResponseController.
func (w *statusWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController.Flush calls first.
func (w *statusWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}
