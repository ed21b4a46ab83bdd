package keys

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"

	"golang.org/x/crypto/ssh"
)

// smallOrderEncodings returns every 32-byte encoding of the eight ed25519
// points of small order, canonical or not: each listed y with either sign
// bit (14 in all, as libsodium counts them).
func smallOrderEncodings() [][]byte {
	var out [][]byte
	for _, y := range smallOrder {
		for _, sign := range []byte{0, 0x80} {
			e := y
			e[31] |= sign
			out = append(out, e[:])
		}
	}
	return out
}

// TestSmallOrderEd25519KeyForgesSignatures: a small-order ed25519 public key
// lets anyone make signatures that verify (shown here for the identity
// point with Go's own ed25519.Verify), so it is refused wherever a key
// enters (ParsePublicKey: ssh-key add, exed user add; AllowedKey: SSH login)
// and in verification (ParseSignature), in all its encodings and for the
// FIDO type too.
func TestSmallOrderEd25519KeyForgesSignatures(t *testing.T) {
	// Why: the identity point A = (0, 1), R = A, S = 0 verifies over any
	// message.
	identity := make([]byte, 32)
	identity[0] = 1
	forged := append(append([]byte{}, identity...), make([]byte, 32)...)
	if !ed25519.Verify(identity, []byte("anything at all"), forged) {
		t.Log("ed25519.Verify refuses the identity-point forgery on this Go; the keys are refused anyway")
	}

	encs := smallOrderEncodings()
	if len(encs) != 14 {
		t.Fatalf("%d encodings, want 14", len(encs))
	}
	for _, enc := range encs {
		plain := ssh.Marshal(struct {
			Type string
			Key  []byte
		}{ssh.KeyAlgoED25519, enc})
		sk := ssh.Marshal(struct {
			Type string
			Key  []byte
			App  string
		}{ssh.KeyAlgoSKED25519, enc, "ssh:"})
		for _, blob := range [][]byte{plain, sk} {
			pub, err := ssh.ParsePublicKey(blob)
			if err != nil {
				t.Fatalf("x/crypto parse %x: %v", enc, err)
			}
			line := []byte(pub.Type() + " " + base64.StdEncoding.EncodeToString(blob) + " weak")
			if _, _, err := ParsePublicKey(line); !errors.Is(err, ErrWeakKey) || !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("ParsePublicKey(%s %x) = %v, want ErrWeakKey", pub.Type(), enc, err)
			}
			if err := AllowedKey(pub); !errors.Is(err, ErrWeakKey) {
				t.Errorf("AllowedKey(%s %x) = %v, want ErrWeakKey", pub.Type(), enc, err)
			}
			// A signature blob naming the key: refused before any
			// cryptography.
			sig := ssh.Marshal(struct {
				Format string
				Blob   []byte
			}{ssh.KeyAlgoED25519, forged})
			if pub.Type() == ssh.KeyAlgoSKED25519 {
				sig = ssh.Marshal(struct {
					Format  string
					Blob    []byte
					Flags   byte
					Counter uint32
				}{ssh.KeyAlgoSKED25519, forged, 1, 0})
			}
			if _, err := ParseSignature(assemble(blob, "v0@exe.dev", HashSHA512, sig)); !errors.Is(err, ErrWeakKey) {
				t.Errorf("ParseSignature with %s %x = %v, want ErrWeakKey", pub.Type(), enc, err)
			}
		}
	}
	// An ordinary key passes.
	ed, _ := ed25519Signer(t)
	if err := AllowedKey(ed.PublicKey()); err != nil {
		t.Errorf("an ordinary ed25519 key: %v", err)
	}
}

// withS returns blob with its ECDSA signature's s replaced by s.
func withS(t *testing.T, blob []byte, s *big.Int) []byte {
	t.Helper()
	p := splitSSHSIG(t, blob)
	sig := splitSig(t, p.Signature)
	var rs struct{ R, S *big.Int }
	if err := ssh.Unmarshal(sig.Blob, &rs); err != nil {
		t.Fatal(err)
	}
	sig.Blob = ssh.Marshal(struct{ R, S *big.Int }{rs.R, s})
	p.Signature = ssh.Marshal(sig)
	return p.marshal()
}

func sOf(t *testing.T, blob []byte) *big.Int {
	t.Helper()
	var rs struct{ R, S *big.Int }
	if err := ssh.Unmarshal(splitSig(t, splitSSHSIG(t, blob).Signature).Blob, &rs); err != nil {
		t.Fatal(err)
	}
	return rs.S
}

