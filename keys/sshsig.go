package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/ssh"
)

// SSHSIG hash algorithms (PROTOCOL.sshsig). ssh-keygen signs with sha512
// unless told -O hashalg=sha256.
const (
	HashSHA256 = "sha256"
	HashSHA512 = "sha512"
)

const (
	// sigMagic opens every SSHSIG blob and every SSHSIG signed-data string.
	sigMagic = "SSHSIG"
	// sigVersion is the only SSHSIG version that exists.
	sigVersion = 1
	// skUserPresent is the FIDO "user present" flag (PROTOCOL.u2f): the
	// key was touched. A signature without it could have been made by
	// malware on a machine with the key plugged in.
	skUserPresent = 0x01
	// signedDataBuf sizes Verify's stack buffer for the signed data:
	// 92 bytes of framing and digest plus the namespace. Longer
	// namespaces still work; they just cost a heap allocation.
	signedDataBuf = 256

	// webauthnSKECDSA is the signature format of WebAuthn-mediated FIDO
	// signatures (made in a browser). See parseSig for why it is refused.
	webauthnSKECDSA = "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"

	sigLabel = "SSH SIGNATURE"
	sigBegin = "-----BEGIN " + sigLabel + "-----"
	sigEnd   = "-----END " + sigLabel + "-----"
)

// Signature is a parsed binary SSHSIG blob. It refers into the blob it was
// parsed from, which must not be modified afterwards.
type Signature struct {
	PublicKey     ssh.PublicKey
	PublicKeyBlob []byte // the key's wire bytes, as they appear in the blob
	Namespace     string
	HashAlgorithm string // HashSHA256 or HashSHA512

	// format is the signature algorithm, e.g. "rsa-sha2-512"; it decides
	// how Verify checks sig.
	format string
	// sig is the signature proper: 64 bytes for ed25519, the modulus
	// length for RSA; for ECDSA r and s hold the mpint magnitudes instead.
	sig  []byte
	r, s []byte

	// The key in the form Verify needs; one of them is set.
	edKey  ed25519.PublicKey
	ecKey  *ecdsa.PublicKey
	rsaKey *rsa.PublicKey

	// FIDO security keys only (sk- types).
	application []byte // the relying party the key is bound to, usually "ssh:"
	flags       byte
	counter     uint32

	// highS: an ECDSA signature came with s > n/2; s now holds n-s. See
	// canonicalizeS.
	highS bool
}

// canonicalizeS makes an ECDSA signature's s low (s <= n/2). (r, s) and
// (r, n-s) are both valid when either is, so a high-S signature has a
// second encoding that verifies: OpenSSH (through libcrypto) and Go emit
// either, so both are accepted, but the signature is kept, verified and
// re-encoded (Marshal) in its one low-S form, and HighS tells a caller
// that what it was given was the other one.
//
// r and s must be below the group order n: for P-521 a value of n or more
// still fits in the mpint's 66 bytes, and s+n would be a third encoding.
func (s *Signature) canonicalizeS() error {
	n := s.ecKey.Curve.Params().N
	if new(big.Int).SetBytes(s.r).Cmp(n) >= 0 {
		return malformed("ECDSA signature r is not below the group order")
	}
	v := new(big.Int).SetBytes(s.s)
	switch {
	case v.Cmp(n) >= 0:
		return malformed("ECDSA signature s is not below the group order")
	case v.Cmp(new(big.Int).Rsh(n, 1)) <= 0:
		return nil
	}
	s.s = v.Sub(n, v).Bytes()
	s.highS = true
	return nil
}

// HighS reports whether the blob carried an ECDSA signature in its high-S
// form: Marshal then differs from it. Always false for other key types,
// whose signatures have one encoding.
func (s *Signature) HighS() bool { return s.highS }

