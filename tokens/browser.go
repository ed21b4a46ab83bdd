package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// Browser logins: the one-time secrets that start a browser session and
// the cookie values that carry it. Each is random, and stored only as its
// SHA-256 (SecretHash): what is only ever compared needs no more.

// Lifetimes of what logs a browser in.
const (
	// LoginLinkTTL: a `browser` link works for 15 minutes, once: long
	// enough to copy it from a terminal into a browser.
	LoginLinkTTL = 15 * time.Minute
	// MagicSecretTTL: the secret the main host hands a VM host works for
	// 2 minutes, once: it only crosses one redirect.
	MagicSecretTTL = 2 * time.Minute
	// SessionTTL: a browser session lasts 30 days (the cookie's Max-Age),
	// never beyond the expiry of the key that logged it in.
	SessionTTL = 30 * 24 * time.Hour
)

// Cookie names: MainCookie on the main host, VMCookiePrefix + PORT on each
// VM host (PORT the port the browser used, 443 and 80 included).
const (
	MainCookie     = "exe-auth"
	VMCookiePrefix = "login-with-exe-"
)

const (
	// secretChars: a login link token or magic secret is 26 characters
	// of [A-Z2-7], 130 random bits, like an exe1 handle.
	secretChars = 26
	// cookieBytes: a cookie value is 32 random bytes, base64url without
	// padding: 43 characters.
	cookieBytes = 32
	cookieChars = 43
)

// NewSecret returns a fresh login link token or magic secret: 26
// characters of the RFC 4648 base32 alphabet from crypto/rand.
func NewSecret() string {
	var b [secretChars]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	for i, c := range b {
		b[i] = base32Alpha[c%32] // 256 is a multiple of 32: uniform
	}
	return string(b[:])
}

// ValidSecret reports whether s has the shape of NewSecret's output, so
// that anything else is refused before the store is asked.
func ValidSecret(s string) bool {
	if len(s) != secretChars {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// NewCookieValue returns a fresh session cookie value: 32 bytes from
// crypto/rand, base64url without padding.
func NewCookieValue() string {
	var b [cookieBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidCookieValue reports whether v has the shape of NewCookieValue's
// output (43 characters of the base64url alphabet, canonical), without
// allocating: a cookie of any other shape costs no store lookup.
func ValidCookieValue(v string) bool {
	if len(v) != cookieChars {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isBase64URL(v[i]) {
			return false
		}
	}
	// 32 bytes fill 42 characters and 4 bits of the 43rd: its low 2 bits
	// are zero in the canonical encoding.
	return base64URLValue(v[cookieChars-1])&3 == 0
}

// base64URLValue is the 6-bit value of a base64url character.
func base64URLValue(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63 // '_'
}

// SecretHash is what the store keeps of a link token, magic secret or
// cookie value: its SHA-256.
func SecretHash(s string) [sha256.Size]byte {
	return sha256.Sum256([]byte(s))
}

// CookieHash is SecretHash for a value ValidCookieValue accepted, without
// allocating: it is computed on every request that carries a cookie.
func CookieHash(v string) [sha256.Size]byte {
	var buf [cookieChars]byte
	n := copy(buf[:], v)
	return sha256.Sum256(buf[:n])
}
