package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Fingerprints of the vectors' keys as `ssh-keygen -lf` prints them.
var vectorFingerprints = map[string]string{
	"ecdsa":             "SHA256:YInG0FuXzFrI4twnU4WIDUE7/iFeM9DVtx6zdi61Pvg",
	"ecdsa_sk":          "SHA256:/ALxJUlmDPE0gxeL1nZip4oXm1VG1qmR2xL5iUzZD1A",
	"ecdsa_sk_webauthn": "SHA256:CnLUlPNaYYz05nves7k8lkzRjnzbbkaxQnfzZrS3kSM",
	"ed25519":           "SHA256:ZxTZQ/K7JZpz0mHqWqdmYCUcq3MAtnu9TYA66TCBkxM",
	"ed25519_sk":        "SHA256:pbI9wlyrFSsUbp+GTiIAOqNMvoajbF2tHsPMECyrMYU",
	"rsa":               "SHA256:PnEztoQ74skPJhb/bvdbzdOVa2whp8Ws4housCPVrkI",
}

func TestParsePublicKeyVectors(t *testing.T) {
	for name, fp := range vectorFingerprints {
		line, err := os.ReadFile(filepath.Join(vectorDir, name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		pub, comment, err := ParsePublicKey(line)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if Fingerprint(pub) != fp || FingerprintBlob(pub.Marshal()) != fp {
			t.Errorf("%s: fingerprint %s, want %s", name, Fingerprint(pub), fp)
		}
		fields := strings.Fields(string(line))
		if got := MarshalAuthorized(pub); got != fields[0]+" "+fields[1] {
			t.Errorf("%s: MarshalAuthorized = %q", name, got)
		}
		if want := strings.Join(fields[2:], " "); comment != want {
			t.Errorf("%s: comment %q, want %q", name, comment, want)
		}
	}
}

func TestParsePublicKeyLayout(t *testing.T) {
	signer, _ := ed25519Signer(t)
	key := MarshalAuthorized(signer.PublicKey())
	for line, wantComment := range map[string]string{
		key:                          "",
		key + "\n":                   "",
		key + "\r\n":                 "",
		"  " + key + "  ":            "",
		key + " me@host":             "me@host",
		key + "\t me and my laptop ": "me and my laptop",
		strings.Replace(key, " ", "\t", 1) + " c": "c",
	} {
		pub, comment, err := ParsePublicKey([]byte(line))
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if comment != wantComment || MarshalAuthorized(pub) != key {
			t.Errorf("%q: comment %q key %s", line, comment, MarshalAuthorized(pub))
		}
	}
}

func TestParsePublicKeyRefuses(t *testing.T) {
	ed, edPriv := ed25519Signer(t)
	edKey := MarshalAuthorized(ed.PublicKey())
	edB64 := strings.Fields(edKey)[1]
	rsa1024 := MarshalAuthorized(newSigner(t, testRSA1024()).PublicKey())
	ecKey := MarshalAuthorized(testSigners(t)["ecdsa256"].PublicKey()) // 104 bytes: base64 ends in "="

	opensshPriv, err := MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	pemRSA := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}})

	ca, _ := ed25519Signer(t)
	cert := &ssh.Certificate{Key: ed.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"u"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	dsa := ssh.Marshal(struct {
		Type       string
		P, Q, G, Y *big.Int
	}{ssh.InsecureKeyAlgoDSA, big.NewInt(23), big.NewInt(11), big.NewInt(4), big.NewInt(8)})
	nonCanonical := ssh.Marshal(struct {
		Type string
		E    []byte
		N    *big.Int
	}{ssh.KeyAlgoRSA, []byte{0, 1, 0, 1}, testRSA2048().N})
	b64 := base64.StdEncoding.EncodeToString

	tests := []struct {
		name     string
		line     string
		sentinel error // nil: any error, checked by reason only
		reason   string
	}{
		{"openssh private key", string(opensshPriv), ErrPrivateKey, ".pub"},
		{"pem private key", string(pemRSA), ErrPrivateKey, ".pub"},
		{"putty private key", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n", ErrPrivateKey, ".pub"},
		{"rsa 1024", rsa1024, ErrUnsupportedKey, "1024 bits"},
		{"dsa", "ssh-dss " + b64(dsa), ErrUnsupportedKey, "DSA"},
		{"certificate", string(ssh.MarshalAuthorizedKey(cert)), ErrUnsupportedKey, "certificates"},
		{"unknown type", "ssh-ed448 " + edB64, ErrUnsupportedKey, "want ssh-ed25519"},
		{"options", `from="10.0.0.1" ` + edKey, ErrUnsupportedKey, "want ssh-ed25519"},
		{"empty", "", ErrUnsupportedKey, "want ssh-ed25519"},
		{"type mismatch", "ssh-rsa " + edB64, nil, "does not match"},
		{"bad base64", "ssh-ed25519 " + edB64[:len(edB64)-2] + "!", nil, "base64"},
		{"unpadded base64", strings.TrimRight(ecKey, "="), nil, "base64"},
		{"no key", "ssh-ed25519", nil, "parse public key"},
		{"two keys", edKey + "\n" + edKey, nil, "one line"},
		{"non-canonical rsa", "ssh-rsa " + b64(nonCanonical), nil, "canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, _, err := ParsePublicKey([]byte(tt.line))
			if pub != nil {
				t.Error("returned a key with an error")
			}
			if tt.sentinel != nil {
				wantErr(t, err, tt.sentinel, tt.reason)
			} else if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %v, want an error saying %q", err, tt.reason)
			}
		})
	}
	// The private key is not echoed back.
	_, _, err = ParsePublicKey(opensshPriv)
	if strings.Contains(err.Error(), "OPENSSH") || strings.Contains(err.Error(), string(opensshPriv[40:60])) {
		t.Errorf("error echoes the private key: %v", err)
	}
}