// Marshal encodes s as a binary SSHSIG blob: the blob it was parsed from,
// byte for byte, unless HighS, in which case the same signature with its s
// in low-S form. So every valid signature has exactly one Marshal.
func (s *Signature) Marshal() []byte {
	var inner []byte
	switch s.format {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512:
		inner = s.sig
	default:
		inner = appendString(appendString(nil, mpint(s.r)), mpint(s.s))
	}
	sig := appendString(appendString(nil, s.format), inner)
	if s.format == ssh.KeyAlgoSKED25519 || s.format == ssh.KeyAlgoSKECDSA256 {
		sig = binary.BigEndian.AppendUint32(append(sig, s.flags), s.counter)
	}
	blob := append([]byte(sigMagic), 0, 0, 0, sigVersion)
	blob = appendString(blob, s.PublicKeyBlob)
	blob = appendString(blob, s.Namespace)
	blob = appendString(blob, "") // reserved
	blob = appendString(blob, s.HashAlgorithm)
	return appendString(blob, sig)
}

// mpint is the SSH mpint of a positive magnitude m (no leading zeros): a
// zero byte first when its top bit is set.
func mpint(m []byte) []byte {
	if len(m) > 0 && m[0]&0x80 != 0 {
		return append([]byte{0}, m...)
	}
	return m
}

// malformed wraps ErrMalformed with a reason.
func malformed(reason string) error {
	return fmt.Errorf("keys: %w: %s", ErrMalformed, reason)
}

// ParseSignature parses a binary SSHSIG blob strictly, doing no public-key
// cryptography. Beyond PROTOCOL.sshsig it requires:
//   - magic "SSHSIG", version 1, and nothing after the blob;
//   - an empty reserved field (OpenSSH ignores its contents; exed refuses
//     them, so that bytes outside the signed data cannot vary);
//   - hash algorithm exactly "sha256" or "sha512", a non-empty namespace;
//   - a key type AllowedKey accepts, in canonical wire form;
//   - a signature whose format matches the key type (RSA: rsa-sha2-256 or
//     rsa-sha2-512, never SHA-1 "ssh-rsa") and whose encoding is exact:
//     the right lengths, canonical mpints, and no stray bytes (x/crypto
//     ignores trailing bytes inside the signature; exed refuses them).
//
// Errors wrap ErrUnsupportedKey for refused key types and ErrMalformed for
// everything else, including refused signature formats.
func ParseSignature(blob []byte) (*Signature, error) {
	w := wire{b: blob}
	if string(w.bytes(len(sigMagic))) != sigMagic {
		return nil, malformed("not an SSHSIG blob (bad magic)")
	}
	if v := w.uint32(); w.bad || v != sigVersion {
		return nil, malformed("unsupported SSHSIG version")
	}
	keyBlob := w.string()
	namespace := w.string()
	reserved := w.string()
	hashAlg := w.string()
	sig := w.string()
	switch {
	case w.bad:
		return nil, malformed("truncated")
	case len(w.b) != 0:
		return nil, malformed("trailing bytes after the signature")
	case len(namespace) == 0:
		return nil, malformed("empty namespace")
	case len(reserved) != 0:
		return nil, malformed("reserved field is not empty")
	}
	s := &Signature{PublicKeyBlob: keyBlob}
	switch string(hashAlg) {
	case HashSHA256:
		s.HashAlgorithm = HashSHA256
	case HashSHA512:
		s.HashAlgorithm = HashSHA512
	default:
		return nil, malformed("hash algorithm is not sha256 or sha512")
	}
	if err := s.parseKey(keyBlob); err != nil {
		return nil, err
	}
	if err := s.parseSig(sig); err != nil {
		return nil, err
	}
	s.Namespace = string(namespace)
	return s, nil
}

