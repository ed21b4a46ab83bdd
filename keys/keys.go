// Package keys is exed's cryptographic floor: SSH public and private keys
// (parse, fingerprint, generate, marshal) and OpenSSH SSHSIG signatures
// (PROTOCOL.sshsig): strict parsing, verification and signing.
//
// Every key type OpenSSH signs SSHSIG with is accepted: ed25519, ECDSA
// P-256/384/521, RSA of at least 2048 bits (rsa-sha2-256/512 signatures
// only), and the FIDO security-key types sk-ssh-ed25519@openssh.com and
// sk-ecdsa-sha2-nistp256@openssh.com. DSA, certificates and anything else are
// refused with ErrUnsupportedKey.
//
// ParseSignature is strict, so that a valid signature has exactly one
// encoding and nothing in a blob goes unread. Beyond what OpenSSH 9.2
// refuses (trailing or stray bytes, SHA-1 "ssh-rsa" signatures), it also
// refuses a non-empty reserved field, non-canonical mpints and RSA
// signatures shorter than the modulus, which OpenSSH accepts, and
// WebAuthn-style FIDO signatures. x/crypto is laxer still (stray bytes);
// TestStricterThanOracle shows each difference from an x/crypto-based
// implementation.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Errors callers branch on. They are always wrapped with detail; use errors.Is.
var (
	// ErrMalformed: an SSHSIG blob (or its armor) that breaks the format.
	ErrMalformed = errors.New("malformed signature")
	// ErrUnsupportedKey: DSA, certificates, RSA under 2048 bits, unknown types.
	ErrUnsupportedKey = errors.New("unsupported key type")
	// ErrBadSignature: a well-formed signature that does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrEncryptedKey: a private key file protected by a passphrase.
	ErrEncryptedKey = errors.New("private key is encrypted")
	// ErrPrivateKey: a private key given where a public one belongs.
	ErrPrivateKey = errors.New("that is a private key")
)

// minRSABits is the smallest RSA modulus accepted: below 2048 bits RSA is
// within reach of well-funded attackers (NIST SP 800-131A disallows it), and
// OpenSSH has refused to generate smaller keys since 9.x.
const minRSABits = 2048

// certSuffix marks OpenSSH certificate key types (…-cert-v01@openssh.com) and
// x/crypto's Go-specific ones (…-cert-v01@golang.org).
const certSuffix = "-cert-v0"

// checkKeyType reports whether a key type name is one exed accepts.
// The error names only known types: an unknown name comes from user input
// (perhaps a pasted secret) and is not echoed.
func checkKeyType(typ string) error {
	switch typ {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSA, ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.InsecureKeyAlgoDSA:
		return fmt.Errorf("keys: %w: DSA (ssh-dss) is insecure and OpenSSH no longer supports it", ErrUnsupportedKey)
	}
	if strings.Contains(typ, certSuffix) {
		return fmt.Errorf("keys: %w: certificates are not accepted; give the plain public key", ErrUnsupportedKey)
	}
	return fmt.Errorf("keys: %w: want ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (at least %d bits) or a FIDO sk- key",
		ErrUnsupportedKey, minRSABits)
}

// AllowedKey reports whether a parsed key is of a type exed accepts: the
// types listed in the package doc, RSA with a modulus of at least 2048 bits,
// ed25519 (plain or FIDO) that is not a point of small order (ErrWeakKey).
func AllowedKey(pub ssh.PublicKey) error {
	if err := checkKeyType(pub.Type()); err != nil {
		return err
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519:
		return checkEd25519Point(ed25519Point(pub))
	case ssh.KeyAlgoRSA:
	default:
		return nil
	}
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		// Some implementations (an ssh-agent's keys) carry only the wire
		// form; read the modulus from it.
		p, err := ssh.ParsePublicKey(pub.Marshal())
		if err != nil {
			return fmt.Errorf("keys: %w: unreadable RSA key: %w", ErrUnsupportedKey, err)
		}
		cpk = p.(ssh.CryptoPublicKey)
	}
	k, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
	if !ok || k.N.Sign() <= 0 {
		return fmt.Errorf("keys: %w: invalid RSA key", ErrUnsupportedKey)
	}
	if bits := k.N.BitLen(); bits < minRSABits {
		return fmt.Errorf("keys: %w: RSA key of %d bits, need at least %d", ErrUnsupportedKey, bits, minRSABits)
	}
	return nil
}

// ed25519Point returns the 32-byte point of an ssh-ed25519 or
// sk-ssh-ed25519 key, read from its wire form (which any implementation
// has: an ssh-agent's keys carry only that), or nil if it has none.
func ed25519Point(pub ssh.PublicKey) []byte {
	w := wire{b: pub.Marshal()}
	w.string() // type
	p := w.string()
	if w.bad {
		return nil
	}
	return p
}