// agentKey has only the wire form, like an ssh-agent's keys.
type agentKey struct{ ssh.PublicKey }

func (k agentKey) Type() string    { return k.PublicKey.Type() }
func (k agentKey) Marshal() []byte { return k.PublicKey.Marshal() }

func TestAllowedKey(t *testing.T) {
	for name, signer := range testSigners(t) {
		if err := AllowedKey(signer.PublicKey()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"ed25519_sk", "ecdsa_sk"} {
		pub, _ := readVector(t, name)
		if err := AllowedKey(pub); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	rsa2048 := newSigner(t, testRSA2048()).PublicKey()
	rsa1024 := newSigner(t, testRSA1024()).PublicKey()
	if err := AllowedKey(agentKey{rsa2048}); err != nil {
		t.Errorf("wire-only RSA 2048: %v", err)
	}
	wantErr(t, AllowedKey(rsa1024), ErrUnsupportedKey, "1024 bits")
	wantErr(t, AllowedKey(agentKey{rsa1024}), ErrUnsupportedKey, "1024 bits")

	ed, _ := ed25519Signer(t)
	cert := &ssh.Certificate{Key: ed.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"u"}}
	if err := cert.SignCert(rand.Reader, ed); err != nil {
		t.Fatal(err)
	}
	wantErr(t, AllowedKey(cert), ErrUnsupportedKey, "certificates")
}

func TestGenerateEd25519(t *testing.T) {
	signer, priv, err := GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ssh.NewPublicKey(priv.Public())
	if !bytes.Equal(signer.PublicKey().Marshal(), want.Marshal()) {
		t.Error("signer and private key disagree")
	}
	_, priv2, _ := GenerateEd25519()
	if priv.Equal(priv2) {
		t.Error("two generated keys are equal")
	}
	blob, err := Sign(signer, "ns", HashSHA512, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSignature(blob)
	if err != nil || s.Verify([]byte("m")) != nil {
		t.Errorf("generated key's signature does not verify: %v", err)
	}
	if len(priv) != ed25519.PrivateKeySize {
		t.Errorf("private key of %d bytes", len(priv))
	}
}

func TestParsePrivateKeyRefuses(t *testing.T) {
	ed, _ := ed25519Signer(t)
	_, err := ParsePrivateKey([]byte(MarshalAuthorized(ed.PublicKey()) + " me\n"))
	if err == nil || !strings.Contains(err.Error(), "that is a public key") {
		t.Errorf("public key as private: %v", err)
	}
	if _, err := ParsePrivateKey([]byte("not a key")); err == nil {
		t.Error("parsed garbage")
	}
	small, err := MarshalPrivateKey(testRSA1024(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParsePrivateKey(small)
	wantErr(t, err, ErrUnsupportedKey, "1024 bits")
}
