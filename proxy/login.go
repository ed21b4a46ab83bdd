package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The login routes: how a browser that hits a private VM logs in.
//
//	VM host   GET  /__exe.dev/login?redirect=P  → 307 <domain>/auth?redirect=P&return_host=HOST
//	main host GET  /auth?redirect=P&return_host=H
//	              no session              → 401 page: the ssh line that logs in
//	              the VM's owner          → 303 H/__exe.dev/auth?secret=S&redirect=P
//	              a user it is shared with → 200 confirm page (POST /auth → the 303)
//	              anyone else             → 403 page naming `share add`
//	main host GET  /auth/verify?token=T     → the `browser` link: exe-auth, 303 on
//	VM host   GET  /__exe.dev/auth?secret=S&redirect=P → login-with-exe-PORT, 303 P
//	VM host   GET|POST /__exe.dev/logout    → this session ends, 303 <domain>/logged-out
//	main host POST /logout                  → every session of the user ends, 303 /logged-out
//
// Every URL is built from the request's own scheme and port (origin), every
// redirect target passes store.SafePath, and every state-changing POST
// passes http.CrossOriginProtection.

// Reserved paths on every VM host.
const (
	pathVMLogin  = "/__exe.dev/login"
	pathVMAuth   = "/__exe.dev/auth"
	pathVMLogout = "/__exe.dev/logout"
)

const (
	// maxFormBody bounds a login form post (two short fields).
	maxFormBody = 4 << 10
	// maxUserAgent bounds the user agent kept with a session.
	maxUserAgent = 256
)

// isLoginPath reports whether p is one of the VM host's login routes.
func isLoginPath(p string) bool {
	return p == pathVMLogin || p == pathVMAuth || p == pathVMLogout
}

// isBrowserNavigation reports whether a request with no credential is a
// browser opening a page (GET or HEAD, and Sec-Fetch-Mode: navigate or an
// Accept naming text/html): it is sent to log in, where any other client
// gets the 401 challenge (git, curl and scripts keep working as before).
func isBrowserNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.EqualFold(r.Header.Get("Sec-Fetch-Mode"), "navigate") {
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}

// loginURL is where a browser refused on a private VM page is sent: the
// VM host's login route, on the origin the browser used, remembering where
// it was going.
func (h *Handler) loginURL(r *http.Request, vm string) string {
	o := requestOrigin(r)
	return o.url(h.ns.VMHost(vm)) + pathVMLogin + "?redirect=" + url.QueryEscape(r.URL.RequestURI())
}

// redirect answers status with Location loc, and no body to speak of.
func redirect(w http.ResponseWriter, loc string, status int) {
	noStore(w.Header())
	w.Header().Set("Location", loc)
	w.WriteHeader(status)
}

// serveVMLogin serves the VM host's login routes for VM name.
func (h *Handler) serveVMLogin(w http.ResponseWriter, r *http.Request, name string) {
	vm, err := h.vms.get(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	o := requestOrigin(r)
	vmHost := h.ns.VMHost(vm.vm.Name)
	switch r.URL.Path {
	case pathVMLogin:
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		q := r.URL.Query()
		returnHost := strings.TrimPrefix(o.url(vmHost), o.scheme+"://")
		redirect(w, o.url(h.domain)+"/auth?redirect="+url.QueryEscape(store.SafePath(q.Get("redirect")))+
			"&return_host="+url.QueryEscape(returnHost), http.StatusTemporaryRedirect)
	case pathVMAuth:
		if !allowMethods(w, r, http.MethodGet) {
			return
		}
		h.redeemSecret(w, r, o, vm, vmHost)
	case pathVMLogout:
		if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
			return
		}
		if r.Method != http.MethodPost {
			h.render(w, http.StatusOK, "logout", pageData{Title: "Log out", Host: vmHost, FormRedirect: o.url(h.domain)})
			return
		}
		if !h.sameOrigin(w, r) {
			return
		}
		if e := h.sessionFor(r, o.vmCookie(), o.hostPort(vmHost)); e != nil {
			ev := h.event(r, e.s.UserID, e.s.ID, "session.logout", e.s.Host)
			if err := h.c.Sessions.RevokeSession(r.Context(), e.s.UserID, e.s.ID, ev); err != nil && !errors.Is(err, store.ErrNotFound) {
				h.c.Log.Warn("logout", "err", err)
				h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The session could not be ended just now.")
				return
			}
		}
		clearCookie(w, o.vmCookie(), o.scheme == "https")
		redirect(w, o.url(h.domain)+"/logged-out", http.StatusSeeOther)
	}
}

