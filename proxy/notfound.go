package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
)

// The 404s a person meets first, when a name is mistyped or a request
// reaches exed by its address: each says what exed does serve, so that the
// next try can be the right one.

// noSuchVMText is the 404 of a VM-shaped host for which there is no VM.
// name is a valid VM name (lowercase letters, digits, '-'), so it is safe
// to repeat.
func noSuchVMText(name string) string { return fmt.Sprintf("no VM named %q", name) }

// maxEchoedHost bounds the Host value repeated in a 404 and its log line.
const maxEchoedHost = 100

// serveUnknownHost answers a request whose Host is neither the API host
// nor a VM's: 404, naming the hosts this server answers, and a log line.
func (h *Handler) serveUnknownHost(w http.ResponseWriter, r *http.Request, host string) {
	shown := echoableHost(host)
	msg := fmt.Sprintf("exed serves %s (the API) and NAME.%s (the VMs); this request was for %s",
		h.domain, h.ns.VMDomain, shown)
	http.Error(w, msg, http.StatusNotFound)
	h.c.Log.LogAttrs(context.Background(), slog.LevelInfo, "proxy",
		slog.String("route", "unknown_host"),
		slog.String("host", host[:min(len(host), maxEchoedHost)]), // the handler quotes what needs it
		slog.String("method", r.Method),
		slog.Int("status", http.StatusNotFound),
		slog.String("remote_addr", r.RemoteAddr),
	)
}

// echoableHost is host as a 404 may repeat it: quoted, at most
// maxEchoedHost bytes of it, and "no Host" for an empty one. Quoting with
// %q keeps control bytes and other oddities out of the page and the log.
func echoableHost(host string) string {
	if host == "" {
		return "no Host"
	}
	if len(host) > maxEchoedHost {
		return fmt.Sprintf("%q…", host[:maxEchoedHost])
	}
	return fmt.Sprintf("%q", host)
}
