package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/exed-dev/exed/store"
)

// An exe1 handle is Exe1Prefix + exe1Chars characters of the RFC 4648
// base32 alphabet: 26 × 5 = 130 random bits, beyond guessing, short enough
// to paste anywhere.
const (
	Exe1Prefix   = "exe1." // starts every exe1 handle
	exe1Chars    = 26
	exe1Len      = len(Exe1Prefix) + exe1Chars
	base32Alpha  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	exe1IDLabel  = "exed exe1 id v1\x00"   // domain separation: the stored ID
	exe1KeyLabel = "exed exe1 seal key v1" // domain separation: the sealing key
)

// ErrExe1Open is returned by OpenExe1 when the sealed bytes do not open
// under the handle: a wrong handle or damaged data.
var ErrExe1Open = errors.New("tokens: exe1: sealed token does not open with this handle")

// NewExe1 returns a fresh exe1 handle from crypto/rand. The error is
// always nil today (crypto/rand.Read cannot fail since Go 1.24); it is
// kept so callers need not change if the source of randomness can.
func NewExe1() (string, error) {
	var b [exe1Len]byte
	copy(b[:], Exe1Prefix)
	r := b[len(Exe1Prefix):]
	if _, err := rand.Read(r); err != nil {
		return "", fmt.Errorf("tokens: new exe1: %w", err)
	}
	for i, c := range r {
		r[i] = base32Alpha[c%32] // 256 is a multiple of 32: uniform
	}
	return string(b[:]), nil
}

// IssueExe1 makes a fresh exe1 handle standing for exe0, which the key
// fingerprint signed, and the row that stores it: only a hash of the
// handle and exe0 sealed under it, so the row alone yields no token.
func IssueExe1(exe0, fingerprint string, now time.Time) (string, store.Exe1, error) {
	handle, err := NewExe1()
	if err != nil {
		return "", store.Exe1{}, err
	}
	sealed, err := SealExe1(handle, exe0)
	if err != nil {
		return "", store.Exe1{}, err
	}
	return handle, store.Exe1{
		ID:          Exe1ID(handle),
		Fingerprint: fingerprint,
		Sealed:      sealed,
		CreatedAt:   now.UTC().Truncate(time.Second),
	}, nil
}

// ParseExe1 checks the shape of an exe1 handle only. Errors wrap
// ErrMalformed.
func ParseExe1(s string) error {
	rest, ok := strings.CutPrefix(s, Exe1Prefix)
	if !ok {
		return malformed("does not start with %q", Exe1Prefix)
	}
	if len(rest) != exe1Chars {
		return malformed("exe1: want %d characters after %q, got %d", exe1Chars, Exe1Prefix, len(rest))
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return malformed("exe1: byte %d is not in [A-Z2-7]", len(Exe1Prefix)+i)
		}
	}
	return nil
}

// Exe1ID is the stored lookup key of a handle: SHA-256 over a
// domain-separation label and the handle. The handle has 130 random bits,
// so an unsalted fast hash is enough: there is nothing to brute-force.
func Exe1ID(handle string) []byte {
	h := sha256.New()
	h.Write([]byte(exe1IDLabel))
	h.Write([]byte(handle))
	return h.Sum(nil)
}

// SealExe1 seals an exe0 token under a key derived from the handle
// (HKDF-SHA256), with AES-256-GCM, a random nonce and Exe1ID(handle) as
// associated data. Only a holder of the handle can open it: the stored row
// (ID and sealed bytes) yields no token.
func SealExe1(handle, exe0 string) (sealed []byte, err error) {
	aead, err := exe1AEAD(handle)
	if err != nil {
		return nil, fmt.Errorf("tokens: seal exe1: %w", err)
	}
	return aead.Seal(nil, nil, []byte(exe0), Exe1ID(handle)), nil
}

// OpenExe1 reverses SealExe1. A wrong handle or altered bytes fail with
// ErrExe1Open.
func OpenExe1(handle string, sealed []byte) (exe0 string, err error) {
	aead, err := exe1AEAD(handle)
	if err != nil {
		return "", fmt.Errorf("tokens: open exe1: %w", err)
	}
	plain, err := aead.Open(nil, nil, sealed, Exe1ID(handle))
	if err != nil {
		return "", ErrExe1Open
	}
	return string(plain), nil
}

func exe1AEAD(handle string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(handle), nil, exe1KeyLabel, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	// Each key seals exactly one token, so random nonces are far inside
	// GCM's limits.
	return cipher.NewGCMWithRandomNonce(block)
}
