package keys

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// OpenSSH's own vectors verify, with the key, namespace and hash they carry.
func TestOpenSSHVectors(t *testing.T) {
	message := vectorMessage(t)
	for _, name := range []string{"ed25519", "ecdsa", "rsa", "ed25519_sk", "ecdsa_sk"} {
		t.Run(name, func(t *testing.T) {
			pub, blob := readVector(t, name)
			s, err := ParseSignature(blob)
			if err != nil {
				t.Fatal(err)
			}
			if s.Namespace != vectorNamespace || s.HashAlgorithm != HashSHA512 {
				t.Errorf("namespace %q hash %q, want %q sha512", s.Namespace, s.HashAlgorithm, vectorNamespace)
			}
			if got, want := s.Fingerprint(), Fingerprint(pub); got != want {
				t.Errorf("fingerprint %s, want the .pub's %s", got, want)
			}
			if !bytes.Equal(s.PublicKey.Marshal(), pub.Marshal()) {
				t.Error("embedded key differs from the .pub")
			}
			if err := s.Verify(message); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			wantErr(t, s.Verify(append(message, '!')), ErrBadSignature, "does not verify")

			// Armor gives back the very text ssh-keygen wrote.
			armored, _ := os.ReadFile(filepath.Join(vectorDir, name+".sig"))
			if got := Armor(blob); !bytes.Equal(got, armored) {
				t.Errorf("Armor:\n%s\nwant:\n%s", got, armored)
			}
		})
	}
	// The RSA vector carries rsa-sha2-512, the only RSA signature OpenSSH makes.
	_, blob := readVector(t, "rsa")
	if s, _ := ParseSignature(blob); s.format != ssh.KeyAlgoRSASHA512 {
		t.Errorf("rsa vector format %q", s.format)
	}
}

// Decision: WebAuthn security-key signatures are refused (see parseSig),
// even though this one is genuine.
func TestWebAuthnRefused(t *testing.T) {
	_, blob := readVector(t, "ecdsa_sk_webauthn")
	_, err := ParseSignature(blob)
	wantErr(t, err, ErrMalformed, "WebAuthn")
}

func TestSignVerify(t *testing.T) {
	message := []byte(`{"exp":4070908800,"ctx":{"role":"deploy"}}`)
	for name, signer := range testSigners(t) {
		for _, hash := range []string{HashSHA512, HashSHA256} {
			t.Run(name+"/"+hash, func(t *testing.T) {
				blob, err := Sign(signer, "v0@web.exe.xyz", hash, message)
				if err != nil {
					t.Fatal(err)
				}
				s, err := ParseSignature(blob)
				if err != nil {
					t.Fatal(err)
				}
				if s.Namespace != "v0@web.exe.xyz" || s.HashAlgorithm != hash {
					t.Errorf("namespace %q hash %q", s.Namespace, s.HashAlgorithm)
				}
				if s.Fingerprint() != Fingerprint(signer.PublicKey()) {
					t.Error("fingerprint is not the signer's")
				}
				if err := s.Verify(message); err != nil {
					t.Fatal(err)
				}
				wantErr(t, s.Verify(message[1:]), ErrBadSignature, "does not verify")
				// The signature is over H(message) in the signed data as
				// x/crypto builds it, independently of our builder.
				if err := signer.PublicKey().Verify(signedData(s.Namespace, hash, message), splitSigPtr(t, blob)); err != nil {
					t.Errorf("x/crypto does not verify the signed data: %v", err)
				}
			})
		}
	}
}

func splitSigPtr(t testing.TB, blob []byte) *ssh.Signature {
	sig := splitSig(t, splitSSHSIG(t, blob).Signature)
	return &sig
}

