package testkit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SeededKey returns the ed25519 private key whose seed is 32 bytes of
// seed: the same key for the same byte, in every run.
func SeededKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// SeededSigner returns a signer for SeededKey(seed), so that fingerprints
// and public keys in golden files stay the same from run to run.
func SeededSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(SeededKey(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewSigner returns a signer for a fresh random ed25519 key.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PubLine returns s's public key as an authorized_keys line without a
// comment: "ssh-ed25519 AAAA…", as exed stores and prints it.
func PubLine(s ssh.Signer) string {
	pub := s.PublicKey()
	return pub.Type() + " " + base64.StdEncoding.EncodeToString(pub.Marshal())
}
