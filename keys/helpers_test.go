package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// vectorDir holds OpenSSH's own SSHSIG test vectors (see its README.md).
const vectorDir = "testdata/openssh-sshsig"

// vectorNamespace and vectorMessage are what every vector signs.
const vectorNamespace = "unittest"

func vectorMessage(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, "signed-data"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readVector returns a vector's public key and binary signature blob.
func readVector(t testing.TB, name string) (ssh.PublicKey, []byte) {
	t.Helper()
	line, err := os.ReadFile(filepath.Join(vectorDir, name+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ParsePublicKey(line)
	if err != nil {
		t.Fatalf("%s.pub: %v", name, err)
	}
	armored, err := os.ReadFile(filepath.Join(vectorDir, name+".sig"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := Unarmor(armored)
	if err != nil {
		t.Fatalf("%s.sig: %v", name, err)
	}
	return pub, blob
}

// Go-generated keys, made once per test binary: RSA generation is slow
// under the race detector.
var (
	testRSA2048 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA1024 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func newSigner(t testing.TB, key crypto.Signer) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ed25519Signer(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newSigner(t, priv), priv
}

func ecdsaKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testSigners returns one software signer per signing key type.
func testSigners(t testing.TB) map[string]ssh.Signer {
	t.Helper()
	ed, _ := ed25519Signer(t)
	return map[string]ssh.Signer{
		"ed25519":  ed,
		"ecdsa256": newSigner(t, ecdsaKey(t, elliptic.P256())),
		"ecdsa384": newSigner(t, ecdsaKey(t, elliptic.P384())),
		"ecdsa521": newSigner(t, ecdsaKey(t, elliptic.P521())),
		"rsa2048":  newSigner(t, testRSA2048()),
	}
}

// sshsigParts is an SSHSIG blob taken apart, for building odd ones.
type sshsigParts struct {
	Magic         [6]byte
	Version       uint32
	PublicKey     []byte
	Namespace     []byte
	Reserved      []byte
	HashAlgorithm []byte
	Signature     []byte
}

func (p sshsigParts) marshal() []byte { return ssh.Marshal(p) }

func splitSSHSIG(t testing.TB, blob []byte) sshsigParts {
	t.Helper()
	var p sshsigParts
	if err := ssh.Unmarshal(blob, &p); err != nil {
		t.Fatalf("split SSHSIG: %v", err)
	}
	return p
}

// splitSig takes apart the signature field: format, blob, rest (sk flags
// and counter, or stray bytes).
func splitSig(t testing.TB, sig []byte) ssh.Signature {
	t.Helper()
	var s ssh.Signature
	if err := ssh.Unmarshal(sig, &s); err != nil {
		t.Fatalf("split signature: %v", err)
	}
	return s
}

// signedData is the SSHSIG signed data for message, built independently
// of the package's appendSignedData (with x/crypto's marshaller).
func signedData(namespace, hashAlg string, message []byte) []byte {
	var digest []byte
	switch hashAlg {
	case HashSHA256:
		h := sha256.Sum256(message)
		digest = h[:]
	default:
		h := crypto.SHA512.New()
		h.Write(message)
		digest = h.Sum(nil)
	}
	return append([]byte("SSHSIG"), ssh.Marshal(struct {
		Namespace, Reserved, HashAlgorithm string
		Digest                             []byte
	}{namespace, "", hashAlg, digest})...)
}

// assemble builds an SSHSIG blob from a key and a signature field.
func assemble(keyBlob []byte, namespace, hashAlg string, sig []byte) []byte {
	return sshsigParts{
		Magic:         [6]byte([]byte("SSHSIG")),
		Version:       1,
		PublicKey:     keyBlob,
		Namespace:     []byte(namespace),
		HashAlgorithm: []byte(hashAlg),
		Signature:     sig,
	}.marshal()
}

// skKey is a software stand-in for a FIDO security key: the same
// signature arithmetic an authenticator does (PROTOCOL.u2f), so that
// sk signatures can be made in tests with chosen flags.
type skKey struct {
	blob []byte // sk public key, wire form
	app  string
	ed   ed25519.PrivateKey
	ec   *ecdsa.PrivateKey
}

func newSKEd25519(t testing.TB, app string) *skKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blob := ssh.Marshal(struct {
		Type string
		Key  []byte
		App  string
	}{ssh.KeyAlgoSKED25519, pub, app})
	return &skKey{blob: blob, app: app, ed: priv}
}

func newSKECDSA(t testing.TB, app string) *skKey {
	t.Helper()
	k := ecdsaKey(t, elliptic.P256())
	point, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	blob := ssh.Marshal(struct {
		Type, Curve string
		Point       []byte
		App         string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", point, app})
	return &skKey{blob: blob, app: app, ec: k}
}

// sign makes an SSHSIG blob as an authenticator would, with the given flags.
func (k *skKey) sign(t testing.TB, namespace, hashAlg string, message []byte, flags byte, counter uint32) []byte {
	t.Helper()
	app := sha256.Sum256([]byte(k.app))
	msg := sha256.Sum256(signedData(namespace, hashAlg, message))
	signed := append(app[:], flags, byte(counter>>24), byte(counter>>16), byte(counter>>8), byte(counter))
	signed = append(signed, msg[:]...)

	var format string
	var sigBlob []byte
	if k.ed != nil {
		format, sigBlob = ssh.KeyAlgoSKED25519, ed25519.Sign(k.ed, signed)
	} else {
		h := sha256.Sum256(signed)
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, h[:])
		if err != nil {
			t.Fatal(err)
		}
		format, sigBlob = ssh.KeyAlgoSKECDSA256, ssh.Marshal(struct{ R, S *big.Int }{r, s})
	}
	sig := ssh.Marshal(struct {
		Format  string
		Blob    []byte
		Flags   byte
		Counter uint32
	}{format, sigBlob, flags, counter})
	return assemble(k.blob, namespace, hashAlg, sig)
}

// wantErr fails unless err wraps sentinel and its text contains reason.
func wantErr(t testing.TB, err, sentinel error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v (%s)", sentinel, reason)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want it to wrap %v", err, sentinel)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("got %q, want it to say %q", err, reason)
	}
}