// parseKey parses the signer's public key from its wire form.
func (s *Signature) parseKey(blob []byte) error {
	w := wire{b: blob}
	typ := w.string()
	if w.bad {
		return malformed("truncated public key")
	}
	if string(typ) == ssh.KeyAlgoED25519 {
		// The key exed itself mints with, so the hot path: its wire form
		// is fixed, so read it directly rather than through x/crypto's
		// reflection-based parser.
		key := w.string()
		if w.bad || len(key) != ed25519.PublicKeySize || len(w.b) != 0 {
			return malformed("bad ssh-ed25519 public key")
		}
		if err := checkEd25519Point(key); err != nil {
			return err
		}
		s.edKey = key
		s.PublicKey, _ = ssh.NewPublicKey(s.edKey) // cannot fail: size checked
		return nil
	}
	if name, curve := nistCurve(string(typ)); curve != nil {
		// ECDSA's wire form is fixed too (RFC 5656 §3.1): read it directly,
		// as for ed25519, rather than decode it, marshal it again and
		// compare, which cost a token not seen before about 5% of its
		// P-256 check.
		curveName, point := w.string(), w.string()
		if w.bad || len(w.b) != 0 || string(curveName) != name {
			return malformed("bad " + string(typ) + " public key")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return fmt.Errorf("keys: %w: public key: %w", ErrMalformed, err)
		}
		s.ecKey = k
		s.PublicKey, err = ssh.NewPublicKey(k)
		return err // nil: every NIST curve here is one x/crypto supports
	}
	if err := checkKeyType(string(typ)); err != nil {
		return err
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return fmt.Errorf("keys: %w: public key: %w", ErrMalformed, err)
	}
	if err := AllowedKey(pub); err != nil {
		return err
	}
	// x/crypto accepts some non-canonical encodings (extra leading zeros
	// in mpints); one key must have one wire form, hence one fingerprint.
	if !bytes.Equal(pub.Marshal(), blob) {
		return malformed("public key is not in canonical wire form")
	}
	s.PublicKey = pub
	switch k := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(type) {
	case ed25519.PublicKey:
		s.edKey = k
	case *ecdsa.PublicKey:
		s.ecKey = k
	case *rsa.PublicKey:
		s.rsaKey = k
	}
	if t := pub.Type(); t == ssh.KeyAlgoSKED25519 || t == ssh.KeyAlgoSKECDSA256 {
		// x/crypto keeps the application private. It is the key's last
		// field, and the blob is canonical, so read the fields in order:
		// type, key (sk-ed25519) or curve and point (sk-ecdsa), application.
		w := wire{b: blob}
		w.string()
		w.string()
		if t == ssh.KeyAlgoSKECDSA256 {
			w.string()
		}
		s.application = w.string()
	}
	return nil
}

// nistCurve returns the curve name and curve of a plain ECDSA key type
// (RFC 5656 §6.1), or a nil curve for every other type.
func nistCurve(keyType string) (string, elliptic.Curve) {
	switch keyType {
	case ssh.KeyAlgoECDSA256:
		return "nistp256", elliptic.P256()
	case ssh.KeyAlgoECDSA384:
		return "nistp384", elliptic.P384()
	case ssh.KeyAlgoECDSA521:
		return "nistp521", elliptic.P521()
	}
	return "", nil
}

