package proxy

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The account web page (SPEC §10): what a logged-in browser sees on the
// main host, one page per concern behind one navigation bar.
//
//	GET       /                      account: email, user id, the key this browser logged in with
//	GET       /keys                  keys and tokens
//	GET|POST  /keys/rename?key=FP    a form, then ssh-key rename
//	GET|POST  /keys/remove?key=FP    a confirmation, then ssh-key remove
//	GET|POST  /tokens/new            a form, then generate-api-key: the token shown once (200)
//	GET|POST  /sessions              browser sessions; sessions revoke ID | --all
//	GET       /vms                   VMs owned and shared with me (ls)
//	GET|POST  /vms/NAME              one owned VM's shares (share show, add, remove, links, public)
//	GET       /log                   the recent audit log (log)
//	GET       /static/copy.js        the copy buttons' script (progressive enhancement)
//
// Every page reads, and every form acts, through the command table
// (sshcmd.Suite: Parse → Invocation.Run, JSON output) as the session's
// user with the key that logged this browser in (webCaller): the rules are
// the commands' own, none is repeated here, and a refusal shows the very
// line the SSH command prints. A command line is built from form fields as
// words ("--label=" + value, positional arguments after "--"), never as a
// string to split. POSTs pass http.CrossOriginProtection before anything
// else, and a successful one answers 303 to the page it came from, except
// where a secret is shown once (a new token, a new share link): that page
// is the POST's answer, never cached, never in a URL.

// Paths of the account pages.
const (
	pathKeys        = "/keys"
	pathKeyRename   = "/keys/rename"
	pathKeyRemove   = "/keys/remove"
	pathTokenNew    = "/tokens/new"
	pathSessions    = "/sessions"
	pathVMs         = "/vms"
	pathLog         = "/log"
	pathCopyScript  = "/static/copy.js"
	vmPagePrefix    = pathVMs + "/"
	webFormBodySize = maxFormBody
)

// copyScript adds a Copy button beside each [data-copy] element: the page
// works without it (the text is selectable), and the CSP of the pages that
// use it allows exactly this one file.
//
//go:embed templates/copy.js
var copyScript []byte

// serveWeb serves the account pages; it reports false for a path that is
// none of them.
func (h *Handler) serveWeb(w http.ResponseWriter, r *http.Request) bool {
	if h.c.Suite == nil {
		return false
	}
	p := r.URL.Path
	switch {
	case p == "/":
		h.webPage(w, r, false, h.accountPage)
	case p == pathCopyScript:
		if allowMethods(w, r, http.MethodGet, http.MethodHead) {
			hdr := w.Header()
			hdr.Set("Content-Type", "text/javascript; charset=utf-8")
			hdr.Set("Cache-Control", "no-cache")
			hdr.Set("X-Content-Type-Options", "nosniff")
			w.Write(copyScript)
		}
	case p == pathKeys:
		h.webPage(w, r, false, h.keysPage)
	case p == pathKeyRename:
		h.webPage(w, r, true, h.keyRenamePage)
	case p == pathKeyRemove:
		h.webPage(w, r, true, h.keyRemovePage)
	case p == pathTokenNew:
		h.webPage(w, r, true, h.tokenNewPage)
	case p == pathSessions:
		h.webPage(w, r, true, h.sessionsPage)
	case p == pathVMs:
		h.webPage(w, r, false, h.vmsPage)
	case strings.HasPrefix(p, vmPagePrefix) && !strings.Contains(p[len(vmPagePrefix):], "/"):
		h.webPage(w, r, true, h.vmPage)
	case p == pathLog:
		h.webPage(w, r, false, h.logPage)
	default:
		return false
	}
	return true
}

// web is one request to an account page from a logged-in browser.
type web struct {
	h      *Handler
	w      http.ResponseWriter
	r      *http.Request
	o      origin
	s      store.Session // the browser's main-host session
	caller sshcmd.Caller // who every command of the request runs as
	form   url.Values    // a POST's fields
}

// post reports whether the request is a form post.
func (x *web) post() bool { return x.r.Method == http.MethodPost }

// webPage answers an account page: the method, cross-origin protection
// for a POST (before the session is even looked at), the session and its
// caller, then page. Without a session the browser sees how to log in
// (401).
func (h *Handler) webPage(w http.ResponseWriter, r *http.Request, posts bool, page func(*web)) {
	methods := []string{http.MethodGet, http.MethodHead}
	if posts {
		methods = append(methods, http.MethodPost)
	}
	if !allowMethods(w, r, methods...) {
		return
	}
	x := &web{h: h, w: w, r: r, o: requestOrigin(r)}
	if x.post() {
		if !h.sameOrigin(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, webFormBodySize)
		if err := r.ParseForm(); err != nil {
			h.errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
			return
		}
		x.form = r.PostForm
	}
	e := h.mainSession(r)
	var caller sshcmd.Caller
	err := store.ErrNotFound
	if e != nil {
		caller, err = h.webCaller(r, e)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// How to log in: the answer to "/", and a 401 anywhere else.
		status := http.StatusUnauthorized
		if r.URL.Path == "/" && !x.post() {
			status = http.StatusOK
		}
		h.render(w, status, "home", pageData{Title: "Not logged in", SSHLine: h.sshLine("", "")})
		return
	case err != nil:
		h.c.Log.Warn("web page caller", "err", err)
		h.errorPage(w, http.StatusServiceUnavailable, "Try again", "Your account could not be read just now.")
		return
	}
	x.s, x.caller = e.s, caller
	page(x)
}