// Ed25519 signatures are deterministic: the same input gives the same blob.
func TestSignEd25519Deterministic(t *testing.T) {
	signer, _ := ed25519Signer(t)
	a, err := Sign(signer, "ns", HashSHA512, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Sign(signer, "ns", HashSHA512, []byte("m"))
	if !bytes.Equal(a, b) {
		t.Error("two ed25519 signatures of the same input differ")
	}
}

func TestSignRefuses(t *testing.T) {
	ed, _ := ed25519Signer(t)
	if _, err := Sign(ed, "", HashSHA512, nil); err == nil {
		t.Error("signed with an empty namespace")
	}
	for _, h := range []string{"sha1", "SHA512", ""} {
		if _, err := Sign(ed, "ns", h, nil); err == nil {
			t.Errorf("signed with hash %q", h)
		}
	}
	_, err := Sign(newSigner(t, testRSA1024()), "ns", HashSHA512, nil)
	wantErr(t, err, ErrUnsupportedKey, "1024 bits")
}

// Security-key signatures, made by a software stand-in for the
// authenticator: accepted with the user-presence flag, refused without.
func TestSecurityKeys(t *testing.T) {
	message := []byte("m")
	for name, key := range map[string]*skKey{
		"ed25519_sk": newSKEd25519(t, "ssh:"),
		"ecdsa_sk":   newSKECDSA(t, "ssh:"),
	} {
		t.Run(name, func(t *testing.T) {
			for _, hash := range []string{HashSHA512, HashSHA256} {
				s, err := ParseSignature(key.sign(t, "ns", hash, message, skUserPresent, 7))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Verify(message); err != nil {
					t.Fatalf("%s: %v", hash, err)
				}
				wantErr(t, s.Verify([]byte("n")), ErrBadSignature, "does not verify")
			}
			// Flags 0x04 (user verified) without 0x01 (present): refused.
			s, err := ParseSignature(key.sign(t, "ns", HashSHA512, message, 0x04, 7))
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, s.Verify(message), ErrBadSignature, "user presence")

			// Flags and counter are covered by the signature.
			blob := key.sign(t, "ns", HashSHA512, message, skUserPresent, 7)
			blob[len(blob)-1] ^= 1 // counter
			s, err = ParseSignature(blob)
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, s.Verify(message), ErrBadSignature, "does not verify")

			// The application is part of the signed data.
			other := *key
			other.app = "ssh:other"
			s, _ = ParseSignature(assemble(key.blob, "ns", HashSHA512,
				splitSSHSIG(t, other.sign(t, "ns", HashSHA512, message, skUserPresent, 7)).Signature))
			wantErr(t, s.Verify(message), ErrBadSignature, "does not verify")
		})
	}
}

