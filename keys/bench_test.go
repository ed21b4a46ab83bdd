package keys

import (
	"crypto/ed25519"
	"testing"
)

// BenchmarkVerifyEd25519 is the whole cost of checking an exe0 token's
// ed25519 signature: ParseSignature and Verify of OpenSSH's vector.
// Compare with BenchmarkBareEd25519Verify, the same signature checked
// with ed25519.Verify over prebuilt signed data: the target is ≤ 1.1×.
func BenchmarkVerifyEd25519(b *testing.B) {
	_, blob := readVector(b, "ed25519")
	message := vectorMessage(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := ParseSignature(blob)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Verify(message); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareEd25519Verify(b *testing.B) {
	_, blob := readVector(b, "ed25519")
	s, err := ParseSignature(blob)
	if err != nil {
		b.Fatal(err)
	}
	pub, sig := ed25519.PublicKey(s.edKey), s.sig
	data := signedData(s.Namespace, s.HashAlgorithm, vectorMessage(b))
	if !ed25519.Verify(pub, data, sig) {
		b.Fatal("vector does not verify")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, data, sig) {
			b.Fatal("does not verify")
		}
	}
}

// The other key types, for scale.
func BenchmarkVerify(b *testing.B) {
	message := vectorMessage(b)
	for _, name := range []string{"ecdsa", "rsa", "ed25519_sk", "ecdsa_sk"} {
		_, blob := readVector(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := ParseSignature(blob)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Verify(message); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
