// Package assertion is exed's signed identity assertions: the JWT that
// the proxy adds to every request it forwards with an identity, as
// X-ExeDev-Jwt-Assertion, so that a VM can check who is calling with any
// JOSE library instead of trusting the network path.
//
// An Issuer signs the assertions (ES256) with the current key, reusing one
// for the same identity and audience until half its lifetime has passed,
// and publishes the JSON Web Key Set that verifies them. The signing keys
// (ECDSA P-256) live in the store, their private halves sealed under the
// server secret (Secret), so that a copy of the database yields no
// signing key. They rotate by time: a new key is published PublishAhead
// before it signs, signs for SignFor, and stays published PublishAfter
// once the next one has taken over. Every instance reads the keys again
// periodically (Issuer.Run); the one that finds a rotation due adds the
// next key, and the store's one-key-per-generation rule makes exactly one
// of several instances rotating at once succeed.
package assertion

import (
	"github.com/exed-dev/exed/tokens"
)

// Header is the request header that carries an assertion to the VM.
const Header = "X-ExeDev-Jwt-Assertion"

// Method is how the caller proved who they are.
type Method string

// The methods.
const (
	MethodToken  Method = "token"  // an exe0/exe1 token
	MethodCookie Method = "cookie" // a browser session
)

// Identity is who is calling a VM, and how: what an assertion vouches
// for. The proxy builds it from a verified token or a session; forward
// auth does the same.
type Identity struct {
	UserID string
	Email  string
	Method Method
	// Access is how the user reaches the VM (tokens.Reach): owner, share
	// or public.
	Access tokens.Access
	// KeyFingerprint is the token's signing key; "" for a cookie.
	KeyFingerprint string
	// TokenCtx is the token's ctx, its exact bytes; nil when it has none
	// (and for a cookie).
	TokenCtx []byte
}

// Audience is the VM origin the client used: scheme://NAME.<vm-domain>,
// with :PORT unless it is the scheme's default.
type Audience struct {
	VM   string // the VM's name
	TLS  bool   // https, else http
	Port int    // the port the request came in on; 0 for the scheme's default
}

// Claims is an assertion's payload, as the VM decodes it.
type Claims struct {
	Issuer    string `json:"iss"` // https://<domain>
	Subject   string `json:"sub"` // the user id
	Audience  string `json:"aud"` // the VM origin
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expiry    int64  `json:"exp"`
	ID        string `json:"jti"`

	Email      string `json:"email"`
	VM         string `json:"vm"`
	AuthMethod Method `json:"auth_method"`
	Access     string `json:"access"`
	// Tokens only:
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	TokenCtx       string `json:"token_ctx,omitempty"` // the ctx's exact bytes, as a string
}