// Every refusal, with its reason. Each case starts from a valid blob and
// breaks one thing.
func TestParseSignatureRefuses(t *testing.T) {
	message := []byte("m")
	signers := testSigners(t)
	valid := func(name string) []byte {
		blob, err := Sign(signers[name], "ns", HashSHA512, message)
		if err != nil {
			t.Fatal(err)
		}
		return blob
	}
	// edit applies f to the parts of a valid blob and reassembles it.
	edit := func(name string, f func(p *sshsigParts)) []byte {
		p := splitSSHSIG(t, valid(name))
		f(&p)
		return p.marshal()
	}
	// editSig applies f to the signature field of a valid blob.
	editSig := func(name string, f func(s *ssh.Signature)) []byte {
		return edit(name, func(p *sshsigParts) {
			s := splitSig(t, p.Signature)
			f(&s)
			p.Signature = ssh.Marshal(s)
		})
	}
	// withKey re-signs message with x/crypto's plain signer (format chosen
	// by algo) and puts the result next to key.
	withKey := func(key ssh.Signer, algo string) []byte {
		data := signedData("ns", HashSHA512, message)
		sig, err := key.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, algo)
		if err != nil {
			t.Fatal(err)
		}
		return assemble(key.PublicKey().Marshal(), "ns", HashSHA512, ssh.Marshal(sig))
	}
	edBlob := valid("ed25519")
	rsaSigner := signers["rsa2048"]
	rsaPub := testRSA2048().PublicKey

	// Keys exed refuses, in SSHSIG blobs otherwise well formed.
	dsaKey := ssh.Marshal(struct {
		Type       string
		P, Q, G, Y *big.Int
	}{ssh.InsecureKeyAlgoDSA, big.NewInt(23), big.NewInt(11), big.NewInt(4), big.NewInt(8)})
	ca, _ := ed25519Signer(t)
	leaf, _ := ed25519Signer(t)
	cert := &ssh.Certificate{Key: leaf.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"u"}, ValidBefore: ssh.CertTimeInfinity,
		ValidAfter: uint64(time.Now().Unix())}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, leaf)
	if err != nil {
		t.Fatal(err)
	}
	// An RSA key with its exponent written with a superfluous leading zero.
	nonCanonical := ssh.Marshal(struct {
		Type string
		E    []byte
		N    *big.Int
	}{ssh.KeyAlgoRSA, []byte{0, 1, 0, 1}, rsaPub.N})

	tests := []struct {
		name     string
		blob     []byte
		sentinel error
		reason   string
	}{
		{"empty", nil, ErrMalformed, "bad magic"},
		{"bad magic", edit("ed25519", func(p *sshsigParts) { p.Magic[5] = 'H' }), ErrMalformed, "bad magic"},
		{"version 2", edit("ed25519", func(p *sshsigParts) { p.Version = 2 }), ErrMalformed, "version"},
		{"version 0", edit("ed25519", func(p *sshsigParts) { p.Version = 0 }), ErrMalformed, "version"},
		{"truncated", edBlob[:40], ErrMalformed, "truncated"},
		{"length past end", edBlob[:len(edBlob)-1], ErrMalformed, "truncated"},
		{"trailing bytes after blob", append(edBlob[:len(edBlob):len(edBlob)], 0), ErrMalformed, "trailing bytes after the signature"},
		{"hash sha1", edit("ed25519", func(p *sshsigParts) { p.HashAlgorithm = []byte("sha1") }), ErrMalformed, "hash algorithm"},
		{"hash SHA512", edit("ed25519", func(p *sshsigParts) { p.HashAlgorithm = []byte("SHA512") }), ErrMalformed, "hash algorithm"},
		{"hash sha384", edit("ed25519", func(p *sshsigParts) { p.HashAlgorithm = []byte("sha384") }), ErrMalformed, "hash algorithm"},
		{"empty namespace", edit("ed25519", func(p *sshsigParts) { p.Namespace = nil }), ErrMalformed, "empty namespace"},
		{"reserved not empty", edit("ed25519", func(p *sshsigParts) { p.Reserved = []byte("x") }), ErrMalformed, "reserved field"},
		{"rsa ssh-rsa SHA-1", withKey(rsaSigner, ssh.KeyAlgoRSA), ErrMalformed, "SHA-1"},
		{"stray bytes ed25519", editSig("ed25519", func(s *ssh.Signature) { s.Rest = []byte{0} }), ErrMalformed, "stray bytes"},
		{"stray bytes ecdsa", editSig("ecdsa256", func(s *ssh.Signature) { s.Rest = []byte{0} }), ErrMalformed, "stray bytes"},
		{"stray bytes rsa", editSig("rsa2048", func(s *ssh.Signature) { s.Rest = []byte{0} }), ErrMalformed, "stray bytes"},
		{"stray bytes inside ecdsa r,s", editSig("ecdsa256", func(s *ssh.Signature) { s.Blob = append(s.Blob, 0) }), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r non-canonical", editSig("ecdsa256", func(s *ssh.Signature) { s.Blob = padMPInt(t, s.Blob) }), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r zero before a small byte", editSig("ecdsa256", func(s *ssh.Signature) {
			s.Blob = ssh.Marshal(struct{ R, S []byte }{[]byte{0, 0x7f}, []byte{1}})
		}), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r two leading zeros", editSig("ecdsa256", func(s *ssh.Signature) {
			s.Blob = ssh.Marshal(struct{ R, S []byte }{[]byte{0, 0, 0x80}, []byte{1}})
		}), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r negative", editSig("ecdsa256", func(s *ssh.Signature) { s.Blob = negateR(t, s.Blob) }), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r zero", editSig("ecdsa256", func(s *ssh.Signature) { s.Blob = ssh.Marshal(struct{ R, S []byte }{nil, []byte{1}}) }), ErrMalformed, "ECDSA signature encoding"},
		{"ecdsa r too long", editSig("ecdsa256", func(s *ssh.Signature) {
			s.Blob = ssh.Marshal(struct{ R, S []byte }{bytes.Repeat([]byte{1}, 33), []byte{1}})
		}), ErrMalformed, "ECDSA signature encoding"},
		{"ed25519 63-byte signature", editSig("ed25519", func(s *ssh.Signature) { s.Blob = s.Blob[:63] }), ErrMalformed, "not 64 bytes"},
		{"rsa short signature", editSig("rsa2048", func(s *ssh.Signature) { s.Blob = s.Blob[1:] }), ErrMalformed, "modulus length"},
		{"format ecdsa on ed25519 key", editSig("ed25519", func(s *ssh.Signature) { s.Format = ssh.KeyAlgoECDSA256 }), ErrMalformed, "does not match"},
		{"format nistp384 on nistp256 key", editSig("ecdsa256", func(s *ssh.Signature) { s.Format = ssh.KeyAlgoECDSA384 }), ErrMalformed, "does not match"},
		{"format ed25519 on rsa key", editSig("rsa2048", func(s *ssh.Signature) { s.Format = ssh.KeyAlgoED25519 }), ErrMalformed, "does not match"},
		{"truncated signature field", edit("ed25519", func(p *sshsigParts) { p.Signature = p.Signature[:10] }), ErrMalformed, "truncated signature"},
		{"sk signature without flags", edit("ed25519", func(p *sshsigParts) {
			k := newSKEd25519(t, "ssh:")
			full := splitSSHSIG(t, k.sign(t, "ns", HashSHA512, message, skUserPresent, 1)).Signature
			p.PublicKey, p.Signature = k.blob, full[:len(full)-5]
		}), ErrMalformed, "truncated security-key signature"},
		{"ed25519 key 31 bytes", edit("ed25519", func(p *sshsigParts) { p.PublicKey = p.PublicKey[:len(p.PublicKey)-1] }), ErrMalformed, "public key"},
		{"rsa 1024-bit key", withKey(newSigner(t, testRSA1024()), ssh.KeyAlgoRSASHA512), ErrUnsupportedKey, "1024 bits"},
		{"dsa key", edit("ed25519", func(p *sshsigParts) { p.PublicKey = dsaKey }), ErrUnsupportedKey, "DSA"},
		{"certificate key", withKey(certSigner, ssh.KeyAlgoED25519), ErrUnsupportedKey, "certificates"},
		{"unknown key type", edit("ed25519", func(p *sshsigParts) { p.PublicKey = ssh.Marshal(struct{ T, K string }{"ssh-ed448", "k"}) }), ErrUnsupportedKey, "want ssh-ed25519"},
		{"non-canonical rsa key", edit("rsa2048", func(p *sshsigParts) { p.PublicKey = nonCanonical }), ErrMalformed, "canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSignature(tt.blob)
			if s != nil {
				t.Error("returned a Signature with an error")
			}
			wantErr(t, err, tt.sentinel, tt.reason)
		})
	}
}

