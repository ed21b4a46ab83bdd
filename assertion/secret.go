package assertion

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SecretSize is the length of the server secret: 32 random bytes.
const SecretSize = 32

// sealInfo binds the key derived from the server secret to this one use
// (HKDF's info): another use of the same secret derives another key.
const sealInfo = "exed assertion signing keys v1"

// Secret is the server secret (`--secret-key-file`), as the AEAD that
// seals the assertion signing keys in the store: AES-256-GCM under a key
// derived from the secret with HKDF-SHA256. Every instance sharing a
// database must have the same one. It is safe for concurrent use.
type Secret struct {
	path string // where it was read from, for error messages
	aead cipher.AEAD
	prk  []byte // HKDF pseudorandom key of the secret, for Sealer
}

// NewSecret returns the Secret for the SecretSize bytes b; from names
// where they came from, for error messages.
func NewSecret(b []byte, from string) (*Secret, error) {
	if len(b) != SecretSize {
		return nil, fmt.Errorf("assertion: server secret %s: %d bytes, want %d random bytes", from, len(b), SecretSize)
	}
	prk, err := hkdf.Extract(sha256.New, b, nil)
	if err != nil {
		return nil, fmt.Errorf("assertion: server secret %s: %w", from, err)
	}
	s := &Secret{path: from, prk: prk}
	if s.aead, err = s.derive(sealInfo); err != nil {
		return nil, err
	}
	return s, nil
}

// derive returns the AES-256-GCM AEAD under the key HKDF-SHA256 derives
// from the secret for info: one key per use of the secret.
func (s *Secret) derive(info string) (cipher.AEAD, error) {
	key, err := hkdf.Expand(sha256.New, s.prk, info, 32)
	if err != nil {
		return nil, fmt.Errorf("assertion: derive a sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("assertion: derive a sealing key: %w", err)
	}
	return cipher.NewGCM(block)
}

// Sealer seals other secrets kept in the store (the ACME account and
// certificate keys) under a key derived from the server secret for info
// alone, so that no two uses share a key.
type Sealer struct{ aead cipher.AEAD }

// Sealer returns the Sealer for info (e.g. "exed acme private keys v1").
func (s *Secret) Sealer(info string) (*Sealer, error) {
	if info == sealInfo {
		return nil, errors.New("assertion: that sealing purpose is the signing keys' own")
	}
	aead, err := s.derive(info)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to additionalData: nonce ‖ ciphertext.
func (s *Sealer) Seal(plaintext, additionalData []byte) ([]byte, error) {
	return sealWith(s.aead, plaintext, additionalData), nil
}

// Open reverses Seal; the additional data must be the same.
func (s *Sealer) Open(sealed, additionalData []byte) ([]byte, error) {
	return openWith(s.aead, sealed, additionalData)
}

// LoadOrCreateSecret reads the server secret at path, or, when there is
// none, creates one there: SecretSize bytes from crypto/rand, mode 0600,
// its directory 0700. Creation is atomic (a temporary file linked into
// place), so two processes starting at once agree on one secret. Like the
// host key, a file that others can read is refused.
func LoadOrCreateSecret(path string) (*Secret, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSecret(path); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("assertion: server secret: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("assertion: server secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("assertion: server secret %s: permissions %04o are too open (chmod 600 it)", path, fi.Mode().Perm())
	}
	defer clear(b)
	return NewSecret(b, path)
}

func createSecret(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("assertion: create server secret: %w", err)
	}
	b := make([]byte, SecretSize)
	rand.Read(b)
	defer clear(b)
	tmp, err := os.CreateTemp(dir, ".secret-*") // mode 0600
	if err != nil {
		return fmt.Errorf("assertion: create server secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("assertion: create server secret: %w", err)
	}
	// Link fails if a secret appeared meanwhile: then that one is used.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("assertion: create server secret: %w", err)
	}
	return nil
}

// String names the secret by where it came from (never its bytes).
func (s *Secret) String() string { return s.path }

// seal encrypts plaintext with kid as associated data: nonce ‖ ciphertext.
func (s *Secret) seal(plaintext []byte, kid string) []byte {
	return sealWith(s.aead, plaintext, []byte(kid))
}

func sealWith(aead cipher.AEAD, plaintext, ad []byte) []byte {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, ad)
}

// errWrongSecret: a sealed key does not open. The secret is not the one
// it was sealed under (or the row was tampered with).
var errWrongSecret = errors.New("does not open with this server secret")

// open reverses seal; the associated data must be the same kid.
func (s *Secret) open(sealed []byte, kid string) ([]byte, error) {
	return openWith(s.aead, sealed, []byte(kid))
}

func openWith(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, errWrongSecret
	}
	b, err := aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, errWrongSecret
	}
	return b, nil
}
