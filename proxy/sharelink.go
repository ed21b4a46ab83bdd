package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// shareParam is the query parameter a share link carries its token in:
// https://NAME.<vm-domain>/?share=TOKEN.
const shareParam = "share"

// shareLinkIn returns the share link token in rawQuery (the first "share"
// value shaped like one) and the query without it. A "share" value of
// another shape is the VM's own business and stays.
func shareLinkIn(rawQuery string) (token, rest string, ok bool) {
	if !strings.Contains(rawQuery, shareParam+"=") {
		return "", rawQuery, false // the common case, without allocating
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		if !ok && k == shareParam {
			if t, err := url.QueryUnescape(v); err == nil && tokens.ParseShareLink(t) == nil {
				token, ok = t, true
				continue
			}
		}
		kept = append(kept, p)
	}
	return token, strings.Join(kept, "&"), ok
}

// redeemShareLink redeems the share link token carried by a request to vm
// from a visitor already authorized for vm (a: a token's user, a browser
// session's, or nobody: an anonymous visitor of a public VM). A visitor
// with an identity redeems it: the store counts the use and gives a share
// to anyone but the owner (the share outlives the link). An anonymous
// visitor has no one to share with. It reports whether the visitor may go
// on to the same URL without the token (sameURLWithout), which the caller
// sends them to: the VM never sees the link. A link that is no longer
// valid is refused (403), written here. Either way the answer sends no
// Referer on and is not cached.
//
// A visitor who may not reach vm yet is sent to log in instead, and the
// main host's /auth redeems the link once they confirm (useShareLink).
func (h *Handler) redeemShareLink(w http.ResponseWriter, r *http.Request, vm *vmEntry, token string, a *access) bool {
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	var userID, credential string // who, and what proved it: a key's fingerprint, a session's id
	if g := a.grant; g != nil {
		userID, credential = g.User.ID, g.Key.Fingerprint
	} else if e := a.session; e != nil {
		userID, credential = e.s.UserID, e.s.ID
	}
	if userID == "" {
		return true
	}
	now := h.c.Now().UTC()
	name := tokens.ShareLinkName(token)
	ev := store.Event{Time: now, ActorID: userID, Credential: credential, Via: store.ViaWeb,
		Action: "share.link.use", Subject: vm.vm.Name + " " + name, RemoteAddr: r.RemoteAddr}
	_, err := h.c.Store.UseShareLink(r.Context(), vm.vm.Name, tokens.ShareLinkID(token), userID, now, ev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.reason = errors.New("share link " + name + " is not one of the VM's")
		http.Error(w, "this share link is not valid (removed, or mistyped): ask the VM's owner for a new one", http.StatusForbidden)
		return false
	case err != nil:
		a.reason = err
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// sameURLWithout is the path of r with the query rest instead of its own:
// path-absolute, on this host, never "//host" (EscapedPath escapes a
// backslash, so "/\host" cannot come out either), and not cleaned (it is
// the same URL).
func sameURLWithout(r *http.Request, rest string) string {
	loc := "/" + strings.TrimLeft(r.URL.EscapedPath(), "/")
	if rest != "" {
		loc += "?" + rest
	}
	return loc
}