// padMPInt gives r of an ECDSA signature blob a superfluous leading zero.
func padMPInt(t *testing.T, blob []byte) []byte {
	var rs struct{ R, S []byte }
	if err := ssh.Unmarshal(blob, &rs); err != nil {
		t.Fatal(err)
	}
	rs.R = append([]byte{0}, rs.R...) // needed only if it was not there and r's top bit is set: never here
	return ssh.Marshal(rs)
}

// negateR sets the sign bit of r (dropping a leading zero that clears it).
func negateR(t *testing.T, blob []byte) []byte {
	var rs struct{ R, S []byte }
	if err := ssh.Unmarshal(blob, &rs); err != nil {
		t.Fatal(err)
	}
	if rs.R[0] == 0 {
		rs.R = rs.R[1:]
	}
	rs.R[0] |= 0x80
	return ssh.Marshal(rs)
}

// A well-formed signature that does not match: refused by Verify.
func TestVerifyRefuses(t *testing.T) {
	message := []byte("m")
	signers := testSigners(t)
	others := testSigners(t)
	others["rsa2048"] = newSigner(t, mustRSA(2048)) // testSigners' RSA key is shared
	for name, signer := range signers {
		t.Run(name, func(t *testing.T) {
			blob, err := Sign(signer, "ns", HashSHA512, message)
			if err != nil {
				t.Fatal(err)
			}
			mutations := map[string]func(p *sshsigParts){
				// The last byte of the signature proper (ECDSA: of s).
				"flipped signature bit": func(p *sshsigParts) { p.Signature[len(p.Signature)-1] ^= 1 },
				// Namespace and hash are in the signed data.
				"other namespace": func(p *sshsigParts) { p.Namespace = []byte("nt") },
				"other hash":      func(p *sshsigParts) { p.HashAlgorithm = []byte(HashSHA256) },
				// Another key of the same type (and, for RSA, size).
				"other key": func(p *sshsigParts) { p.PublicKey = others[name].PublicKey().Marshal() },
			}
			for what, mutate := range mutations {
				p := splitSSHSIG(t, blob)
				mutate(&p)
				s, err := ParseSignature(p.marshal())
				if err != nil {
					t.Fatalf("%s: parse: %v", what, err)
				}
				wantErr(t, s.Verify(message), ErrBadSignature, "does not verify")
			}
		})
	}
	// A Signature that did not come from ParseSignature verifies nothing.
	wantErr(t, (&Signature{}).Verify(message), ErrBadSignature, "does not verify")
}

