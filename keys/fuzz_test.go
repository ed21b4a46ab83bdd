package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseSignature: ParseSignature never panics, refuses only with
// ErrMalformed or ErrUnsupportedKey, and whatever it accepts verifies the
// same way twice and parses again to the same thing. The seed corpus in
// testdata/fuzz/FuzzParseSignature holds real blobs: OpenSSH's vectors
// and signatures of every key type by ssh-keygen and this package.
func FuzzParseSignature(f *testing.F) {
	message := vectorMessage(f)
	f.Fuzz(func(t *testing.T, blob []byte) {
		s, err := ParseSignature(blob)
		if err != nil {
			if s != nil {
				t.Fatal("a Signature with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		err1, err2 := s.Verify(message), s.Verify(message)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Verify not deterministic: %v then %v", err1, err2)
		}
		if err1 != nil && !errors.Is(err1, ErrBadSignature) {
			t.Fatalf("Verify error not ErrBadSignature: %v", err1)
		}
		again, err := ParseSignature(bytes.Clone(blob))
		if err != nil {
			t.Fatalf("parses once, not twice: %v", err)
		}
		if again.Fingerprint() != s.Fingerprint() || again.Namespace != s.Namespace ||
			again.HashAlgorithm != s.HashAlgorithm || (again.Verify(message) == nil) != (err1 == nil) {
			t.Fatal("two parses of one blob differ")
		}
		if AllowedKey(s.PublicKey) != nil || Fingerprint(s.PublicKey) != s.Fingerprint() {
			t.Fatal("accepted a key AllowedKey refuses, or one whose wire form is not PublicKeyBlob")
		}
	})
}

// FuzzParsePublicKey: ParsePublicKey never panics, and whatever it accepts
// is an allowed key that round-trips through MarshalAuthorized.
func FuzzParsePublicKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		pub, comment, err := ParsePublicKey(line)
		if err != nil {
			if pub != nil {
				t.Fatal("a key with an error")
			}
			return
		}
		if err := AllowedKey(pub); err != nil {
			t.Fatalf("accepted a refused key: %v", err)
		}
		if comment != strings.TrimSpace(comment) {
			t.Fatalf("comment %q has surrounding space", comment)
		}
		again, c2, err := ParsePublicKey([]byte(MarshalAuthorized(pub) + " " + comment))
		if err != nil || Fingerprint(again) != Fingerprint(pub) || c2 != comment {
			t.Fatalf("does not round-trip: %v", err)
		}
	})
}

// FuzzKeyBlobMatchesXCrypto: the signature's public key, read directly for
// ed25519 and ECDSA, is accepted exactly when x/crypto parses it to a key
// of the same wire form (what the general path requires), and then as the
// same key. The seed corpus in testdata/fuzz/FuzzKeyBlobMatchesXCrypto holds
// a key of each NIST curve and ed25519, and near misses of them.
func FuzzKeyBlobMatchesXCrypto(f *testing.F) {
	f.Fuzz(func(t *testing.T, blob []byte) {
		var s Signature
		err := s.parseKey(blob)
		pub, oracleErr := ssh.ParsePublicKey(blob)
		canonical := oracleErr == nil && bytes.Equal(pub.Marshal(), blob) && AllowedKey(pub) == nil
		if err != nil {
			if canonical {
				t.Fatalf("x/crypto reads %s, parseKey refuses it: %v", pub.Type(), err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if !canonical {
			t.Fatalf("parseKey accepts a key x/crypto does not read canonically: %v", oracleErr)
		}
		if !bytes.Equal(s.PublicKey.Marshal(), blob) || s.PublicKey.Type() != pub.Type() {
			t.Fatal("parseKey's key differs from x/crypto's")
		}
	})
}
