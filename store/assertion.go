package store

import (
	"context"
	"time"
)

// AssertionKey is one signing key of the signed identity assertions: an
// ECDSA P-256 key pair whose private half is kept only sealed
// (AEAD) under the server secret, which the store never sees. What the
// key's times mean, and which key signs when, is package assertion's
// business; the store keeps the rows and lets exactly one key have each
// generation.
type AssertionKey struct {
	ID         string    // the kid: RFC 7638 thumbprint of the public JWK
	Generation int64     // 1, 2, 3…: unique, so that of two instances rotating at once exactly one adds the next key
	PublicKey  []byte    // the public key, an uncompressed P-256 point (SEC 1, 65 bytes)
	Sealed     []byte    // the private key, sealed under the server secret with ID as associated data
	CreatedAt  time.Time // published from then on
	SignFrom   time.Time // may sign from then on
}

// AssertionKeyStore holds the assertion signing keys.
type AssertionKeyStore interface {
	// AddAssertionKey stores k. ErrExists when a key already has k's
	// generation (another instance added it first: read the keys again)
	// or its ID.
	AddAssertionKey(ctx context.Context, k AssertionKey, e Event) error
	// AssertionKeys lists every key, retired ones included, by generation.
	AssertionKeys(ctx context.Context) ([]AssertionKey, error)
}