// parseSig parses the signature proper (PROTOCOL.sshsig's "signature"
// field) and checks that it is exactly what the key type defines.
func (s *Signature) parseSig(b []byte) error {
	w := wire{b: b}
	format := w.string()
	blob := w.string()
	if w.bad {
		return malformed("truncated signature")
	}
	keyType := s.PublicKey.Type()
	switch keyType {
	case ssh.KeyAlgoRSA:
		switch string(format) {
		case ssh.KeyAlgoRSASHA256:
			s.format = ssh.KeyAlgoRSASHA256
		case ssh.KeyAlgoRSASHA512:
			s.format = ssh.KeyAlgoRSASHA512
		case ssh.KeyAlgoRSA:
			return malformed("RSA signature uses SHA-1 (ssh-rsa); want rsa-sha2-256 or rsa-sha2-512")
		default:
			return malformed("signature format does not match the ssh-rsa key")
		}
	case ssh.KeyAlgoSKECDSA256:
		// WebAuthn signatures wrap the signed data in a browser's
		// clientDataJSON, to be parsed and checked (type, challenge,
		// origin) before any cryptography. Neither ssh-keygen nor exed
		// makes them, only web-based signers, so exed does not take on a
		// JSON parser on its hot path for them.
		if string(format) == webauthnSKECDSA {
			return malformed("WebAuthn security-key signatures are not supported; sign with ssh-keygen")
		}
		fallthrough
	default:
		// Every other type's signature format is the key type itself.
		if string(format) != keyType {
			return malformed("signature format does not match the " + keyType + " key")
		}
		s.format = keyType
	}

	switch s.format {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519:
		if len(blob) != ed25519.SignatureSize {
			return malformed("ed25519 signature is not 64 bytes")
		}
		s.sig = blob
	case ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512:
		// RFC 8332 §3 fixes the length at the modulus length, and OpenSSH
		// always writes it so. OpenSSH and x/crypto also accept shorter
		// signatures (left-padded; old PuTTY agents wrote them); exed
		// refuses them so that a signature has exactly one encoding.
		if len(blob) != s.rsaKey.Size() {
			return malformed("RSA signature length differs from the modulus length")
		}
		s.sig = blob
	default: // ECDSA, plain or sk: string(mpint r || mpint s)
		size := (s.ecKey.Curve.Params().BitSize + 7) / 8
		ew := wire{b: blob}
		r, sv := ew.string(), ew.string()
		var okR, okS bool
		s.r, okR = positiveMPInt(r, size)
		s.s, okS = positiveMPInt(sv, size)
		if ew.bad || len(ew.b) != 0 || !okR || !okS {
			return malformed("bad ECDSA signature encoding")
		}
		if err := s.canonicalizeS(); err != nil {
			return err
		}
	}

	if s.format == ssh.KeyAlgoSKED25519 || s.format == ssh.KeyAlgoSKECDSA256 {
		s.flags = w.byte()
		s.counter = w.uint32()
		if w.bad {
			return malformed("truncated security-key signature")
		}
	}
	if len(w.b) != 0 {
		return malformed("stray bytes after the signature")
	}
	return nil
}

// positiveMPInt checks that b is a canonical, positive SSH mpint (RFC 4251
// §5) whose magnitude fits in size bytes, and returns the magnitude.
func positiveMPInt(b []byte, size int) ([]byte, bool) {
	if len(b) == 0 || b[0]&0x80 != 0 { // zero or negative
		return nil, false
	}
	if b[0] == 0 { // a leading zero is allowed only to clear the sign bit
		if len(b) == 1 || b[1]&0x80 == 0 {
			return nil, false
		}
		b = b[1:]
	}
	return b, len(b) <= size
}

// Fingerprint is the fingerprint of the embedded public key.
func (s *Signature) Fingerprint() string {
	return FingerprintBlob(s.PublicKeyBlob)
}