// webCaller is who a browser's commands run as: the session's user, with
// the key that logged the browser in (its restrictions are the command
// gate's, exactly as over SSH), over the web, the session as the
// credential the audit log records. ErrNotFound (wrapped) when that key is
// gone: its sessions went with it.
func (h *Handler) webCaller(r *http.Request, e *sessionEntry) (sshcmd.Caller, error) {
	k, err := h.c.Store.Key(r.Context(), e.s.Fingerprint)
	if err != nil {
		return sshcmd.Caller{}, fmt.Errorf("proxy: the session's key: %w", err)
	}
	if k.UserID != e.s.UserID {
		return sshcmd.Caller{}, fmt.Errorf("proxy: the session's key is another user's: %w", store.ErrNotFound)
	}
	return sshcmd.Caller{
		User: e.u, Key: k, Limits: sessionLimits(e.s),
		RemoteAddr: r.RemoteAddr, Via: store.ViaWeb, Credential: e.s.ID,
	}, nil
}

// sessionLimits are the effective restrictions a browser session acts
// within, beyond its key's own (which the command gate applies from
// Caller.Key): those its login carried (the caller's of `browser`, key ∩
// token) — the VM it was restricted to, and the end it was cut short to,
// when a key's or a token's expiry came before a full session lifetime.
// A session that was not cut short adds no expiry: a token made on the
// page may outlive the browser's session, as one made over SSH outlives
// the SSH connection. (A token's cmds are not carried by a session.)
func sessionLimits(s store.Session) tokens.Restrictions {
	lim := tokens.Restrictions{VM: s.OnlyVM}
	if s.ExpiresAt.Before(s.CreatedAt.Add(tokens.SessionTTL)) {
		lim.ExpiresAt = s.ExpiresAt
	}
	return lim
}

// refusal is a command that failed: its one line, as SSH prints it.
type refusal struct{ line string }

func (e *refusal) Error() string { return e.line }

// run runs one command line, given as its words, as the request's caller,
// with JSON output decoded into out (nil: not read). A command that fails
// returns a *refusal with its one line.
func (x *web) run(out any, args ...string) error {
	inv, err := x.h.c.Suite.Parse(args)
	if err != nil {
		return fmt.Errorf("proxy: web page command %q: %w", args[0], err) // the page's own lines name real commands
	}
	if inv.IsHelp() {
		return fmt.Errorf("proxy: web page command %q: only help", inv.Path())
	}
	ctx, cancel := context.WithTimeout(x.r.Context(), x.h.c.ExecTimeout)
	defer cancel()
	var buf bytes.Buffer
	stdio := sshcmd.IO{Stdin: strings.NewReader(""), Stdout: &buf, Stderr: io.Discard}
	if err := inv.Run(ctx, x.caller, stdio, true); err != nil {
		return &refusal{err.Error()}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("proxy: decode %s output: %w", inv.Path(), err)
	}
	return nil
}

// errorText is what a page shows of err: a refusal's line, or a general
// apology for anything else (logged, never shown: it may name internals).
func (x *web) errorText(err error) string {
	var ref *refusal
	if errors.As(err, &ref) {
		return ref.line
	}
	x.h.c.Log.Warn("web page", "path", x.r.URL.Path, "err", err)
	return "Something went wrong on the server; try again."
}

// show renders an account page.
func (x *web) show(status int, name string, d *webData) {
	d.Email = x.caller.User.Email
	if d.Nav == "" {
		d.Nav = name
	}
	x.h.renderWeb(x.w, status, name, d)
}

// failed renders page name after a refused form: 422 with the refusal's
// line at the top, or 503 when it was not the command's refusal.
func (x *web) failed(name string, d *webData, err error) {
	d.Error = x.errorText(err)
	status := http.StatusUnprocessableEntity
	var ref *refusal
	if !errors.As(err, &ref) {
		status = http.StatusServiceUnavailable
	}
	x.show(status, name, d)
}

// done is a successful form's answer: 303 back to the page (GET).
func (x *web) done(to string) {
	redirect(x.w, to, http.StatusSeeOther)
}

// loggedOut is the answer to an action that ended this browser's own
// session: the cookie goes, and so does the browser, to /logged-out.
func (x *web) loggedOut() {
	clearCookie(x.w, tokens.MainCookie, x.o.scheme == "https")
	redirect(x.w, "/logged-out", http.StatusSeeOther)
}
