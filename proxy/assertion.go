package proxy

import (
	"net"
	"net/http"
	"strconv"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/tokens"
)

// Signed identity assertions: the one place the proxy makes
// them, and the JWKS that verifies them.

// headerAssertion is assertion.Header as http.CanonicalHeaderKey spells it
// (and so as it goes on the wire); clients can never send it (see
// isExedevHeader).
const headerAssertion = "X-Exedev-Jwt-Assertion"

// The JWKS paths: on the API host, and on every VM host (under the
// reserved prefix, so never forwarded).
const (
	jwksPath   = "/.well-known/jwks.json"
	vmJWKSPath = reservedPrefix + "jwks.json"
)

// jwksCacheControl lets verifiers cache the JWKS for an hour: a new key is
// published a day (assertion.PublishAhead) before it signs.
const jwksCacheControl = "public, max-age=3600"

// serveJWKS answers the JSON Web Key Set of every published signing key;
// 404 when assertions are off.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if h.c.Assertions == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/jwk-set+json")
	hdr.Set("Cache-Control", jwksCacheControl)
	if r.Method == http.MethodHead {
		return
	}
	w.Write(h.c.Assertions.JWKS())
}

// tokenIdentity is who a verified token says is calling vm.
func tokenIdentity(g *tokens.Grant, vm *vmEntry) assertion.Identity {
	return assertion.Identity{
		UserID: g.User.ID, Email: g.User.Email, Method: assertion.MethodToken,
		Access:         tokens.Reach(&vm.vm, g.User.ID),
		KeyFingerprint: g.Key.Fingerprint, TokenCtx: g.Perms.Ctx,
	}
}

// requestAudience is the VM origin a request to vm came in on: its
// scheme, and the port of the listener it reached (not the Host header's,
// which the client picks); behind a front proxy, the origin it says the
// browser used (forwardedOrigin).
func requestAudience(r *http.Request, vm string) assertion.Audience {
	if o, ok := forwardedOrigin(r); ok {
		n, _ := strconv.Atoi(o.port)
		return assertion.Audience{VM: vm, TLS: o.scheme == "https", Port: n}
	}
	aud := assertion.Audience{VM: vm, TLS: r.TLS != nil}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		aud.Port = a.Port
	}
	return aud
}

// identityAssertion returns the X-ExeDev-Jwt-Assertion value for id
// calling through aud, or "" when assertions are off (or the assertion
// cannot be made: then the request goes on without one, and the log says
// why). Every identity the proxy forwards or forward auth answers (a
// token, a browser session) gets its assertion here.
func (h *Handler) identityAssertion(id *assertion.Identity, aud assertion.Audience) string {
	if h.c.Assertions == nil {
		return ""
	}
	jwt, err := h.c.Assertions.Assert(id, aud)
	if err != nil {
		h.c.Log.Warn("proxy: no identity assertion", "vm", aud.VM, "user_id", id.UserID, "err", err)
		return ""
	}
	return jwt
}

// attachAssertion sets a's assertion for a request to vm by the identity
// authorize found; anonymous requests get none.
func (h *Handler) attachAssertion(r *http.Request, vm *vmEntry, a *access) {
	if h.c.Assertions == nil {
		return
	}
	var id assertion.Identity
	switch {
	case a.grant != nil:
		id = tokenIdentity(a.grant, vm)
	case a.session != nil:
		id = sessionIdentity(a.session, vm)
	default:
		return
	}
	a.assertion[0] = h.identityAssertion(&id, requestAudience(r, vm.vm.Name))
}

// sessionIdentity is who a browser session says is calling vm: no key
// fingerprint, no token ctx (no token came along).
func sessionIdentity(e *sessionEntry, vm *vmEntry) assertion.Identity {
	return assertion.Identity{
		UserID: e.u.ID, Email: e.u.Email, Method: assertion.MethodCookie,
		Access: tokens.Reach(&vm.vm, e.u.ID),
	}
}

// setAssertion puts rq's assertion on the upstream request (after
// scrubHeaders has removed any client-sent one).
func setAssertion(hdr http.Header, rq *vmRequest) {
	if rq.assertion[0] != "" {
		hdr[headerAssertion] = rq.assertion[:]
	}
}