// Verify checks the signature over message. The signed data is built per
// PROTOCOL.sshsig: "SSHSIG" || string(namespace) || string("") ||
// string(hash_alg) || string(H(message)). The namespace is not compared
// with anything here: callers compare s.Namespace before any cryptography.
//
// Each key type is verified here rather than through x/crypto's
// PublicKey.Verify, which ignores stray signature bytes and pads short RSA
// signatures. FIDO (sk-) signatures must carry the user-presence flag.
func (s *Signature) Verify(message []byte) error {
	var digest [sha512.Size]byte
	var buf [signedDataBuf]byte
	data := appendSignedData(buf[:0], s.Namespace, s.HashAlgorithm, hashMessage(&digest, s.HashAlgorithm, message))

	var ok bool
	switch s.format {
	case ssh.KeyAlgoED25519:
		ok = ed25519.Verify(s.edKey, data, s.sig)
	case ssh.KeyAlgoECDSA256:
		h := sha256.Sum256(data)
		ok = s.verifyECDSA(h[:])
	case ssh.KeyAlgoECDSA384:
		h := sha512.Sum384(data)
		ok = s.verifyECDSA(h[:])
	case ssh.KeyAlgoECDSA521:
		h := sha512.Sum512(data)
		ok = s.verifyECDSA(h[:])
	case ssh.KeyAlgoRSASHA256:
		h := sha256.Sum256(data)
		ok = rsa.VerifyPKCS1v15(s.rsaKey, crypto.SHA256, h[:], s.sig) == nil
	case ssh.KeyAlgoRSASHA512:
		h := sha512.Sum512(data)
		ok = rsa.VerifyPKCS1v15(s.rsaKey, crypto.SHA512, h[:], s.sig) == nil
	case ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		if s.flags&skUserPresent == 0 {
			return fmt.Errorf("keys: %w: security key did not assert user presence (no touch)", ErrBadSignature)
		}
		signed := s.skSignedData(data)
		if s.format == ssh.KeyAlgoSKED25519 {
			ok = ed25519.Verify(s.edKey, signed[:], s.sig)
		} else {
			h := sha256.Sum256(signed[:])
			ok = s.verifyECDSA(h[:])
		}
	}
	if !ok {
		return fmt.Errorf("keys: %w", ErrBadSignature)
	}
	return nil
}

// verifyECDSA checks (r, s) over hash. ecdsa.Verify would take them as
// big.Ints only to encode them as DER for VerifyASN1; r and s are already
// canonical magnitudes, so the DER is written directly, on the stack.
func (s *Signature) verifyECDSA(hash []byte) bool {
	var buf [3 + 2*(2+67)]byte // SEQUENCE of two INTEGERs of P-521's size, with sign bytes
	der := appendDERInts(buf[:0], s.r, s.s)
	return ecdsa.VerifyASN1(s.ecKey, hash, der)
}

// appendDERInts appends the DER SEQUENCE { INTEGER r, INTEGER s } of two
// positive magnitudes without leading zeros, each at most 66 bytes (so an
// INTEGER's length fits in one byte, and the SEQUENCE's in two: P-521's
// reach 138).
func appendDERInts(dst, r, s []byte) []byte {
	intLen := func(m []byte) int { return 2 + len(m) + int(m[0]>>7) }
	n := intLen(r) + intLen(s)
	dst = append(dst, 0x30)
	if n >= 0x80 {
		dst = append(dst, 0x81) // long form: one length byte follows
	}
	dst = append(dst, byte(n))
	for _, m := range [2][]byte{r, s} {
		dst = append(dst, 0x02, byte(len(m)+int(m[0]>>7)))
		if m[0]&0x80 != 0 {
			dst = append(dst, 0) // keep the INTEGER positive
		}
		dst = append(dst, m...)
	}
	return dst
}

// skSignedData is what a FIDO authenticator signs (PROTOCOL.u2f):
// sha256(application) || flags || uint32 counter || sha256(data).
func (s *Signature) skSignedData(data []byte) [2*sha256.Size + 5]byte {
	var out [2*sha256.Size + 5]byte
	app := sha256.Sum256(s.application)
	copy(out[:], app[:])
	out[sha256.Size] = s.flags
	binary.BigEndian.PutUint32(out[sha256.Size+1:], s.counter)
	msg := sha256.Sum256(data)
	copy(out[sha256.Size+5:], msg[:])
	return out
}

// hashMessage returns H(message) for an SSHSIG hash algorithm, stored in buf.
func hashMessage(buf *[sha512.Size]byte, alg string, message []byte) []byte {
	if alg == HashSHA256 {
		h := sha256.Sum256(message)
		return append(buf[:0], h[:]...)
	}
	*buf = sha512.Sum512(message)
	return buf[:]
}

// appendSignedData appends the SSHSIG signed data to dst.
func appendSignedData(dst []byte, namespace, hashAlg string, digest []byte) []byte {
	dst = append(dst, sigMagic...)
	dst = appendString(dst, namespace)
	dst = appendString(dst, "") // reserved
	dst = appendString(dst, hashAlg)
	return appendString(dst, digest)
}