// Verify does all its work on the stack for ed25519, exed's own key type.
func TestVerifyEd25519Allocs(t *testing.T) {
	_, blob := readVector(t, "ed25519")
	message := vectorMessage(t)
	s, err := ParseSignature(blob)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.Verify(message) }); n != 0 {
		t.Errorf("Verify allocates %v times, want 0", n)
	}
	// The Signature, the Namespace string, and two boxes inside
	// ssh.NewPublicKey (its argument and its result).
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseSignature(blob) }); n > 4 {
		t.Errorf("ParseSignature allocates %v times, want at most 4", n)
	}
}

func TestArmor(t *testing.T) {
	signer := newSigner(t, ecdsaKey(t, elliptic.P521()))
	blob, err := Sign(signer, "ns", HashSHA512, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	armored := Armor(blob)
	lines := bytes.Split(bytes.TrimSuffix(armored, []byte("\n")), []byte("\n"))
	if string(lines[0]) != "-----BEGIN SSH SIGNATURE-----" || string(lines[len(lines)-1]) != "-----END SSH SIGNATURE-----" {
		t.Errorf("armor lines: %q … %q", lines[0], lines[len(lines)-1])
	}
	for i, l := range lines[1 : len(lines)-1] {
		if len(l) > 70 || (i < len(lines)-3 && len(l) != 70) {
			t.Errorf("line %d is %d columns", i+1, len(l))
		}
	}
	for name, text := range map[string][]byte{
		"as written": armored,
		"CRLF":       bytes.ReplaceAll(armored, []byte("\n"), []byte("\r\n")),
		"spaced":     append(append([]byte("\n  "), armored...), "\n\n"...),
	} {
		got, err := Unarmor(text)
		if err != nil || !bytes.Equal(got, blob) {
			t.Errorf("%s: Unarmor = %v, %v", name, err, bytes.Equal(got, blob))
		}
	}
	for name, text := range map[string][]byte{
		"no begin":        bytes.TrimPrefix(armored, []byte("-----BEGIN SSH SIGNATURE-----")),
		"no end":          bytes.TrimSuffix(armored, []byte("-----END SSH SIGNATURE-----\n")),
		"other label":     bytes.ReplaceAll(armored, []byte("SSH SIGNATURE"), []byte("PGP SIGNATURE")),
		"bad base64":      bytes.Replace(armored, []byte("\n"), []byte("\n*"), 1),
		"non-canonical":   []byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAB==\n-----END SSH SIGNATURE-----\n"),
		"missing padding": []byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAA\n-----END SSH SIGNATURE-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Unarmor(text)
			wantErr(t, err, ErrMalformed, "armored signature")
		})
	}
}

// A parsed Signature refers into the blob with capacities capped, so
// appending to a field cannot overwrite the next.
func TestParseSignatureFieldsCapped(t *testing.T) {
	signer, _ := ed25519Signer(t)
	blob, _ := Sign(signer, "ns", HashSHA512, []byte("m"))
	s, err := ParseSignature(blob)
	if err != nil {
		t.Fatal(err)
	}
	if cap(s.PublicKeyBlob) != len(s.PublicKeyBlob) {
		t.Errorf("PublicKeyBlob cap %d > len %d", cap(s.PublicKeyBlob), len(s.PublicKeyBlob))
	}
}

// TestAppendDERInts: the DER verifyECDSA writes is encoding/asn1's for the
// same two positive integers, for every magnitude length up to P-521's
// and with the high bit set or clear.
func TestAppendDERInts(t *testing.T) {
	for n := 1; n <= 66; n++ {
		for _, top := range []byte{0x01, 0x7f, 0x80, 0xff} {
			r := bytes.Repeat([]byte{0x5a}, n)
			r[0] = top
			s := bytes.Repeat([]byte{0xa5}, 67-n)
			want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
			if err != nil {
				t.Fatal(err)
			}
			if got := appendDERInts(nil, r, s); !bytes.Equal(got, want) {
				t.Fatalf("r of %d bytes from %#x: got % x, want % x", n, top, got, want)
			}
		}
	}
}
