package proxy

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exed-dev/exed/store"
)

// The pages a browser sees while it logs in: small, server-rendered,
// readable on a phone, and working without JavaScript. Each is one file
// under templates/ inside the one base layout; escaping is html/template's.

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the login flow's pages, by their file name less ".html";
// they show a pageData.
var pageNames = []string{"login", "confirm", "forbidden", "loggedout", "logout", "home", "error"}

// webPageNames are the account pages (web.go); they show a webData.
var webPageNames = []string{"account", "keys", "keyrename", "keyremove", "tokennew", "tokenshown", "sessions", "vms", "vm", "linkshown", "log"}

// pages holds each page parsed with the base layout.
type pages map[string]*template.Template

// parsePages parses every page with the base layout and the functions the
// pages call; now is the handler's clock (what has expired).
func parsePages(now func() time.Time) pages {
	funcs := template.FuncMap{
		"humanTime":   humanTime,
		"shortTime":   shortTime,
		"day":         day,
		"defaultCmds": defaultCmds,
		"keyNameRule": func() string { return store.KeyNameRule },
		"browserOf":   browserOf,
		"expired": func(rfc3339 string) bool {
			t, err := time.Parse(time.RFC3339, rfc3339)
			return err == nil && !now().Before(t)
		},
		"cmdsText":      cmdsText,
		"expiryChoices": func() any { return expiryChoices },
	}
	p := make(pages, len(pageNames)+len(webPageNames))
	for _, name := range append(slices.Clone(pageNames), webPageNames...) {
		p[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html"))
	}
	return p
}

// pageData is what a page shows; each page uses some of it.
type pageData struct {
	Title      string // the <title>
	Domain     string // the main host, in the footer
	Host       string // the VM host concerned
	VM         string
	Email      string // the logged-in user
	SSHLine    string // the exact ssh command that logs this browser in
	ShareLine  string // the owner-side fix for a user who may not reach a VM
	Redirect   string // the confirm form's hidden fields
	ReturnHost string
	Heading    string // the error page's
	Message    string
	Restricted bool // forbidden: by the login's key, not the account
	// FormRedirect is the one other origin the page's form may end up on
	// through a redirect (CSP form-action covers redirects): the main host
	// after a VM host's logout, the VM host after the confirm page.
	FormRedirect string
	// Nav is the account page's section ("keys", "sessions"…): the layout
	// then shows the navigation bar. "" on the login flow's pages.
	Nav string
	// Script is the URL of the one script the page loads (the copy
	// buttons), which its CSP then allows, and nothing else; "" for none.
	Script string
}

// pageCSP allows the pages what they use and nothing else: no script (but
// Script, where a page has one), their one inline style, forms posting to
// their own origin (and redirected on to FormRedirect), and no framing (the
// confirm button must not be clickjacked).
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// csp is the Content-Security-Policy of a page showing d.
func (d *pageData) csp() string {
	csp := pageCSP
	if d.FormRedirect != "" {
		csp += " " + d.FormRedirect
	}
	if d.Script != "" {
		csp += "; script-src " + d.Script
	}
	return csp
}

// render writes page name with status.
func (h *Handler) render(w http.ResponseWriter, status int, name string, d pageData) {
	d.Domain = h.domain
	h.writePage(w, status, name, &d, d.csp())
}

// renderWeb writes account page name with status.
func (h *Handler) renderWeb(w http.ResponseWriter, status int, name string, d *webData) {
	d.Domain = h.domain
	h.writePage(w, status, name, d, d.csp())
}

// writePage executes page name over data and writes it with status.
// Nothing a page shows is cached, and no page sends a Referer on: login
// URLs carry one-time secrets, and account pages show tokens once.
func (h *Handler) writePage(w http.ResponseWriter, status int, name string, data any, csp string) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "base", data); err != nil {
		h.c.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	noStore(hdr)
	hdr.Set("Content-Security-Policy", csp)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// noStore marks a login response: never cached, never referred on.
func noStore(hdr http.Header) {
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
}

// errorPage renders the error page.
func (h *Handler) errorPage(w http.ResponseWriter, status int, heading, message string) {
	h.render(w, status, "error", pageData{Title: heading, Heading: heading, Message: message})
}

// sshLine is the exact command that logs a browser in for vm (none: the
// main host) and path, for this server's SSH address. A path with bytes
// that a shell, or the server splitting the command line, would read
// specially is percent-encoded, and then quoted for both: what the user
// pastes is what the server receives.
func (h *Handler) sshLine(vm, path string) string {
	cmd := "browser"
	if vm != "" {
		cmd += " --vm " + vm
	}
	quoted := false
	if path != "" && path != "/" {
		p, plain := shellSafePath(path)
		if plain {
			cmd += " --path " + p
		} else {
			cmd += " --path '" + p + "'"
			quoted = true
		}
	}
	line := h.sshPrefix() + " "
	if quoted {
		return line + `"` + cmd + `"`
	}
	return line + cmd
}

// sshPrefix is "ssh [-p PORT] HOST" for this server's SSH address.
func (h *Handler) sshPrefix() string {
	line := "ssh"
	if h.c.SSHPort != 0 && h.c.SSHPort != 22 {
		line += " -p " + strconv.Itoa(h.c.SSHPort)
	}
	host := h.c.SSHHost
	if host == "" {
		host = h.domain
	}
	return line + " " + host
}

// shellSafePath percent-encodes every byte of p outside a set that is
// literal inside single quotes (for the server's split) and double quotes
// (for the user's shell). plain reports whether the result is literal even
// unquoted.
func shellSafePath(p string) (out string, plain bool) {
	const unquoted = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-~%=+,:@"
	const quotedToo = "?&;#*[]{}()<>|^"
	var b strings.Builder
	plain = true
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case strings.IndexByte(unquoted, c) >= 0:
			b.WriteByte(c)
		case strings.IndexByte(quotedToo, c) >= 0:
			b.WriteByte(c)
			plain = false
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String(), plain
}