// TestECDSASignatureMalleable: (r, s) and (r, n-s) both verify, so an ECDSA
// signature has two encodings. Both are accepted (ssh-keygen emits either,
// see TestSSHKeygenECDSAHighS), but each parses to the one low-S signature:
// Marshal gives the same blob for both, and HighS says which was given.
// Values of s (or r) at or above the group order, which fit P-521's mpint,
// are refused.
func TestECDSASignatureMalleable(t *testing.T) {
	msg := []byte(`{"exp":4070908800}`)
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			signer := newSigner(t, ecdsaKey(t, curve))
			blob, err := Sign(signer, "v0@exe.dev", HashSHA512, msg)
			if err != nil {
				t.Fatal(err)
			}
			n := curve.Params().N
			s := sOf(t, blob)
			other := withS(t, blob, new(big.Int).Sub(n, s))
			a, err := ParseSignature(blob)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseSignature(other)
			if err != nil {
				t.Fatalf("the other encoding: %v", err)
			}
			for _, x := range []*Signature{a, b} {
				if err := x.Verify(msg); err != nil {
					t.Errorf("verify: %v", err)
				}
			}
			if a.HighS() == b.HighS() {
				t.Errorf("HighS %v and %v: exactly one of s and n-s is high", a.HighS(), b.HighS())
			}
			low := blob
			if a.HighS() {
				low = other
			}
			if string(a.Marshal()) != string(low) || string(b.Marshal()) != string(low) {
				t.Error("the two encodings do not marshal to the one low-S blob")
			}
			for _, bad := range []*big.Int{new(big.Int).Add(s, n), new(big.Int).Set(n)} {
				if bad.BitLen() > (curve.Params().BitSize+7)/8*8 {
					continue // does not fit the mpint at all: refused as an encoding error
				}
				if _, err := ParseSignature(withS(t, blob, bad)); !errors.Is(err, ErrMalformed) {
					t.Errorf("s = %v (≥ n): %v, want ErrMalformed", bad, err)
				}
			}
		})
	}
}

// TestSSHKeygenECDSAHighS: stock ssh-keygen's ECDSA signatures come in
// either form (OpenSSH does not normalise s), so exed must accept high-S
// ones rather than refuse them; each verifies, and Marshal of its parse is
// the low-S form that also verifies. The committed OpenSSH vector keeps
// verifying byte for byte.
func TestSSHKeygenECDSAHighS(t *testing.T) {
	dir := t.TempDir()
	mustKeygen(t, dir, nil, "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", "key")
	msg := []byte(`{"ctx":1}`)
	var high, low int
	for i := 0; i < 24 && (high == 0 || low == 0); i++ {
		blob, err := Unarmor(mustKeygen(t, dir, msg, "-Y", "sign", "-f", "key", "-n", "v0@exe.dev"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSignature(blob)
		if err != nil {
			t.Fatalf("ssh-keygen's signature: %v", err)
		}
		if err := s.Verify(msg); err != nil {
			t.Fatalf("ssh-keygen's signature: %v", err)
		}
		c, err := ParseSignature(s.Marshal())
		if err != nil || c.HighS() || c.Verify(msg) != nil {
			t.Fatalf("canonical form: %v", err)
		}
		if s.HighS() {
			high++
		} else {
			low++
		}
	}
	t.Logf("ssh-keygen ECDSA P-256: %d high-S, %d low-S signatures", high, low)
	if high == 0 {
		t.Error("no high-S signature from ssh-keygen in 24: the premise of canonicalising is gone")
	}

	_, blob := readVector(t, "ecdsa")
	s, err := ParseSignature(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(vectorMessage(t)); err != nil {
		t.Errorf("the committed OpenSSH vector: %v", err)
	}
	if !s.HighS() && string(s.Marshal()) != string(blob) {
		t.Error("Marshal of a low-S vector differs from it")
	}
}

// TestMarshalRoundTrip: for every key type, Marshal of a parsed low-S (or
// non-ECDSA) signature is the blob it was parsed from.
func TestMarshalRoundTrip(t *testing.T) {
	msg := []byte(`{}`)
	for name, signer := range testSigners(t) {
		blob, err := Sign(signer, "v0@exe.dev", HashSHA256, msg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSignature(blob)
		if err != nil {
			t.Fatal(err)
		}
		if !s.HighS() && string(s.Marshal()) != string(blob) {
			t.Errorf("%s: Marshal differs from the parsed blob", name)
		}
	}
	for _, k := range []*skKey{newSKEd25519(t, "ssh:"), newSKECDSA(t, "ssh:")} {
		blob := k.sign(t, "v0@exe.dev", HashSHA512, msg, 1, 7)
		s, err := ParseSignature(blob)
		if err != nil {
			t.Fatal(err)
		}
		if !s.HighS() && string(s.Marshal()) != string(blob) {
			t.Errorf("sk: Marshal differs from the parsed blob")
		}
	}
}
