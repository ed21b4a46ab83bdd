package proxy

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/exed-dev/exed/tokens"
)

// Carriers: where a request's token came from (logged, never the token).
const (
	carrierExedev = "x-exedev-authorization"
	carrierBearer = "authorization-bearer"
	carrierBasic  = "authorization-basic"
	carrierCookie = "session-cookie" // no token: the VM host's browser session
)

const headerExedevAuth = "X-Exedev-Authorization"

var (
	// errConflict: two carriers hold different tokens (400): which one
	// would be authorised is not the client's choice to leave ambiguous.
	errConflict = errors.New("conflicting tokens")
	// errBadCarrier: X-Exedev-Authorization is ours alone, so anything in
	// it that is not "Bearer TOKEN" is an invalid credential (401).
	errBadCarrier = errors.New("malformed X-Exedev-Authorization")
)

// findToken returns the request's exe token and the carrier it came from,
// in this order of precedence: X-Exedev-Authorization: Bearer,
// Authorization: Bearer, Authorization: Basic with the token as password
// (only when allowBasic).
// An empty token means none was sent.
//
// Every X-Exedev-Authorization value is a carrier. An Authorization value is
// one only when it holds something shaped like an exe token, so a VM's own
// credentials (its Basic auth, its own bearer tokens) pass through to it.
func findToken(hdr http.Header, allowBasic bool) (token, carrier string, err error) {
	note := func(t, c string) error {
		switch {
		case token == "":
			token, carrier = t, c
		case t != token:
			return errConflict
		}
		return nil
	}
	for _, v := range hdr.Values(headerExedevAuth) {
		t, ok := bearer(v)
		if !ok || t == "" {
			return "", "", errBadCarrier
		}
		if err := note(t, carrierExedev); err != nil {
			return "", "", err
		}
	}
	for _, v := range hdr.Values("Authorization") {
		if t, ok := bearer(v); ok && tokens.LooksLikeToken(t) {
			if err := note(t, carrierBearer); err != nil {
				return "", "", err
			}
			continue
		}
		if !allowBasic {
			continue
		}
		if _, pass, ok := basic(v); ok && tokens.LooksLikeToken(pass) {
			if err := note(pass, carrierBasic); err != nil {
				return "", "", err
			}
		}
	}
	return token, carrier, nil
}

// holdsToken reports whether an Authorization value carries anything shaped
// like an exe token (Bearer, or Basic user or password): such a value never
// reaches a VM, whether it was the credential used or not.
func holdsToken(v string) bool {
	if t, ok := bearer(v); ok {
		return tokens.LooksLikeToken(t)
	}
	user, pass, ok := basic(v)
	return ok && (tokens.LooksLikeToken(user) || tokens.LooksLikeToken(pass))
}

// bearer parses "Bearer TOKEN" (scheme case-insensitive).
func bearer(v string) (string, bool) {
	return authParam(v, "bearer")
}

// basic parses "Basic base64(user:pass)" as net/http does.
func basic(v string) (user, pass string, ok bool) {
	enc, ok := authParam(v, "basic")
	if !ok {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(dec), ":")
}

// authParam returns what follows scheme in an Authorization-style value.
func authParam(v, scheme string) (string, bool) {
	v = strings.TrimLeft(v, " \t")
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) ||
		(v[len(scheme)] != ' ' && v[len(scheme)] != '\t') {
		return "", false
	}
	return strings.Trim(v[len(scheme):], " \t"), true
}
