package proxy

import (
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

// maxCredentialFields bounds the runs of fields holdsToken decodes.
const maxCredentialFields = 8

// holdsToken reports whether an Authorization value carries anything shaped
// like an exe token: the value itself, or its credential decoded as
// leniently as any server might (lenientBase64), holds an exe token's
// prefix anywhere. Such a value never reaches a VM, whether it was the
// credential used or not.
func holdsToken(v string) bool {
	if containsToken(v) {
		return true
	}
	// The credential is whatever follows the scheme; a server may take
	// any run of the fields for it (whitespace inside is dropped).
	// Beyond a few fields (no real credential has them), only each field
	// and the rest after the scheme are tried, so that the work stays
	// linear in the header's size.
	fields := strings.Fields(v)
	if len(fields) > maxCredentialFields {
		for _, c := range append(fields, strings.Join(fields[1:], "")) {
			if dec, ok := lenientBase64(c); ok && containsToken(dec) {
				return true
			}
		}
		return false
	}
	for i := range fields {
		for j := i + 1; j <= len(fields); j++ {
			if dec, ok := lenientBase64(strings.Join(fields[i:j], "")); ok && containsToken(dec) {
				return true
			}
		}
	}
	return false
}

// bearer parses "Bearer TOKEN" (scheme case-insensitive).
func bearer(v string) (string, bool) {
	return authParam(v, "bearer")
}

// basic parses "Basic base64(user:pass)" as leniently as holdsToken
// decodes it (unpadded, URL alphabet, whitespace), so that a credential
// the proxy would scrub is one it also uses: a token in it is either the
// request's credential or a conflict, never ignored.
func basic(v string) (user, pass string, ok bool) {
	enc, ok := authParam(v, "basic")
	if !ok {
		return "", "", false
	}
	dec, ok := lenientBase64(enc)
	if !ok {
		return "", "", false
	}
	return strings.Cut(dec, ":")
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
