package store

import (
	"crypto/rand"
	"encoding/base32"
)

// userIDRandBytes is 80 bits: enough that ids never collide, and exactly
// 16 base32 characters with no padding.
const userIDRandBytes = 10

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewUserID returns a fresh user id: "usr" and 16 random lowercase base32
// characters.
func NewUserID() string {
	b := make([]byte, userIDRandBytes)
	rand.Read(b) // never fails (crypto/rand)
	return "usr" + lowerBase32.EncodeToString(b)
}

// NewSessionID returns a fresh public id for a browser session: "ses" and
// 16 random lowercase base32 characters. It names the session in
// `sessions` and `sessions revoke`; the cookie itself is never stored.
func NewSessionID() string {
	b := make([]byte, userIDRandBytes)
	rand.Read(b) // never fails (crypto/rand)
	return "ses" + lowerBase32.EncodeToString(b)
}
