// Package tokens is exed's access-token logic: the exe0 format and its
// strict permission rules (a token that breaks one is invalid, never
// repaired), exe1 handles (short random names, kept in the registry, that
// stand for one exe0 token), the one rule for command grants, and the
// Verifier that every token check goes through (the proxy, /exec,
// exe0-to-exe1 and check-api-key).
//
// An exe0 token is "exe0." + base64url(P) + "." + base64url(B): P is the
// permissions JSON exactly as signed, B the binary SSHSIG blob over P, as
// stock `ssh-keygen -Y sign` makes it.
//
// The Verifier keeps, for at most its TTL (1 s by default), valid results
// by token and the registry's answers by key fingerprint, dropped at once
// by Forget, ForgetUser and ForgetAll when the store announces a change;
// and it sheds forged tokens without checking their signatures: one seen
// to fail is refused again, and a key past its budget of failed
// signatures has its tokens not known good refused as throttled (429).
package tokens

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
)

// MaxTokenLen bounds a whole token in bytes. Common HTTP servers and
// proxies (nginx, Apache) allow about 8 KiB for one request header line,
// so a longer token could not travel reliably anyway; it leaves plenty of
// room for P beside a large signature (RSA 4096: about 1.5 KiB encoded),
// and caps the work done on a token before anything is looked up.
const MaxTokenLen = 8192

// Exe0Prefix starts every exe0 token.
const Exe0Prefix = "exe0."

// LooksLikeToken reports whether s has an exe0 or exe1 token's prefix: how
// the proxy tells a token from a VM's own credentials, and what it never
// lets reach a VM.
func LooksLikeToken(s string) bool {
	return strings.HasPrefix(s, Exe0Prefix) || strings.HasPrefix(s, Exe1Prefix)
}

// ErrMalformed is wrapped by every error that says a token breaks a rule
// of the exe0 or exe1 format, as opposed to failing verification.
var ErrMalformed = errors.New("malformed token")

func malformed(format string, args ...any) error {
	return fmt.Errorf("tokens: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// b64 is base64url without padding that also refuses non-canonical tail
// bits, so each token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Exe0 is a parsed exe0 token. Nothing about it has been verified except
// its shape: see Verifier.
type Exe0 struct {
	Payload []byte // P, the exact bytes that were signed
	Perms   Permissions
	Sig     *keys.Signature

	canonical string // see Canonical
}

// Canonical is the token in its one canonical encoding: the string it was
// parsed from, except for an ECDSA signature given in its high-S form
// (keys.Signature.HighS), which is re-encoded low-S. Both verify; the
// Verifier caches a token under its canonical form only, so that one
// signature is one token.
func (x *Exe0) Canonical() string { return x.canonical }

// ParseExe0 applies every rule of the exe0 format, in order: size at most
// MaxTokenLen, prefix "exe0.", exactly two parts, strict unpadded base64url,
// the rules for P (ParsePermissions), and a well-formed SSHSIG blob
// (keys.ParseSignature). It does no cryptography.
//
// Errors wrap ErrMalformed (and, for the blob, keys.ErrMalformed or
// keys.ErrUnsupportedKey). They never contain the token.
func ParseExe0(token string) (*Exe0, error) {
	if len(token) > MaxTokenLen {
		return nil, malformed("longer than %d bytes", MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(token, Exe0Prefix)
	if !ok {
		return nil, malformed("does not start with %q", Exe0Prefix)
	}
	p64, b64sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(b64sig, ".") {
		return nil, malformed("want exactly two parts after %q", Exe0Prefix)
	}
	// One buffer for both parts: P first, capped so that appending to
	// Payload cannot write over the blob the Signature refers into.
	buf := make([]byte, b64.DecodedLen(len(p64))+b64.DecodedLen(len(b64sig)))
	n, err := decodeBase64(buf, "payload", p64)
	if err != nil {
		return nil, err
	}
	payload := buf[:n:n]
	m, err := decodeBase64(buf[n:], "signature", b64sig)
	if err != nil {
		return nil, err
	}
	blob := buf[n : n+m]
	perms, err := ParsePermissions(payload)
	if err != nil {
		return nil, err
	}
	sig, err := keys.ParseSignature(blob)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w: signature: %w", ErrMalformed, err)
	}
	x := &Exe0{Payload: payload, Perms: perms, Sig: sig, canonical: token}
	if sig.HighS() {
		x.canonical = FormatExe0(payload, sig.Marshal())
	}
	return x, nil
}

// decodeBase64 decodes one part strictly into dst, returning its length.
// The alphabet is checked first because encoding/base64 silently skips CR
// and LF, even in strict mode.
func decodeBase64(dst []byte, part, s string) (int, error) {
	for i := 0; i < len(s); i++ {
		if !isBase64URL(s[i]) {
			return 0, malformed("%s: byte %d is not base64url (no padding, no '+' or '/')", part, i)
		}
	}
	n, err := b64.Decode(dst, []byte(s))
	if err != nil {
		return 0, malformed("%s: not canonical base64url: %v", part, err)
	}
	return n, nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// FormatExe0 encodes an exe0 token from P and a binary SSHSIG blob.
func FormatExe0(payload, sigBlob []byte) string {
	t := make([]byte, 0, len(Exe0Prefix)+b64.EncodedLen(len(payload))+1+b64.EncodedLen(len(sigBlob)))
	t = append(t, Exe0Prefix...)
	t = b64.AppendEncode(t, payload)
	t = append(t, '.')
	t = b64.AppendEncode(t, sigBlob)
	return string(t)
}

// MintExe0 signs payload in namespace with hash sha512 (ssh-keygen's
// default) and formats the token. For an ed25519 key the result is
// byte-identical to the documented ssh-keygen shell recipe. A payload
// that breaks the P rules, or whose ctx could never reach a VM
// (CheckCtxHeader), is refused rather than signed into a token nobody
// would accept.
func MintExe0(signer ssh.Signer, namespace string, payload []byte) (string, error) {
	perms, err := ParsePermissions(payload)
	if err != nil {
		return "", fmt.Errorf("tokens: mint: %w", err)
	}
	if err := CheckCtxHeader(perms.Ctx); err != nil {
		return "", fmt.Errorf("tokens: mint: %w", err)
	}
	blob, err := keys.Sign(signer, namespace, keys.HashSHA512, payload)
	if err != nil {
		return "", fmt.Errorf("tokens: mint: %w", err)
	}
	tok := FormatExe0(payload, blob)
	if len(tok) > MaxTokenLen {
		return "", fmt.Errorf("tokens: mint: token would be %d bytes, over the %d limit", len(tok), MaxTokenLen)
	}
	return tok, nil
}