// redeemSecret is GET /__exe.dev/auth: the magic secret the main host
// minted for this very host becomes this host's session cookie.
func (h *Handler) redeemSecret(w http.ResponseWriter, r *http.Request, o origin, vm *vmEntry, vmHost string) {
	q := r.URL.Query()
	secret := q.Get("secret")
	if secret == "" {
		h.errorPage(w, http.StatusBadRequest, "No login secret", "This address is only reached by logging in: open the site itself.")
		return
	}
	if !tokens.ValidSecret(secret) {
		h.loginExpired(w, vm.vm.Name)
		return
	}
	now := h.c.Now().UTC().Truncate(time.Second)
	host := o.hostPort(vmHost)
	value := tokens.NewCookieValue()
	hash := tokens.SecretHash(value)
	sh := tokens.SecretHash(secret)
	id := store.NewSessionID()
	sess, err := h.c.Sessions.RedeemMagicSecret(r.Context(), sh[:], host, now, store.Session{
		ID: id, Hash: hash[:], Host: host, CookieName: o.vmCookie(),
		CreatedAt: now, ExpiresAt: now.Add(tokens.SessionTTL), UserAgent: userAgent(r),
	}, h.event(r, "", id, "session.start", host))
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.loginExpired(w, vm.vm.Name)
		return
	case err != nil:
		h.c.Log.Warn("redeem magic secret", "err", err)
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The login could not be completed just now.")
		return
	}
	setSessionCookie(w, o.vmCookie(), value, sess.ExpiresAt, now, o.scheme == "https")
	redirect(w, store.SafePath(q.Get("redirect")), http.StatusSeeOther)
}

// loginExpired is the 401 for a secret or link that is unknown, used,
// expired or for another host: all look alike from outside.
func (h *Handler) loginExpired(w http.ResponseWriter, vm string) {
	h.render(w, http.StatusUnauthorized, "error", pageData{
		Title: "Login link used or expired", Heading: "This login link no longer works",
		Message: "Login links work once, for a few minutes, on the site they were made for: this one has been used, has expired or is for another site. Make a new one:",
		SSHLine: h.sshLine(vm, ""),
	})
}

// serveMain serves the main host's login routes and account pages;
// anything else is 404.
func (h *Handler) serveMain(w http.ResponseWriter, r *http.Request) {
	if h.sessions == nil {
		writeJSON(w, http.StatusNotFound, errorBody("not found"))
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	route := "web" // the account pages (web.go)
	switch r.URL.Path {
	case "/auth", "/auth/verify", "/logout", "/logged-out":
		route = "login"
	}
	defer func() {
		// The path only: a query may carry a login secret, a form a token.
		h.c.Log.LogAttrs(context.Background(), slog.LevelInfo, route,
			slog.String("route", route), slog.String("path", r.URL.Path), slog.String("method", r.Method),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)), slog.String("remote_addr", r.RemoteAddr))
	}()
	switch r.URL.Path {
	case "/auth":
		h.serveAuth(sw, r)
	case "/auth/verify":
		h.serveVerify(sw, r)
	case "/logout":
		h.serveLogout(sw, r)
	case "/logged-out":
		if allowMethods(sw, r, http.MethodGet, http.MethodHead) {
			h.render(sw, http.StatusOK, "loggedout", pageData{Title: "Logged out"})
		}
	default:
		if !h.serveWeb(sw, r) { // the account pages (web.go)
			writeJSON(sw, http.StatusNotFound, errorBody("not found"))
		}
	}
}

// mainSession is the request's live session on the main host, or nil.
func (h *Handler) mainSession(r *http.Request) *sessionEntry {
	if !hasCookieHeader(r) {
		return nil
	}
	o := requestOrigin(r)
	e := h.sessionFor(r, tokens.MainCookie, o.hostPort(h.domain))
	if e != nil {
		h.touch(e)
	}
	return e
}

