package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
)

// A share link's token is ShareLinkChars characters of the RFC 4648
// base32 alphabet from crypto/rand (130 bits: beyond guessing), carried in
// the link as ?share=TOKEN. The store keeps only ShareLinkID(token), and
// ShareLinkName(token) to tell a VM's links apart.
const (
	ShareLinkChars     = 26
	shareLinkNameChars = 8 // 40 of the 130 bits: shown, so not secret; the other 90 are
	shareLinkIDLabel   = "exed share link id v1\x00"
	// ShareLinkEllipsis ends a link's name: what follows is withheld.
	ShareLinkEllipsis = "…"
)

// NewShareLink returns a fresh share link token.
func NewShareLink() string {
	var b [ShareLinkChars]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	for i, c := range b {
		b[i] = base32Alpha[c%32] // 256 is a multiple of 32: uniform
	}
	return string(b[:])
}

// ParseShareLink checks the shape of a share link token only. Errors wrap
// ErrMalformed and never repeat the token.
func ParseShareLink(s string) error {
	if len(s) != ShareLinkChars {
		return malformed("share link: want %d characters, got %d", ShareLinkChars, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return malformed("share link: byte %d is not in [A-Z2-7]", i)
		}
	}
	return nil
}

// ShareLinkID is the stored lookup key of a link token: SHA-256 over a
// domain-separation label and the token (130 random bits: nothing to
// brute-force, so a fast hash will do).
func ShareLinkID(token string) []byte {
	h := sha256.New()
	h.Write([]byte(shareLinkIDLabel))
	h.Write([]byte(token))
	return h.Sum(nil)
}

// ShareLinkName names the link of a well-formed token in listings: its
// first characters and an ellipsis ("K7QX2M4P…"). It does not reveal the
// token. A malformed token has no name: "".
func ShareLinkName(token string) string {
	if ParseShareLink(token) != nil {
		return ""
	}
	return token[:shareLinkNameChars] + ShareLinkEllipsis
}

// IsShareLinkName reports whether s is shaped like ShareLinkName's result.
func IsShareLinkName(s string) bool {
	prefix, ok := strings.CutSuffix(s, ShareLinkEllipsis)
	if !ok || len(prefix) != shareLinkNameChars {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
