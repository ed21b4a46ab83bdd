package proxy

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/exed-dev/exed/tokens"
)

// Header hygiene for what the proxy sets. CGI, WSGI and Rack map '-' and
// '_' (and some '.') in header names to one spelling, so a client-sent
// X_Forwarded_For reaches such an app as its X-Forwarded-For: every header
// the proxy sets, or an app takes as the proxy's word, is dropped from the
// client's request in every spelling whose normalised name (lowercase,
// '-', '_' and '.' removed) matches, before the proxy sets its own.

// forwardingHeaders are the normalised names of the headers that say
// where a request came from: the proxy sets X-Forwarded-For, -Host and
// -Proto; the others it does not set, and an app must not believe a
// client's.
var forwardingHeaders = [...]string{
	"xforwardedfor", "xforwardedhost", "xforwardedproto", "xforwardedport",
	"xforwardedprefix", "xforwardedserver", "xforwardedssl", "xforwardedscheme",
	"forwarded", "xrealip", "xclientip", "xoriginalhost", "xoriginalurl", "xoriginaluri",
	"trueclientip", "cfconnectingip", "frontendhttps", "xurlscheme",
}

// normalName lowercases name and drops '-', '_' and '.'.
func normalName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_' || c == '.':
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isForwardingHeader reports whether a header name is, normalised, one of
// forwardingHeaders.
func isForwardingHeader(name string) bool {
	n := normalName(name)
	for _, f := range forwardingHeaders {
		if n == f {
			return true
		}
	}
	return false
}

// lenientBase64 decodes s the ways a lenient server might: standard or URL
// alphabet, padded or not, with any whitespace removed. ok is false when
// none decodes it.
func lenientBase64(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', '\v', '\f':
			return -1
		}
		return r
	}, s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return string(b), true
		}
	}
	// Padding where none belongs, or the alphabets mixed.
	t := strings.TrimRight(strings.NewReplacer("-", "+", "_", "/").Replace(s), "=")
	if b, err := base64.RawStdEncoding.DecodeString(t); err == nil {
		return string(b), true
	}
	return "", false
}

// containsToken reports whether s holds an exe token's prefix anywhere.
func containsToken(s string) bool {
	return strings.Contains(s, tokens.Exe0Prefix) || strings.Contains(s, tokens.Exe1Prefix)
}

// errNotWebSocket: the upstream answered a WebSocket upgrade with a 101
// that is not a WebSocket handshake.
var errNotWebSocket = errors.New("upstream's 101 is not a WebSocket handshake")

// websocketGUID is RFC 6455's fixed GUID, hashed with the client's key.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// checkUpgrade is the ReverseProxy's ModifyResponse: a 101 is tunnelled only
// if it completes a real WebSocket handshake for the client's key (RFC 6455
// §4.2.2: Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Accept the
// key's hash); anything else is answered 502 and the connection is never
// handed over.
func checkUpgrade(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	keys := res.Request.Header.Values("Sec-Websocket-Key")
	if len(keys) != 1 || keys[0] == "" {
		return errNotWebSocket
	}
	sum := sha1.Sum([]byte(keys[0] + websocketGUID))
	accept := res.Header.Values("Sec-Websocket-Accept")
	up := res.Header.Values("Upgrade")
	switch {
	case len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket"):
		return errNotWebSocket
	case !hasToken(res.Header.Values("Connection"), "upgrade"):
		return errNotWebSocket
	case len(accept) != 1 || strings.TrimSpace(accept[0]) != base64.StdEncoding.EncodeToString(sum[:]):
		return errNotWebSocket
	}
	return nil
}

// hasToken reports whether a comma-separated header (Connection) names tok,
// case-insensitively.
func hasToken(vals []string, tok string) bool {
	for _, v := range vals {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}