// ParsePublicKey parses one authorized_keys-style line, "type base64
// [comment]", with leading and trailing space allowed and no options. It
// refuses a private key (ErrPrivateKey), certificates, DSA, RSA under 2048
// bits and unknown types (ErrUnsupportedKey), a type field that disagrees
// with the key, and a key that is not in its canonical wire form.
func ParsePublicKey(line []byte) (pub ssh.PublicKey, comment string, err error) {
	line = bytes.TrimSpace(line)
	if isPrivateKey(line) {
		return nil, "", fmt.Errorf("keys: %w: give the public key (the .pub file) instead", ErrPrivateKey)
	}
	if bytes.ContainsAny(line, "\r\n") {
		return nil, "", errors.New("keys: parse public key: want one key on one line")
	}
	typ, rest := cutField(line)
	if err := checkKeyType(string(typ)); err != nil {
		return nil, "", err
	}
	b64, rest := cutField(rest)
	blob, err := base64.StdEncoding.Strict().DecodeString(string(b64))
	if err != nil {
		return nil, "", fmt.Errorf("keys: parse public key: bad base64: %w", err)
	}
	pub, err = ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, "", fmt.Errorf("keys: parse public key: %w", err)
	}
	if pub.Type() != string(typ) {
		return nil, "", fmt.Errorf("keys: parse public key: type field %s does not match the %s key", typ, pub.Type())
	}
	if err := AllowedKey(pub); err != nil {
		return nil, "", err
	}
	// x/crypto accepts some non-canonical encodings (an RSA mpint with extra
	// leading zeros); one key must have one wire form, hence one fingerprint.
	if !bytes.Equal(pub.Marshal(), blob) {
		return nil, "", errors.New("keys: parse public key: key is not in canonical wire form")
	}
	return pub, string(bytes.TrimSpace(rest)), nil
}

// cutField splits s at its first run of spaces or tabs.
func cutField(s []byte) (field, rest []byte) {
	i := bytes.IndexAny(s, " \t")
	if i < 0 {
		return s, nil
	}
	return s[:i], bytes.TrimLeft(s[i:], " \t")
}

// isPrivateKey recognises the private key files people paste by mistake:
// PEM ("-----BEGIN OPENSSH PRIVATE KEY-----", "… RSA PRIVATE KEY", …),
// the ssh.com format ("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----") and PuTTY's.
func isPrivateKey(b []byte) bool {
	if bytes.HasPrefix(b, []byte("PuTTY-User-Key-File-")) {
		return true
	}
	if !bytes.HasPrefix(b, []byte("-----BEGIN ")) && !bytes.HasPrefix(b, []byte("---- BEGIN ")) {
		return false
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	return bytes.Contains(first, []byte("PRIVATE KEY"))
}

// fingerprintPrefix starts every SHA256 fingerprint, as ssh-keygen -l prints it.
const fingerprintPrefix = "SHA256:"

// Fingerprint is "SHA256:" + unpadded base64 of sha256(wire key), exactly
// as `ssh-keygen -lf` prints it.
func Fingerprint(pub ssh.PublicKey) string {
	return FingerprintBlob(pub.Marshal())
}

// FingerprintBlob is Fingerprint from the key's wire-format bytes.
func FingerprintBlob(blob []byte) string {
	sum := sha256.Sum256(blob)
	var buf [len(fingerprintPrefix) + 43]byte // 43 = unpadded base64 of 32 bytes
	copy(buf[:], fingerprintPrefix)
	base64.RawStdEncoding.Encode(buf[len(fingerprintPrefix):], sum[:])
	return string(buf[:])
}

// MarshalAuthorized returns "type base64", with no comment and no newline.
func MarshalAuthorized(pub ssh.PublicKey) string {
	return pub.Type() + " " + base64.StdEncoding.EncodeToString(pub.Marshal())
}

// ParsePrivateKey parses an unencrypted OpenSSH (or PEM) private key file.
// A passphrase-protected one yields ErrEncryptedKey. The signer it returns
// is of an allowed type (AllowedKey) and can sign SSHSIG (Sign).
func ParsePrivateKey(data []byte) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(data)
	if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
		return nil, fmt.Errorf("keys: %w: remove the passphrase (ssh-keygen -p -f FILE) or use an unencrypted key", ErrEncryptedKey)
	}
	if err != nil {
		if _, _, perr := ParsePublicKey(data); perr == nil {
			return nil, errors.New("keys: parse private key: that is a public key; give the private key file (without .pub)")
		}
		return nil, fmt.Errorf("keys: parse private key: %w", err)
	}
	if err := AllowedKey(signer.PublicKey()); err != nil {
		return nil, err
	}
	return signer, nil
}

// GenerateEd25519 makes a fresh ed25519 key pair from crypto/rand.
func GenerateEd25519() (ssh.Signer, ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: generate ed25519: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: generate ed25519: %w", err)
	}
	return signer, priv, nil
}

// MarshalPrivateKey encodes a private key (ed25519, *ecdsa, *rsa) unencrypted
// in OpenSSH format, PEM type "OPENSSH PRIVATE KEY" with 70-column lines as
// ssh-keygen writes it, readable by ssh -i and ssh-keygen.
func MarshalPrivateKey(priv crypto.PrivateKey, comment string) ([]byte, error) {
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("keys: marshal private key: %w", err)
	}
	return armor(block.Type, block.Bytes), nil
}

// armorColumns is the base64 line length OpenSSH writes in armored
// signatures and private key files (sshbuf_dtob64).
const armorColumns = 70

// armor encodes data between "-----BEGIN label-----" and "-----END label-----"
// lines, base64 in armorColumns-wide lines, as OpenSSH does.
func armor(label string, data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	b.Grow(len(enc) + len(enc)/armorColumns + 2*len(label) + 40)
	b.WriteString("-----BEGIN " + label + "-----\n")
	for len(enc) > 0 {
		n := min(armorColumns, len(enc))
		b.WriteString(enc[:n])
		b.WriteByte('\n')
		enc = enc[n:]
	}
	b.WriteString("-----END " + label + "-----\n")
	return b.Bytes()
}