// serveAuth is /auth: GET decides, POST (the confirm page's button)
// continues for a user the VM is shared with.
func (h *Handler) serveAuth(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	v := r.URL.Query()
	if r.Method == http.MethodPost {
		if !h.sameOrigin(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			h.errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
			return
		}
		v = r.PostForm
	}
	o := requestOrigin(r)
	path := store.SafePath(v.Get("redirect"))
	host, port, ok := canonicalHostPort(v.Get("return_host"))
	name, isVM := h.vmName(host)
	if port == "" {
		port = origin{scheme: o.scheme}.defaultPort()
	}
	if !ok || !isVM || port != o.port {
		h.errorPage(w, http.StatusBadRequest, "Not a site of this server", "The address to log in to is not one of this server's VM hosts.")
		return
	}
	vmHost := h.ns.VMHost(name)
	returnHost := strings.TrimPrefix(o.url(vmHost), o.scheme+"://")
	e := h.mainSession(r)
	if e == nil {
		h.render(w, http.StatusUnauthorized, "login", pageData{Title: "Log in", Host: vmHost, VM: name, SSHLine: h.sshLine(name, path)})
		return
	}
	forbidden := pageData{Title: "Not allowed", Host: vmHost, Email: e.u.Email,
		ShareLine: h.sshPrefix() + " share add " + name + " " + e.u.Email}
	if e.s.OnlyVM != "" && e.s.OnlyVM != name {
		forbidden.Restricted, forbidden.SSHLine = true, h.sshLine(name, path)
		h.render(w, http.StatusForbidden, "forbidden", forbidden)
		return
	}
	vm, err := h.vms.get(r.Context(), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.render(w, http.StatusForbidden, "forbidden", forbidden) // the same as someone else's
		return
	case err != nil:
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The site could not be looked up just now.")
		return
	}
	access := tokens.Reach(&vm.vm, e.s.UserID)
	if access == tokens.NoAccess {
		// A share link on its way through the login: it makes the share,
		// once the visitor has confirmed, and the browser goes on without it.
		var ok bool
		if path, ok = h.useShareLink(w, r, e, vm, path); !ok {
			return
		}
		if path != "" {
			access = tokens.AccessShare
		}
	}
	switch access {
	case tokens.AccessOwner:
	case tokens.AccessShare:
		if r.Method != http.MethodPost {
			h.render(w, http.StatusOK, "confirm", pageData{Title: "Continue?", Host: vmHost, Email: e.u.Email, Redirect: path, ReturnHost: returnHost, FormRedirect: o.url(vmHost)})
			return
		}
	default:
		h.render(w, http.StatusForbidden, "forbidden", forbidden)
		return
	}

	now := h.c.Now().UTC()
	secret := tokens.NewSecret()
	sh := tokens.SecretHash(secret)
	m := store.MagicSecret{
		Hash: sh[:], UserID: e.s.UserID, Host: o.hostPort(vmHost), VM: name,
		Fingerprint: e.s.Fingerprint, OnlyVM: e.s.OnlyVM,
		CreatedAt: now.Truncate(time.Second), ExpiresAt: now.Add(tokens.MagicSecretTTL),
		SessionExpiresAt: vmSessionBound(e.s, now),
	}
	if err := h.c.Sessions.AddMagicSecret(r.Context(), m, h.event(r, e.s.UserID, e.s.ID, "browser.authorize", m.Host)); err != nil {
		h.c.Log.Warn("add magic secret", "err", err)
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The login could not be completed just now.")
		return
	}
	redirect(w, o.url(vmHost)+pathVMAuth+"?secret="+secret+"&redirect="+url.QueryEscape(path), http.StatusSeeOther)
}

// useShareLink handles a share link in the path a visitor who may not
// reach vm is going to. Without one it returns "" (and ok): no access. With
// one, on GET it returns the path unchanged, to show the confirm page; on
// the confirm page's POST it redeems the link for the session's user (a
// share of their own from now on) and returns the path without the link.
// ok is false when it has answered (403, 503).
func (h *Handler) useShareLink(w http.ResponseWriter, r *http.Request, e *sessionEntry, vm *vmEntry, path string) (string, bool) {
	p, query, _ := strings.Cut(path, "?")
	token, rest, found := shareLinkIn(query)
	switch {
	case !found:
		return "", true
	case r.Method != http.MethodPost:
		return path, true
	}
	now := h.c.Now().UTC()
	name := tokens.ShareLinkName(token)
	ev := h.event(r, e.s.UserID, e.s.ID, "share.link.use", vm.vm.Name+" "+name)
	switch _, err := h.c.Store.UseShareLink(r.Context(), vm.vm.Name, tokens.ShareLinkID(token), e.s.UserID, now, ev); {
	case errors.Is(err, store.ErrNotFound):
		h.errorPage(w, http.StatusForbidden, "This share link is not valid", "It was removed, or mistyped: ask the site's owner for a new one.")
		return "", false
	case err != nil:
		h.c.Log.Warn("use share link", "err", err)
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The share link could not be used just now.")
		return "", false
	}
	if rest != "" {
		p += "?" + rest
	}
	return p, true
}

