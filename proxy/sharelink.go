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

// redeemShareLink answers a request to vm that carries a share link token,
// from a visitor already authorized for vm: userID is who they are ("" for
// an anonymous visitor of a public VM) and credential what proved it (a
// key's fingerprint, or a browser session's id). The link is never
// forwarded to the VM. A visitor with an identity redeems it (the store
// counts the use and gives a share to anyone but the owner; the share
// outlives the link); then, and for an anonymous visitor, who has no one
// to share with, the browser is sent, with no Referer, to the same URL
// without the token. A link that is no longer valid is refused (403).
//
// It is the hook the browser-session flow calls with a session's user,
// once the visitor is logged in; today a token's user (who reaches vm
// already) is the only identity the proxy knows.
func (h *Handler) redeemShareLink(w http.ResponseWriter, r *http.Request, vm *vmEntry, userID, credential, token, rest string, a *access) {
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	if userID != "" {
		now := h.c.Now().UTC()
		name := tokens.ShareLinkName(token)
		ev := store.Event{Time: now, ActorID: userID, Credential: credential, Via: store.ViaWeb,
			Action: "share.link.use", Subject: vm.vm.Name + " " + name, RemoteAddr: r.RemoteAddr}
		_, err := h.c.Store.UseShareLink(r.Context(), vm.vm.Name, tokens.ShareLinkID(token), userID, now, ev)
		switch {
		case errors.Is(err, store.ErrNotFound):
			a.reason = errors.New("share link " + name + " is not one of the VM's")
			http.Error(w, "this share link is not valid (removed, or mistyped): ask the VM's owner for a new one", http.StatusForbidden)
			return
		case err != nil:
			a.reason = err
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	// Path-absolute, on this host: never "//host" (EscapedPath escapes a
	// backslash, so "/\host" cannot come out either), and not cleaned (it
	// is the same URL).
	loc := "/" + strings.TrimLeft(r.URL.EscapedPath(), "/")
	if rest != "" {
		loc += "?" + rest
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusFound)
}