// Sign makes a binary SSHSIG blob over message in namespace, with hashAlg
// HashSHA512 (ssh-keygen's default) or HashSHA256. RSA keys sign with
// rsa-sha2-512. Ed25519 output is deterministic and byte-identical to
// `ssh-keygen -Y sign` for the same key, namespace and message.
func Sign(signer ssh.Signer, namespace, hashAlg string, message []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("keys: sign: empty namespace")
	}
	if hashAlg != HashSHA256 && hashAlg != HashSHA512 {
		return nil, errors.New("keys: sign: hash algorithm must be sha256 or sha512")
	}
	pub := signer.PublicKey()
	if err := AllowedKey(pub); err != nil {
		return nil, fmt.Errorf("keys: sign: %w", err)
	}
	var digest [sha512.Size]byte
	data := appendSignedData(nil, namespace, hashAlg, hashMessage(&digest, hashAlg, message))

	var sig *ssh.Signature
	var err error
	if pub.Type() == ssh.KeyAlgoRSA {
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("keys: sign: this RSA signer cannot make rsa-sha2-512 signatures")
		}
		sig, err = as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, data)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: sign: %w", err)
	}

	blob := append([]byte(sigMagic), 0, 0, 0, sigVersion)
	blob = appendString(blob, pub.Marshal())
	blob = appendString(blob, namespace)
	blob = appendString(blob, "") // reserved
	blob = appendString(blob, hashAlg)
	blob = appendString(blob, ssh.Marshal(sig))
	// Hand out nothing exed itself would refuse (a signer, say an agent,
	// could return an odd encoding).
	if _, err := ParseSignature(blob); err != nil {
		return nil, fmt.Errorf("keys: sign: signer made an unacceptable signature: %w", err)
	}
	return blob, nil
}

// Armor encodes a binary SSHSIG blob as ssh-keygen writes it:
// "-----BEGIN SSH SIGNATURE-----", base64 in 70-column lines, "-----END SSH SIGNATURE-----".
func Armor(blob []byte) []byte {
	return armor(sigLabel, blob)
}

// Unarmor decodes ssh-keygen's armored signature text back to the binary
// blob. Surrounding whitespace and CRLF line ends are accepted; the base64
// must be canonical.
func Unarmor(text []byte) ([]byte, error) {
	body, ok := bytes.CutPrefix(bytes.TrimSpace(text), []byte(sigBegin))
	if !ok {
		return nil, malformed("armored signature does not start with " + sigBegin)
	}
	body, ok = bytes.CutSuffix(body, []byte(sigEnd))
	if !ok {
		return nil, malformed("armored signature does not end with " + sigEnd)
	}
	// The decoder skips the '\r' and '\n' between lines.
	blob := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
	n, err := base64.StdEncoding.Strict().Decode(blob, body)
	if err != nil {
		return nil, fmt.Errorf("keys: %w: armored signature: bad base64: %w", ErrMalformed, err)
	}
	return blob[:n], nil
}

// wire reads SSH wire-format fields (RFC 4251 §5). After a short read it
// sets bad and returns zero values, so a parser can read every field and
// check once.
type wire struct {
	b   []byte
	bad bool
}

func (w *wire) bytes(n int) []byte {
	if w.bad || len(w.b) < n {
		w.bad = true
		return nil
	}
	out := w.b[:n:n]
	w.b = w.b[n:]
	return out
}

func (w *wire) byte() byte {
	b := w.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (w *wire) uint32() uint32 {
	b := w.bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// string reads a length-prefixed string. The result's capacity is its
// length, so appending to it cannot overwrite what follows.
func (w *wire) string() []byte {
	n := w.uint32()
	if uint64(n) > uint64(len(w.b)) {
		w.bad = true
		return nil
	}
	return w.bytes(int(n))
}

// appendString appends an SSH wire-format string (uint32 length, bytes).
func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