// serveVerify is /auth/verify: the link `browser` printed starts the main
// host's session and goes on where the link says.
func (h *Handler) serveVerify(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	token := r.URL.Query().Get("token")
	if !tokens.ValidSecret(token) {
		h.loginExpired(w, "")
		return
	}
	o := requestOrigin(r)
	now := h.c.Now().UTC().Truncate(time.Second)
	host := o.hostPort(h.domain)
	value := tokens.NewCookieValue()
	hash := tokens.SecretHash(value)
	th := tokens.SecretHash(token)
	id := store.NewSessionID()
	link, sess, err := h.c.Sessions.RedeemLoginLink(r.Context(), th[:], now, store.Session{
		ID: id, Hash: hash[:], Host: host, CookieName: tokens.MainCookie,
		CreatedAt: now, ExpiresAt: now.Add(tokens.SessionTTL), UserAgent: userAgent(r),
	}, h.event(r, "", id, "session.start", host))
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.loginExpired(w, "")
		return
	case err != nil:
		h.c.Log.Warn("redeem login link", "err", err)
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The login could not be completed just now.")
		return
	}
	setSessionCookie(w, tokens.MainCookie, value, sess.ExpiresAt, now, o.scheme == "https")
	to := store.SafePath(link.Path)
	if link.TargetVM != "" {
		to = o.url(h.ns.VMHost(link.TargetVM)) + to
	}
	redirect(w, to, http.StatusSeeOther)
}

// serveLogout is POST /logout: every session of the user ends.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) || !h.sameOrigin(w, r) {
		return
	}
	o := requestOrigin(r)
	if e := h.mainSession(r); e != nil {
		if _, err := h.c.Sessions.RevokeSessions(r.Context(), e.s.UserID, h.event(r, e.s.UserID, e.s.ID, "session.logout", "all")); err != nil {
			h.c.Log.Warn("logout", "err", err)
			h.errorPage(w, http.StatusServiceUnavailable, "Try again", "The sessions could not be ended just now.")
			return
		}
	}
	clearCookie(w, tokens.MainCookie, o.scheme == "https")
	redirect(w, "/logged-out", http.StatusSeeOther)
}

// sameOrigin refuses (403) a state-changing request sent from another
// site, with Go's http.CrossOriginProtection.
func (h *Handler) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if err := h.cop.Check(r); err != nil {
		h.errorPage(w, http.StatusForbidden, "Refused", "This request came from another site.")
		return false
	}
	return true
}

// allowMethods answers 405 (with Allow) for any other method.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// setSessionCookie sets a session cookie: host-only (no Domain), Path=/,
// HttpOnly, SameSite=Lax, Secure over TLS, for 30 days or until the
// session ends if sooner.
func setSessionCookie(w http.ResponseWriter, name, value string, expires, now time.Time, secure bool) {
	maxAge := int(min(tokens.SessionTTL, expires.Sub(now)) / time.Second)
	if maxAge <= 0 {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie tells the browser to drop a session cookie.
func clearCookie(w http.ResponseWriter, name string, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// event is the audit row of a login step, by the session credential
// (its id) over the web; actor "" is filled in by the store with the user
// the secret or link belongs to.
func (h *Handler) event(r *http.Request, actor, credential, action, subject string) store.Event {
	return store.Event{Time: h.c.Now().UTC(), ActorID: actor, Credential: credential, Via: store.ViaWeb,
		Action: action, Subject: subject, RemoteAddr: r.RemoteAddr}
}

// userAgent is the User-Agent kept with a session: bounded, valid UTF-8,
// no control bytes.
func userAgent(r *http.Request) string {
	ua := r.Header.Get("User-Agent")
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	ua = strings.ToValidUTF8(ua, "")
	return strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return -1
		}
		return c
	}, ua)
}

func (o origin) defaultPort() string {
	if o.scheme == "https" {
		return "443"
	}
	return "80"
}

// vmSessionBound is the latest a VM session started from main may end:
// the main session's own end when the key that logged the browser in cut
// it short (so the VM session ends with that key's expiry too), else a
// full session lifetime from the redemption (which comes within
// MagicSecretTTL of now).
func vmSessionBound(main store.Session, now time.Time) time.Time {
	if main.ExpiresAt.Before(main.CreatedAt.Add(tokens.SessionTTL)) {
		return main.ExpiresAt
	}
	return now.Add(tokens.SessionTTL + tokens.MagicSecretTTL)
}
